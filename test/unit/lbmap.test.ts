import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AF_INET,
  AF_INET6,
  ForwardingMode,
  LbBackend,
  LbService,
  LbServiceKey,
  LbSlot,
  LbSlotKey,
  LbSourceRangeKey,
  ServiceFlag,
  decodeU32,
  encodeU32,
} from '../../lb/layouts.js';
import { DEFAULT_MAGLEV_SEED, MaglevTableCache, buildMaglevTable, maglevBackendKey, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService, type Service } from '../../lb/service.js';
import {
  backendKey,
  desiredLbState,
  hex,
  lbStateFromMaps,
  type DesiredLbState,
  type LbMapDump,
  type LbNodeConfig,
  type LbState,
  type ServiceState,
} from '../../lb/lbmap/desired.js';
import { countChanges, diffLbState, isEmptyChange } from '../../lb/lbmap/diff.js';
import { IdAllocator, MAX_BACKEND_IDS, MAX_SERVICE_ID, TableFullError } from '../../lb/lbmap/ids.js';

const M = 251;
const node: LbNodeConfig = {
  addresses: ['198.18.0.1', '198.18.0.2', '2001:db8::1'],
  maglevTableSize: M,
  maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  defaultMode: 'dsr',
};

function svc(input: Record<string, unknown>): Service {
  return validateService(input);
}

