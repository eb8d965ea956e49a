/**
 * Bench suite "control-plane": how fast xlb's agent turns Kubernetes objects into datapath state,
 * beside what kube-proxy makes the kernel do for the same services, measured in the same run.
 *
 *   node dist/bench/control-plane.js [--quick] [--out DIR]
 *
 * 1. Full sync of N ClusterIP services × 10 endpoints (N = 1,000 and 10,000; --quick: 1,000): wall
 *    time from the objects to the maps written — kubernetesServices() + ServiceStore.syncKubernetes()
 *    into the real datapath of createNodeDatapath() (maps pinned on a bpffs of the run's own, nothing
 *    attached), in a child process per round (bench/control-plane/xlb-worker.ts) so the agent's RSS
 *    after the sync is its own. Peers, each in a fresh network namespace: iptables-restore of the
 *    rule set kube-proxy's iptables mode writes (the system's iptables, and iptables-legacy), and
 *    `nft -f` of kube-proxy's nftables-mode table (bench/control-plane/kube-proxy-rules.ts). A peer
 *    still running after PEER_CAP_MS is stopped: its figure is then a lower bound, and says so.
 * 2. One endpoint change → datapath written, p50 and p99 over 1,000 changes while 10,000 services are
 *    loaded (--quick: 1,000), each recomputed for its service only as the agent's change tracker
 *    does. Peers: iptables-restore of the full rule set (kube-proxy's full sync) and of a partial
 *    sync (kube-proxy ≥ 1.27: the top-level chains and the changed service's chains), into the
 *    namespace that already holds the full set.
 * 3. The same endpoint change through a real kube-apiserver 1.20 (test/support/kube.ts; skipped, with
 *    a line saying so, when `bash deploy/setup.sh --tests` has not built it): 300 services (--quick:
 *    100), 200 changes (--quick: 100), each from the EndpointSlice PUT to the store having applied
 *    it through the agent's watcher (startKubernetes) — bench/control-plane/apiserver.ts.
 *
 * Results: bench/results/control-plane.{json,md,svg} (--quick: a temp dir, so the committed full run
 * stays; --out DIR overrides). Everything the run creates — child processes, namespaces, the bpffs,
 * the apiserver — is removed in `finally`, and on Ctrl-C.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TempBpffs } from '../lb/datapath/bpffs.js';
import { apiserverAvailable, apiserverEndpointChanges, type ApiserverChanges } from './control-plane/apiserver.js';
import { IPTABLES_JUMPS, iptablesFullSync, iptablesPartialSync, kubeSepChain, nftablesFullSync, type RuleText } from './control-plane/kube-proxy-rules.js';
import { PodAddresses, benchCluster, replaceEndpoint, type BenchService } from './control-plane/objects.js';
import { BenchResources, type TimedRun } from './control-plane/processes.js';
import { CAPACITY, MAGLEV_TABLE_SIZE, type XlbWorkerResult } from './control-plane/xlb-worker.js';
import { writeBenchReport, type BenchFigure } from './lib/report.js';

const ENDPOINTS = 10;
const CHANGES = 1_000;
const ROUNDS = 3;
/** Rounds of one measurement stop once they have taken this long (at least one is made). */
const ROUND_BUDGET_MS = 30_000;
/** The same for the agent's rounds, whose first one also makes the endpoint changes. */
const XLB_ROUND_BUDGET_MS = 60_000;
/** A peer still running after this is stopped; its value is then a lower bound. */
const PEER_CAP_MS = 45_000;
/** Peer rounds for the endpoint-change figures (each a restore into the loaded namespace). */
const CHANGE_PEER_ROUNDS = 3;
/** Through a real kube-apiserver: services, endpoint changes (--quick: the first of each). */
const APISERVER = { services: [300, 100], changes: [200, 100] } as const;
const GOALS = { fullSyncMs: 2_000, fullSyncAt: 10_000, speedup: 20, changeP99Ms: 20 };

