/**
 * The identity policy end to end on the control plane's side, for the bench suite "policy": the
 * generated cluster (as bench/policy/compute.ts) computed by PolicyEngine and written by
 * PolicyMapWriter into tc_pod's real policy maps (loaded as the tc benchmarks load tc_pod:
 * bench/east-west/tc-harness.ts), each local pod on a device of its own. Figures:
 * - the first full write (ipcache, every endpoint and its allow entries), as after an agent's start;
 * - one pod's label change → its delta computed and written: p50 / p99 over `changes` changes (issue 21:
 *   p99 ≤ 20 ms), beside the computation alone in the same changes (the map writes' share).
 * The maps' own limits bound the cluster: one node's share of 5,000 pods × 1,000 policies fits.
 *
 *   node dist/bench/policy/programming.js [--quick]
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { PolicyMapWriter } from '../../lb/datapath/policy-writer.js';
import type { PolicyDelta } from '../../lb/policy/engine.js';
import type { PodInfo } from '../../lb/policy/types.js';
import { generateCluster } from '../../test/support/policy-cluster.js';
import { mulberry32 } from '../../test/support/prng.js';
import { TcPodHarness } from '../east-west/tc-harness.js';
import type { BenchFigure } from '../lib/report.js';
import { computeAll, percentile, relabelled } from './compute.js';

export interface PolicyProgrammingOptions {
  pods: number;
  policies: number;
  changes: number;
  progress?: (message: string) => void;
}

/** Devices of the local pods: made-up ifindexes, as the writer only keys by them. */
const FIRST_IFINDEX = 10_000;

/**
 * Writes deltas as the agent's PolicySync does: the ipcache first, then each endpoint on its pod's
 * device — only its rules' change when the delta has one (every write here succeeds).
 */
class DeltaWriter {
  private readonly devices = new Map<string, number>();

  constructor(private readonly writer: PolicyMapWriter) {}

  write(delta: PolicyDelta): void {
    this.writer.setIpcache(delta.ipcacheSet);
    const changes = new Map(delta.endpointsChanged.map((change) => [`${change.namespace}/${change.name}`, change]));
    for (const endpoint of delta.endpointsSet) {
      const key = `${endpoint.namespace}/${endpoint.name}`;
      const change = changes.get(key);
      if (change) this.writer.changeEndpoint(this.deviceOf(key), endpoint, change);
      else this.writer.setEndpoint(this.deviceOf(key), endpoint);
    }
    for (const gone of delta.endpointsDeleted) {
      const key = `${gone.namespace}/${gone.name}`;
      const ifindex = this.devices.get(key);
      if (ifindex !== undefined) this.writer.deleteEndpoint(ifindex);
      this.devices.delete(key);
    }
    this.writer.deleteIpcache(delta.ipcacheDeleted);
  }

  private deviceOf(pod: string): number {
    let ifindex = this.devices.get(pod);
    if (ifindex === undefined) {
      ifindex = FIRST_IFINDEX + this.devices.size;
      this.devices.set(pod, ifindex);
    }
    return ifindex;
  }
}

export async function benchPolicyProgramming(options: PolicyProgrammingOptions): Promise<BenchFigure[]> {
  const progress = options.progress ?? (() => undefined);
  const cluster = generateCluster({ pods: options.pods, policies: options.policies });
  const params = { pods: cluster.pods.length, policies: cluster.policies.length, localPods: cluster.pods.filter((p) => p.nodeName === cluster.nodeName).length };
  const tc = TcPodHarness.load('policy-programming', 1);
  try {
    const deltas = new DeltaWriter(PolicyMapWriter.open(tc.bench));
    const { engine, delta: first } = computeAll(cluster);
    const started = performance.now();
    deltas.write(first);
    const fullWrite = performance.now() - started;
    const rules = first.endpointsSet.reduce((n, e) => n + e.rules.length, 0);
    progress(`first write: ${first.ipcacheSet.length} ipcache entries, ${first.endpointsSet.length} endpoints, ${rules} allow entries in ${fullWrite.toFixed(0)} ms`);

    const random = mulberry32(2102);
    const pods = [...cluster.pods];
    const total: number[] = [];
    const computing: number[] = [];
    for (let i = 0; i < options.changes; i++) {
      const index = Math.floor(random() * pods.length);
      const next = relabelled(pods[index] as PodInfo);
      pods[index] = next;
      const changed = performance.now();
      engine.upsertPod(next);
      const delta = engine.flush();
      const computed = performance.now();
      deltas.write(delta);
      total.push(performance.now() - changed);
      computing.push(computed - changed);
    }
    total.sort((a, b) => a - b);
    computing.sort((a, b) => a - b);
    const [p50, p99, computeP50, computeP99] = [percentile(total, 50), percentile(total, 99), percentile(computing, 50), percentile(computing, 99)];
    progress(`label change → maps written: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (computing alone ${computeP50.toFixed(2)} / ${computeP99.toFixed(2)})`);
    const peer = 'computing the delta alone (no map writes)';
    return [
      { name: 'policy programming: first write of the node\'s policy', value: fullWrite, unit: 'ms', params: { ...params, ipcacheEntries: first.ipcacheSet.length, endpoints: first.endpointsSet.length, allowEntries: rules } },
      { name: 'policy programming: label change → maps written, p50', value: p50, unit: 'ms', peer, peerValue: computeP50, ratio: p50 / computeP50, params: { ...params, changes: options.changes } },
      { name: 'policy programming: label change → maps written, p99', value: p99, unit: 'ms', peer, peerValue: computeP99, ratio: p99 / computeP99, params: { ...params, changes: options.changes, goalMs: 20 } },
    ];
  } finally {
    tc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const figures = await benchPolicyProgramming({ pods: quick ? 500 : 5_000, policies: quick ? 100 : 1_000, changes: quick ? 50 : 200, progress: (line) => process.stderr.write(`[policy programming] ${line}\n`) });
  for (const f of figures) process.stdout.write(`${f.name}: ${f.value.toFixed(2)} ${f.unit}${f.peer ? ` (${f.peer}: ${f.peerValue?.toFixed(2)})` : ''}\n`);
}
