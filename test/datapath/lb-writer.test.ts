import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { LbMapWriter, LbWriteError, LB_MAPS, type LbMapHandle } from '../../lb/datapath/lb-writer.js';
import { MaglevTables } from '../../lb/datapath/maglev-tables.js';
import { BPF_F_NO_PREALLOC, BpfMap, MapType } from '../../lb/datapath/map.js';
import type { CtPurgeRequest, FlowPurger } from '../../lb/datapath/conntrack.js';
import {
  LbAffinity,
  LbAffinityKey,
  LbBackend,
  LbService,
  LbServiceKey,
  LbSlot,
  LbSlotKey,
  LbSourceRangeKey,
  encodeXlbAddr,
} from '../../lb/layouts.js';
import { backendKey, desiredLbState, type DesiredLbState, type LbNodeConfig } from '../../lb/lbmap/desired.js';
import { diffLbState, isEmptyChange } from '../../lb/lbmap/diff.js';
import { IdAllocator, MAX_SERVICE_ID } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, MaglevTableCache, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService, type Service } from '../../lb/service.js';

const M = 251;
const E2BIG = 7;
const node: LbNodeConfig = {
  addresses: ['198.18.0.1', '2001:db8::1'],
  maglevTableSize: M,
  maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  defaultMode: 'snat',
};

interface Sizes {
  svc?: number;
  be?: number;
  slot?: number;
}

let open: BpfMap[] = [];
afterEach(() => {
  for (const map of open) map.close();
  open = [];
});

function lbMaps(sizes: Sizes = {}): Record<string, LbMapHandle> {
  // xlb_lb_maglev is an array of maps: one inner map (of this layout) per service's table.
  const tableLayout = BpfMap.create(MapType.Array, 'xlb_maglev_tpl', 4, 2 * M, 1);
  const tables = BpfMap.create(MapType.ArrayOfMaps, LB_MAPS.maglev, 4, 4, MAX_SERVICE_ID + 1, 0, tableLayout);
  open.push(tableLayout, tables);
  const maps: Record<string, BpfMap> = {
    [LB_MAPS.service]: BpfMap.create(MapType.Hash, LB_MAPS.service, LbServiceKey.size, LbService.size, sizes.svc ?? 64),
    [LB_MAPS.backend]: BpfMap.create(MapType.Hash, LB_MAPS.backend, 4, LbBackend.size, sizes.be ?? 64),
    [LB_MAPS.slot]: BpfMap.create(MapType.Hash, LB_MAPS.slot, LbSlotKey.size, LbSlot.size, sizes.slot ?? 256),
    [LB_MAPS.sourceRange]: BpfMap.create(MapType.LpmTrie, LB_MAPS.sourceRange, LbSourceRangeKey.size, 1, 64, BPF_F_NO_PREALLOC),
    [LB_MAPS.affinity]: BpfMap.create(MapType.LruHash, LB_MAPS.affinity, LbAffinityKey.size, LbAffinity.size, 1024),
  };
  open.push(...Object.values(maps));
  return { ...maps, [LB_MAPS.maglev]: new MaglevTables(tables, 2 * M) };
}

/** Every map's contents as sorted "key=value" hex lines: byte-exact comparison. */
function contents(maps: Record<string, LbMapHandle>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, map] of Object.entries(maps)) {
    out[name] = [...map.entries()].map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
  }
  return out;
}