const web = (backends: Record<string, unknown>[], extra: Record<string, unknown> = {}): Service =>
  svc({ frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' }, backends, ...extra });

const be = (last: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ address: `198.18.1.${last}`, port: 8080, ...extra });

function only<T>(items: Iterable<T>): T {
  const all = [...items];
  assert.equal(all.length, 1, `expected one item, got ${all.length}`);
  const [item] = all;
  if (item === undefined) assert.fail('no item');
  return item;
}

function serviceOf(state: LbState, ids: IdAllocator, name: string): ServiceState {
  const id = ids.serviceId(name);
  assert.ok(id !== undefined, `no id for ${name}`);
  const entries = state.services.get(id);
  assert.ok(entries, `no state for ${name}`);
  return entries;
}

/** Slot number → backend text, decoded through xlb_lb_be (and the slot's own copy checked against it). */
function slotBackends(state: LbState, entries: ServiceState): string[] {
  const out: string[] = [];
  for (const { key, value } of entries.slots.values()) {
    const { slot, serviceId } = LbSlotKey.decode(key);
    assert.equal(serviceId, entries.id);
    const backend = state.backends.get(hex(encodeU32(decodeU32(value))));
    assert.ok(backend, `slot ${slot} names a backend without an xlb_lb_be entry`);
    const b = LbBackend.decode(backend.value);
    assert.deepEqual(LbSlot.decode(value).backend, b, `slot ${slot} holds a copy of its xlb_lb_be entry`);
    out[slot] = b.family === AF_INET6 ? `[${b.addr}]:${b.port}` : `${b.addr}:${b.port}`;
  }
  return out;
}

function maglevSlots(entries: ServiceState): number[] {
  assert.ok(entries.maglev, 'no maglev table');
  const { value } = entries.maglev;
  return Array.from({ length: value.length / 2 }, (_, i) => value.readUInt16LE(i * 2));
}

function dump(state: LbState): LbMapDump {
  const services = [...state.services.values()];
  const pairs = (list: { key: Buffer; value: Buffer }[]): [Buffer, Buffer][] => list.map((e) => [e.key, e.value]);
  return {
    svc: pairs(services.flatMap((s) => [...s.frontends.values()])),
    be: pairs([...state.backends.values()]),
    slot: pairs(services.flatMap((s) => [...s.slots.values()])),
    maglev: pairs(services.flatMap((s) => (s.maglev ? [s.maglev] : []))),
    srcrng: pairs(services.flatMap((s) => [...s.sourceRanges.values()])),
  };
}

function compute(services: Record<string, Service>, ids: IdAllocator, config: LbNodeConfig = node): DesiredLbState {
  return desiredLbState(new Map(Object.entries(services)), config, ids);
}

describe('desired LB state', () => {
  test('LoadBalancer IPv4: one frontend, backends, slots in key order, Maglev table of slot numbers', () => {
    const ids = new IdAllocator();
    const state = compute({ web: web([be(3), be(2), be(10)]) }, ids);
    const entries = serviceOf(state, ids, 'web');
    const frontend = only(entries.frontends.values());
    assert.deepEqual(LbServiceKey.decode(frontend.key), { addr: '198.18.0.10', port: 80, proto: 6, family: AF_INET });
    assert.deepEqual(LbService.decode(frontend.value), {
      id: entries.id,
      backendCount: 3,
      flags: ServiceFlag.Maglev,
      mode: ForwardingMode.dsr,
      affinityTimeout: 0,
    });
    // Sorted by Cilium's key string: "[198.18.1.10:…" < "[198.18.1.2:…" < "[198.18.1.3:…".
    assert.deepEqual(slotBackends(state, entries), ['198.18.1.10:8080', '198.18.1.2:8080', '198.18.1.3:8080']);
    assert.equal(state.backends.size, 3);
    const expected = buildMaglevTable(
      ['198.18.1.10', '198.18.1.2', '198.18.1.3'].map((address) => ({ key: maglevBackendKey({ address, port: 8080, protocol: 'TCP' }), weight: 100 })),
      M,
      node.maglevSeed,
    );
    assert.deepEqual(maglevSlots(entries), Array.from(expected));
    assert.deepEqual(entries.maglev?.key, encodeU32(entries.id));
    assert.deepEqual(state.conflicts, []);
  });

  test('IPv6 service: family 10 keys and backends', () => {
    const ids = new IdAllocator();
    const state = compute(
      { dns: svc({ frontend: { address: '2001:db8::10', port: 53, protocol: 'UDP' }, backends: [{ address: '2001:db8::2', port: 53 }] }) },
      ids,
    );
    const entries = serviceOf(state, ids, 'dns');
    assert.deepEqual(LbServiceKey.decode(only(entries.frontends.values()).key), { addr: '2001:db8::10', port: 53, proto: 17, family: AF_INET6 });
    assert.deepEqual(LbBackend.decode(only(state.backends.values()).value), { addr: '2001:db8::2', port: 53, family: AF_INET6 });
    assert.deepEqual(slotBackends(state, entries), ['[2001:db8::2]:53']);
    assert.ok(maglevSlots(entries).every((s) => s === 0));
  });

  test('NodePort: one frontend per node address of its family, on the node port', () => {
    const ids = new IdAllocator();
    const state = compute(
      {
        np4: svc({ type: 'NodePort', frontend: { port: 30080, protocol: 'TCP' }, backends: [be(2)] }),
        np6: svc({ type: 'NodePort', frontend: { port: 30053, protocol: 'UDP' }, backends: [{ address: '2001:db8::2', port: 53 }] }),
      },
      ids,
    );
    const v4 = [...serviceOf(state, ids, 'np4').frontends.values()].map((e) => LbServiceKey.decode(e.key));
    assert.deepEqual(v4, [
      { addr: '198.18.0.1', port: 30080, proto: 6, family: AF_INET },
      { addr: '198.18.0.2', port: 30080, proto: 6, family: AF_INET },
    ]);
    const v6 = [...serviceOf(state, ids, 'np6').frontends.values()].map((e) => LbServiceKey.decode(e.key));
    assert.deepEqual(v6, [{ addr: '2001:db8::1', port: 30053, proto: 17, family: AF_INET6 }]);
    for (const e of serviceOf(state, ids, 'np4').frontends.values()) {
      assert.equal(LbService.decode(e.value).flags, ServiceFlag.Maglev | ServiceFlag.NodePort);
    }
  });

  test('weights steer the Maglev table; weight 0 keeps a backend out of the slots but in xlb_lb_be', () => {
    const ids = new IdAllocator();
    const state = compute({ web: web([be(1, { weight: 100 }), be(2, { weight: 300 }), be(3, { weight: 0 })]) }, ids);
    const entries = serviceOf(state, ids, 'web');
    assert.deepEqual(slotBackends(state, entries), ['198.18.1.1:8080', '198.18.1.2:8080']);
    assert.equal(state.backends.size, 3);
    assert.equal(entries.members.size, 3);
    const counts = [0, 0];
    for (const slot of maglevSlots(entries)) counts[slot] = (counts[slot] ?? 0) + 1;
    assert.equal((counts[0] ?? 0) + (counts[1] ?? 0), M);
    const share = (counts[1] ?? 0) / M;
    assert.ok(share > 0.7 && share < 0.8, `weight 300 of 400 got ${share} of the table`);
    const expected = buildMaglevTable(
      [
        { key: maglevBackendKey({ address: '198.18.1.1', port: 8080, protocol: 'TCP' }), weight: 100 },
        { key: maglevBackendKey({ address: '198.18.1.2', port: 8080, protocol: 'TCP' }), weight: 300 },
      ],
      M,
      node.maglevSeed,
    );
    assert.deepEqual(maglevSlots(entries), Array.from(expected));
  });

  test('externalTrafficPolicy Local: only this node\'s backends get slots; none there, none at all', () => {
    const ids = new IdAllocator();
    const raw = {
      frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
      externalTrafficPolicy: 'Local',
      backends: [be(1, { node: 'node-a' }), be(2, { node: 'node-b' }), be(3, { node: 'node-a' }), be(4)],
    };
    const local = svc(raw);
    const onA = compute({ web: local }, ids, { ...node, nodeName: 'node-a' });
    const entries = serviceOf(onA, ids, 'web');
    assert.deepEqual(slotBackends(onA, entries), ['198.18.1.1:8080', '198.18.1.3:8080']);
    assert.equal(LbService.decode(only(entries.frontends.values()).value).flags, ServiceFlag.Maglev | ServiceFlag.Local);
    assert.equal(onA.backends.size, 4, 'every backend keeps its entry (tracked flows, purges)');

    const onC = compute({ web: local }, ids, { ...node, nodeName: 'node-c' });
    const none = serviceOf(onC, ids, 'web');
    assert.equal(none.slots.size, 0);
    assert.equal(none.maglev, undefined);
    assert.equal(LbService.decode(only(none.frontends.values()).value).backendCount, 0);

    // Cluster (the default) ignores where backends run.
    const cluster = compute({ web: svc({ ...raw, externalTrafficPolicy: 'Cluster' }) }, ids, { ...node, nodeName: 'node-c' });
    assert.equal(serviceOf(cluster, ids, 'web').slots.size, 4);
  });

  test('ClusterIP: the entries of a LoadBalancer at the cluster address but no Maglev table (east-west); internalTrafficPolicy Local keeps new flows on this node', () => {
    const ids = new IdAllocator();
    const raw = {
      frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
      backends: [be(1, { node: 'node-a' }), be(2, { node: 'node-b' })],
    };
    const k8s = (input: Record<string, unknown>): Service => validateService(input, '', { clusterIP: true });
    const as = (extra: Record<string, unknown>): DesiredLbState => compute({ web: k8s({ ...raw, ...extra }) }, ids, { ...node, nodeName: 'node-a' });
    const cluster = as({ type: 'ClusterIP' });
    const lb = as({ type: 'LoadBalancer' });
    const entries = serviceOf(cluster, ids, 'web');
    assert.equal(entries.maglev, undefined, 'random selection: Maglev is for north-south traffic');
    assert.ok(serviceOf(lb, ids, 'web').maglev);
    const { maglev: _table, ...withoutTable } = dump(lb);
    const { maglev: none, ...clusterRest } = dump(cluster);
    assert.deepEqual(none, []);
    assert.deepEqual(clusterRest.slot, withoutTable.slot, 'same slots');
    assert.deepEqual(clusterRest.be, withoutTable.be, 'same backends');
    assert.equal(LbService.decode(only(entries.frontends.values()).value).flags & ServiceFlag.Maglev, 0);
    assert.deepEqual(LbServiceKey.decode(only(entries.frontends.values()).key), { addr: '198.18.0.10', port: 80, proto: 6, family: AF_INET });
    assert.deepEqual(slotBackends(cluster, entries), ['198.18.1.1:8080', '198.18.1.2:8080']);

    const local = as({ type: 'ClusterIP', internalTrafficPolicy: 'Local' });
    const localEntries = serviceOf(local, ids, 'web');
    assert.deepEqual(slotBackends(local, localEntries), ['198.18.1.1:8080']);
    assert.equal(LbService.decode(only(localEntries.frontends.values()).value).flags, ServiceFlag.Local);
    const elsewhere = compute({ web: k8s({ ...raw, type: 'ClusterIP', internalTrafficPolicy: 'Local' }) }, ids, { ...node, nodeName: 'node-c' });
    assert.equal(LbService.decode(only(serviceOf(elsewhere, ids, 'web').frontends.values()).value).backendCount, 0, 'none here: dropped');
  });

  test('terminating backends serve only when no active one can; maintenance never', () => {
    const ids = new IdAllocator();
    const mixed = compute({ web: web([be(1), be(2, { state: 'terminating' }), be(3, { state: 'maintenance' })]) }, ids);
    assert.deepEqual(slotBackends(mixed, serviceOf(mixed, ids, 'web')), ['198.18.1.1:8080']);

    const draining = compute(
      { web: web([be(1, { weight: 0 }), be(2, { state: 'terminating' }), be(3, { state: 'maintenance' }), be(4, { state: 'terminating' })]) },
      ids,
    );
    const entries = serviceOf(draining, ids, 'web');
    assert.deepEqual(slotBackends(draining, entries), ['198.18.1.2:8080', '198.18.1.4:8080']);
    assert.equal(LbService.decode(only(entries.frontends.values()).value).backendCount, 2);
    assert.equal(draining.backends.size, 4, 'unusable backends keep their entry for established flows');

    const none = compute({ web: web([be(3, { state: 'maintenance' })]) }, ids);
    const empty = serviceOf(none, ids, 'web');
    assert.equal(empty.slots.size, 0);
    assert.equal(empty.maglev, undefined, 'no table without a usable backend');
    assert.equal(LbService.decode(only(empty.frontends.values()).value).backendCount, 0);
  });

  test('source ranges become LPM keys (prefixlen 32 + prefix, service id big-endian) and set the flag', () => {
    const ids = new IdAllocator();
    const state = compute({ web: web([be(1)], { sourceRanges: ['198.18.0.0/24', '198.18.7.7/32'] }) }, ids);
    const entries = serviceOf(state, ids, 'web');
    const keys = [...entries.sourceRanges.values()].map((e) => {
      assert.deepEqual(e.value, Buffer.from([1]));
      return LbSourceRangeKey.decode(e.key);
    });
    assert.deepEqual(keys, [
      { prefixlen: 56, serviceId: entries.id, addr: '198.18.0.0' },
      { prefixlen: 64, serviceId: entries.id, addr: '198.18.7.7' },
    ]);
    const raw = only([...entries.sourceRanges.values()].slice(0, 1)).key;
    assert.equal(raw.readUInt32BE(4), entries.id);
    assert.equal(LbService.decode(only(entries.frontends.values()).value).flags, ServiceFlag.Maglev | ServiceFlag.SourceRanges);
  });

  test('mode, algorithm and affinity reach the service entry', () => {
    const ids = new IdAllocator();
    const state = compute(
      { web: web([be(1)], { mode: 'hybrid', algorithm: 'random', sessionAffinity: { type: 'ClientIP', timeoutSeconds: 60 } }) },
      ids,
    );
    const entries = serviceOf(state, ids, 'web');
    assert.deepEqual(LbService.decode(only(entries.frontends.values()).value), {
      id: entries.id,
      backendCount: 1,
      flags: 0,
      mode: ForwardingMode.hybrid,
      affinityTimeout: 60,
    });
    assert.equal(entries.maglev, undefined, 'random services have no table');
    assert.equal(entries.slots.size, 1);
  });

  test('a frontend two services claim goes to the first name; the other is reported', () => {
    const ids = new IdAllocator();
    const state = compute({ b: web([be(2)]), a: web([be(1)]) }, ids);
    assert.equal(serviceOf(state, ids, 'a').frontends.size, 1);
    assert.equal(serviceOf(state, ids, 'b').frontends.size, 0);
    assert.deepEqual(state.conflicts, [{ service: 'b', frontend: '198.18.0.10:80/TCP', heldBy: 'a' }]);
  });

  test('a backend two services list has one id and one entry', () => {
    const ids = new IdAllocator();
    const other = svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends: [be(1)] });
    const state = compute({ web: web([be(1)]), other }, ids);
    assert.equal(state.backends.size, 1);
    assert.equal(ids.backendRefCount(backendKey('198.18.1.1', 8080, 'TCP')), 2);
    // The same address and port under another protocol is another backend.
    const udp = svc({ frontend: { address: '198.18.0.12', port: 80, protocol: 'UDP' }, backends: [be(1)] });
    assert.equal(compute({ web: web([be(1)]), udp }, ids).backends.size, 2);
  });
});

