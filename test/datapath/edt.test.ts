/**
 * tc_edt_egress under BPF_PROG_TEST_RUN, with the rates written by EdtDatapath.setRate: the departure
 * times it gives (skb->tstamp of the context) to the nanosecond, the horizon's drops and their
 * counter, and the codecs of its maps against tc_edt.o's BTF.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EdtDatapath } from '../../agent/edt-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { readObjectBtf } from '../../lb/datapath/object.js';
import type { BtfStruct } from '../../lb/datapath/btf.js';
import { layoutDifferences, type CodecLayout } from '../../lb/layout-check.js';
import { EdtConfig, EdtRate, edtKey } from '../../lb/layouts-edt.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { TstampCount, TstampRecord } from '../support/tstamp-recorder.js';

/** struct __sk_buff: its size, and where ingress_ifindex and tstamp are. */
const SKB_CTX_SIZE = 192;
const INGRESS_IFINDEX = 36;
const TSTAMP = 152;
const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const NS = 1_000_000_000n;
const LEN = 1000;

function loadEdt(pinDir: string, horizonNs = 2_000_000_000): EdtDatapath {
  return EdtDatapath.load({ pinDir, devices: [], horizonNs, nodeSetup: false, log: () => undefined });
}

/** One packet of `len` bytes from the pod behind `ifindex`, with `tstamp` on it: the verdict and the tstamp it leaves with. */
function send(edt: EdtDatapath, ifindex: number, tstamp = 0n, len = LEN): { retval: number; tstamp: bigint } {
  const ctx = Buffer.alloc(SKB_CTX_SIZE);
  ctx.writeUInt32LE(ifindex, INGRESS_IFINDEX);
  ctx.writeBigUInt64LE(tstamp, TSTAMP);
  const data = Buffer.alloc(len);
  data.writeUInt16BE(0x0800, 12);
  const result = edt.object.program('tc_edt_egress').testRun({ data, ctx, ctxOutSize: SKB_CTX_SIZE });
  return { retval: result.retval, tstamp: result.ctx.readBigUInt64LE(TSTAMP) };
}

function tLast(edt: EdtDatapath, ifindex: number): bigint {
  const value = edt.object.map('xlb_edt').lookup(edtKey(ifindex));
  assert.ok(value, `ifindex ${ifindex} has a rate`);
  return EdtRate.decode(value).tLast;
}

function horizonDrops(edt: EdtDatapath): { packets: bigint; bytes: bigint } {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(counterIndex(Reason.DROP_EDT_HORIZON, Direction.EGRESS));
  const [packets = 0n, bytes = 0n] = edt.object.map('xlb_metrics').sumPerCpuU64(key);
  return { packets, bytes };
}

