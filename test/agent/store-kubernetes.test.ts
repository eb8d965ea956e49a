/** ServiceStore.syncKubernetes: the door Kubernetes services come in by (agent/k8s feeds it). */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { memoryLogger } from '../../agent/log.js';
import { ReadOnlyServiceError, ServiceStore } from '../../agent/store.js';
import type { ApplyResult, ServiceChanges } from '../../agent/datapath.js';
import { validateService, type Service } from '../../lb/service.js';
import { FakeDatapath } from '../support/fake-datapath.js';

/** A datapath that refuses any change naming one of `refused` (as a full map or a conflict would). */
class RefusingDatapath extends FakeDatapath {
  readonly sizes: number[] = [];

  constructor(private readonly refused: Set<string>) {
    super();
  }

  override async apply(changes: ServiceChanges): Promise<ApplyResult> {
    this.sizes.push(changes.size);
    const bad = [...changes.keys()].find((id) => this.refused.has(id));
    if (bad !== undefined) throw new Error(`writing service ${bad} to map xlb_lb_svc failed (errno 7)`);
    return super.apply(changes);
  }
}

const k8s = (i: number, backends = 2): Service =>
  validateService(
    {
      frontend: { address: `198.18.${128 + (i >> 8)}.${i & 255}`, port: 80, protocol: 'TCP' },
      type: 'ClusterIP',
      backends: Array.from({ length: backends }, (_, b) => ({ address: `198.18.2.${b + 1}`, port: 8080 })),
    },
    '',
    { clusterIP: true },
  );

const id = (i: number): string => `default/svc-${i}:http@198.18.${128 + (i >> 8)}.${i & 255}`;

async function withStore(datapath: FakeDatapath, run: (store: ServiceStore, stateFile: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'xlb-store-'));
  const stateFile = join(dir, 'state.json');
  const store = new ServiceStore({ datapath, stateFile, log: memoryLogger() });
  try {
    await store.start(new Map());
    await run(store, stateFile);
  } finally {
    await store.idle();
    await rm(dir, { recursive: true, force: true });
  }
}

test('refused services are found by halving, alone refused; every other one is served', () =>
  withStore(new RefusingDatapath(new Set([id(17), id(700)])), async (store) => {
    const changes = new Map(Array.from({ length: 1000 }, (_, i): [string, Service] => [id(i), k8s(i)]));
    const result = await store.syncKubernetes(changes);
    assert.deepEqual(result.failed.map((f) => f.id).sort(), [id(17), id(700)].sort());
    assert.match(result.failed[0]?.error ?? '', /errno 7/);
    assert.equal(result.applied.length, 998);
    assert.equal(store.size, 998);
    assert.equal(store.get(id(17)), undefined);
    assert.equal(store.get(id(18))?.origin, 'kubernetes');
  }));

test('the number of applies grows with the log of the group, not its size', async () => {
  const datapath = new RefusingDatapath(new Set([id(5)]));
  await withStore(datapath, async (store) => {
    const before = datapath.sizes.length;
    await store.syncKubernetes(new Map(Array.from({ length: 1000 }, (_, i): [string, Service] => [id(i), k8s(i)])));
    assert.ok(datapath.sizes.length - before <= 22, `${datapath.sizes.length - before} applies`);
  });
});

test('changes, removals and no-ops; Kubernetes services are not persisted and not writable through put/delete', () =>
  withStore(new FakeDatapath(), async (store, stateFile) => {
    await store.syncKubernetes(new Map([[id(1), k8s(1)], [id(2), k8s(2)]]));
    const again = await store.syncKubernetes(new Map([[id(1), k8s(1)], [id(2), k8s(2, 3)], [id(3), undefined]]));
    assert.deepEqual(again.applied, [id(2)], 'identical content and unknown removals are no-ops');
    assert.equal(store.get(id(2))?.service.backends.length, 3);
    await store.syncKubernetes(new Map([[id(1), undefined]]));
    assert.equal(store.get(id(1)), undefined);
    await assert.rejects(store.delete(id(2)), ReadOnlyServiceError);
    const state = JSON.parse(await readFile(stateFile, 'utf8').catch(() => '{"services":{}}')) as { services: Record<string, unknown> };
    assert.deepEqual(Object.keys(state.services), []);
    // An API service and a Kubernetes one cannot share a frontend: the later one is refused.
    await store.put('web', { frontend: { address: '198.18.10.1', port: 80, protocol: 'TCP' }, backends: [{ address: '198.18.2.9', port: 8080 }] });
    const clash = validateService({ frontend: { address: '198.18.10.1', port: 80, protocol: 'TCP' }, backends: [{ address: '198.18.2.8', port: 8080 }] });
    const refused = await store.syncKubernetes(new Map([['default/web:http@198.18.10.1', clash]]));
    assert.match(refused.failed[0]?.error ?? '', /198\.18\.10\.1:80\/TCP is already the frontend of service web/);
    assert.equal(store.get('web')?.origin, 'api');
  }));