describe('diff of LB states', () => {
  const cache = new MaglevTableCache();
  const run = (services: Record<string, Service>, ids: IdAllocator): DesiredLbState =>
    desiredLbState(new Map(Object.entries(services)), node, ids, { maglevCache: cache });

  test('identical input: empty diff, byte-identical state', () => {
    const ids = new IdAllocator();
    const services = { web: web([be(1), be(2)]), dns: svc({ frontend: { address: '198.18.0.53', port: 53, protocol: 'UDP' }, backends: [be(5)] }) };
    const first = run(services, ids);
    const second = run(services, ids);
    assert.ok(isEmptyChange(diffLbState(first, second)));
    assert.deepEqual(dump(first), dump(second));
  });

  test('from nothing: every entry is an upsert, services in id order', () => {
    const ids = new IdAllocator();
    const desired = run({ web: web([be(1), be(2)], { sourceRanges: ['198.18.0.0/24'] }) }, ids);
    const changes = diffLbState({ services: new Map(), backends: new Map() }, desired);
    assert.equal(changes.backends.upserts.length, 2);
    const s = only(changes.services);
    assert.equal(s.kind, 'add');
    assert.equal(s.name, 'web');
    assert.deepEqual([s.frontends.upserts.length, s.slots.upserts.length, s.maglev.upserts.length, s.sourceRanges.upserts.length], [1, 2, 1, 1]);
    assert.deepEqual(changes.purge, { pairs: [], backendIds: [] });
  });

  test('adding one backend touches only it and its service’s entry, slots and table', () => {
    const ids = new IdAllocator();
    const other = svc({ frontend: { address: '198.18.0.11', port: 443, protocol: 'TCP' }, backends: [be(7), be(8)] });
    const before = run({ web: web([be(1), be(3)]), other }, ids);
    const after = run({ web: web([be(1), be(2), be(3)]), other }, ids);
    const changes = diffLbState(before, after);
    assert.deepEqual(changes.backends.deletes, []);
    assert.deepEqual(
      changes.backends.upserts.map((e) => LbBackend.decode(e.value).addr),
      ['198.18.1.2'],
    );
    const s = only(changes.services);
    assert.equal(s.kind, 'update');
    assert.equal(s.id, ids.serviceId('web'));
    assert.equal(s.frontends.upserts.length, 1, 'backend_count changed');
    assert.equal(LbService.decode(s.frontends.upserts[0]?.value ?? Buffer.alloc(12)).backendCount, 3);
    // Slots 0:.1 stays; 1:.3 → .2 and new 2:.3 are written.
    assert.deepEqual(s.slots.upserts.map((e) => LbSlotKey.decode(e.key).slot).sort(), [1, 2]);
    assert.equal(s.maglev.upserts.length, 1);
    assert.equal(countChanges(s.slots) + countChanges(s.maglev) + countChanges(s.frontends) + countChanges(s.sourceRanges), 4);
    assert.deepEqual(changes.purge, { pairs: [], backendIds: [] });
  });

  test('removing a backend: stale slot deleted, its entry deleted, its flows purged', () => {
    const ids = new IdAllocator();
    const before = run({ web: web([be(1), be(2), be(3)]) }, ids);
    const removedId = ids.backendId(backendKey('198.18.1.2', 8080, 'TCP'));
    const after = run({ web: web([be(1), be(3)]) }, ids);
    const changes = diffLbState(before, after);
    const s = only(changes.services);
    assert.deepEqual(s.slots.deletes.map((k) => LbSlotKey.decode(k).slot), [2]);
    assert.deepEqual(changes.backends.deletes, [encodeU32(removedId ?? -1)]);
    const webId = ids.serviceId('web') ?? -1;
    assert.deepEqual(changes.purge, { pairs: [{ serviceId: webId, backendId: removedId }], backendIds: [removedId] });
  });

  test('a backend turning terminating leaves the slots but is not purged', () => {
    const ids = new IdAllocator();
    const before = run({ web: web([be(1), be(2)]) }, ids);
    const after = run({ web: web([be(1), be(2, { state: 'terminating' })]) }, ids);
    const changes = diffLbState(before, after);
    assert.deepEqual(changes.backends, { upserts: [], deletes: [] });
    assert.deepEqual(changes.purge, { pairs: [], backendIds: [] });
    assert.equal(only(changes.services).slots.deletes.length, 1);
  });

  test('a shared backend removed from one service is purged for that service only', () => {
    const ids = new IdAllocator();
    const other = (backends: Record<string, unknown>[]): Service =>
      svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends });
    const before = run({ web: web([be(1), be(2)]), other: other([be(1)]) }, ids);
    const after = run({ web: web([be(2)]), other: other([be(1)]) }, ids);
    const changes = diffLbState(before, after);
    assert.deepEqual(changes.backends, { upserts: [], deletes: [] });
    assert.deepEqual(changes.purge, {
      pairs: [{ serviceId: ids.serviceId('web'), backendId: ids.backendId(backendKey('198.18.1.1', 8080, 'TCP')) }],
      backendIds: [],
    });
  });

  test('removing a service deletes all its entries and purges all its pairs', () => {
    const ids = new IdAllocator();
    const before = run({ web: web([be(1), be(2)], { sourceRanges: ['198.18.0.0/24'] }) }, ids);
    const webId = ids.serviceId('web');
    const after = run({}, ids);
    const changes = diffLbState(before, after);
    const s = only(changes.services);
    assert.equal(s.kind, 'remove');
    assert.deepEqual([s.frontends.deletes.length, s.slots.deletes.length, s.maglev.deletes.length, s.sourceRanges.deletes.length], [1, 2, 1, 1]);
    assert.equal(changes.backends.deletes.length, 2);
    assert.deepEqual(changes.purge.pairs.map((p) => p.serviceId), [webId, webId]);
    assert.equal(ids.serviceId('web'), undefined);
  });

  test('a node address added: one more NodePort frontend, nothing else', () => {
    const ids = new IdAllocator();
    const np = { np: svc({ type: 'NodePort', frontend: { port: 30080, protocol: 'TCP' }, backends: [be(2)] }) };
    const before = desiredLbState(new Map(Object.entries(np)), node, ids, { maglevCache: cache });
    const after = desiredLbState(new Map(Object.entries(np)), { ...node, addresses: [...node.addresses, '198.18.0.3'] }, ids, { maglevCache: cache });
    const s = only(diffLbState(before, after).services);
    assert.deepEqual(s.frontends.upserts.map((e) => LbServiceKey.decode(e.key).addr), ['198.18.0.3']);
    assert.equal(countChanges(s.slots) + countChanges(s.maglev) + countChanges(s.sourceRanges) + s.frontends.deletes.length, 0);
  });

  test('state read back from the maps diffs empty against the state written', () => {
    const ids = new IdAllocator();
    const desired = run(
      {
        web: web([be(1), be(2)], { sourceRanges: ['198.18.0.0/24'] }),
        np6: svc({ type: 'NodePort', frontend: { port: 30053, protocol: 'UDP' }, backends: [{ address: '2001:db8::2', port: 53 }] }),
      },
      ids,
    );
    assert.ok(isEmptyChange(diffLbState(lbStateFromMaps(dump(desired)), desired)));
  });

  test('orphan entries of an id without a service entry are removed', () => {
    const ids = new IdAllocator();
    const desired = run({ web: web([be(1)]) }, ids);
    const current = dump(desired);
    const orphan: [Buffer, Buffer] = [LbSlotKey.encode({ serviceId: 999, slot: 0 }), encodeU32(1)];
    const changes = diffLbState(lbStateFromMaps({ ...current, slot: [...current.slot, orphan] }), desired);
    const s = only(changes.services);
    assert.equal(s.kind, 'remove');
    assert.equal(s.id, 999);
    assert.deepEqual(s.slots.deletes, [orphan[0]]);
  });
});