const svc = (input: Record<string, unknown>): Service => validateService(input);
const be = (last: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ address: `198.18.1.${last}`, port: 8080, ...extra });
const web = (backends: Record<string, unknown>[], extra: Record<string, unknown> = {}): Service =>
  svc({ frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' }, backends, ...extra });
const dns6 = svc({
  type: 'NodePort',
  frontend: { port: 30053, protocol: 'UDP' },
  backends: [{ address: '2001:db8::2', port: 53 }, { address: '2001:db8::3', port: 53 }],
  sourceRanges: ['2001:db8:1::/48'],
});

/**
 * Conntrack as the writer sees it: flows as (service, backend) pairs, purged by the rule the datapath's
 * sweep applies (test/datapath/conntrack.test.ts checks the sweep itself). Records every request.
 */
class FlowTable implements FlowPurger {
  flows: [number, number][] = [];
  readonly requests: CtPurgeRequest[] = [];

  purge(request: CtPurgeRequest): number {
    this.requests.push(request);
    const doomed = ([s, b]: [number, number]): boolean =>
      request.backendIds.includes(b) || request.pairs.some((p) => p.serviceId === s && p.backendId === b);
    const before = this.flows.length;
    this.flows = this.flows.filter((flow) => !doomed(flow));
    return before - this.flows.length;
  }
}

class Fixture {
  readonly ids = new IdAllocator();
  readonly cache = new MaglevTableCache();
  readonly conntrack = new FlowTable();
  readonly writer: LbMapWriter;
  constructor(readonly maps: Record<string, LbMapHandle>) {
    this.writer = new LbMapWriter(maps, this.conntrack);
  }

  desired(services: Record<string, Service>): DesiredLbState {
    return desiredLbState(new Map(Object.entries(services)), node, this.ids, { maglevCache: this.cache });
  }

  map(name: string): LbMapHandle {
    const map = this.maps[name];
    assert.ok(map, name);
    return map;
  }
}

describe('LbMapWriter on kernel maps', () => {
  test('applies a desired state; the maps read back decode to it', () => {
    const f = new Fixture(lbMaps());
    const desired = f.desired({ web: web([be(1), be(2)], { sourceRanges: ['198.18.0.0/24'] }), dns6 });
    const changes = diffLbState(f.writer.read(), desired);
    const stats = f.writer.apply(changes);
    // web: 1 frontend, 2 slots, 1 table, 1 range; dns6: 1 frontend (one IPv6 node address), 2 slots, 1 table, 1 range; 4 backends.
    assert.equal(stats.written, 14);
    assert.equal(stats.deleted, 0);
    assert.ok(isEmptyChange(diffLbState(f.writer.read(), desired)));

    const frontends = [...f.map(LB_MAPS.service).entries()].map(([k, v]) => ({ key: LbServiceKey.decode(k), value: LbService.decode(v) }));
    frontends.sort((a, b) => a.key.port - b.key.port);
    assert.deepEqual(
      frontends.map((e) => [e.key.addr, e.key.port, e.key.proto, e.key.family, e.value.backendCount]),
      [
        ['198.18.0.10', 80, 6, 2, 2],
        ['2001:db8::1', 30053, 17, 10, 2],
      ],
    );
    const backends = [...f.map(LB_MAPS.backend).entries()].map(([, v]) => LbBackend.decode(v).addr).sort();
    assert.deepEqual(backends, ['198.18.1.1', '198.18.1.2', '2001:db8::2', '2001:db8::3']);
    const table = f.map(LB_MAPS.maglev).lookup(Buffer.from(new Uint32Array([f.ids.serviceId('web') ?? 0]).buffer));
    assert.equal(table?.length, 2 * M);
  });

  test('source ranges match by longest prefix per service (service id big-endian, as lb_source_allowed looks up)', () => {
    const f = new Fixture(lbMaps());
    // Ids 1 and 256 differ only in which byte is set: the trie must still keep their ranges apart.
    f.ids.restore([['a', 1], ['b', 256]], []);
    const a = web([be(1)], { sourceRanges: ['198.18.0.0/24'] });
    const b = svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends: [be(1)], sourceRanges: ['198.18.9.0/24'] });
    f.writer.reconcile(f.desired({ a, b }));
    const trie = f.map(LB_MAPS.sourceRange);
    const allowed = (serviceId: number, client: string): boolean =>
      trie.lookup(LbSourceRangeKey.encode({ prefixlen: 32 + 128, serviceId, addr: client })) !== undefined;
    assert.equal(allowed(1, '198.18.0.77'), true);
    assert.equal(allowed(1, '198.18.9.77'), false);
    assert.equal(allowed(256, '198.18.9.77'), true);
    assert.equal(allowed(256, '198.18.0.77'), false);
    assert.equal(allowed(2, '198.18.0.77'), false);
  });

  test('a change writes only its diff', () => {
    const f = new Fixture(lbMaps());
    f.writer.reconcile(f.desired({ web: web([be(1), be(3)]), dns6 }));
    const before = contents(f.maps);
    const stats = f.writer.reconcile(f.desired({ web: web([be(1), be(2), be(3)]), dns6 }));
    // One backend, slots 1 and 2 (slot 0 keeps .1), the table, the service entry's backend_count.
    assert.deepEqual([stats.written, stats.deleted], [5, 0]);
    const after = contents(f.maps);
    assert.deepEqual(after[LB_MAPS.sourceRange], before[LB_MAPS.sourceRange]);
    assert.equal(after[LB_MAPS.backend]?.length, (before[LB_MAPS.backend]?.length ?? 0) + 1);
    const again = f.writer.reconcile(f.desired({ web: web([be(1), be(2), be(3)]), dns6 }));
    assert.deepEqual([again.written, again.deleted], [0, 0]);
  });

  test('a full map rolls the whole apply back, byte for byte, and names service, map and errno', () => {
    const f = new Fixture(lbMaps({ slot: 4 }));
    f.writer.reconcile(f.desired({ old: web([be(1)], { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }), web: web([be(1), be(2)]) }));
    const before = contents(f.maps);
    // "old" is removed (its entries deleted first), then "web" grows past the slot map's 4 entries.
    const desired = f.desired({ web: web([be(1), be(2), be(3), be(4), be(5)], { sourceRanges: ['198.18.0.0/24'] }) });
    assert.throws(
      () => f.writer.reconcile(desired),
      (error: unknown) => {
        assert.ok(error instanceof LbWriteError, String(error));
        assert.equal(error.map, LB_MAPS.slot);
        assert.equal(error.service, 'web');
        assert.equal(error.serviceId, f.ids.serviceId('web'));
        assert.equal(error.errno, E2BIG);
        assert.deepEqual(error.rollbackErrors, []);
        assert.match(error.message, /writing service web \(id \d+\) to map xlb_lb_slot failed \(errno 7\): .*E2BIG/);
        assert.match(error.message, /rolled back \d+ change\(s\)/);
        return true;
      },
    );
    assert.deepEqual(contents(f.maps), before);
  });

  test('a full service map fails on the entry point, after slots, table and ranges: all rolled back', () => {
    const f = new Fixture(lbMaps({ svc: 1 }));
    f.writer.reconcile(f.desired({ web: web([be(1)], { sourceRanges: ['198.18.0.0/16'] }) }));
    const before = contents(f.maps);
    const other = svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends: [be(2), be(3)] });
    // web's new /24 lies inside its /16: a plain trie lookup of the /24 would find the /16 and the
    // rollback would "restore" a /24 that never existed.
    const grown = web([be(1), be(4)], { sourceRanges: ['198.18.0.0/16', '198.18.0.0/24'] });
    assert.throws(
      () => f.writer.reconcile(f.desired({ web: grown, other })),
      (error: unknown) => error instanceof LbWriteError && error.map === LB_MAPS.service && error.errno === E2BIG,
    );
    assert.deepEqual(contents(f.maps), before);
  });

  test('removing a backend purges only its conntrack and affinity entries for that service', () => {
    const f = new Fixture(lbMaps());
    const other = (backends: Record<string, unknown>[]): Service =>
      svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends });
    f.writer.reconcile(f.desired({ web: web([be(1), be(2), be(3, { state: 'terminating' })]), other: other([be(1)]) }));
    const webId = f.ids.serviceId('web') ?? 0;
    const otherId = f.ids.serviceId('other') ?? 0;
    const id = (last: number): number => f.ids.backendId(backendKey(`198.18.1.${last}`, 8080, 'TCP')) ?? 0;
    const [b1, b2, b3] = [id(1), id(2), id(3)];

    f.conntrack.flows = [
      [webId, b1], [webId, b1], [webId, b2], [webId, b3], [otherId, b1], [otherId, b1],
    ];
    const affinity = f.map(LB_MAPS.affinity);
    const affinityKey = (serviceId: number, client: string): Buffer => LbAffinityKey.encode({ serviceId, client });
    affinity.update(affinityKey(webId, '198.18.200.1'), LbAffinity.encode({ lastUsed: 1n, backendId: b1 }));
    affinity.update(affinityKey(webId, '198.18.200.2'), LbAffinity.encode({ lastUsed: 1n, backendId: b2 }));
    affinity.update(affinityKey(otherId, '198.18.200.1'), LbAffinity.encode({ lastUsed: 1n, backendId: b1 }));

    // .1 leaves web (still in other); .3 stays listed as terminating: its flows drain.
    const stats = f.writer.reconcile(f.desired({ web: web([be(2), be(3, { state: 'terminating' })]), other: other([be(1)]) }));
    assert.equal(stats.purgedConntrack, 2);
    assert.equal(stats.purgedAffinity, 1);
    assert.deepEqual(stats.purgeErrors, []);
    assert.deepEqual(f.conntrack.requests, [{ pairs: [{ serviceId: webId, backendId: b1 }], backendIds: [] }]);
    assert.deepEqual(
      [...f.conntrack.flows].sort((x, y) => (x[0] ?? 0) - (y[0] ?? 0) || (x[1] ?? 0) - (y[1] ?? 0)),
      [[webId, b2], [webId, b3], [otherId, b1], [otherId, b1]].sort((x, y) => (x[0] ?? 0) - (y[0] ?? 0) || (x[1] ?? 0) - (y[1] ?? 0)),
    );
    assert.equal(affinity.lookup(affinityKey(webId, '198.18.200.1')), undefined);
    assert.ok(affinity.lookup(affinityKey(webId, '198.18.200.2')));
    assert.ok(affinity.lookup(affinityKey(otherId, '198.18.200.1')));

    // Removing "other" entirely: its flows go, and b1's xlb_lb_be entry with them.
    const removal = f.writer.reconcile(f.desired({ web: web([be(2), be(3, { state: 'terminating' })]) }));
    assert.equal(removal.purgedConntrack, 2);
    assert.equal(f.map(LB_MAPS.backend).lookup(Buffer.from(new Uint32Array([b1]).buffer)), undefined);
    assert.equal(f.conntrack.flows.length, 2);
  });

  test('removing every service empties the LB maps', () => {
    const f = new Fixture(lbMaps());
    f.writer.reconcile(f.desired({ web: web([be(1), be(2)], { sourceRanges: ['198.18.0.0/24'] }), dns6 }));
    const stats = f.writer.reconcile(f.desired({}));
    assert.equal(stats.deleted, 14);
    for (const name of [LB_MAPS.service, LB_MAPS.backend, LB_MAPS.slot, LB_MAPS.maglev, LB_MAPS.sourceRange]) {
      assert.deepEqual([...f.map(name).keys()], [], name);
    }
  });

  test('the writer refuses maps whose layout does not match the codecs', () => {
    const maps = lbMaps();
    const wrong = BpfMap.create(MapType.Hash, LB_MAPS.backend, 4, 16, 4);
    open.push(wrong);
    assert.throws(() => new LbMapWriter({ ...maps, [LB_MAPS.backend]: wrong }), /map xlb_lb_be has key\/value 4\/16 bytes, the layouts say 4\/20/);
    const { [LB_MAPS.slot]: _slot, ...withoutSlot } = maps;
    assert.throws(() => new LbMapWriter(withoutSlot), /map xlb_lb_slot is missing/);
  });
});
