/**
 * Kubernetes mode end to end on the control plane: a real kube-apiserver 1.20 (test/support/kube.ts),
 * the agent's KubernetesWatcher, and a real ServiceStore over the FakeDatapath. Services and v1beta1
 * EndpointSlices written through the apiserver become xlb services with their backends, follow
 * scaling, go with their objects; the apiserver dies and comes back while the store keeps serving;
 * the node health server and a healthCheckNodePort server answer as kube-proxy's do.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { startKubernetes, type KubernetesWatcher } from '../../agent/k8s/syncer.js';
import { memoryLogger } from '../../agent/log.js';
import { ServiceStore } from '../../agent/store.js';
import { FakeDatapath } from '../support/fake-datapath.js';
import { endpointSlice, KubeApiServer, service, type EndpointSlice, type EndpointSliceEndpoint } from '../support/kube.js';
import { waitFor, waitUntil } from '../support/wait.js';

const DEADLINE_MS = 30_000;
/** Long enough for a killed apiserver to come back: the watches retry at most this far apart. */
const BACKOFF = { initialMs: 200, maxMs: 2_000, jitter: 0.2, resetAfterMs: 60_000 };
const NS = `xlb-${randomBytes(3).toString('hex')}`;
const NODE = `xlb-node-${randomBytes(3).toString('hex')}`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

function httpGet(url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> });
        } catch (error) {
          reject(new Error(`GET ${url}: not JSON: ${text}`, { cause: error }));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** GET `url` until it answers `status` (deadline DEADLINE_MS); the last answer. */
async function poll(url: string, status: number): Promise<Answer> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const answer = await httpGet(url);
    if (answer.status === status) return answer;
    if (Date.now() > deadline) throw new Error(`GET ${url}: no ${status} within ${DEADLINE_MS} ms; last ${answer.status} ${JSON.stringify(answer.body)}`);
    await sleep(10);
  }
}

/** The value of a metric sample (first matching labels), or undefined. */
async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}, suffix = ''): Promise<number | undefined> {
  const metrics = await registry.getMetricsAsJSON();
  const metric = metrics.find((m) => m.name === name);
  const sample = (metric?.values ?? []).find(
    (v) => (suffix === '' || (v as { metricName?: string }).metricName === `${name}${suffix}`) && Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x),
  );
  return sample?.value;
}

const ep = (address: string, node?: string): EndpointSliceEndpoint => ({
  addresses: [address],
  conditions: { ready: true },
  ...(node !== undefined ? { topology: { 'kubernetes.io/hostname': node } } : {}),
});
const httpPort = [{ name: 'http', protocol: 'TCP' as const, port: 8080 }];

