/**
 * One xlb agent's control plane, measured in a process of its own (so its RSS is the agent's, not the
 * bench's rule texts'): node dist/bench/control-plane/xlb-worker.js --pin-dir DIR --services N
 * --endpoints E [--changes C]. Progress on stderr; the result as one JSON line on stdout.
 *
 * The path is the agent's: objects → kubernetesServices() → ServiceStore.syncKubernetes() → the real
 * datapath of createNodeDatapath() (maps pinned under --pin-dir, nothing attached). Then C endpoint
 * changes, each recomputed for its service only as agent/k8s/tracker.ts does (the changed slice
 * parsed, servicesOf() over the held service and its slices, only what differs handed on), and
 * applied by syncKubernetes.
 */
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CpuProfiler } from './profiler.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { DEFAULT_SNAT_PORTS } from '../../agent/flags.js';
import { ServiceStore } from '../../agent/store.js';
import type { ServiceDatapath } from '../../agent/datapath.js';
import { memoryLogger } from '../../agent/log.js';
import { DEFAULT_CONNTRACK_ENTRIES } from '../../lb/datapath/lb-datapath.js';
import { kubernetesServices, parseEndpointSlice, parseService, servicesOf, type Problem, type ServiceSpec } from '../../lb/k8s/index.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import type { Service } from '../../lb/service.js';
import { NODE_NAME, PodAddresses, benchCluster, endpointSliceObject, replaceEndpoint, serviceObject } from './objects.js';

export const MAGLEV_TABLE_SIZE = 16381;
export const CAPACITY = { services: 65536, backends: 262144 };

/** The agent's real datapath as the bench runs it: nothing attached, the maps pinned in `pinDir`. */
export function benchDatapath(pinDir: string): ServiceDatapath {
  return createNodeDatapath({
    devices: [],
    xdp: 'off',
    mode: 'snat',
    maglevTableSize: MAGLEV_TABLE_SIZE,
    maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
    bpffs: pinDir,
    nodeAddresses: [],
    nodeName: NODE_NAME,
    conntrackEntries: DEFAULT_CONNTRACK_ENTRIES,
    snatPorts: { ...DEFAULT_SNAT_PORTS },
    nodeSetup: false,
    dsrServiceRanges: [],
    capacity: CAPACITY,
    log: () => undefined,
  });
}

export interface XlbWorkerResult {
  services: number;
  endpointsPerService: number;
  xlbServices: number;
  /** kubernetesServices + syncKubernetes. */
  fullSyncMs: number;
  /** The CPU time (user + system, every thread) the process spent on it. */
  fullSyncCpuMs: number;
  modelMs: number;
  storeSyncMs: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  heapUsedAfterBytes: number;
  /** One per endpoint change: slice parsed → syncKubernetes resolved. */
  changeMs: number[];
  /** Of those, the recompute (parse + servicesOf + diff) alone. */
  recomputeMs: number[];
  /** Of those, garbage collection pauses that began during the change. */
  gcMs: number[];
  /** CPU time (user + system) the process spent on each change: wall time beyond it was waiting (or another process's turn). */
  cpuMs: number[];
}

const log = (message: string): void => void process.stderr.write(`[bench control-plane] xlb: ${message}\n`);

