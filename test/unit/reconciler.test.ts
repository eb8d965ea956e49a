import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LbService, LbServiceKey, decodeU32 } from '../../lb/layouts.js';
import { DEFAULT_MAGLEV_SEED, MaglevTableCache, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService, type Service } from '../../lb/service.js';
import { desiredLbState, hex, lbStateFromMaps, type LbMapDump, type LbNodeConfig, type LbState } from '../../lb/lbmap/desired.js';
import type { LbChanges } from '../../lb/lbmap/diff.js';
import { IdAllocator, TableFullError } from '../../lb/lbmap/ids.js';
import { FrontendConflictsError, LbReconciler } from '../../lb/lbmap/reconciler.js';

const node: LbNodeConfig = {
  addresses: ['198.18.0.1', '2001:db8::1'],
  maglevTableSize: 251,
  maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  defaultMode: 'snat',
};

/** The LB maps as plain maps (key hex → value), changed only by applying LbChanges as the writer does. */
class MemoryMaps {
  readonly svc = new Map<string, Buffer>();
  readonly be = new Map<string, Buffer>();
  readonly slot = new Map<string, Buffer>();
  readonly maglev = new Map<string, Buffer>();
  readonly srcrng = new Map<string, Buffer>();
  writes = 0;

  apply(changes: LbChanges): void {
    const write = (map: Map<string, Buffer>, c: { upserts: { key: Buffer; value: Buffer }[]; deletes: Buffer[] }): void => {
      for (const e of c.upserts) {
        assert.ok(e.value.length > 0, 'an upsert carries its bytes');
        map.set(hex(e.key), e.value);
      }
      for (const k of c.deletes) assert.ok(map.delete(hex(k)), `deleted key ${hex(k)} was in the map`);
      this.writes += c.upserts.length + c.deletes.length;
    };
    write(this.be, { upserts: changes.backends.upserts, deletes: [] });
    for (const s of changes.services) {
      write(this.svc, s.frontends);
      write(this.slot, s.slots);
      write(this.maglev, s.maglev);
      write(this.srcrng, s.sourceRanges);
    }
    write(this.be, { upserts: [], deletes: changes.backends.deletes });
  }

  dump(): LbMapDump {
    const pairs = (m: Map<string, Buffer>): [Buffer, Buffer][] => [...m].map(([k, v]) => [Buffer.from(k, 'hex'), v]);
    return { svc: pairs(this.svc), be: pairs(this.be), slot: pairs(this.slot), maglev: pairs(this.maglev), srcrng: pairs(this.srcrng) };
  }

  /** Everything, comparable with deepEqual. */
  contents(): Record<string, [string, string][]> {
    const sorted = (m: Map<string, Buffer>): [string, string][] => [...m].map(([k, v]): [string, string] => [k, v.toString('hex')]).sort();
    return { svc: sorted(this.svc), be: sorted(this.be), slot: sorted(this.slot), maglev: sorted(this.maglev), srcrng: sorted(this.srcrng) };
  }
}

function fromState(state: LbState): MemoryMaps {
  const maps = new MemoryMaps();
  for (const s of state.services.values()) {
    for (const e of s.frontends.values()) maps.svc.set(hex(e.key), e.value);
    for (const e of s.slots.values()) maps.slot.set(hex(e.key), e.value);
    for (const e of s.sourceRanges.values()) maps.srcrng.set(hex(e.key), e.value);
    if (s.maglev) maps.maglev.set(hex(s.maglev.key), s.maglev.value);
  }
  for (const e of state.backends.values()) maps.be.set(hex(e.key), e.value);
  return maps;
}

const service = (i: number, backends: number[], extra: Record<string, unknown> = {}): Service =>
  validateService({
    frontend: { address: `198.18.${100 + (i >> 8)}.${i & 255}`, port: 80, protocol: 'TCP' },
    backends: backends.map((b) => ({ address: `198.18.${2 + (b >> 8)}.${b & 255}`, port: 8080 })),
    ...extra,
  });

function run(reconciler: LbReconciler, maps: MemoryMaps, changes: Map<string, Service | undefined>): LbChanges {
  const plan = reconciler.plan(changes);
  maps.apply(plan.changes);
  plan.commit();
  return plan.changes;
}

