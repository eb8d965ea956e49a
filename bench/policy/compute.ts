/**
 * The identity policy computation (lb/policy/engine.ts) at cluster scale, for the bench suite "policy"
 * (issue 21's goals: 1,000 policies × 5,000 pods computed in ≤ 1 s; one pod's label change → its
 * delta, p99 ≤ 20 ms, the map writes apart).
 *
 * The cluster is generated (test/support/policy-cluster.ts: 50 namespaces, apps of 3–5 labels, every
 * rule kind; deterministic). Figures:
 * - full compute: a new engine fed every namespace, node, pod and policy, then flush() — what the
 *   agent does at start-up (median of rounds, after one warm-up round); the pods are spread over 20
 *   nodes, so this node has 1/20 of them as endpoints; and the worst case, every pod on this node;
 * - label change: one random pod gets or loses a label (a new identity, an old one released), then
 *   flush() — p50 and p99 over `changes` changes; its peer, in the same run, is the naive way: the full
 *   computation again after a change;
 * - memory: RSS and heap growth by computing and holding one engine, measured before the rounds
 *   (run node with --expose-gc to collect garbage before each reading).
 *
 *   node dist/bench/policy/compute.js [--pods N] [--policies N] [--changes N] [--quick]
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PolicyEngine, type PolicyDelta } from '../../lb/policy/engine.js';
import type { PodInfo } from '../../lb/policy/types.js';
import { generateCluster, type GeneratedCluster } from '../../test/support/policy-cluster.js';
import { mulberry32 } from '../../test/support/prng.js';
import type { BenchFigure } from '../lib/report.js';

export interface PolicyComputeOptions {
  pods: number;
  policies: number;
  changes: number;
  /** Fewer rounds of the full computation and its peer. */
  quick?: boolean;
  progress?: (msg: string) => void;
}

const MiB = 1024 * 1024;