const log = (message: string): void => void process.stderr.write(`[bench control-plane] ${message}\n`);
const here = dirname(fileURLToPath(import.meta.url));

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;
const round2 = (n: number): number => Math.round(n * 100) / 100;
const mib = (bytes: number): number => round1(bytes / 2 ** 20);
const load = (): number => round1(loadavg()[0] ?? 0);
const count = (n: number): string => n.toLocaleString('en-US');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 1_000 ? 3 : 2)} s`;

/** "goal ≤ 2000 ms: met" or "… missed by 5.9x". */
function goalText(goal: string, met: boolean, missedBy: number): string {
  return `${goal}: ${met ? 'met' : `missed by ${formatFactor(missedBy)}`}`;
}

function formatFactor(x: number): string {
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(1)}x`;
}

/** Runs `measure` up to `rounds` times, stopping early once the rounds took `budgetMs`. */
async function rounds<T>(max: number, budgetMs: number, measure: (round: number) => Promise<T>, stop: (result: T) => boolean = () => false): Promise<T[]> {
  const started = performance.now();
  const results: T[] = [];
  for (let round = 0; round < max; round++) {
    const result = await measure(round);
    results.push(result);
    if (stop(result) || performance.now() - started > budgetMs) break;
  }
  return results;
}

interface Peer {
  id: string;
  /** What the figure names it. */
  label: string;
  command: string[];
  /** Restored once per namespace before the timed run (iptables: the jumps from the built-in chains). */
  setup?: { command: string[]; input: string };
  text: (cluster: readonly BenchService[]) => RuleText;
  /** Throws unless the namespace holds what `text` wrote. */
  verify: (resources: BenchResources, ns: string, expected: RuleText, services: number) => Promise<void>;
  /** iptables peers can time endpoint changes afterwards. */
  iptables: boolean;
}

async function verifyIptables(resources: BenchResources, ns: string, save: string, expected: RuleText): Promise<void> {
  const { stdout } = await resources.run('ip', ['netns', 'exec', ns, save, '-t', 'nat']);
  const rules = stdout.split('\n').filter((line) => line.startsWith('-A ')).length;
  const jumps = (IPTABLES_JUMPS.split('*nat')[1] ?? '').split('\n').filter((line) => line.startsWith('-A ')).length;
  if (rules !== expected.rules + jumps) throw new Error(`${save} in ${ns}: ${rules} nat rules, expected ${expected.rules + jumps}`);
}

function iptablesPeer(id: string, label: string, restore: string, save: string): Peer {
  return {
    id,
    label,
    // As kube-proxy calls it (utiliptables RestoreAll with NoFlushTables, RestoreCounters).
    command: [restore, '--noflush', '--counters'],
    setup: { command: [restore, '--noflush'], input: IPTABLES_JUMPS },
    text: (cluster) => iptablesFullSync(cluster),
    verify: (resources, ns, expected) => verifyIptables(resources, ns, save, expected),
    iptables: true,
  };
}

function peers(versions: { iptables: string; nft: string }): Peer[] {
  return [
    iptablesPeer('iptables', `iptables-restore (${versions.iptables})`, 'iptables-restore', 'iptables-save'),
    iptablesPeer('iptables-legacy', 'iptables-legacy-restore', 'iptables-legacy-restore', 'iptables-legacy-save'),
    {
      id: 'nft',
      label: `nft -f, kube-proxy nftables mode (${versions.nft})`,
      command: ['nft', '-f', '-'],
      text: (cluster) => nftablesFullSync(cluster),
      verify: async (resources, ns, _expected, services) => {
        const { stdout } = await resources.run('ip', ['netns', 'exec', ns, 'nft', 'list', 'map', 'ip', 'kube-proxy', 'service-ips']);
        const elements = stdout.split(': goto service-').length - 1;
        if (elements !== services) throw new Error(`nft in ${ns}: ${elements} service-ips elements, expected ${services}`);
      },
      iptables: false,
    },
  ];
}

interface PeerResult {
  peer: Peer;
  runs: TimedRun[];
  /** The namespace of the last completed round, kept for the endpoint-change figures. */
  kept?: { name: string; drop: () => void };
  rules: RuleText;
}