describe('ids', () => {
  test('stable per service name and backend key; never 0', () => {
    const ids = new IdAllocator();
    const first = compute({ web: web([be(1), be(2)]), api: web([be(3)], { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }) }, ids);
    const webId = ids.serviceId('web');
    const b1 = ids.backendId(backendKey('198.18.1.1', 8080, 'TCP'));
    compute({ zzz: web([be(9)], { frontend: { address: '198.18.0.30', port: 80, protocol: 'TCP' } }), web: web([be(2), be(1), be(4)]) }, ids);
    assert.equal(ids.serviceId('web'), webId);
    assert.equal(ids.backendId(backendKey('198.18.1.1', 8080, 'TCP')), b1);
    assert.ok([...first.services.keys()].every((id) => id > 0));
    assert.ok(first.backends.size > 0 && [...first.backends.values()].every((e) => decodeU32(e.key) > 0));
  });

  test('released ids come back only after every other id was handed out', () => {
    const ids = new IdAllocator({ maxId: 4 });
    const refs = (...keys: string[]): Map<string, number> => new Map(keys.map((k) => [k, 1]));
    ids.assign(['a', 'b'], refs());
    assert.deepEqual([ids.serviceId('a'), ids.serviceId('b')], [1, 2]);
    ids.assign(['b'], refs()); // a (1) released
    ids.assign(['b', 'c'], refs());
    assert.equal(ids.serviceId('c'), 3, 'fresh id before the released one');
    ids.assign(['b', 'c', 'd', 'e'], refs());
    assert.deepEqual([ids.serviceId('d'), ids.serviceId('e')], [4, 1], 'wraps around to the released id last');
    assert.throws(() => ids.assign(['b', 'c', 'd', 'e', 'f'], refs()), /the service ids table is full: 5 needed, it holds 4/);
  });

  test('4095 service ids; a snapshot needing one more is refused whole, before any id changes hands', () => {
    const ids = new IdAllocator();
    const names = Array.from({ length: MAX_SERVICE_ID }, (_, i) => `s${i}`);
    ids.assign(names, new Map());
    assert.deepEqual(ids.usage()[0], { table: 'service ids', used: 4095, capacity: 4095 });
    const before = ids.snapshot();
    const full = (error: unknown): boolean => {
      assert.ok(error instanceof TableFullError, String(error));
      assert.deepEqual([error.table, error.capacity, error.needed], ['service ids', 4095, 4096]);
      assert.equal(error.message, 'the service ids table is full: 4096 needed, it holds 4095');
      return true;
    };
    assert.throws(() => ids.assign([...names, 'one-more'], new Map()), full);
    // Dropping one service while adding two needs 4096 as well: the dropped one keeps its id.
    assert.throws(() => ids.assign([...names.slice(1), 'x', 'y'], new Map()), full);
    assert.deepEqual(ids.snapshot(), before, 'the allocator is as the last good snapshot left it');
    ids.assign([...names.slice(1), 'x'], new Map());
    assert.equal(ids.serviceId('s1'), before.services.get('s1'));
  });

  test('backend ids: at most MAX_BACKEND_IDS (xlb_lb_be) in use; a shared backend needs none more', () => {
    assert.deepEqual(new IdAllocator().usage()[1], { table: 'backend ids', used: 0, capacity: MAX_BACKEND_IDS });
    const ids = new IdAllocator({ maxBackends: 3 });
    const refs = (...keys: string[]): Map<string, number> => new Map(keys.map((k) => [k, 1]));
    ids.assign(['a'], refs('b1', 'b2', 'b3'));
    const before = ids.snapshot();
    assert.throws(
      () => ids.assign(['a', 'b'], refs('b1', 'b2', 'b3', 'b4')),
      (e: unknown) => e instanceof TableFullError && e.table === 'backend ids' && e.capacity === 3 && e.needed === 4,
    );
    assert.deepEqual(ids.snapshot(), before);
    ids.assign(['a', 'b'], new Map([['b1', 2], ['b2', 1], ['b3', 1]]));
    assert.deepEqual(ids.usage(), [
      { table: 'service ids', used: 2, capacity: 4095 },
      { table: 'backend ids', used: 3, capacity: 3 },
    ]);
  });

  test('rollback(checkpoint()): a refused snapshot leaves every id as the applied one has it, the cursor onwards', () => {
    const ids = new IdAllocator();
    const other = svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends: [be(3)] });
    const applied = compute({ web: web([be(1), be(2)]), other }, ids);
    const before = ids.snapshot();
    const checkpoint = ids.checkpoint();
    // An update the datapath refuses: web drops be(1) (its id released) and lists be(4); a new service too.
    compute({ web: web([be(2), be(4)]), other, extra: web([be(5)], { frontend: { address: '198.18.0.12', port: 80, protocol: 'TCP' } }) }, ids);
    const handedOut = ids.backendId(backendKey('198.18.1.5', 8080, 'TCP'));
    ids.rollback(checkpoint);
    assert.deepEqual(ids.snapshot(), before);
    assert.equal(ids.backendRefCount(backendKey('198.18.1.1', 8080, 'TCP')), 1);
    // The applied state again: nothing to write, no flow purged.
    const again = compute({ web: web([be(1), be(2)]), other }, ids);
    const changes = diffLbState(applied, again);
    assert.ok(isEmptyChange(changes), 'the applied state diffs empty');
    // The ids the refused snapshot handed out are not handed out again at once.
    compute({ web: web([be(1), be(2), be(6)]), other }, ids);
    assert.ok((ids.backendId(backendKey('198.18.1.6', 8080, 'TCP')) ?? 0) > (handedOut ?? Infinity));
  });

  test('backend ids are released when the last service stops listing them', () => {
    const ids = new IdAllocator();
    const other = svc({ frontend: { address: '198.18.0.11', port: 80, protocol: 'TCP' }, backends: [be(1)] });
    const key = backendKey('198.18.1.1', 8080, 'TCP');
    compute({ web: web([be(1)]), other }, ids);
    const id = ids.backendId(key);
    compute({ web: web([be(2)]), other }, ids);
    assert.equal(ids.backendId(key), id);
    assert.equal(ids.backendRefCount(key), 1);
    compute({ web: web([be(2)]) }, ids);
    assert.equal(ids.backendId(key), undefined);
    assert.equal(ids.backendRefCount(key), 0);
  });
});
