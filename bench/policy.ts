/**
 * Bench suite "policy" (issue 21): what identity policy and the EDT bandwidth manager cost, measured
 * beside peers of the same run.
 *
 *   node dist/bench/policy.js [--quick] [--out DIR]
 *
 * 1. tc_pod with policy under BPF_PROG_TEST_RUN — established through the policy conntrack (both
 *    directions), a denied and an allowed new connection, a new service flow — beside tc_pod on the
 *    same packet without an endpoint and a pass-through tc program (bench/policy/datapath.ts).
 * 2. tc_edt_egress — a pod without a rate, under its rate, over it (departure time set) — beside the
 *    pass-through program (bench/policy/edt.ts).
 * 3. The two together on an established packet: policy's share + EDT's, over pass-through (goal ≤ 40 ns).
 * 4. The policy computation: 1,000 NetworkPolicies × 5,000 pods in full (goal ≤ 1 s), one pod's label
 *    change → its delta, p50/p99 beside a full recompute per change; the memory the engine holds
 *    (bench/policy/compute.ts).
 * 5. The same computed and written into tc_pod's policy maps: the first write, and one pod's label change
 *    → maps written, p50/p99 (goal p99 ≤ 20 ms) beside computing alone (bench/policy/programming.ts).
 *
 * --quick runs fewer, shorter rounds and a tenth of the cluster. Results: bench/results/policy.{json,md,svg}
 * (--quick: a temp dir, so the committed full run stays; --out DIR overrides). Each part removes its
 * bpffs in `finally`.
 */
import { mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { writeBenchReport, type BenchFigure } from './lib/report.js';
import { benchPolicyCompute } from './policy/compute.js';
import { benchPolicyDatapath } from './policy/datapath.js';
import { benchEdtDatapath } from './policy/edt.js';
import { benchPolicyProgramming } from './policy/programming.js';

const log = (message: string): void => void process.stderr.write(`[bench policy] ${message}\n`);
const load = (): string => (loadavg()[0] ?? 0).toFixed(1);

/** Goal of the issue: policy and EDT together add at most this much to an established packet. */
const GOAL_TOGETHER_NS = 40;

/** Policy's share of an established packet plus EDT's for a pod under its rate, per family of the policy figures. */
function together(policy: readonly BenchFigure[], edt: readonly BenchFigure[]): BenchFigure[] {
  const edtUnder = edt.find((f) => f.name.includes('under its rate'));
  if (!edtUnder) return [];
  const edtNs = edtUnder.value - (edtUnder.peerValue ?? 0);
  return policy
    .filter((f) => f.name.includes('established, from the pod'))
    .map((f) => {
      const policyNs = Number(f.params.policyNs);
      return {
        name: `policy + EDT on an established packet from a pod, ${String(f.params.family)}`,
        value: policyNs + edtNs,
        unit: 'ns/packet over pass-through',
        peer: `goal ≤ ${GOAL_TOGETHER_NS} ns`,
        peerValue: GOAL_TOGETHER_NS,
        ratio: (policyNs + edtNs) / GOAL_TOGETHER_NS,
        params: { policyNs, edtNs, method: 'policy: tc_pod with an endpoint − without; EDT: tc_edt_egress under its rate − tc_pass' },
      };
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const quick = values.quick ?? false;
  const out = values.out ?? (quick ? join(tmpdir(), 'xlb-bench-policy-quick') : undefined);
  const started = performance.now();
  const loadAtStart = load();
  const figures: BenchFigure[] = [];
  const part = async (name: string, measure: () => Promise<BenchFigure[]>): Promise<BenchFigure[]> => {
    const partStarted = performance.now();
    log(`${name}: starting (load ${load()})`);
    const measured = await measure();
    figures.push(...measured);
    log(`${name}: done in ${((performance.now() - partStarted) / 1000).toFixed(0)} s`);
    return measured;
  };
  log(`${quick ? 'quick run' : 'full run'}; load ${loadAtStart}`);
  const policy = await part('tc_pod policy under PROG_TEST_RUN', () => benchPolicyDatapath({ quick, progress: (line) => log(`policy: ${line}`) }));
  const edt = await part('tc_edt_egress under PROG_TEST_RUN', () => benchEdtDatapath({ quick, progress: (line) => log(`edt: ${line}`) }));
  figures.push(...together(policy, edt));
  const cluster = { pods: quick ? 500 : 5_000, policies: quick ? 100 : 1_000, changes: quick ? 50 : 200 };
  await part('policy computation', () => benchPolicyCompute({ ...cluster, quick, progress: (line) => log(`compute: ${line}`) }));
  await part('policy computed and written to the maps', () => benchPolicyProgramming({ ...cluster, progress: (line) => log(`programming: ${line}`) }));

  // This machine is shared: the 1-minute load average says how much the figures had to share it.
  const loadAtEnd = load();
  for (const f of figures) f.params.loadAvg1m = `${loadAtStart} at start, ${loadAtEnd} at end`;
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (out !== undefined) mkdirSync(out, { recursive: true });
  writeBenchReport('policy', figures, out === undefined ? {} : { dir: out });
}

try {
  await main();
} catch (error) {
  log(`failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
}