/** Full syncs of the peer, a fresh namespace each round; the last completed one kept if asked. */
async function peerFullSync(resources: BenchResources, peer: Peer, cluster: readonly BenchService[], keep: boolean): Promise<PeerResult> {
  const rules = peer.text(cluster);
  let kept: PeerResult['kept'];
  const runs = await rounds(ROUNDS, ROUND_BUDGET_MS, async (round) => {
    const ns = resources.namespace('cpb', `${peer.id}-${cluster.length}-r${round}`);
    let keepThis = false;
    try {
      if (peer.setup) await resources.run('ip', ['netns', 'exec', ns.name, ...peer.setup.command], { input: peer.setup.input });
      log(`${peer.label}: full sync of ${count(cluster.length)} services (${count(rules.chains)} chains, ${count(rules.rules)} rules, ${(rules.text.length / 2 ** 20).toFixed(1)} MiB of text), round ${round + 1}, load ${load()}`);
      const run = await resources.run('ip', ['netns', 'exec', ns.name, ...peer.command], { input: rules.text, capMs: PEER_CAP_MS, cpu: true });
      log(run.completed ? `  ${seconds(run.ms)} (CPU ${seconds(run.cpuMs ?? NaN)})` : `  stopped after ${PEER_CAP_MS / 1000} s (not finished)`);
      if (run.completed && round === 0) await peer.verify(resources, ns.name, rules, cluster.length);
      if (run.completed && keep) {
        kept?.drop();
        kept = ns;
        keepThis = true;
      }
      return run;
    } finally {
      if (!keepThis) ns.drop();
    }
  }, (run) => !run.completed);
  return { peer, runs, kept, rules };
}

interface ChangePeerResult {
  full: number[];
  partial: number[];
  fullCpu: number[];
  partialCpu: number[];
}

/**
 * Endpoint changes through iptables, into the namespace holding the full rule set: restores of the
 * full rule set (kube-proxy's full sync), then of partial syncs (kube-proxy ≥ 1.27).
 */
async function peerEndpointChanges(resources: BenchResources, result: PeerResult, cluster: BenchService[], pods: PodAddresses): Promise<ChangePeerResult> {
  const ns = result.kept?.name;
  if (ns === undefined) throw new Error(`${result.peer.label}: no namespace holds the full rule set`);
  const out: ChangePeerResult = { full: [], partial: [], fullCpu: [], partialCpu: [] };
  let k = 0;
  for (const kind of ['full', 'partial'] as const) {
    for (let round = 0; round < CHANGE_PEER_ROUNDS; round++) {
      const { service, removed } = replaceEndpoint(cluster, k++, pods);
      const stale = [kubeSepChain(service, removed)];
      const rules = kind === 'full' ? iptablesFullSync(cluster, stale) : iptablesPartialSync(cluster, [service], stale);
      log(`${result.peer.label}: one endpoint changed, ${kind} sync (${count(rules.chains)} chains, ${count(rules.rules)} rules), round ${round + 1}, load ${load()}`);
      const run = await resources.run('ip', ['netns', 'exec', ns, ...result.peer.command], { input: rules.text, capMs: PEER_CAP_MS, cpu: true });
      if (!run.completed) throw new Error(`${result.peer.label}: a ${kind} sync took over ${PEER_CAP_MS / 1000} s`);
      log(`  ${seconds(run.ms)} (CPU ${seconds(run.cpuMs ?? NaN)})`);
      out[kind].push(run.ms);
      out[kind === 'full' ? 'fullCpu' : 'partialCpu'].push(run.cpuMs ?? NaN);
    }
  }
  return out;
}

