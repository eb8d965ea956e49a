/**
 * The real kube-apiserver the Kubernetes-mode tests run against (test/support/kube.ts), seen through
 * the client the agent uses (@kubernetes/client-node 1.x): namespaces list; a Service and a v1beta1
 * EndpointSlice each arrive as a watch event; the apiserver restarts on the same etcd and the
 * informers carry on (the watch resumes, or it fails and a restart of the informer relists); a
 * Service watch with timeoutSeconds ends on time (Service watches are the ones that go through the
 * decorated watcher deploy/kube-apiserver/decorated-watcher-close.patch fixes; over plain HTTP the
 * handler's own timer ends them, so this guards the path, it does not prove the patch); and stop()
 * leaves no process and no temp dir.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  makeInformer,
  type Informer,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import { endpointSlice, ENDPOINT_SLICE_API, KubeApiServer, service, SERVICE_NAME_LABEL } from '../support/kube.js';

const EVENT_TIMEOUT_MS = 30_000;
const NS = `xlb-${randomBytes(3).toString('hex')}`;

/** What an informer saw, in order: "add web", "delete web", "error", "connect". */
class Seen {
  readonly events: string[] = [];
  errors = 0;
  restarts = 0;

  constructor(
    readonly name: string,
    readonly informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>,
  ) {
    for (const verb of ['add', 'update', 'delete'] as const) {
      informer.on(verb, (obj) => this.events.push(`${verb} ${obj.metadata?.name ?? '?'}`));
    }
    informer.on('connect', () => this.events.push('connect'));
    // client-node's informer stops on an error (apiserver unreachable): restart it with backoff, as
    // the agent does. Its start() watches on from the last resourceVersion, or relists after a 410.
    informer.on('error', () => {
      this.errors++;
      this.events.push('error');
      const delay = Math.min(2_000, 100 * 2 ** Math.min(this.errors, 5));
      setTimeout(() => {
        if (this.stopped) return;
        this.restarts++;
        void this.informer.start();
      }, delay);
    });
  }

  stopped = false;

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  async waitFor(event: string, after = 0): Promise<void> {
    const deadline = Date.now() + EVENT_TIMEOUT_MS;
    while (this.events.indexOf(event, after) < 0) {
      if (Date.now() > deadline) {
        throw new Error(`${this.name} informer: no "${event}" within ${EVENT_TIMEOUT_MS} ms; saw ${JSON.stringify(this.events)}`);
      }
      await sleep(20);
    }
  }
}

