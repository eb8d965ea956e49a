/**
 * The agent's change tracker (agent/k8s/tracker.ts) fed API objects as the apiserver sends them:
 * each flush recomputes only the Kubernetes services a change touched and hands the store only the
 * xlb services that differ from what it serves; relists remove what vanished; refused services come
 * back after a backoff; problems are reported once per object version. Also the watcher's other
 * pieces that need no apiserver: the proxy health state behind /healthz and /livez, the watch
 * backoff, and finding the apiserver (kubeconfig, in-cluster, --k8s-api-server).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConnectionConfigError, kubeConnection } from '../../agent/k8s/connection.js';
import { ProxierHealth } from '../../agent/k8s/health.js';
import { BACKOFF, backoffDelay } from '../../agent/k8s/informers.js';
import { ChangeTracker, type Flush } from '../../agent/k8s/tracker.js';
import { problemText } from '../../lb/k8s/index.js';
import type { Backend, Service } from '../../lb/service.js';

type Obj = Record<string, unknown>;
const NODE = 'node-a';

let version = 1000;
const nextVersion = (): string => String(++version);

function metadata(name: string, extra: Obj = {}): Obj {
  return { name, namespace: 'default', uid: `uid-${name}`, resourceVersion: nextVersion(), creationTimestamp: '2026-12-01T10:00:00Z', ...extra };
}

function service(name: string, clusterIP: string, spec: Obj = {}, meta: Obj = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(name, meta),
    spec: {
      clusterIP,
      clusterIPs: [clusterIP],
      ipFamilies: ['IPv4'],
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
      selector: { app: name },
      sessionAffinity: 'None',
      type: 'ClusterIP',
      ...spec,
    },
    status: { loadBalancer: {} },
  };
}

function endpoint(address: string, node = 'node-b', extra: Obj = {}): Obj {
  return { addresses: [address], conditions: { ready: true, serving: true, terminating: false }, nodeName: node, ...extra };
}

function slice(name: string, serviceName: string, endpoints: Obj[], meta: Obj = {}): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType: 'IPv4',
    metadata: metadata(name, { labels: { 'kubernetes.io/service-name': serviceName }, ...meta }),
    endpoints,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function node(zone: string | undefined, extra: Obj = {}, spec: Obj = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NODE, uid: 'uid-node', resourceVersion: nextVersion(), labels: zone === undefined ? {} : { 'topology.kubernetes.io/zone': zone }, ...extra },
    spec,
    status: { addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] },
  };
}

/** A tracker with a clock the test moves. */
function tracker(): { t: ChangeTracker; clock: { now: number } } {
  const clock = { now: Date.parse('2027-01-01T00:00:00Z') };
  return { t: new ChangeTracker({ nodeName: NODE, now: () => clock.now }), clock };
}

/** flush + confirm everything (the store accepted all). */
function sync(t: ChangeTracker, failed: string[] = []): Flush {
  const flush = t.flush();
  t.confirm(flush, failed);
  return flush;
}

const addresses = (s: Service | undefined): string[] => (s?.backends ?? []).map((b: Backend) => `${b.address}:${b.port}/${b.state}`);