/** One agent in a child process: a full sync of `services`, then `changes` endpoint changes. */
async function xlbRun(resources: BenchResources, bpffs: TempBpffs, runDir: string, services: number, changes: number, round: number): Promise<XlbWorkerResult> {
  const pinDir = join(bpffs.dir, `n${services}-r${round}`);
  const stateFile = join(runDir, `state-n${services}-r${round}.json`);
  log(`xlb: full sync of ${count(services)} services${changes > 0 ? `, then ${count(changes)} endpoint changes` : ''}, round ${round + 1}, load ${load()}`);
  try {
    const args = [join(here, 'control-plane', 'xlb-worker.js'), '--pin-dir', pinDir, '--state-file', stateFile, '--services', String(services), '--endpoints', String(ENDPOINTS), '--changes', String(changes)];
    const { stdout } = await resources.run(process.execPath, args, { showStderr: true });
    return JSON.parse(stdout.trim().split('\n').pop() ?? '') as XlbWorkerResult;
  } finally {
    // The pins hold the maps (700 MB of Maglev tables at 10,000 services) until they are removed.
    rmSync(pinDir, { recursive: true, force: true });
  }
}

async function versions(resources: BenchResources): Promise<{ iptables: string; nft: string }> {
  const iptables = (await resources.run('iptables', ['--version'])).stdout.trim().replace(/^iptables /, '');
  const nft = (await resources.run('nft', ['--version'])).stdout.trim().replace(/ \(.*\)$/, '');
  return { iptables, nft };
}

function fullSyncFigures(size: number, xlb: XlbWorkerResult[], results: PeerResult[]): BenchFigure[] {
  const value = round1(median(xlb.map((r) => r.fullSyncMs)));
  const base = {
    services: size,
    endpointsPerService: ENDPOINTS,
    method: `median of ${xlb.length} rounds, a fresh agent process each (kubernetesServices + syncKubernetes into createNodeDatapath maps)`,
    cpuMs: round1(median(xlb.map((r) => r.fullSyncCpuMs))),
    modelMs: round1(median(xlb.map((r) => r.modelMs))),
    storeAndDatapathMs: round1(median(xlb.map((r) => r.storeSyncMs))),
    maglevTableSize: MAGLEV_TABLE_SIZE,
    capacity: `services ${CAPACITY.services}, backends ${CAPACITY.backends}`,
  };
  const figures: BenchFigure[] = [];
  if (size === GOALS.fullSyncAt) {
    const met = value <= GOALS.fullSyncMs;
    figures.push({
      name: `full sync, ${count(size)} services × ${ENDPOINTS} endpoints (objects → maps written)`,
      value,
      unit: 'ms',
      params: { ...base, goal: goalText(`≤ ${GOALS.fullSyncMs} ms`, met, value / GOALS.fullSyncMs) },
    });
  }
  for (const { peer, runs, rules } of results) {
    const done = runs.filter((r) => r.completed);
    const capped = done.length === 0;
    const peerValue = round1(capped ? PEER_CAP_MS : median(done.map((r) => r.ms)));
    const speedup = peerValue / value;
    const params: Record<string, string | number> = {
      ...base,
      peerMethod: capped
        ? `stopped after ${PEER_CAP_MS / 1000} s without finishing: peer value and speedup are lower bounds`
        : `median of ${done.length} runs, a fresh network namespace each (ip netns exec … ${peer.command.join(' ')} < rules)`,
      peerRules: `${rules.chains} chains, ${rules.rules} rules`,
      speedup: `${capped ? '≥ ' : ''}${formatFactor(speedup)}`,
    };
    if (!capped) {
      // Wall times share two cores with whatever else runs here; CPU times do not wait for them.
      const peerCpu = median(done.map((r) => r.cpuMs ?? NaN));
      params.peerCpuMs = round1(peerCpu);
      params.speedupByCpu = formatFactor(peerCpu / base.cpuMs);
    }
    if (peer.iptables && size === GOALS.fullSyncAt) {
      const met = speedup >= GOALS.speedup;
      params.goal = capped && !met ? `≥ ${GOALS.speedup}x faster: not decided (peer stopped)` : goalText(`≥ ${GOALS.speedup}x faster`, met, GOALS.speedup / speedup);
    }
    figures.push({
      name: `full sync, ${count(size)} services × ${ENDPOINTS} endpoints, vs ${peer.id}`,
      value,
      unit: 'ms',
      peer: capped ? `${peer.label}, stopped at ${PEER_CAP_MS / 1000} s` : peer.label,
      peerValue,
      ratio: value / peerValue,
      params,
    });
  }
  const rss = median(xlb.map((r) => r.rssAfterBytes));
  figures.push({
    name: `agent RSS after the full sync of ${count(size)} services`,
    value: mib(rss),
    unit: 'MiB',
    params: {
      services: size,
      method: `process.memoryUsage().rss of the agent process, median of ${xlb.length} rounds`,
      rssBeforeSyncMiB: mib(median(xlb.map((r) => r.rssBeforeBytes))),
      heapUsedMiB: mib(median(xlb.map((r) => r.heapUsedAfterBytes))),
    },
  });
  return figures;
}