/** A raw watch request; resolves with the time until the server ended the response. */
function timedWatch(server: KubeApiServer, path: string): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server.url), { headers: { authorization: `Bearer ${server.token}` }, ca: server.ca }, (res) => {
      res.resume();
      res.on('end', () => resolve(Date.now() - started));
      res.on('error', reject);
    });
    req.setTimeout(EVENT_TIMEOUT_MS, () => req.destroy(new Error(`watch ${path} still open after ${EVENT_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Processes whose command line names `dir` (the server's temp dir is in every argument list). */
function processesNaming(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

test('kube-apiserver 1.20: informers see Services and EndpointSlices, survive an apiserver restart; stop() leaves nothing', async (t) => {
  const server = await KubeApiServer.start();
  const dir = server.dir;
  const pids = server.pids();
  assert.equal(pids.length, 2, 'etcd and kube-apiserver run');
  const informers: Seen[] = [];
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(server.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const objects = KubernetesObjectApi.makeApiClient(kc);

    await t.test('lists namespaces with the kubeconfig', async () => {
      const names = (await core.listNamespace()).items.map((n) => n.metadata?.name);
      assert.ok(names.includes('default') && names.includes('kube-system'), `namespaces: ${names.join(', ')}`);
      await server.rest.createNamespace(NS);
    });

    const services = new Seen(
      'Service',
      makeInformer(kc, `/api/v1/namespaces/${NS}/services`, () => core.listNamespacedService({ namespace: NS })),
    );
    const slices = new Seen(
      'EndpointSlice',
      makeInformer(kc, `/apis/${ENDPOINT_SLICE_API}/namespaces/${NS}/endpointslices`, () =>
        objects.list(ENDPOINT_SLICE_API, 'EndpointSlice', NS),
      ),
    );
    informers.push(services, slices);
    await services.informer.start();
    await slices.informer.start();
    await services.waitFor('connect');
    await slices.waitFor('connect');

    await t.test('a Service and its v1beta1 EndpointSlice arrive as watch events', async () => {
      const created = await server.rest.createService(
        service(NS, 'web', { type: 'ClusterIP', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] }),
      );
      assert.match(created.spec.clusterIP ?? '', /^198\.18\.(1(2[89]|[3-9]\d)|2\d\d)\.\d+$/, 'ClusterIP from 198.18.128.0/17');
      await services.waitFor('add web');
      await server.rest.createEndpointSlice(
        endpointSlice(NS, 'web-1', 'web', [{ addresses: ['198.18.1.2'] }, { addresses: ['198.18.1.3'] }], [
          { name: 'http', protocol: 'TCP', port: 8080 },
        ]),
      );
      await slices.waitFor('add web-1');
      const cached = slices.informer.get('web-1', NS) as { endpoints?: { addresses: string[] }[]; metadata?: { labels?: Record<string, string> } } | undefined;
      assert.deepEqual(cached?.endpoints?.map((e) => e.addresses[0]), ['198.18.1.2', '198.18.1.3']);
      assert.equal(cached?.metadata?.labels?.[SERVICE_NAME_LABEL], 'web');

      const mark = slices.events.length;
      await server.rest.updateEndpointSlice(NS, 'web-1', (s) => ({ ...s, endpoints: s.endpoints.slice(0, 1) }));
      await slices.waitFor('update web-1', mark);
    });

    await t.test('a Service watch with timeoutSeconds ends on time', async () => {
      const ms = await timedWatch(server, `/api/v1/namespaces/${NS}/services?watch=true&timeoutSeconds=2`);
      assert.ok(ms < 10_000, `the watch ended after ${ms} ms`);
    });

    await t.test('the apiserver restarts on the same etcd; informers carry on', async () => {
      const serviceMark = services.events.length;
      const sliceMark = slices.events.length;
      const restartStarted = Date.now();
      await server.restart();
      const restartMs = Date.now() - restartStarted;
      assert.equal(server.pids().length, 2);
      // Written after the restart: seen only if the watches came back.
      await server.rest.createService(service(NS, 'after', { ports: [{ protocol: 'UDP', port: 53 }] }));
      await server.rest.createEndpointSlice(
        endpointSlice(NS, 'after-1', 'after', [{ addresses: ['198.18.1.9'] }], [{ protocol: 'UDP', port: 5353 }]),
      );
      await services.waitFor('add after', serviceMark);
      await slices.waitFor('add after-1', sliceMark);
      await server.rest.deleteService(NS, 'web');
      await services.waitFor('delete web', serviceMark);
      // What etcd held before the restart is still there and still in the caches.
      assert.ok(slices.informer.get('web-1', NS), 'web-1 survived the restart');
      t.diagnostic(`apiserver restart: ${restartMs} ms; after it: Service informer ${JSON.stringify(services.events.slice(serviceMark))}, ` +
        `EndpointSlice informer ${JSON.stringify(slices.events.slice(sliceMark))}`);
    });
  } catch (error) {
    t.diagnostic(server.logs());
    throw error;
  } finally {
    for (const i of informers) await i.stop();
    await server.stop();
  }

  for (const pid of pids) {
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `process ${pid} is gone`);
  }
  assert.deepEqual(processesNaming(dir), [], 'no process names the temp dir');
  assert.equal(existsSync(dir), false, `${dir} removed`);
});