/** A new engine with the whole cluster, flushed once; its flush's size. */
export function computeAll(cluster: GeneratedCluster, pods: readonly PodInfo[] = cluster.pods): { engine: PolicyEngine; delta: PolicyDelta; endpoints: number; rules: number; ipcache: number } {
  const engine = new PolicyEngine({ nodeName: cluster.nodeName });
  for (const ns of cluster.namespaces) engine.upsertNamespace(ns);
  for (const node of cluster.nodes) engine.upsertNode(node.name, node.addresses);
  for (const pod of pods) engine.upsertPod(pod);
  for (const policy of cluster.policies) {
    const problems = engine.upsertPolicy(policy);
    if (problems.length > 0) throw new Error(`generated policy refused: ${JSON.stringify(problems[0])}`);
  }
  const delta = engine.flush();
  return { engine, delta, endpoints: delta.endpointsSet.length, rules: delta.endpointsSet.reduce((n, e) => n + e.rules.length, 0), ipcache: delta.ipcacheSet.length };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** The pod with label debug=true added, or removed when it has it: its own new identity, or back. */
export function relabelled(pod: PodInfo): PodInfo {
  const labels = { ...pod.labels };
  if (labels.debug === undefined) labels.debug = 'true';
  else delete labels.debug;
  return { ...pod, labels };
}

export async function benchPolicyCompute(options: PolicyComputeOptions): Promise<BenchFigure[]> {
  const progress = options.progress ?? (() => {});
  const cluster = generateCluster({ pods: options.pods, policies: options.policies });
  const parameters = {
    pods: cluster.pods.length,
    policies: cluster.policies.length,
    namespaces: cluster.namespaces.length,
    nodes: cluster.nodes.length,
    localPods: cluster.pods.filter((p) => p.nodeName === cluster.nodeName).length,
  };
  progress(`policy compute: ${parameters.pods} pods, ${parameters.policies} policies, ${parameters.namespaces} namespaces, ${parameters.nodes} nodes`);

  // Memory held by one computed engine, first: RSS grown by the rounds below would not be given back.
  const collect = (globalThis as { gc?: () => void }).gc;
  collect?.();
  const before = process.memoryUsage();
  const held = computeAll(cluster);
  collect?.();
  const after = process.memoryUsage();

  // Full computation: one warm-up round (JIT), then the median of the rounds.
  computeAll(cluster);
  const rounds = options.quick ? 3 : 7;
  const fullTimes: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    computeAll(cluster);
    fullTimes.push(performance.now() - started);
  }
  const full = median(fullTimes);
  progress(`policy compute: full ${full.toFixed(1)} ms (median of ${rounds})`);

  // The worst case: every pod a local endpoint.
  const allLocal = { ...cluster, pods: cluster.pods.map((p) => ({ ...p, nodeName: cluster.nodeName })) };
  const allLocalTimes: number[] = [];
  let allLocalSize = { endpoints: 0, rules: 0 };
  for (let i = 0; i < (options.quick ? 1 : 3); i++) {
    const started = performance.now();
    const { endpoints, rules } = computeAll(allLocal);
    allLocalTimes.push(performance.now() - started);
    allLocalSize = { endpoints, rules };
  }
  const fullAllLocal = median(allLocalTimes);
  progress(`policy compute: full with every pod local ${fullAllLocal.toFixed(1)} ms`);

  const sizes = { endpoints: held.endpoints, rules: held.rules, ipcacheEntries: held.ipcache, identities: held.engine.identities().length };

  // Label changes on the held engine.
  const random = mulberry32(2101);
  const current = [...cluster.pods];
  const changeTimes: number[] = [];
  let endpointsChanged = 0;
  for (let i = 0; i < options.changes; i++) {
    const index = Math.floor(random() * current.length);
    const next = relabelled(current[index] as PodInfo);
    current[index] = next;
    const started = performance.now();
    held.engine.upsertPod(next);
    const delta = held.engine.flush();
    changeTimes.push(performance.now() - started);
    endpointsChanged += delta.endpointsSet.length;
  }
  changeTimes.sort((a, b) => a - b);
  const p50 = percentile(changeTimes, 50);
  const p99 = percentile(changeTimes, 99);
  progress(`policy compute: label change p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (${options.changes} changes)`);

  // The peer: the full computation after each change.
  const naiveRounds = options.quick ? 2 : 5;
  const naiveTimes: number[] = [];
  for (let i = 0; i < naiveRounds; i++) {
    const index = Math.floor(random() * current.length);
    current[index] = relabelled(current[index] as PodInfo);
    const started = performance.now();
    computeAll(cluster, current);
    naiveTimes.push(performance.now() - started);
  }
  const naive = median(naiveTimes);

  const peer = 'full recompute after the change';
  return [
    { name: 'policy compute: full', value: full, unit: 'ms', params: { ...parameters, ...sizes, rounds, goalMs: 1000 } },
    { name: 'policy compute: full, every pod local', value: fullAllLocal, unit: 'ms', params: { ...parameters, localPods: parameters.pods, ...allLocalSize, rounds: allLocalTimes.length, goalMs: 1000 } },
    {
      name: 'policy compute: label change p50',
      value: p50,
      unit: 'ms',
      params: { ...parameters, changes: options.changes, meanEndpointsChanged: endpointsChanged / Math.max(1, options.changes) },
      peer,
      peerValue: naive,
      ratio: p50 / naive,
    },
    { name: 'policy compute: label change p99', value: p99, unit: 'ms', params: { ...parameters, changes: options.changes, goalMs: 20 }, peer, peerValue: naive, ratio: p99 / naive },
    {
      name: 'policy compute: RSS held',
      value: (after.rss - before.rss) / MiB,
      unit: 'MiB',
      params: { ...parameters, heapMiB: Math.round(((after.heapUsed - before.heapUsed) / MiB) * 10) / 10, collected: String(collect !== undefined) },
    },
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { pods: { type: 'string', default: '5000' }, policies: { type: 'string', default: '1000' }, changes: { type: 'string', default: '200' }, quick: { type: 'boolean', default: false } },
  });
  const figures = await benchPolicyCompute({
    pods: Number(values.pods),
    policies: Number(values.policies),
    changes: Number(values.changes),
    quick: values.quick ?? false,
    progress: (msg) => process.stderr.write(`[bench policy] ${msg}\n`),
  });
  for (const f of figures) {
    const peer = f.peer === undefined ? '' : `  (${f.peer}: ${f.peerValue?.toFixed(2)} ${f.unit}, ratio ${f.ratio?.toFixed(4)})`;
    process.stdout.write(`${f.name.padEnd(36)} ${f.value.toFixed(2).padStart(10)} ${f.unit}${peer}\n`);
  }
  process.stdout.write(`${JSON.stringify(figures[0]?.params)}\n`);
}