test('KubernetesWatcher against kube-apiserver 1.20: services, endpoints, an apiserver restart, health servers', async (t) => {
  const server = await KubeApiServer.start();
  const dir = await mkdtemp(join(tmpdir(), 'xlb-watcher-'));
  const log = memoryLogger();
  const datapath = new FakeDatapath();
  const store = new ServiceStore({ datapath, stateFile: join(dir, 'state.json'), log });
  const registry = new Registry();
  let watcher: KubernetesWatcher | undefined;
  /** The backends of an xlb service as "address:port/state", or undefined when the store has no such service. */
  const backends = (id: string): string[] | undefined => store.get(id)?.service.backends.map((b) => `${b.address}:${b.port}/${b.state}`);
  const waitBackends = (id: string, expected: string[] | undefined, what: string): Promise<void> =>
    waitFor(() => JSON.stringify(backends(id)) === JSON.stringify(expected), DEADLINE_MS, `${what} (${id}: ${JSON.stringify(backends(id))})`);
  try {
    await store.start(new Map());
    await server.rest.createNamespace(NS);
    const web = await server.rest.createService(service(NS, 'web', { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] }));
    await server.rest.createEndpointSlice(endpointSlice(NS, 'web-1', 'web', [ep('198.18.1.2'), ep('198.18.1.3')], httpPort));
    const webId = `${NS}/web:http@${web.spec.clusterIP ?? ''}`;

    watcher = await startKubernetes({
      flags: { kubeconfig: server.kubeconfig, nodePortAddresses: { kind: 'all' }, healthzAddr: { host: '127.0.0.1', port: 0 } },
      nodeName: NODE,
      store,
      registry,
      log,
      // Watches of 2 to 4 s: the apiserver ends several during the test, each resumed where it stopped.
      tuning: { backoff: BACKOFF, watchSeconds: 2, healthCheckAddresses: ['127.0.0.1'] },
    });
    const w = watcher;

    await t.test('the first sync serves what existed before the start', async () => {
      const started = Date.now();
      await Promise.race([
        w.initialSync(),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no initial sync within ${DEADLINE_MS} ms:\n${log.lines.join('\n')}`)), DEADLINE_MS).unref()),
      ]);
      t.diagnostic(`initial sync ${Date.now() - started} ms after the start`);
      assert.deepEqual(backends(webId), ['198.18.1.2:8080/active', '198.18.1.3:8080/active']);
      const entry = store.get(webId);
      assert.equal(entry?.origin, 'kubernetes');
      assert.equal(entry?.service.type, 'ClusterIP');
      assert.deepEqual(entry?.service.frontend, { address: web.spec.clusterIP, port: 80, protocol: 'TCP' });
      const status = w.status();
      assert.equal(status.apiServer, server.url);
      assert.equal(status.connection, 'connected');
      assert.equal(status.endpointSliceVersion, 'v1beta1', '1.20 serves no discovery.k8s.io/v1');
      assert.equal(status.nodeName, NODE);
      assert.ok(status.services >= 1 && status.lastSync !== undefined, JSON.stringify(status));
      assert.equal(await metricValue(registry, 'xlb_kubernetes_apiserver_up'), 1);
      assert.ok(log.lines.some((l) => l.startsWith('info: kubernetes initial sync: ')), log.lines.join('\n'));
    });

    await t.test('endpoints scale up and down; each change reaches the store on its own', async () => {
      const trigger = new Date().toISOString();
      const change = (endpoints: EndpointSliceEndpoint[]) => (s: EndpointSlice): EndpointSlice => ({
        ...s,
        metadata: { ...s.metadata, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': trigger } },
        endpoints,
      });
      let started = Date.now();
      await server.rest.updateEndpointSlice(NS, 'web-1', change([ep('198.18.1.2'), ep('198.18.1.3'), ep('198.18.1.4')]));
      await waitBackends(webId, ['198.18.1.2:8080/active', '198.18.1.3:8080/active', '198.18.1.4:8080/active'], 'scaled up to 3');
      const upMs = Date.now() - started;
      started = Date.now();
      await server.rest.updateEndpointSlice(NS, 'web-1', change([ep('198.18.1.4')]));
      await waitBackends(webId, ['198.18.1.4:8080/active'], 'scaled down to 1');
      t.diagnostic(`endpoint change → store: ${upMs} ms up, ${Date.now() - started} ms down (apiserver write included)`);
      assert.equal(await metricValue(registry, 'xlb_network_programming_duration_seconds', {}, '_count'), 2, 'one observation per annotated slice change');
      assert.ok(((await metricValue(registry, 'xlb_kubernetes_events_total', { kind: 'EndpointSlice', type: 'update' })) ?? 0) >= 2);
      assert.ok(((await metricValue(registry, 'xlb_kubernetes_sync_duration_seconds', {}, '_count')) ?? 0) >= 3);
    });

    await t.test('a malformed annotation is a problem, logged once; the service is served with the default', async () => {
      await server.rest.updateService(NS, 'web', (s) => ({ ...s, metadata: { ...s.metadata, annotations: { 'xlb.io/lb-algorithm': 'fastest' } } }));
      const problem = `warn: kubernetes: Service ${NS}/web: metadata.annotations["xlb.io/lb-algorithm"]: "fastest" is not one of maglev, random; the default applies`;
      await waitFor(() => log.lines.includes(problem), DEADLINE_MS, `the problem logged:\n${log.lines.join('\n')}`);
      assert.equal(await metricValue(registry, 'xlb_kubernetes_problems'), 1);
      assert.equal(w.status().problems, 1);
      assert.equal(store.get(webId)?.service.algorithm, 'maglev');
      // A slice change recomputes web: the problem is not logged again.
      await server.rest.updateEndpointSlice(NS, 'web-1', (s) => ({ ...s, endpoints: [ep('198.18.1.4'), ep('198.18.1.5')] }));
      await waitBackends(webId, ['198.18.1.4:8080/active', '198.18.1.5:8080/active'], 'a fifth endpoint');
      assert.equal(log.lines.filter((l) => l === problem).length, 1);
      // And a Warning event on the Service, once: `kubectl describe service web` shows it.
      type EventList = { items: { involvedObject: { kind: string; name: string }; reason: string; type: string; message: string; source: { component: string } }[] };
      const events = async (): Promise<EventList['items']> =>
        (await server.rest.request<EventList>('GET', `/api/v1/namespaces/${NS}/events`)).items.filter((e) => e.involvedObject.name === 'web' && e.reason === 'InvalidField');
      await waitUntil(async () => (await events()).length > 0, DEADLINE_MS, 'a Warning event on the Service');
      const [event, ...more] = await events();
      assert.equal(more.length, 0, 'one event, not one per sync');
      assert.deepEqual(
        { kind: event?.involvedObject.kind, type: event?.type, component: event?.source.component, message: event?.message },
        { kind: 'Service', type: 'Warning', component: 'xlb-agent', message: 'metadata.annotations["xlb.io/lb-algorithm"]: "fastest" is not one of maglev, random; the default applies' },
      );
      await server.rest.updateService(NS, 'web', (s) => ({ ...s, metadata: { ...s.metadata, annotations: {} } }));
      await waitFor(() => w.status().problems === 0, DEADLINE_MS, 'the problem gone');
    });

    await t.test('a slice that goes leaves no backends; a service that goes leaves the store', async () => {
      const db = await server.rest.createService(service(NS, 'db', { ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }] }));
      await server.rest.createEndpointSlice(endpointSlice(NS, 'db-1', 'db', [ep('198.18.2.2')], [{ name: 'pg', protocol: 'TCP', port: 5432 }]));
      const dbId = `${NS}/db:pg@${db.spec.clusterIP ?? ''}`;
      await waitBackends(dbId, ['198.18.2.2:5432/active'], 'db served');
      await server.rest.deleteEndpointSlice(NS, 'db-1');
      await waitBackends(dbId, [], 'db without its slice');
      await server.rest.deleteService(NS, 'db');
      await waitBackends(dbId, undefined, 'db gone');
      assert.deepEqual(backends(webId), ['198.18.1.4:8080/active', '198.18.1.5:8080/active'], 'web untouched');
    });

    await t.test('/healthz and /livez as kube-proxy; /healthz follows the Node being tainted for deletion', async () => {
      const address = w.healthzAddress;
      assert.ok(address, 'the health server listens');
      const base = `http://127.0.0.1:${address.port}`;
      for (const path of ['/healthz', '/livez']) {
        const answer = await httpGet(base + path);
        assert.equal(answer.status, 200, `${path}: ${JSON.stringify(answer.body)}`);
        assert.equal(answer.headers['content-type'], 'application/json');
        assert.ok(Date.parse(String(answer.body.lastUpdated)) > 0 && Date.parse(String(answer.body.currentTime)) > 0, JSON.stringify(answer.body));
        assert.equal(answer.body.nodeEligible, path === '/healthz' ? true : undefined);
      }
      assert.equal((await httpGet(`${base}/metrics`)).status, 404);

      const taint = { key: 'ToBeDeletedByClusterAutoscaler', value: '1700000000', effect: 'NoSchedule' };
      await server.rest.request('POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: NODE, labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
        spec: { taints: [taint] },
      });
      let healthz = await poll(`${base}/healthz`, 503);
      assert.equal(healthz.body.nodeEligible, false);
      assert.equal((await httpGet(`${base}/livez`)).status, 200, '/livez ignores the Node');

      await server.rest.update(`/api/v1/nodes/${NODE}`, (n: { metadata: { name: string }; spec?: Record<string, unknown> }) => ({ ...n, spec: { ...n.spec, taints: [] } }));
      healthz = await poll(`${base}/healthz`, 200);
      assert.equal(healthz.body.nodeEligible, true);
    });

    await t.test('a healthCheckNodePort server answers 200 with local endpoints, 503 without', async () => {
      const lb = await server.rest.createService(
        service(NS, 'lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] }),
      );
      const port = lb.spec.healthCheckNodePort;
      assert.ok(port !== undefined && port >= 30000, `healthCheckNodePort allocated: ${JSON.stringify(lb.spec)}`);
      await server.rest.createEndpointSlice(endpointSlice(NS, 'lb-1', 'lb', [ep('198.18.3.2', NODE), ep('198.18.3.3', 'elsewhere')], httpPort));
      await waitFor(() => w.healthChecks().ports.includes(port), DEADLINE_MS, `port ${port} served (${JSON.stringify([...w.healthChecks().failures])})`);
      // The server may have started with the Service alone (no local endpoint yet): wait for the slice.
      let answer = await poll(`http://127.0.0.1:${port}/`, 200);
      assert.deepEqual(answer.body, { service: { namespace: NS, name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
      assert.equal(answer.headers['x-load-balancing-endpoint-weight'], '1');

      await server.rest.updateEndpointSlice(NS, 'lb-1', (s) => ({ ...s, endpoints: [ep('198.18.3.3', 'elsewhere')] }));
      answer = await poll(`http://127.0.0.1:${port}/any/path`, 503);
      assert.equal(answer.body.localEndpoints, 0);

      await server.rest.deleteService(NS, 'lb');
      await waitFor(() => !w.healthChecks().ports.includes(port), DEADLINE_MS, `port ${port} closed`);
    });

    await t.test('watches the apiserver ends on time are resumed where they stopped, not relisted', async () => {
      const kinds = ['Service', 'EndpointSlice', 'Node'] as const;
      await waitFor(() => kinds.every((k) => w.watchCounts()[k].watches >= 2), DEADLINE_MS, `resumed watches (${JSON.stringify(w.watchCounts())})`);
      for (const kind of kinds) assert.equal(w.watchCounts()[kind].lists, 1, `${kind}: listed once`);
      assert.equal(w.status().connection, 'connected');
      assert.deepEqual(log.lines.filter((l) => l.includes('list/watch failed')), []);
      await server.rest.updateEndpointSlice(NS, 'web-1', (s) => ({ ...s, endpoints: [ep('198.18.1.5')] }));
      await waitBackends(webId, ['198.18.1.5:8080/active'], 'a change on a resumed watch');
    });

    await t.test('the apiserver dies: the store keeps serving; it comes back: changes arrive again', async () => {
      const before = JSON.stringify(store.list());
      const applies = datapath.attempts;
      await server.stopApiServer();
      await waitFor(() => w.status().connection === 'disconnected', DEADLINE_MS, 'disconnected');
      const down = w.status();
      assert.match(down.lastError ?? '', new RegExp(server.url.replace(/[.]/g, '\\.')), `the error names the apiserver: ${down.lastError}`);
      assert.equal(await metricValue(registry, 'xlb_kubernetes_apiserver_up'), 0);
      // A few failed reconnects later, nothing was removed or changed.
      const failures = log.lines.filter((l) => l.includes('list/watch failed')).length;
      await waitFor(() => log.lines.filter((l) => l.includes('list/watch failed')).length >= failures + 3, DEADLINE_MS, 'reconnect attempts');
      assert.equal(JSON.stringify(store.list()), before, 'the store serves on');
      assert.equal(datapath.attempts, applies, 'no datapath apply while the apiserver is down');

      await server.startApiServer();
      // Written right away: seen by a relist or by the watch, whichever comes first.
      await server.rest.updateEndpointSlice(NS, 'web-1', (s) => ({ ...s, endpoints: [ep('198.18.1.6')] }));
      await waitBackends(webId, ['198.18.1.6:8080/active'], 'a change made after the restart');
      await waitFor(() => w.status().connection === 'connected', DEADLINE_MS, 'connected again');
      assert.equal(w.status().lastError, undefined);
      assert.equal(await metricValue(registry, 'xlb_kubernetes_apiserver_up'), 1);
      await server.rest.deleteService(NS, 'web');
      await waitBackends(webId, undefined, 'web deleted after the restart');
    });
  } catch (error) {
    t.diagnostic(`agent log:\n${log.lines.join('\n')}\n${server.logs()}`);
    throw error;
  } finally {
    await watcher?.stop();
    await store.idle();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  assert.deepEqual(datapath.violations, []);
});