function changeFigures(size: number, xlb: XlbWorkerResult, peer: Peer | undefined, peerRuns: ChangePeerResult | undefined): BenchFigure[] {
  const p50 = percentile(xlb.changeMs, 50);
  const p99 = percentile(xlb.changeMs, 99);
  const base = {
    services: size,
    changes: xlb.changeMs.length,
    method: 'an endpoint replaced in one EndpointSlice: parseEndpointSlice + servicesOf for that service + syncKubernetes, timed to the datapath written',
    recomputeP50Ms: round2(percentile(xlb.recomputeMs, 50)),
    cpuP50Ms: round1(percentile(xlb.cpuMs, 50)),
    cpuP99Ms: round1(percentile(xlb.cpuMs, 99)),
    maxMs: round1(Math.max(...xlb.changeMs)),
    changesWithGc: xlb.gcMs.filter((ms) => ms > 0).length,
  };
  const full = peerRuns && median(peerRuns.full);
  const partial = peerRuns && median(peerRuns.partial);
  const peerCpu = (values: number[] | undefined): Record<string, number> => (values ? { peerCpuMs: round1(median(values)) } : {});
  const peerOf = (ms: number | undefined, what: string): Partial<BenchFigure> =>
    peer && ms !== undefined ? { peer: `${peer.label}, ${what}`, peerValue: round1(ms) } : {};
  const met = p99 <= GOALS.changeP99Ms;
  const figures: BenchFigure[] = [
    {
      name: `endpoint change → datapath written, p50 (${count(size)} services loaded)`,
      value: round2(p50),
      unit: 'ms',
      ...peerOf(full, `full rule set (kube-proxy full sync), median of ${peerRuns?.full.length ?? 0}`),
      ...(full !== undefined ? { ratio: p50 / full } : {}),
      params: { ...base, ...peerCpu(peerRuns?.fullCpu) },
    },
    {
      name: `endpoint change → datapath written, p99 (${count(size)} services loaded)`,
      value: round1(p99),
      unit: 'ms',
      ...peerOf(full, `full rule set (kube-proxy full sync), median of ${peerRuns?.full.length ?? 0}`),
      ...(full !== undefined ? { ratio: p99 / full } : {}),
      params: { ...base, ...peerCpu(peerRuns?.fullCpu), goal: goalText(`p99 ≤ ${GOALS.changeP99Ms} ms`, met, p99 / GOALS.changeP99Ms) },
    },
  ];
  if (partial !== undefined) {
    figures.push({
      name: `endpoint change → datapath written, p99 (${count(size)} services loaded), vs partial sync`,
      value: round1(p99),
      unit: 'ms',
      ...peerOf(partial, `partial sync (kube-proxy ≥ 1.27: top-level chains + the changed service's), median of ${peerRuns?.partial.length ?? 0}`),
      ratio: p99 / partial,
      params: { ...base, ...peerCpu(peerRuns?.partialCpu) },
    });
  }
  return figures;
}