function fail(message: string): never {
  throw new Error(`xlb worker: ${message}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'pin-dir': { type: 'string' },
      /** The store's state file: only API services are persisted, so it is never written here. */
      'state-file': { type: 'string' },
      services: { type: 'string' },
      endpoints: { type: 'string' },
      changes: { type: 'string', default: '0' },
      /** FILE prefix: CPU profiles of the full sync and of the endpoint changes. */
      profile: { type: 'string' },
    },
  });
  const pinDir = values['pin-dir'] ?? fail('--pin-dir is required');
  const stateFile = values['state-file'] ?? fail('--state-file is required');
  const count = Number(values.services);
  const perService = Number(values.endpoints);
  const changes = Number(values.changes);
  if (!(count > 0 && perService > 0 && changes >= 0)) fail('--services and --endpoints must be positive, --changes not negative');

  const pods = new PodAddresses();
  const cluster = benchCluster(count, perService, pods);
  const serviceObjects = cluster.map(serviceObject);
  const sliceObjects = cluster.map(endpointSliceObject);

  const agentLog = memoryLogger();
  const datapath = benchDatapath(pinDir);
  try {
    const store = new ServiceStore({ datapath, stateFile, log: agentLog });
    await store.start(new Map());
    const rssBeforeBytes = process.memoryUsage().rss;
    // Not node --cpu-prof: its SIGPROF interrupts the verifier while the datapath loads (EAGAIN).
    const profile = values.profile;
    let profiler = profile === undefined ? undefined : await CpuProfiler.start(`${profile}-sync.cpuprofile`);

    log(`full sync: ${count.toLocaleString()} services × ${perService} endpoints`);
    const cpuStarted = process.cpuUsage();
    const started = performance.now();
    const model = kubernetesServices({ services: serviceObjects, endpointSlices: sliceObjects }, { nodeName: NODE_NAME });
    const modelled = performance.now();
    const synced = await store.syncKubernetes(model.services);
    const finished = performance.now();
    const syncCpu = process.cpuUsage(cpuStarted);
    if (model.problems.length > 0) fail(`the model found problems: ${JSON.stringify(model.problems.slice(0, 3))}`);
    if (synced.failed.length > 0) fail(`${synced.failed.length} services refused, e.g. ${JSON.stringify(synced.failed[0])}`);
    if (synced.applied.length !== count) fail(`${synced.applied.length} services applied, expected ${count}`);
    const memory = process.memoryUsage();
    await profiler?.stop();
    if (profile !== undefined) {
      log(`CPU profiles: ${profile}-sync.cpuprofile (full sync), ${profile}-changes.cpuprofile (endpoint changes)`);
      profiler = await CpuProfiler.start(`${profile}-changes.cpuprofile`);
    }
    log(`full sync: ${(finished - started).toFixed(0)} ms, CPU ${((syncCpu.user + syncCpu.system) / 1000).toFixed(0)} ms (model ${(modelled - started).toFixed(0)} ms, store + datapath ${(finished - modelled).toFixed(0)} ms), RSS ${(memory.rss / 2 ** 20).toFixed(0)} MiB`);

    // The tracker's state after the full sync: each service parsed once, what the store serves.
    const problems: Problem[] = [];
    const specs: ServiceSpec[] = serviceObjects.map((o) => parseService(o, problems) ?? fail('a service did not parse'));
    const served = new Map<string, Service>(model.services);
    const here = { nodeName: NODE_NAME, zone: undefined };
    const changeMs: number[] = [];
    const recomputeMs: number[] = [];
    const gcMs: number[] = [];
    const cpuMs: number[] = [];
    const pauses: PerformanceEntry[] = [];
    const intervals: [number, number][] = [];
    const gc = new PerformanceObserver((list) => void pauses.push(...list.getEntries()));
    gc.observe({ entryTypes: ['gc'] });
    for (let k = 0; k < changes; k++) {
      if (k > 0 && k % 250 === 0) log(`endpoint changes: ${k}/${changes}`);
      const { index, service: target } = replaceEndpoint(cluster, k, pods);
      const spec = specs[index] ?? fail('no such spec');
      const slice = endpointSliceObject(target);

      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const parsed = parseEndpointSlice(slice, problems) ?? fail('the changed slice did not parse');
      const changed = new Map<string, Service | undefined>();
      for (const entry of servicesOf(spec, [parsed], here, problems)) {
        const current = served.get(entry.id);
        if (current === undefined || JSON.stringify(current) !== JSON.stringify(entry.service)) changed.set(entry.id, entry.service);
      }
      const t1 = performance.now();
      const result = await store.syncKubernetes(changed);
      const t2 = performance.now();
      const cpu = process.cpuUsage(cpu0);
      cpuMs.push((cpu.user + cpu.system) / 1000);
      if (result.applied.length !== 1 || result.failed.length > 0) fail(`endpoint change ${k}: ${JSON.stringify(result)}`);
      for (const [id, service] of changed) if (service) served.set(id, service);
      changeMs.push(t2 - t0);
      recomputeMs.push(t1 - t0);
      intervals.push([t0, t2]);
    }
    // GC entries reach the observer some event-loop turns after the pause: matched to the changes at the end.
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc.disconnect();
    for (const [from, to] of intervals) gcMs.push(pauses.filter((p) => p.startTime >= from && p.startTime < to).reduce((sum, p) => sum + p.duration, 0));
    if (problems.length > 0) fail(`problems while changing endpoints: ${JSON.stringify(problems.slice(0, 3))}`);

    const result: XlbWorkerResult = {
      services: count,
      endpointsPerService: perService,
      xlbServices: model.services.size,
      fullSyncMs: finished - started,
      fullSyncCpuMs: (syncCpu.user + syncCpu.system) / 1000,
      modelMs: modelled - started,
      storeSyncMs: finished - modelled,
      rssBeforeBytes,
      rssAfterBytes: memory.rss,
      heapUsedAfterBytes: memory.heapUsed,
      changeMs,
      recomputeMs,
      gcMs,
      cpuMs,
    };
    await profiler?.stop();
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await datapath.close();
  }
}

// Run when started as a program; the bench imports the constants and the result type.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}
