/**
 * tc_edt_egress for pods on either side of xlb_edt's end: a device index inside the array and one past
 * it (in the hash xlb_edt_far) are paced alike, listed alike and removed alike, and one never reads the
 * other's rate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EdtDatapath } from '../../agent/edt-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { edtKey } from '../../lb/layouts-edt.js';

/** struct __sk_buff: its size, and where ingress_ifindex and tstamp are. */
const SKB_CTX_SIZE = 192;
const INGRESS_IFINDEX = 36;
const TSTAMP = 152;
const TC_ACT_UNSPEC = 0xffffffff;

function departure(edt: EdtDatapath, ifindex: number): bigint {
  const ctx = Buffer.alloc(SKB_CTX_SIZE);
  ctx.writeUInt32LE(ifindex, INGRESS_IFINDEX);
  const data = Buffer.alloc(1000);
  data.writeUInt16BE(0x0800, 12);
  const result = edt.object.program('tc_edt_egress').testRun({ data, ctx, ctxOutSize: SKB_CTX_SIZE });
  assert.equal(result.retval, TC_ACT_UNSPEC);
  return result.ctx.readBigUInt64LE(TSTAMP);
}

describe('tc_edt_egress: rates in the array and past its end', () => {
  let bpffs: TempBpffs;
  let edt: EdtDatapath;
  let size: number;

  before(() => {
    bpffs = TempBpffs.mount('edt-far');
    edt = EdtDatapath.load({ pinDir: `${bpffs.dir}/node`, devices: [], horizonNs: 2_000_000_000, nodeSetup: false, log: () => undefined });
    size = edt.object.map('xlb_edt').maxEntries;
  });

  after(() => {
    edt?.close();
    bpffs?.remove();
  });

  test('the last index of the array and the first past it are paced alike, each on its own schedule', () => {
    const inside = size - 1;
    const past = size;
    edt.setRate(inside, 10_000); // 1000 bytes: 100 ms
    edt.setRate(past, 20_000); // 50 ms
    for (const ifindex of [inside, past]) assert.equal(departure(edt, ifindex), 0n, `${ifindex}: the first packet leaves at once`);
    const spacing = (ifindex: number): bigint => {
      const first = departure(edt, ifindex);
      return departure(edt, ifindex) - first;
    };
    assert.deepEqual([spacing(inside), spacing(past)], [100_000_000n, 50_000_000n]);
    assert.equal(edt.object.map('xlb_edt_far').lookup(edtKey(past)) !== undefined, true, 'the one past the array is in the hash');
    assert.deepEqual([edt.rates().get(inside), edt.rates().get(past)], [10_000, 20_000]);
  });

  test('a removed rate, in the array or past it, is no limit and no longer listed', () => {
    const far = 0x7fff_0000;
    edt.setRate(3, 10_000);
    edt.setRate(far, 10_000);
    departure(edt, 3);
    departure(edt, far);
    edt.setRate(3, undefined);
    edt.setRate(far, undefined);
    assert.deepEqual([departure(edt, 3), departure(edt, 3), departure(edt, far), departure(edt, far)], [0n, 0n, 0n, 0n]);
    assert.equal(edt.rates().has(3) || edt.rates().has(far), false);
  });
});
