import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { BpfError } from '../../lb/datapath/errors.js';
import { BpfMap, MapType } from '../../lb/datapath/map.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { ifindexOf } from '../../lb/datapath/netif.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../../lb/datapath/program.js';
import { RingBufferReader } from '../../lb/datapath/ringbuf.js';
import { attachTc, detachTc, queryTc, removeClsact } from '../../lb/datapath/tc.js';
import { Topology } from '../../lb/datapath/topology.js';
import { attachXdp, detachXdp, queryXdp } from '../../lb/datapath/xdp.js';
import { bpfObject } from '../support/paths.js';
import { waitFor } from '../support/wait.js';
import { XlbTestEvent, XlbTestKey, XlbTestValue } from '../support/test-layouts.js';

const OBJECT = bpfObject('test/xlb_test.o');
const XDP_DROP = 1;
const XDP_PASS = 2;
const Counter = { xdp: 0, tx: 1, tcIngress: 2, tcEgress: 3 } as const;

const u32Key = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** Ethernet frame: dst 02:..:01, src 02:..:02, IPv4 ethertype, zero payload. */
function frame(length = 64): Buffer {
  const f = Buffer.alloc(length);
  Buffer.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]).copy(f);
  return f;
}

function counter(obj: BpfObject, which: number): bigint {
  return obj.map('xlb_test_counts').sumPerCpuU64(u32Key(which))[0] ?? 0n;
}

