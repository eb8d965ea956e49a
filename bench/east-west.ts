/**
 * Bench suite "east-west" (issue 20): what xlb costs traffic that stays inside the cluster — pods and
 * node processes calling ClusterIP services — beside what the same costs without xlb or through
 * kube-proxy's iptables rules, measured in the same run.
 *
 *   node dist/bench/east-west.js [--quick] [--out DIR]
 *
 * 1. connect() through socket-LB to a ClusterIP, beside connect() straight to its backends
 *    (bench/east-west/socket.ts; goal: ≤ 1 µs added per connect).
 * 2. tc_pod ns/packet under BPF_PROG_TEST_RUN — new flow, established, reply, not for a service —
 *    beside a pass-through tc program (bench/east-west/tc.ts).
 * 3. Request/response pod → ClusterIP: a 1-byte TCP ping-pong over one connection (round trips/s) and
 *    connect + request + close (connections/s), through xlb's tc_pod and through kube-proxy's
 *    iptables rules in the same topology, and from a node process through socket-LB and through
 *    iptables' OUTPUT chain; each also per CPU-second of client and servers, the cost whatever else
 *    the machine ran (bench/east-west/rr.ts; goal: xlb ≥ 1.3x iptables for short connections).
 *
 * --quick (under a minute) runs fewer, shorter rounds of each. Results: bench/results/east-west.{json,md,svg}
 * (--quick: a temp dir, so the committed full run stays; --out DIR overrides). Each part removes what
 * it made — namespaces, cgroups, bpffs, processes — in `finally`; Ctrl-C stops the running part and
 * lets it do so (the tc part's kernel loops are synchronous: it is noticed when they end, seconds later).
 */
import { mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { measureRoundTrips } from './east-west/rr.js';
import { measureSocketConnect } from './east-west/socket.js';
import { measureTcTranslation } from './east-west/tc.js';
import { writeBenchReport, type BenchFigure } from './lib/report.js';

const log = (message: string): void => void process.stderr.write(`[bench east-west] ${message}\n`);
const load = (): string => (loadavg()[0] ?? 0).toFixed(1);

async function main(abort: AbortController): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const quick = values.quick ?? false;
  const out = values.out ?? (quick ? join(tmpdir(), 'xlb-bench-east-west-quick') : undefined);

  const interrupt = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping and cleaning up (again to quit at once)`);
    abort.abort();
  };
  // Once: a second Ctrl-C ends the process the default way.
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const checkpoint = (): void => {
    if (abort.signal.aborted) throw new Error('interrupted');
  };

  const started = performance.now();
  const loadAtStart = load();
  const figures: BenchFigure[] = [];
  const part = async (name: string, measure: () => Promise<BenchFigure[]>): Promise<void> => {
    checkpoint();
    const partStarted = performance.now();
    log(`${name}: starting (load ${load()})`);
    figures.push(...(await measure()));
    log(`${name}: done in ${((performance.now() - partStarted) / 1000).toFixed(0)} s`);
  };
  log(`${quick ? 'quick run' : 'full run'}; load ${loadAtStart}`);
  await part('socket-LB connect()', () =>
    measureSocketConnect({ rounds: quick ? 30 : 150, signal: abort.signal, log: (line) => log(`socket-LB: ${line}`) }),
  );
  await part('tc_pod under PROG_TEST_RUN', () =>
    measureTcTranslation({ repeat: quick ? 200_000 : 1_000_000, rounds: quick ? 3 : 5, log: (line) => log(`tc_pod: ${line}`) }),
  );
  await part('request/response pod → ClusterIP', () =>
    measureRoundTrips({ rounds: quick ? 4 : 20, seconds: quick ? 0.2 : 0.4, signal: abort.signal, log: (line) => log(`rr: ${line}`) }),
  );
  checkpoint();

  // This machine is shared: the 1-minute load average says how much the figures had to share it.
  const loadAtEnd = load();
  for (const f of figures) f.params.loadAvg1m = `${loadAtStart} at start, ${loadAtEnd} at end`;
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (out !== undefined) mkdirSync(out, { recursive: true });
  writeBenchReport('east-west', figures, out === undefined ? {} : { dir: out });
}

const abort = new AbortController();
try {
  await main(abort);
} catch (error) {
  // Each part has taken down what it made by now (its `finally`).
  log(abort.signal.aborted ? 'interrupted; cleaned up' : `failed: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = abort.signal.aborted ? 130 : 1;
}