function apiserverFigures(result: ApiserverChanges): BenchFigure[] {
  const params = {
    services: result.services,
    endpointsPerService: result.endpointsPerService,
    changes: result.changeMs.length,
    method: 'PUT of one EndpointSlice (an endpoint replaced) → watch event → the agent\'s change tracker → syncKubernetes applied it; one change at a time',
    apiserver: 'kube-apiserver 1.20 + etcd on 127.0.0.1, EndpointSlice discovery.k8s.io/v1beta1',
    putAnsweredP50Ms: round1(percentile(result.putMs, 50)),
    putAnsweredP99Ms: round1(percentile(result.putMs, 99)),
    initialSyncMs: round1(result.initialSyncMs),
  };
  return [50, 99].map((p) => ({
    name: `endpoint change through kube-apiserver → datapath written, p${p} (${count(result.services)} services)`,
    value: round1(percentile(result.changeMs, p)),
    unit: 'ms',
    params,
  }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const quick = values.quick ?? false;
  const sizes = quick ? [1_000] : [1_000, 10_000];
  const changeSize = sizes[sizes.length - 1] ?? 1_000;
  const out = values.out ?? (quick ? join(tmpdir(), 'xlb-bench-control-plane-quick') : undefined);

  const resources = new BenchResources();
  let interrupted = false;
  const interrupt = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping and cleaning up`);
    resources.cleanup(log);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  const started = performance.now();
  const loadAtStart = load();
  const figures: BenchFigure[] = [];
  try {
    const runDir = mkdtempSync(join(tmpdir(), 'xlb-bench-cp-'));
    resources.onCleanup(`removing ${runDir}`, () => rmSync(runDir, { recursive: true, force: true }));
    const bpffs = TempBpffs.mount('cpbench');
    resources.onCleanup(`unmounting the bpffs on ${bpffs.dir}`, () => bpffs.remove());
    const peerList = peers(await versions(resources));
    log(`${quick ? 'quick run' : 'full run'}: ${sizes.map(count).join(' and ')} services × ${ENDPOINTS} endpoints; ${count(CHANGES)} endpoint changes at ${count(changeSize)}; load ${load()}`);

    for (const size of sizes) {
      const changes = size === changeSize ? CHANGES : 0;
      // The endpoint changes run in the first round, after its full sync was timed.
      const xlb = await rounds(ROUNDS, XLB_ROUND_BUDGET_MS, (round) => xlbRun(resources, bpffs, runDir, size, round === 0 ? changes : 0, round));
      const cluster = benchCluster(size, ENDPOINTS, new PodAddresses());
      const results: PeerResult[] = [];
      for (const peer of peerList) results.push(await peerFullSync(resources, peer, cluster, size === changeSize && peer.iptables));
      figures.push(...fullSyncFigures(size, xlb, results));

      const changed = xlb[0];
      if (changes > 0 && changed) {
        // kube-proxy's own iptables if it held the full set, else iptables-legacy.
        const peer = results.find((r) => r.peer.iptables && r.kept);
        let peerRuns: ChangePeerResult | undefined;
        if (peer) {
          const pods = new PodAddresses();
          const peerCluster = benchCluster(size, ENDPOINTS, pods);
          peerRuns = await peerEndpointChanges(resources, peer, peerCluster, pods);
        } else {
          log('no iptables peer finished the full sync: the endpoint-change figures have no peer');
        }
        for (const r of results) r.kept?.drop();
        figures.push(...changeFigures(size, changed, peer?.peer, peerRuns));
      }
    }

    const available = apiserverAvailable();
    if (available.ok) {
      const at = quick ? 1 : 0;
      const result = await apiserverEndpointChanges({
        services: APISERVER.services[at],
        endpointsPerService: ENDPOINTS,
        changes: APISERVER.changes[at],
        pinDir: join(bpffs.dir, 'apiserver'),
        stateFile: join(runDir, 'state-apiserver.json'),
        log,
      });
      figures.push(...apiserverFigures(result));
    } else {
      log(`endpoint changes through kube-apiserver: skipped, ${available.why}`);
    }
  } finally {
    resources.cleanup(log);
  }
  // This machine is shared: the 1-minute load average says how much the figures had to share it.
  const loadAtEnd = load();
  for (const f of figures) f.params.loadAvg1m = `${loadAtStart} at start, ${loadAtEnd} at end`;
  log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (out !== undefined) mkdirSync(out, { recursive: true });
  writeBenchReport('control-plane', figures, out === undefined ? {} : { dir: out });
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
