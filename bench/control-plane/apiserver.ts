/**
 * Endpoint changes through a real kube-apiserver (1.20, test/support/kube.ts): the agent's watcher
 * (startKubernetes, agent/k8s/syncer.ts) feeds a ServiceStore over the real datapath; each change is
 * a PUT of one EndpointSlice (an endpoint replaced), timed from the PUT until the store has applied
 * that service with the new endpoint (the watcher's syncKubernetes call returned). Changes are made
 * one at a time, each waiting for the previous one to be applied.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { startKubernetes, type KubernetesSink, type KubernetesWatcher } from '../../agent/k8s/syncer.js';
import { memoryLogger } from '../../agent/log.js';
import { ServiceStore } from '../../agent/store.js';
import type { ServiceDatapath } from '../../agent/datapath.js';
import { ENDPOINT_SLICE_API, KubeApiServer, endpointSlice, kubeApiServerRecipe, service, type EndpointSlice } from '../../test/support/kube.js';
import { NODE_NAME, PORT_NAME, PodAddresses, SERVICE_PORT, TARGET_PORT, replaceEndpoint, type BenchService } from './objects.js';
import { benchDatapath } from './xlb-worker.js';

const APPLY_TIMEOUT_MS = 30_000;
/** Objects are created this many at a time. */
const CREATE_PARALLEL = 16;

export interface ApiserverChanges {
  services: number;
  endpointsPerService: number;
  /** PUT sent → the store applied the service with the new endpoint. */
  changeMs: number[];
  /** PUT sent → the apiserver answered (written to etcd). */
  putMs: number[];
  initialSyncMs: number;
}

/** Whether the apiserver is there to run against: deploy/kube-apiserver.sh builds it (setup.sh --tests). */
export function apiserverAvailable(): { ok: true } | { ok: false; why: string } {
  try {
    const { path, built } = kubeApiServerRecipe();
    return built || process.env['XLB_KUBE_APISERVER'] ? { ok: true } : { ok: false, why: `kube-apiserver is not built (${path}): run bash deploy/setup.sh --tests` };
  } catch (error) {
    return { ok: false, why: error instanceof Error ? error.message : String(error) };
  }
}