describe('incremental reconciler', () => {
  test('services added one by one, changed and removed leave the maps exactly as a full snapshot computes them', () => {
    const maps = new MemoryMaps();
    const reconciler = new LbReconciler(node, new IdAllocator(), new MaglevTableCache());
    const all = new Map<string, Service>();
    for (let i = 0; i < 30; i++) {
      const s = service(i, [i, i + 1, i + 2], i % 3 === 0 ? { sourceRanges: ['198.18.0.0/16'] } : {});
      all.set(`svc-${i}`, s);
      run(reconciler, maps, new Map([[`svc-${i}`, s]]));
    }
    const changed = service(7, [7, 50]);
    all.set('svc-7', changed);
    all.delete('svc-12');
    run(reconciler, maps, new Map<string, Service | undefined>([['svc-7', changed], ['svc-12', undefined]]));

    // A fresh allocator given the same order of first appearance hands out the same ids.
    const replay = new MemoryMaps();
    const again = new LbReconciler(node, new IdAllocator(), new MaglevTableCache());
    for (let i = 0; i < 30; i++) run(again, replay, new Map([[`svc-${i}`, service(i, [i, i + 1, i + 2], i % 3 === 0 ? { sourceRanges: ['198.18.0.0/16'] } : {})]]));
    run(again, replay, new Map<string, Service | undefined>([['svc-7', changed], ['svc-12', undefined]]));
    assert.deepEqual(maps.contents(), replay.contents());
    assert.equal(maps.svc.size, 29);
    // And the contents are what desiredLbState computes for the whole set with those ids.
    const ids = new IdAllocator();
    const full = desiredLbState(all, node, ids);
    assert.equal(fromState(full).maglev.size, maps.maglev.size);
    assert.equal(fromState(full).slot.size, maps.slot.size);
    assert.equal(fromState(full).be.size, maps.be.size);
  });

  test('one endpoint of one service among 200 rewrites that service and one backend entry, nothing else', () => {
    const maps = new MemoryMaps();
    const reconciler = new LbReconciler(node, new IdAllocator(), new MaglevTableCache());
    const everything = new Map<string, Service>();
    for (let i = 0; i < 200; i++) everything.set(`svc-${i}`, service(i, [i * 10, i * 10 + 1, i * 10 + 2]));
    run(reconciler, maps, everything);
    const writesBefore = maps.writes;
    const changes = run(reconciler, maps, new Map([['svc-42', service(42, [420, 421, 3000])]]));
    assert.equal(changes.services.length, 1, 'one service touched');
    assert.deepEqual(changes.backends.upserts.length, 1, 'the new backend');
    assert.deepEqual(changes.backends.deletes.length, 1, 'the removed backend');
    assert.equal(changes.services[0]?.maglev.upserts.length, 1, 'one Maglev table');
    assert.equal(changes.services[0]?.frontends.upserts.length, 0, 'the frontend entry is unchanged (same count of backends)');
    assert.deepEqual(changes.purge.pairs.length, 1, 'the removed backend’s flows are purged');
    assert.ok(maps.writes - writesBefore <= 6, `few writes: ${maps.writes - writesBefore}`);
    // An identical change writes nothing.
    const same = run(reconciler, maps, new Map([['svc-42', service(42, [420, 421, 3000])]]));
    assert.equal(same.services.length + same.backends.upserts.length + same.backends.deletes.length, 0);
  });

  test('a backend shared by two services keeps its id until the last one stops listing it', () => {
    const maps = new MemoryMaps();
    const ids = new IdAllocator();
    const reconciler = new LbReconciler(node, ids, new MaglevTableCache());
    run(reconciler, maps, new Map([['a', service(1, [5])], ['b', service(2, [5, 6])]]));
    const shared = ids.backendId('198.18.2.5:8080/TCP');
    const idOfA = ids.serviceId('a') ?? 0;
    assert.equal(reconciler.nameOf(idOfA), 'a', 'events name their service');
    run(reconciler, maps, new Map([['a', undefined]]));
    assert.equal(reconciler.nameOf(idOfA), undefined);
    assert.equal(ids.backendId('198.18.2.5:8080/TCP'), shared);
    assert.equal(maps.be.size, 2);
    // Moving it from one changed service to another in one change keeps it too.
    run(reconciler, maps, new Map([['b', service(2, [6])], ['c', service(3, [5])]]));
    assert.equal(ids.backendId('198.18.2.5:8080/TCP'), shared);
    run(reconciler, maps, new Map([['c', undefined]]));
    assert.equal(ids.backendId('198.18.2.5:8080/TCP'), undefined);
    assert.equal(maps.be.size, 1);
  });

  test('a frontend conflict or a full id space refuses the whole change: ids and remembered state stay', () => {
    const maps = new MemoryMaps();
    const ids = new IdAllocator({ maxServices: 3 });
    const reconciler = new LbReconciler(node, ids, new MaglevTableCache());
    run(reconciler, maps, new Map([['a', service(1, [1])]]));
    const before = ids.snapshot();
    assert.throws(() => reconciler.plan(new Map([['b', service(2, [2])], ['clash', service(1, [3])]])), (error: unknown) => {
      assert.ok(error instanceof FrontendConflictsError);
      assert.deepEqual(error.conflicts, [{ service: 'clash', frontend: '198.18.100.1:80/TCP', heldBy: 'a' }]);
      return true;
    });
    assert.deepEqual(ids.snapshot(), before);
    assert.throws(() => reconciler.plan(new Map([['b', service(2, [2])], ['c', service(3, [3])], ['d', service(4, [4])]])), TableFullError);
    assert.deepEqual(ids.snapshot(), before);
    // Aborted after planning (the writer refused): the same.
    reconciler.plan(new Map([['b', service(2, [2])]])).abort();
    assert.deepEqual(ids.snapshot(), before);
    run(reconciler, maps, new Map([['b', service(2, [2])]]));
    assert.equal(reconciler.size, 2);
  });

  test('after a restart, services claim the pinned ids and entries: nothing is rewritten; prune removes the rest', () => {
    const maps = new MemoryMaps();
    const first = new LbReconciler(node, new IdAllocator(), new MaglevTableCache());
    const services = new Map<string, Service>();
    for (let i = 0; i < 20; i++) services.set(`svc-${i}`, service(i, [i, i + 1]));
    services.set('np', validateService({ frontend: { address: '0.0.0.0', port: 30080, protocol: 'TCP' }, type: 'NodePort', backends: [{ address: '198.18.2.1', port: 8080 }] }));
    services.set('gone', service(99, [99]));
    // One backend under two protocols (two backend ids), and a terminating one (in no slot).
    services.set('udp', validateService({ frontend: { address: '198.18.100.200', port: 53, protocol: 'UDP' }, backends: [{ address: '198.18.2.1', port: 8080 }] }));
    services.set('draining', service(201, [201, 202].map((b) => b), { backends: [{ address: '198.18.2.201', port: 8080 }, { address: '198.18.2.202', port: 8080, state: 'terminating' }] }));
    run(first, maps, services);
    const pinnedIds = new Map([...maps.svc].map(([k, v]) => [LbServiceKey.decode(Buffer.from(k, 'hex')).addr, LbService.decode(v).id]));

    // A restarted agent: other names first, in another order, one service gone.
    services.delete('gone');
    const ids = new IdAllocator();
    const restarted = new LbReconciler(node, ids, new MaglevTableCache(), lbStateFromMaps(maps.dump(), { digestTables: true }));
    const reversed = new Map([...services].reverse());
    const changes = run(restarted, maps, reversed);
    assert.equal(changes.services.length, 0, 'no service rewritten');
    assert.equal(changes.backends.upserts.length + changes.backends.deletes.length, 0, 'no backend rewritten');
    for (const [name, s] of services) {
      if (s.type === 'NodePort') continue;
      assert.equal(ids.serviceId(name), pinnedIds.get(s.frontend.address), `${name} kept its id`);
    }
    // A new service never takes a pinned id, even before the prune.
    run(restarted, maps, new Map([['new', service(150, [150])]]));
    assert.ok(![...pinnedIds.values()].includes(ids.serviceId('new') ?? 0));
    assert.ok(restarted.hasStale);
    const prune = restarted.prune();
    maps.apply(prune.changes);
    prune.commit();
    assert.equal(restarted.hasStale, false);
    assert.equal(maps.svc.size, 24, '20, udp, draining, the NodePort on the one node address of its family, new');
    assert.ok(![...maps.svc.values()].some((v) => LbService.decode(v).id === pinnedIds.get('198.18.100.99')), 'the gone service is removed');
    assert.ok(![...maps.be.keys()].some((k) => decodeU32(Buffer.from(k, 'hex')) === 0));
  });
});