describe('object loading', () => {
  test('loads programs and maps by name, and names what is missing', () => {
    const obj = BpfObject.load(OBJECT);
    try {
      assert.deepEqual([...obj.programs.keys()].sort(), ['tc_test_egress', 'tc_test_ingress', 'xdp_test', 'xdp_test_tx']);
      for (const map of ['xlb_test_hash', 'xlb_test_counts', 'xlb_test_outer', 'xlb_test_events']) assert.ok(obj.maps.has(map), map);
      assert.equal(obj.map('xlb_test_hash').keySize, XlbTestKey.size);
      assert.equal(obj.map('xlb_test_hash').valueSize, XlbTestValue.size);
      assert.throws(() => obj.map('nope'), /has no map nope \(has: .*xlb_test_hash/);
      assert.throws(() => obj.program('nope'), /has no program nope/);
    } finally {
      obj.close();
    }
  });

  test('a missing object file fails with the operation, the object and ENOENT', () => {
    assert.throws(() => BpfObject.load('/nonexistent/xlb_missing.o'), (e: unknown) => {
      assert.ok(e instanceof BpfError);
      assert.match(e.message, /bpf_object__open_file on object xlb_missing\.o failed: ENOENT/);
      return true;
    });
  });

  test('const volatile globals are set at load and change the verdict', () => {
    const passing = BpfObject.load(OBJECT);
    const dropping = BpfObject.load(OBJECT, { constants: { xlb_test_verdict: XDP_DROP } });
    try {
      assert.equal(passing.program('xdp_test').testRun({ data: frame() }).retval, XDP_PASS);
      assert.equal(dropping.program('xdp_test').testRun({ data: frame() }).retval, XDP_DROP);
      assert.throws(() => BpfObject.load(OBJECT, { constants: { no_such_const: 1 } }), /has no const volatile no_such_const/);
    } finally {
      passing.close();
      dropping.close();
    }
  });

  test('max_entries can be overridden at load', () => {
    const obj = BpfObject.load(OBJECT, { maxEntries: { xlb_test_hash: 3 } });
    try {
      assert.equal(obj.map('xlb_test_hash').maxEntries, 3);
    } finally {
      obj.close();
    }
  });
});

describe('BPF_PROG_TEST_RUN', () => {
  let obj: BpfObject;
  before(() => {
    obj = BpfObject.load(OBJECT);
  });
  after(() => obj.close());

  test('returns the verdict and the rewritten packet', () => {
    const result = obj.program('xdp_test').testRun({ data: frame() });
    assert.equal(result.retval, XDP_PASS);
    assert.equal(result.data.length, 64);
    assert.deepEqual([...result.data.subarray(0, 12)], [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  });

  test('repeats the run and reports the mean duration', () => {
    const before = counter(obj, Counter.xdp);
    const result = obj.program('xdp_test').testRun({ data: frame(), repeat: 1000 });
    assert.equal(counter(obj, Counter.xdp) - before, 1000n);
    assert.ok(result.duration > 0 && result.duration < 1_000_000, `duration ${result.duration} ns`);
  });

  test('passes an xdp_md context in and out', () => {
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(64, 4);
    const result = obj.program('xdp_test').testRun({ data: frame(), ctx, ctxOutSize: 24 });
    assert.equal(result.ctx.length, 24);
    assert.equal(result.ctx.readUInt32LE(4), 64);
  });

  test('a frame shorter than Ethernet is refused by the kernel, naming the program', () => {
    assert.equal(obj.program('xdp_test').testRun({ data: Buffer.alloc(14) }).retval, XDP_PASS);
    assert.throws(() => obj.program('xdp_test').testRun({ data: Buffer.alloc(8) }), /bpf_prog_test_run_opts on program xdp_test failed: EINVAL/);
  });
});

describe('maps', () => {
  let obj: BpfObject;
  before(() => {
    obj = BpfObject.load(OBJECT, { maxEntries: { xlb_test_hash: 8 } });
  });
  after(() => obj.close());

  const key = (n: number): Buffer => XlbTestKey.encode({ addr: `198.18.0.${n}`, port: 80, proto: 6 });
  const value = (n: number): Buffer => XlbTestValue.encode({ packets: BigInt(n), bytes: BigInt(n * 100), lastLen: n });

  test('lookup, update, delete and iterate, through the codecs', () => {
    const hash = obj.map('xlb_test_hash');
    assert.equal(hash.lookup(key(1)), undefined);
    hash.update(key(1), value(1));
    hash.update(key(2), value(2));
    assert.deepEqual(XlbTestValue.decode(hash.lookup(key(2)) ?? Buffer.alloc(0)), { packets: 2n, bytes: 200n, lastLen: 2 });
    const keys = [...hash.keys()].map((k) => XlbTestKey.decode(k).addr).sort();
    assert.deepEqual(keys, ['198.18.0.1', '198.18.0.2']);
    assert.equal(hash.delete(key(1)), true);
    assert.equal(hash.delete(key(1)), false);
    assert.deepEqual([...hash.entries()].map(([k]) => XlbTestKey.decode(k)), [{ addr: '198.18.0.2', port: 80, proto: 6 }]);
    hash.delete(key(2));
  });

  test('batch update and delete', () => {
    const hash = obj.map('xlb_test_hash');
    const keys = [3, 4, 5, 6].map(key);
    hash.updateBatch(keys, [3, 4, 5, 6].map(value));
    assert.equal([...hash.keys()].length, 4);
    assert.equal(XlbTestValue.decode(hash.lookup(key(5)) ?? Buffer.alloc(0)).lastLen, 5);
    hash.deleteBatch(keys.slice(0, 3));
    assert.deepEqual([...hash.keys()].map((k) => XlbTestKey.decode(k).addr), ['198.18.0.6']);
    hash.delete(key(6));
  });

  test('a full map is an error naming the map and E2BIG; a wrong key size is refused', () => {
    const hash = obj.map('xlb_test_hash');
    for (let n = 0; n < 8; n++) hash.update(key(n), value(n));
    assert.throws(() => hash.update(key(9), value(9)), /bpf_map_update_elem on map xlb_test_hash failed: E2BIG/);
    assert.throws(() => hash.updateBatch([key(9)], [value(9)]), /bpf_map_update_batch on map xlb_test_hash failed: E2BIG.*\n0 of 1 entries were applied/);
    assert.throws(() => hash.lookup(Buffer.alloc(3)), /key is 3 bytes, the map's key is 8/);
    hash.deleteBatch([...hash.keys()]);
    assert.equal([...hash.keys()].length, 0);
  });

  test('per-CPU values are read per CPU and summed', () => {
    const counts = obj.map('xlb_test_counts');
    assert.equal(counts.perCpu, true);
    const perCpu = counts.lookupPerCpu(u32Key(Counter.tcIngress)) ?? [];
    assert.ok(perCpu.length >= 1);
    const value = Buffer.alloc(counts.valueBytes);
    for (let cpu = 0; cpu < perCpu.length; cpu++) value.writeBigUInt64LE(BigInt(cpu + 1), cpu * 8);
    counts.update(u32Key(Counter.tcIngress), value);
    const n = perCpu.length;
    assert.deepEqual(counts.sumPerCpuU64(u32Key(Counter.tcIngress)), [BigInt((n * (n + 1)) / 2)]);
  });

  test('map-in-map: an inner map created here replaces a slot, and the program sees it', () => {
    const outer = obj.map('xlb_test_outer');
    const inner = BpfMap.create(MapType.Array, 'xlb_test_in1', 4, 4, 4);
    try {
      const drop = Buffer.alloc(4);
      drop.writeUInt32LE(XDP_DROP);
      inner.update(u32Key(0), drop);
      outer.setInner(u32Key(0), inner);
      assert.equal(obj.program('xdp_test').testRun({ data: frame() }).retval, XDP_DROP);
      outer.delete(u32Key(0));
      assert.equal(obj.program('xdp_test').testRun({ data: frame() }).retval, XDP_PASS);
    } finally {
      inner.close();
    }
  });
});

describe('pinning', () => {
  let bpffs: TempBpffs;
  let pinDir: string;
  before(() => {
    bpffs = TempBpffs.mount('binding');
    pinDir = `${bpffs.dir}/xlb-test`;
    mkdirSync(pinDir);
  });
  after(() => bpffs?.remove());

  test('maps survive a reload through their pins, and can be opened by path', () => {
    const key = XlbTestKey.encode({ addr: '198.18.0.9', port: 53, proto: 17 });
    const value = XlbTestValue.encode({ packets: 7n, bytes: 700n, lastLen: 7 });
    const first = BpfObject.load(OBJECT, { pinDir });
    first.map('xlb_test_hash').update(key, value);
    first.close();
    assert.ok(readdirSync(pinDir).includes('xlb_test_hash'));

    const second = BpfObject.load(OBJECT, { pinDir });
    try {
      assert.deepEqual(second.map('xlb_test_hash').lookup(key), value);
      const opened = BpfMap.openPinned(`${pinDir}/xlb_test_hash`);
      try {
        assert.equal(opened.name, 'xlb_test_hash');
        assert.equal(opened.keySize, 8);
        assert.deepEqual(opened.lookup(key), value);
      } finally {
        opened.close();
      }
    } finally {
      second.unpinMaps();
      second.close();
    }
    assert.deepEqual(readdirSync(pinDir), []);
    assert.throws(() => BpfMap.openPinned(`${pinDir}/xlb_test_hash`), /bpf_obj_get on pinned map .* failed: ENOENT/);
  });

  test('a pinned map of another layout (an upgrade changed it) is replaced and reported; matching ones are kept', () => {
    const key = XlbTestKey.encode({ addr: '198.18.0.9', port: 53, proto: 17 });
    const value = XlbTestValue.encode({ packets: 1n, bytes: 1n, lastLen: 1 });
    const first = BpfObject.load(OBJECT, { pinDir });
    first.map('xlb_test_hash').update(key, value);
    first.close();
    // An older layout of xlb_test_hash: a value 8 bytes shorter.
    rmSync(`${pinDir}/xlb_test_hash`);
    const old = BpfMap.create(MapType.Hash, 'xlb_test_hash', 8, value.length - 8, 64);
    old.pin(`${pinDir}/xlb_test_hash`);
    old.close();

    const second = BpfObject.load(OBJECT, { pinDir });
    try {
      assert.equal(second.replacedPins.length, 1, second.replacedPins.join('; '));
      assert.match(second.replacedPins[0] ?? '', /^xlb_test_hash: valueSize \d+ pinned, \d+ now$/);
      assert.equal(second.map('xlb_test_hash').valueSize, value.length);
      assert.equal(BpfMap.pinnedInfo(`${pinDir}/xlb_test_hash`).valueSize, value.length, 'the new map is pinned in its place');
    } finally {
      second.unpinMaps();
      second.close();
    }
  });
});

describe('ring buffer', () => {
  test('records reach a JS callback while the event loop keeps running', async () => {
    const obj = BpfObject.load(OBJECT);
    const received: { len: number; proto: number }[] = [];
    const reader = new RingBufferReader(obj.map('xlb_test_events'), (record) => received.push(XlbTestEvent.decode(record)));
    try {
      for (const length of [64, 70, 80]) obj.program('xdp_test').testRun({ data: frame(length) });
      await waitFor(() => received.length === 3, 5000, 'three ring buffer records');
      assert.deepEqual(received.map((r) => r.len), [64, 70, 80]);
      assert.ok(received.every((r) => r.proto === 0x0800));
    } finally {
      await reader.close();
      obj.close();
    }
  });
});

describe('attaching in a network namespace', () => {
  const topology = new Topology('bind');
  let ns = '';
  let obj: BpfObject;
  before(() => {
    ns = topology.namespace('a');
    // No IPv6 here: its router and neighbour solicitations would add frames to exact counts.
    topology.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    topology.veth({ ns, name: 'xa0' }, { ns, name: 'xa1' });
    topology.address(ns, 'xa0', '198.18.200.1/24');
    topology.address(ns, 'xa1', '198.18.201.1/24');
    obj = BpfObject.load(OBJECT);
  });
  after(() => {
    obj.close();
    topology.destroy();
  });

  test('XDP attach native and generic, query, atomic replace, detach', () => {
    inNetns(ns, () => {
      assert.deepEqual(queryXdp('xa1'), { mode: 'none', programId: 0 });
      assert.equal(attachXdp('xa1', obj.program('xdp_test'), { mode: 'native' }), 'native');
      const first = queryXdp('xa1');
      assert.equal(first.mode, 'native');
      assert.ok(first.programId > 0);

      attachXdp('xa1', obj.program('xdp_test_tx'), { mode: 'native', replacing: obj.program('xdp_test') });
      const second = queryXdp('xa1');
      assert.notEqual(second.programId, first.programId);
      assert.throws(
        () => attachXdp('xa1', obj.program('xdp_test'), { mode: 'native', replacing: obj.program('xdp_test') }),
        /bpf_xdp_attach \(native\) on program xdp_test on interface xa1 failed: EEXIST/,
      );
      detachXdp('xa1', 'native');
      assert.equal(queryXdp('xa1').mode, 'none');

      assert.equal(attachXdp('xa0', obj.program('xdp_test'), { mode: 'generic' }), 'generic');
      assert.equal(queryXdp('xa0').mode, 'generic');
      detachXdp('xa0', 'generic');
      assert.equal(queryXdp('xa0').mode, 'none');
    });
    assert.throws(() => queryXdp('xa1'), /if_nametoindex on interface xa1 failed: ENODEV/);
  });

  test('live frames leave a veth at the generator and reach the XDP program at its peer', () => {
    inNetns(ns, () => {
      attachXdp('xa1', obj.program('xdp_test'), { mode: 'native' });
      try {
        const ctx = Buffer.alloc(24);
        ctx.writeUInt32LE(64, 4);
        ctx.writeUInt32LE(ifindexOf('xa0'), 12);
        const txBefore = counter(obj, Counter.tx);
        const rxBefore = counter(obj, Counter.xdp);
        obj.program('xdp_test_tx').testRun({ data: frame(), ctx, repeat: 1000, flags: BPF_F_TEST_XDP_LIVE_FRAMES, batchSize: 64 });
        assert.equal(counter(obj, Counter.tx) - txBefore, 1000n);
        const received = counter(obj, Counter.xdp) - rxBefore;
        assert.ok(received > 0n && received <= 1000n, `peer saw ${received} of 1000 frames`);
      } finally {
        detachXdp('xa1', 'native');
      }
    });
  });

  test('tc clsact ingress and egress filters see real packets, can be replaced, queried and detached', () => {
    inNetns(ns, () => {
      attachTc('xa1', 'ingress', obj.program('tc_test_ingress'));
      attachTc('xa1', 'ingress', obj.program('tc_test_ingress'));
      attachTc('xa0', 'egress', obj.program('tc_test_egress'));
      assert.ok(queryTc('xa1', 'ingress') > 0);
    });
    const ingressBefore = counter(obj, Counter.tcIngress);
    const egressBefore = counter(obj, Counter.tcEgress);
    topology.exec(ns, 'ip', ['route', 'add', '198.18.202.0/24', 'dev', 'xa0']);
    topology.exec(ns, 'ip', ['neigh', 'add', '198.18.202.2', 'lladdr', '02:00:00:00:00:09', 'dev', 'xa0']);
    topology.exec(ns, 'ping', ['-c', '3', '-i', '0.01', '-W', '0.1', '198.18.202.2'], { allowFailure: true });
    const egress = counter(obj, Counter.tcEgress) - egressBefore;
    const ingress = counter(obj, Counter.tcIngress) - ingressBefore;
    assert.ok(egress >= 3n, `egress filter saw ${egress} packets`);
    assert.ok(ingress >= 3n, `ingress filter saw ${ingress} packets`);
    inNetns(ns, () => {
      assert.equal(detachTc('xa1', 'ingress'), true);
      assert.equal(detachTc('xa1', 'ingress'), false);
      assert.equal(queryTc('xa1', 'ingress'), 0);
      removeClsact('xa0');
      removeClsact('xa1');
      assert.equal(queryTc('xa0', 'egress'), 0);
    });
  });
});