async function inBatches<T>(items: readonly T[], size: number, each: (item: T) => Promise<unknown>): Promise<void> {
  for (let at = 0; at < items.length; at += size) await Promise.all(items.slice(at, at + size).map(each));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function apiserverEndpointChanges(options: {
  services: number;
  endpointsPerService: number;
  changes: number;
  /** A directory on a bpffs, for the datapath's pins (removed afterwards). */
  pinDir: string;
  /** The store's state file (only API services are persisted: never written here). */
  stateFile: string;
  log: (line: string) => void;
}): Promise<ApiserverChanges> {
  const { log } = options;
  const ns = `xlb-bench-${randomBytes(3).toString('hex')}`;
  let server: KubeApiServer | undefined;
  let datapath: ServiceDatapath | undefined;
  let watcher: KubernetesWatcher | undefined;
  try {
    log('kube-apiserver: starting etcd and kube-apiserver 1.20 on 127.0.0.1');
    // On Ctrl-C the bench exits at once; the apiserver module's exit hook then kills both servers.
    server = await KubeApiServer.start();
    const rest = server.rest;
    await rest.createNamespace(ns);

    // Services first (the apiserver allocates their cluster IPs), then one slice each.
    const pods = new PodAddresses();
    const names = Array.from({ length: options.services }, (_, i) => `svc-${i}`);
    const cluster: BenchService[] = [];
    log(`kube-apiserver: creating ${options.services} Services and their EndpointSlices (${options.endpointsPerService} endpoints each) in namespace ${ns}`);
    await inBatches(names, CREATE_PARALLEL, async (name) => {
      const created = await rest.createService(service(ns, name, { ports: [{ name: PORT_NAME, protocol: 'TCP', port: SERVICE_PORT, targetPort: TARGET_PORT }] }));
      cluster.push({ namespace: ns, name, clusterIP: created.spec.clusterIP ?? '', endpoints: [], resourceVersion: 0 });
    });
    cluster.sort((a, b) => Number(a.name.slice(4)) - Number(b.name.slice(4)));
    for (const s of cluster) s.endpoints = Array.from({ length: options.endpointsPerService }, () => pods.take());
    const sliceOf = (s: BenchService): EndpointSlice =>
      endpointSlice(ns, `${s.name}-abcde`, s.name, s.endpoints.map((address, i) => ({ addresses: [address], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': `node-${i % 50}` } })), [
        { name: PORT_NAME, protocol: 'TCP', port: TARGET_PORT },
      ]);
    const versions = new Map<string, string>();
    await inBatches(cluster, CREATE_PARALLEL, async (s) => {
      const created = await rest.createEndpointSlice(sliceOf(s));
      versions.set(s.name, created.metadata.resourceVersion ?? '');
    });

    datapath = benchDatapath(options.pinDir);
    const agentLog = memoryLogger();
    const store = new ServiceStore({ datapath, stateFile: options.stateFile, log: agentLog });
    await store.start(new Map());

    // The store as the watcher sees it, telling the bench when the service it waits for was applied.
    let waiting: { id: string; address: string; resolve: (at: number) => void } | undefined;
    const sink: KubernetesSink = {
      syncKubernetes: async (changes) => {
        const result = await store.syncKubernetes(changes);
        const at = performance.now();
        const w = waiting;
        if (w && result.applied.includes(w.id) && store.get(w.id)?.service.backends.some((b) => b.address === w.address)) {
          waiting = undefined;
          w.resolve(at);
        }
        return result;
      },
    };
    const started = performance.now();
    watcher = await startKubernetes({
      flags: { kubeconfig: server.kubeconfig, nodePortAddresses: { kind: 'all' } },
      nodeName: NODE_NAME,
      store: sink,
      registry: new Registry(),
      log: agentLog,
      tuning: { healthCheckAddresses: ['127.0.0.1'] },
    });
    await withTimeout(watcher.initialSync(), APPLY_TIMEOUT_MS, 'the watcher\'s initial sync');
    const initialSyncMs = performance.now() - started;
    const served = store.list().filter((e) => e.origin === 'kubernetes' && e.id.startsWith(`${ns}/`)).length;
    if (served !== options.services) throw new Error(`after the initial sync the store serves ${served} of ${options.services} services:\n${agentLog.lines.slice(-10).join('\n')}`);
    log(`kube-apiserver: initial sync of ${options.services} services in ${initialSyncMs.toFixed(0)} ms; ${options.changes} endpoint changes, one at a time`);

    const changeMs: number[] = [];
    const putMs: number[] = [];
    for (let k = 0; k < options.changes; k++) {
      if (k > 0 && k % 50 === 0) log(`kube-apiserver: endpoint changes ${k}/${options.changes}`);
      const { service: s } = replaceEndpoint(cluster, k, pods);
      const slice = sliceOf(s);
      slice.metadata.resourceVersion = versions.get(s.name);
      const id = `${ns}/${s.name}:${PORT_NAME}@${s.clusterIP}`;
      const address = s.endpoints[k % s.endpoints.length] ?? '';
      const applied = new Promise<number>((resolve) => (waiting = { id, address, resolve }));
      const t0 = performance.now();
      const answer = await rest.request<EndpointSlice>('PUT', `/apis/${ENDPOINT_SLICE_API}/namespaces/${ns}/endpointslices/${slice.metadata.name}`, slice);
      putMs.push(performance.now() - t0);
      versions.set(s.name, answer.metadata.resourceVersion ?? '');
      const at = await withTimeout(applied, APPLY_TIMEOUT_MS, `endpoint change ${k} (${id} with ${address})`);
      changeMs.push(at - t0);
    }
    return { services: options.services, endpointsPerService: options.endpointsPerService, changeMs, putMs, initialSyncMs };
  } finally {
    await watcher?.stop();
    await datapath?.close();
    await server?.stop();
    rmSync(options.pinDir, { recursive: true, force: true });
  }
}