describe('tc_edt_egress', () => {
  let bpffs: TempBpffs;
  let edt: EdtDatapath;

  before(() => {
    bpffs = TempBpffs.mount('edt');
    edt = loadEdt(`${bpffs.dir}/node`);
  });

  after(() => {
    edt?.close();
    bpffs?.remove();
  });

  test('consecutive packets of a pod leave exactly len × 1e9 / rate apart', () => {
    edt.setRate(7, 10_000); // 1000 bytes take 100 ms
    const first = send(edt, 7);
    assert.equal(first.retval, TC_ACT_UNSPEC, 'a verdict of none: the filters after it still see the packet');
    assert.equal(first.tstamp, 0n, 'the first packet leaves at once');
    const start = tLast(edt, 7);
    const departures = Array.from({ length: 5 }, () => send(edt, 7));
    assert.deepEqual(departures.map((d) => d.retval), new Array(5).fill(TC_ACT_UNSPEC));
    assert.deepEqual(departures.map((d) => d.tstamp - start), [1n, 2n, 3n, 4n, 5n].map((k) => k * 100_000_000n));
    assert.equal(tLast(edt, 7), start + 500_000_000n, 'the schedule stands at the last departure');
  });

  test('a delay that is not a whole number of nanoseconds is rounded down, exactly', () => {
    edt.setRate(9, 3_000); // 1000 bytes take 333,333,333.3 ns
    send(edt, 9);
    const start = tLast(edt, 9);
    assert.deepEqual([send(edt, 9).tstamp - start, send(edt, 9).tstamp - start, send(edt, 9, 0n, 1500).tstamp - start], [333_333_333n, 666_666_666n, 1_166_666_666n]);
  });

  test('a packet with a departure time in the future is scheduled from it, the next from there', () => {
    edt.setRate(8, 10_000);
    const future = process.hrtime.bigint() + NS; // bpf_ktime_get_ns and hrtime share CLOCK_MONOTONIC
    const own = send(edt, 8, future);
    assert.equal(own.retval, TC_ACT_UNSPEC);
    assert.equal(own.tstamp, future, 'its own time is already within the rate: kept');
    assert.equal(tLast(edt, 8), future);
    assert.equal(send(edt, 8).tstamp, future + 100_000_000n, 'the next packet leaves a delay after it');
  });

  test('a pod without a rate: the packet is untouched and nothing is recorded', () => {
    const entries = [...edt.rates().keys()].sort();
    for (const tstamp of [0n, 123_456_789n]) {
      assert.deepEqual(send(edt, 4242, tstamp), { retval: TC_ACT_UNSPEC, tstamp });
    }
    assert.deepEqual([...edt.rates().keys()].sort(), entries);
    assert.equal(edt.rates().has(4242), false);
  });

  test('past the horizon packets are dropped and counted, and the schedule does not move', () => {
    const short = loadEdt(`${bpffs.dir}/short`, 500_000_000);
    try {
      short.setRate(11, 10_000);
      const before = horizonDrops(short);
      // 0: at once; 1..5: +100 ms each (the 5th leaves 500 ms after the first, less than 500 ms from now); then dropped.
      const verdicts = Array.from({ length: 10 }, () => send(short, 11).retval);
      assert.deepEqual(verdicts, [...new Array(6).fill(TC_ACT_UNSPEC), ...new Array(4).fill(TC_ACT_SHOT)]);
      const drops = horizonDrops(short);
      assert.deepEqual({ packets: drops.packets - before.packets, bytes: drops.bytes - before.bytes }, { packets: 4n, bytes: 4000n });
    } finally {
      short.close();
    }
  });

  test('a new rate starts a new schedule: the next packet at once, the ones after at the new spacing', () => {
    edt.setRate(12, 10_000);
    send(edt, 12);
    send(edt, 12);
    edt.setRate(12, 40_000); // 1000 bytes: 25 ms
    assert.deepEqual(edt.rates().get(12), 40_000);
    assert.equal(send(edt, 12).tstamp, 0n);
    const start = tLast(edt, 12);
    assert.deepEqual([send(edt, 12).tstamp - start, send(edt, 12).tstamp - start], [25_000_000n, 50_000_000n]);
    edt.setRate(12, undefined);
    assert.equal(edt.rates().has(12), false);
    assert.deepEqual(send(edt, 12), { retval: TC_ACT_UNSPEC, tstamp: 0n });
  });

  test('setRate refuses what the datapath cannot hold, naming it', () => {
    assert.throws(() => edt.setRate(0, 1000), /EDT rate: 0 is not an ifindex/);
    assert.throws(() => edt.setRate(7, 0), /EDT rate of ifindex 7: 0 is not a positive whole number of bytes per second/);
    assert.throws(() => edt.setRate(7, 1.5), /1\.5 is not a positive whole number/);
  });

  test('the rates and the horizon stay in the pinned maps for the next agent', () => {
    edt.setRate(21, 125_000);
    const again = loadEdt(`${bpffs.dir}/node`, 1_000_000_000);
    try {
      assert.equal(again.object.replacedPins.length, 0);
      assert.equal(again.rates().get(21), 125_000);
      const config = again.object.map('xlb_edt_config').lookup(Buffer.alloc(4));
      assert.ok(config);
      assert.equal(EdtConfig.decode(config).horizonNs, 1_000_000_000n, 'the new agent\'s horizon is written');
    } finally {
      again.close();
    }
  });
});

describe('EDT layouts', () => {
  const struct = (object: string, name: string): BtfStruct => {
    const found = readObjectBtf(bpfObjectPath(object)).struct(name);
    assert.ok(found, `${name} in ${object}'s BTF`);
    return found;
  };
  const check = (object: string, codec: CodecLayout): void => assert.deepEqual(layoutDifferences(codec, struct(object, codec.cName)), [], codec.cName);

  test('edt_rate and edt_config match tc_edt.o', () => {
    check('tc/tc_edt.o', EdtRate);
    check('tc/tc_edt.o', EdtConfig);
  });

  test('the peer recorder’s records match tstamp_recorder.o', () => {
    check('test/tstamp_recorder.o', TstampRecord);
    check('test/tstamp_recorder.o', TstampCount);
  });
});