describe('ChangeTracker', () => {
  test('a Service and its EndpointSlice become xlb services with their backends', () => {
    const { t } = tracker();
    assert.equal(t.event('Service', 'add', service('web', '198.19.0.10')), 'add');
    assert.equal(t.event('EndpointSlice', 'add', slice('web-1', 'web', [endpoint('198.18.1.2'), endpoint('198.18.1.3')])), 'add');
    assert.ok(t.hasPending());
    const flush = sync(t);
    assert.deepEqual(flush.services, ['default/web']);
    assert.deepEqual([...flush.changes.keys()], ['default/web:http@198.19.0.10']);
    const web = flush.changes.get('default/web:http@198.19.0.10');
    assert.deepEqual(web?.frontend, { address: '198.19.0.10', port: 80, protocol: 'TCP' });
    assert.equal(web?.type, 'ClusterIP');
    assert.deepEqual(addresses(web), ['198.18.1.2:8080/active', '198.18.1.3:8080/active']);
    assert.equal(t.servedCount, 1);
    assert.equal(t.hasPending(), false);
    assert.equal(sync(t).changes.size, 0, 'nothing pending: an empty flush');
  });

  test('one endpoint changes: only its service is recomputed, only its ids change', () => {
    const { t } = tracker();
    t.list('Service', [
      service('web', '198.19.0.10', { ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'https', port: 443, protocol: 'TCP' }] }),
      service('db', '198.19.0.11'),
    ]);
    const webSlice = (third: boolean): Obj => ({
      ...slice('web-1', 'web', [endpoint('198.18.1.2'), ...(third ? [endpoint('198.18.1.4')] : [])]),
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'https', port: 8443, protocol: 'TCP' }],
    });
    t.list('EndpointSlice', [webSlice(false), slice('db-1', 'db', [endpoint('198.18.2.2')])]);
    t.list('Node', []);
    assert.equal(sync(t).changes.size, 3);

    assert.equal(t.event('EndpointSlice', 'update', webSlice(true)), 'update');
    const flush = sync(t);
    assert.deepEqual(flush.services, ['default/web']);
    assert.deepEqual([...flush.changes.keys()].sort(), ['default/web:http@198.19.0.10', 'default/web:https@198.19.0.10']);
    assert.deepEqual(addresses(flush.changes.get('default/web:https@198.19.0.10')), ['198.18.1.2:8443/active', '198.18.1.4:8443/active']);

    // The same object version again (a relist, a repeated event) is no change at all.
    const current = webSlice(true);
    t.event('EndpointSlice', 'update', current);
    sync(t);
    assert.equal(t.event('EndpointSlice', 'update', current), 'unchanged');
    assert.equal(t.hasPending(), false);
  });

  test('a slice that goes leaves its service without backends; a service that goes is removed', () => {
    const { t } = tracker();
    const web1 = slice('web-1', 'web', [endpoint('198.18.1.2')]);
    t.event('Service', 'add', service('web', '198.19.0.10'));
    t.event('EndpointSlice', 'add', web1);
    sync(t);

    assert.equal(t.event('EndpointSlice', 'delete', web1), 'delete');
    let flush = sync(t);
    assert.deepEqual([...flush.changes.keys()], ['default/web:http@198.19.0.10']);
    assert.deepEqual(flush.changes.get('default/web:http@198.19.0.10')?.backends, []);

    assert.equal(t.event('Service', 'delete', service('web', '198.19.0.10')), 'delete');
    flush = sync(t);
    assert.deepEqual([...flush.changes], [['default/web:http@198.19.0.10', undefined]]);
    assert.equal(t.servedCount, 0);
    assert.equal(t.event('Service', 'delete', service('web', '198.19.0.10')), 'unchanged', 'a second delete changes nothing');
  });

  test('a relist removes what vanished while the watch was down, and only that', () => {
    const { t } = tracker();
    const web = service('web', '198.19.0.10');
    const db = service('db', '198.19.0.11');
    const web1 = slice('web-1', 'web', [endpoint('198.18.1.2')]);
    const db1 = slice('db-1', 'db', [endpoint('198.18.2.2')]);
    t.list('Service', [web, db]);
    t.list('EndpointSlice', [web1, db1]);
    sync(t);

    // Meanwhile: db deleted, web's slice deleted, a new service cache added.
    const cache = service('cache', '198.19.0.12');
    assert.deepEqual(t.list('Service', [web, cache]), { add: 1, update: 0, delete: 1 });
    assert.deepEqual(t.list('EndpointSlice', [db1]), { add: 0, update: 0, delete: 1 });
    const flush = sync(t);
    assert.deepEqual(flush.services, ['default/cache', 'default/db', 'default/web']);
    assert.equal(flush.changes.get('default/db:http@198.19.0.11'), undefined);
    assert.ok(flush.changes.has('default/db:http@198.19.0.11'), 'db removed');
    assert.deepEqual(flush.changes.get('default/web:http@198.19.0.10')?.backends, [], 'web lost its slice');
    assert.deepEqual(flush.changes.get('default/cache:http@198.19.0.12')?.backends, []);
    assert.equal(t.servedCount, 2);
  });

  test("the Node's zone moves: every service is recomputed; topology hints follow it", () => {
    const { t } = tracker();
    const hinted = (address: string, zone: string): Obj => endpoint(address, 'node-b', { zone, hints: { forZones: [{ name: zone }] } });
    t.list('Service', [service('web', '198.19.0.10'), service('db', '198.19.0.11')]);
    t.list('EndpointSlice', [slice('web-1', 'web', [hinted('198.18.1.2', 'a'), hinted('198.18.1.3', 'b')]), slice('db-1', 'db', [endpoint('198.18.2.2')])]);
    t.list('Node', [node('a')]);
    let flush = sync(t);
    assert.deepEqual(addresses(flush.changes.get('default/web:http@198.19.0.10')), ['198.18.1.2:8080/active', '198.18.1.3:8080/maintenance']);

    t.event('Node', 'update', node('b'));
    flush = sync(t);
    assert.deepEqual(flush.services, ['default/db', 'default/web'], 'every service recomputed');
    assert.deepEqual([...flush.changes.keys()], ['default/web:http@198.19.0.10'], 'only the hinted one changed');
    assert.deepEqual(addresses(flush.changes.get('default/web:http@198.19.0.10')), ['198.18.1.2:8080/maintenance', '198.18.1.3:8080/active']);

    // Another Node update in the same zone (a status heartbeat) recomputes nothing.
    t.event('Node', 'update', node('b'));
    assert.equal(t.hasPending(), false);
    assert.equal(t.nodeInfo?.zone, 'b');
  });

  test('a malformed object is a problem, reported once per version; everything else is served', () => {
    const { t } = tracker();
    const bad = service('bad', '198.19.0.20', { ports: [{ name: 'http', port: 0, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] });
    t.list('Service', [service('web', '198.19.0.10'), bad, { metadata: { namespace: 'default' }, spec: {} }]);
    t.list('EndpointSlice', [slice('web-1', 'web', [endpoint('198.18.1.2'), { addresses: ['not-an-address'] }])]);
    let flush = sync(t);
    const texts = flush.newProblems.map(problemText);
    assert.ok(texts.some((p) => /^Service default\/bad: spec\.ports\[0\]\.port: /.test(p)), texts.join('\n'));
    assert.ok(texts.some((p) => /^Service default\/\(unnamed\): metadata\.name: required/.test(p)), texts.join('\n'));
    assert.ok(texts.some((p) => /^EndpointSlice default\/web-1: endpoints\[1\]\.addresses\[0\]/.test(p)), texts.join('\n'));
    assert.equal(flush.problems, 2, 'problems held now: the bad port and the bad address (the unnamed object is not held)');
    assert.deepEqual(addresses(flush.changes.get('default/web:http@198.19.0.10')), ['198.18.1.2:8080/active'], 'web served');
    assert.ok(flush.changes.has('default/bad:dns@198.19.0.20'), "bad's good port served");

    // The same versions listed again: no new report.
    t.list('Service', [service('web', '198.19.0.10'), bad]);
    flush = sync(t);
    assert.deepEqual(flush.newProblems.map(problemText), []);
    // A new version with the same problem: reported again, with that version.
    t.event('Service', 'update', { ...bad, metadata: { ...(bad.metadata as Obj), resourceVersion: nextVersion() } });
    flush = sync(t);
    assert.equal(flush.newProblems.length, 1);
    assert.equal(flush.problems, 2);
  });

  test('a refused xlb service is not served, and its service is flushed again after a backoff', () => {
    const { t, clock } = tracker();
    t.event('Service', 'add', service('web', '198.19.0.10'));
    t.event('EndpointSlice', 'add', slice('web-1', 'web', [endpoint('198.18.1.2')]));
    sync(t, ['default/web:http@198.19.0.10']);
    assert.equal(t.servedCount, 0);
    assert.equal(t.hasPending(), false, 'not before the backoff');
    const first = t.nextRetryAt();
    assert.equal(first, clock.now + 1_000);

    clock.now += 1_000;
    assert.ok(t.hasPending());
    let flush = t.flush();
    assert.deepEqual([...flush.changes.keys()], ['default/web:http@198.19.0.10'], 'the refused service again');
    t.confirm(flush, ['default/web:http@198.19.0.10']);
    assert.equal(t.nextRetryAt(), clock.now + 2_000, 'the backoff doubles');

    clock.now += 2_000;
    flush = sync(t);
    assert.equal(flush.changes.size, 1);
    assert.equal(t.servedCount, 1);
    assert.equal(t.nextRetryAt(), undefined);
  });

  test('health checks: LoadBalancer services with externalTrafficPolicy Local count local endpoints', () => {
    const { t } = tracker();
    const lb = service('lb', '198.19.0.30', {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 31000,
      ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }],
    });
    t.list('Service', [lb]);
    t.list('EndpointSlice', [slice('lb-1', 'lb', [endpoint('198.18.3.2', NODE), endpoint('198.18.3.3', 'node-b')])]);
    let flush = sync(t);
    assert.deepEqual(flush.healthChecks, [{ nodePort: 31000, namespace: 'default', name: 'lb', localEndpoints: 1 }]);

    t.event('EndpointSlice', 'update', slice('lb-1', 'lb', [endpoint('198.18.3.3', 'node-b')]));
    flush = sync(t);
    assert.deepEqual(flush.healthChecks, [{ nodePort: 31000, namespace: 'default', name: 'lb', localEndpoints: 0 }]);
    t.event('EndpointSlice', 'update', slice('lb-1', 'lb', [endpoint('198.18.3.3', 'node-b'), endpoint('198.18.3.4', 'node-c')]));
    assert.equal(sync(t).healthChecks, undefined, 'no local change: no new list');
    t.event('Service', 'delete', lb);
    assert.deepEqual(sync(t).healthChecks, []);
  });

  test("trigger times of changed slices come with their service's flush, only from after the start", () => {
    const { t, clock } = tracker();
    const at = (ms: number): string => new Date(clock.now + ms).toISOString();
    t.event('Service', 'add', service('web', '198.19.0.10'));
    t.event('EndpointSlice', 'add', slice('web-1', 'web', [endpoint('198.18.1.2')], { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': at(-60_000) } }));
    assert.equal(sync(t).triggerTimes.size, 0, 'older than the tracker');
    t.event('EndpointSlice', 'update', slice('web-1', 'web', [endpoint('198.18.1.3')], { annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': at(5) } }));
    assert.deepEqual(sync(t).triggerTimes, new Map([['default/web', [clock.now + 5]]]));
    assert.equal(sync(t).triggerTimes.size, 0, 'handed out once');
  });

  test('the Node being deleted or tainted ToBeDeletedByClusterAutoscaler makes it ineligible', () => {
    const { t } = tracker();
    assert.equal(t.nodeEligible, true, 'eligible while starting');
    t.list('Node', [node('a')]);
    assert.equal(t.nodeEligible, true);
    t.event('Node', 'update', node('a', {}, { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', value: '1700000000', effect: 'NoSchedule' }] }));
    assert.equal(t.nodeEligible, false);
    t.event('Node', 'update', node('a'));
    assert.equal(t.nodeEligible, true);
    t.event('Node', 'update', node('a', { deletionTimestamp: '2027-01-01T00:00:00Z' }));
    assert.equal(t.nodeEligible, false);
    // Another node's object (the watch selects this one alone) is ignored.
    assert.equal(t.event('Node', 'add', { ...node('z'), metadata: { name: 'node-z', resourceVersion: '1' } }), 'unchanged');
  });

  test('flush and confirm pair up', () => {
    const { t } = tracker();
    const flush = t.flush();
    assert.throws(() => t.flush(), /not confirmed/);
    t.confirm(flush, []);
    assert.throws(() => t.confirm(flush, []), /not the flush in flight/);
  });
});

describe('ProxierHealth (/healthz, /livez)', () => {
  test('healthy until a change has waited longer than the timeout; a sync makes it healthy again', () => {
    let now = Date.parse('2027-01-01T00:00:00Z');
    const health = new ProxierHealth(60_000, () => now);
    assert.deepEqual(health.answer(), { status: 200, body: { lastUpdated: '2027-01-01T00:00:00.000Z', currentTime: '2027-01-01T00:00:00.000Z' } });
    health.updated();
    health.queued();
    now += 59_999;
    health.queued(); // a later change does not restart the clock
    assert.equal(health.answer().status, 200);
    now += 1;
    const late = health.answer(true);
    assert.equal(late.status, 503);
    assert.deepEqual(late.body, { lastUpdated: '2027-01-01T00:00:00.000Z', currentTime: '2027-01-01T00:01:00.000Z', nodeEligible: true }, 'lastUpdated: the last sync');
    health.updated();
    assert.equal(health.answer(true).status, 200);
    assert.equal(health.answer(false).status, 503, '/healthz: an ineligible node');
    assert.equal(health.answer().status, 200, '/livez ignores the node');
  });

  test('503 before any sync reads lastUpdated as never', () => {
    let now = 0;
    const health = new ProxierHealth(1_000, () => now);
    health.queued();
    now = 1_000;
    assert.equal(health.answer().body.lastUpdated, '0001-01-01T00:00:00Z');
  });
});

describe('watch backoff', () => {
  test('0.5 s doubling to 30 s, within the jitter', () => {
    const low = (attempt: number): number => backoffDelay(attempt, BACKOFF, () => 0);
    const high = (attempt: number): number => backoffDelay(attempt, BACKOFF, () => 1);
    assert.deepEqual([0, 1, 2, 3].map((a) => backoffDelay(a, BACKOFF, () => 0.5)), [500, 1_000, 2_000, 4_000]);
    assert.equal(backoffDelay(50, BACKOFF, () => 0.5), 30_000);
    assert.equal(low(0), 400);
    assert.equal(high(10), 36_000);
  });
});

describe('kubeConnection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlb-connection-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const sa = join(dir, 'serviceaccount');
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'https://198.18.0.1:6443/' } }],
      users: [{ name: 'u', user: { token: 'secret-token' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );

  test('a kubeconfig, its server replaced by --k8s-api-server', async () => {
    const plain = kubeConnection({ kubeconfig });
    assert.equal(plain.server, 'https://198.18.0.1:6443');
    assert.equal(plain.source, `kubeconfig ${kubeconfig}`);
    const moved = kubeConnection({ kubeconfig, apiServer: 'http://198.18.0.2:8080' });
    assert.equal(moved.server, 'http://198.18.0.2:8080');
    assert.equal(moved.kubeConfig.getCurrentCluster()?.server, 'http://198.18.0.2:8080');
    const options: { headers?: Record<string, unknown> } = {};
    await moved.kubeConfig.applyToHTTPSOptions(options); // plain http must not be refused for want of TLS
    assert.equal(options.headers?.['Authorization'], 'Bearer secret-token');
  });

  test('unusable kubeconfigs name the file', () => {
    assert.throws(() => kubeConnection({ kubeconfig: join(dir, 'missing') }), (e: Error) => e instanceof ConnectionConfigError && e.message === `--kubeconfig ${join(dir, 'missing')}: cannot read the file`);
    const broken = join(dir, 'broken');
    writeFileSync(broken, JSON.stringify({ clusters: [], contexts: [{ name: 'x', context: { cluster: 'nowhere', user: 'u' } }], 'current-context': 'x' }));
    assert.throws(() => kubeConnection({ kubeconfig: broken }), new RegExp(`^ConnectionConfigError: --kubeconfig ${broken}: current-context "x" names no cluster`));
  });

  test('in-cluster: the service account and KUBERNETES_SERVICE_HOST/PORT; each missing piece named', () => {
    const env = { KUBERNETES_SERVICE_HOST: '198.18.0.1', KUBERNETES_SERVICE_PORT: '443' };
    assert.throws(() => kubeConnection({ env: {}, serviceAccountDir: sa }), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/);
    assert.throws(() => kubeConnection({ env, serviceAccountDir: sa }), new RegExp(`in-cluster: cannot read ${join(sa, 'token')}`));
    assert.throws(() => kubeConnection({ env: { ...env, KUBERNETES_SERVICE_PORT: 'https' }, serviceAccountDir: sa }), /KUBERNETES_SERVICE_PORT "https" is not a port number/);
    const account = mkdtempSync(join(dir, 'sa-'));
    writeFileSync(join(account, 'token'), 'pod-token');
    writeFileSync(join(account, 'ca.crt'), 'not read until a request is made');
    const pod = kubeConnection({ env: { KUBERNETES_SERVICE_HOST: '2001:db8::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: account });
    assert.equal(pod.server, 'https://[2001:db8::1]:443');
    assert.match(pod.source, /^in-cluster service account/);
    // --k8s-api-server alone: no variables needed (Cilium's k8sServiceHost), the token still used.
    const direct = kubeConnection({ env: {}, serviceAccountDir: account, apiServer: 'https://198.18.0.3:6443' });
    assert.equal(direct.server, 'https://198.18.0.3:6443');
  });
});
