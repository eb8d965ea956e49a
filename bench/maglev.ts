/**
 * Maglev table benchmark: TypeScript population beside a plain C peer (bench/maglev/peer.c, gcc -O2)
 * on identical inputs, the full TypeScript build (hash + sort + populate), and the table's quality:
 * entries moved when one backend goes, and the spread of shares among equal-weight backends.
 *
 * Scope of the compared figure ("populate"): both sides get the same sorted offsets, skips, weights
 * and ids, and per build allocate the u16 table, the per-backend positions and weight counters, then
 * run Cilium's weighted turns. Both sides' tables are compared entry by entry; any difference fails
 * the run.
 *
 * "distinct backend sets": the same input built again and again lets the CPU's branch predictor learn
 * the probe loop's exits and flatters every figure (~230 vs ~380 µs at M = 16381, N = 10), so these
 * build a different set each time — populateMaglevTable beside the probing loop it replaced
 * (populateMaglevTableByProbing) and beside itself without the probe tail, on the same sets
 * (timeDistinct() says how). Every table is checked equal.
 *
 * "pool": MaglevTableCache.warm() of 1,000 distinct tables on the worker threads beside building 1,000
 * other distinct tables one after the other on the main thread, in the same run; the pool is started
 * (and its threads' JIT warm) before, as in an agent that has synced once. Also printed: how busy the
 * main thread's event loop was during warm() (its utilization), which is what the pool is for.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Bench } from 'tinybench';
import {
  DEFAULT_MAGLEV_SEED,
  MaglevTableCache,
  buildMaglevTable,
  maglevBackendKey,
  maglevTailEmpties,
  parseMaglevSeed,
  populateMaglevTable,
  populateMaglevTableByProbing,
  prepareMaglevPopulation,
  type MaglevBackend,
  type MaglevPopulationInput,
  type MaglevTable,
  type MaglevTableRequest,
} from '../lb/maglev/index.js';
import { repoRoot, writeBenchReport, type BenchFigure } from './lib/report.js';

interface BenchCase {
  size: number;
  backends: number;
}

const CASES: readonly BenchCase[] = [
  { size: 65521, backends: 1000 },
  { size: 65521, backends: 100 },
  { size: 16381, backends: 10 },
];
const DISTINCT_CASES: readonly (BenchCase & { sets: number })[] = [
  { size: 16381, backends: 10, sets: 2000 },
  { size: 65521, backends: 100, sets: 100 },
];
const DISTINCT_ROUNDS = 4;
const DISTINCT_CHUNK = 100;
const POOL_TABLES = 1000;
const POOL_ROUNDS = 3;
const REMOVALS_PER_CASE = 5;
const PEER_TARGET_NS = 1.5e9;
const seed = parseMaglevSeed(DEFAULT_MAGLEV_SEED);

function log(message: string): void {
  process.stdout.write(`[maglev bench] ${message}\n`);
}

/** Pod-like backends in 198.18.0.0/15, port 8080/TCP, Cilium's default weight 100. */
function backendSet(count: number): MaglevBackend[] {
  return Array.from({ length: count }, (_, i) => ({
    key: maglevBackendKey({ address: `198.18.${1 + (i >> 8)}.${i & 0xff}`, port: 8080, protocol: 'TCP' }),
    weight: 100,
  }));
}

/** Set number `set` of `count` backends: no two sets share a backend key. */
function distinctBackendSet(count: number, set: number): MaglevBackend[] {
  return Array.from({ length: count }, (_, i) => ({
    key: maglevBackendKey({
      address: `10.${(set >> 8) & 0xff}.${set & 0xff}.${i & 0xff}`,
      port: 1024 + (set >> 16) * 64 + (i >> 8),
      protocol: 'TCP',
    }),
    weight: 100,
  }));
}

function caseName(c: BenchCase): string {
  return `M=${c.size} N=${c.backends}`;
}

function buildPeer(root: string, buildDir: string): string {
  const binary = join(buildDir, 'maglev-peer');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', binary, join(root, 'bench', 'maglev', 'peer.c')], {
    stdio: 'inherit',
  });
  return binary;
}

function writePeerInput(path: string, input: MaglevPopulationInput): void {
  const count = input.ids.length;
  const words = new Uint32Array(3 + 4 * count);
  words.set([input.size, count, input.idLimit]);
  words.set(input.offsets, 3);
  words.set(input.skips, 3 + count);
  words.set(input.weights, 3 + 2 * count);
  words.set(input.ids, 3 + 3 * count);
  writeFileSync(path, new Uint8Array(words.buffer));
}

function runPeer(binary: string, inputPath: string, tablePath: string, iterations: number): number {
  const out = execFileSync(binary, [inputPath, String(iterations), tablePath], { encoding: 'utf8' });
  const match = /^mean_ns ([\d.]+) /.exec(out);
  if (match === null || match[1] === undefined) throw new Error(`C peer printed ${JSON.stringify(out)}`);
  return Number(match[1]);
}

/** Little-endian u32 words as written by the peer (this host is little-endian, as the bench assumes). */
function readPeerTable(path: string): Uint32Array {
  const bytes = readFileSync(path);
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function assertSameTable(c: BenchCase, ours: MaglevTable, peers: Uint32Array): void {
  if (ours.length !== peers.length) {
    throw new Error(`${caseName(c)}: C peer table has ${peers.length} entries, TypeScript ${ours.length}`);
  }
  for (let slot = 0; slot < ours.length; slot++) {
    if (ours[slot] !== peers[slot]) {
      throw new Error(`${caseName(c)}: C peer and TypeScript tables differ at slot ${slot}: ${peers[slot]} vs ${ours[slot]}`);
    }
  }
}

function meanLatencyNs(bench: Bench, taskName: string): number {
  const result = bench.getTask(taskName)?.result;
  if (result === undefined || result.state !== 'completed') {
    throw new Error(`tinybench task ${taskName} did not complete (${result?.state ?? 'missing'})`);
  }
  return result.latency.mean * 1e6;
}

/** Fraction of slots whose backend changes when one backend is removed, averaged over a few removals. */
function disruption(backends: readonly MaglevBackend[], size: number): { changed: number; removedShare: number } {
  const before = buildMaglevTable(backends, size, seed);
  let changed = 0;
  let removedShare = 0;
  for (let k = 0; k < REMOVALS_PER_CASE; k++) {
    const removed = Math.floor((k * backends.length) / REMOVALS_PER_CASE);
    const rest = backends.filter((_, i) => i !== removed);
    const after = buildMaglevTable(rest, size, seed);
    let moved = 0;
    let owned = 0;
    for (let slot = 0; slot < size; slot++) {
      const was = before[slot] ?? 0;
      const now = after[slot] ?? 0;
      if (was === removed) owned++;
      // After removal, indexes above `removed` shift down by one.
      if ((now >= removed ? now + 1 : now) !== was) moved++;
    }
    changed += moved / size;
    removedShare += owned / size;
  }
  return { changed: changed / REMOVALS_PER_CASE, removedShare: removedShare / REMOVALS_PER_CASE };
}

function shareSpread(table: MaglevTable, backendCount: number): number {
  const counts = new Uint32Array(backendCount);
  for (const index of table) counts[index] = (counts[index] ?? 0) + 1;
  return Math.max(...counts) / Math.min(...counts);
}

function sameTables(what: string, a: MaglevTable, b: MaglevTable): void {
  if (a.length !== b.length || a.some((v, slot) => v !== b[slot])) throw new Error(`${what}: tables differ`);
}

/**
 * CPU ns per table of each variant: the sets are cut in chunks of DISTINCT_CHUNK; every chunk is built
 * by every variant DISTINCT_ROUNDS times (variants interleaved, their order rotated), the fastest of a
 * chunk's rounds is kept, and the chunks' figures are averaged. Process CPU time, not wall time: this
 * machine is shared, and being descheduled is not the code's cost (no other thread runs meanwhile).
 */
function timeDistinct(inputs: readonly MaglevPopulationInput[], variants: Record<string, (input: MaglevPopulationInput) => MaglevTable>): Map<string, number> {
  const entries = Object.entries(variants);
  const total = new Map<string, number>();
  let chunks = 0;
  for (let first = 0; first < inputs.length; first += DISTINCT_CHUNK) {
    const chunk = inputs.slice(first, first + DISTINCT_CHUNK);
    const best = new Map<string, number>();
    for (let round = 0; round < DISTINCT_ROUNDS; round++) {
      for (let k = 0; k < entries.length; k++) {
        const [name, populate] = entries[(k + round + chunks) % entries.length] ?? entries[0] ?? ['', populateMaglevTable];
        const cpu = process.cpuUsage();
        for (const input of chunk) populate(input);
        const used = process.cpuUsage(cpu);
        best.set(name, Math.min(best.get(name) ?? Infinity, ((used.user + used.system) * 1000) / chunk.length));
      }
    }
    for (const [name, ns] of best) total.set(name, (total.get(name) ?? 0) + ns);
    chunks++;
  }
  return new Map([...total].map(([name, ns]) => [name, ns / chunks]));
}

function distinctFigures(): BenchFigure[] {
  const figures: BenchFigure[] = [];
  for (const c of DISTINCT_CASES) {
    log(`distinct backend sets ${caseName(c)}: preparing ${c.sets} sets`);
    const inputs = Array.from({ length: c.sets }, (_, set) => prepareMaglevPopulation(distinctBackendSet(c.backends, set), c.size, seed));
    for (const [i, input] of inputs.entries()) {
      sameTables(`${caseName(c)} set ${i}`, populateMaglevTable(input), populateMaglevTableByProbing(input));
    }
    log(`distinct backend sets ${caseName(c)}: ${DISTINCT_ROUNDS} interleaved rounds (tables checked equal)`);
    const best = timeDistinct(inputs, {
      now: (input) => populateMaglevTable(input),
      probing: populateMaglevTableByProbing,
      noTail: (input) => populateMaglevTable(input, 0),
    });
    const now = best.get('now') ?? NaN;
    const probing = best.get('probing') ?? NaN;
    const noTail = best.get('noTail') ?? NaN;
    const params = { M: c.size, N: c.backends, sets: c.sets, weights: 'all 100', rounds: DISTINCT_ROUNDS, time: 'process CPU', tailEmpties: maglevTailEmpties(c.size, c.backends), load1m: Number(loadavg()[0]?.toFixed(2) ?? NaN) };
    figures.push({
      name: `populate ${caseName(c)}, distinct backend sets`,
      value: Math.round(now),
      unit: 'ns/table',
      peer: 'probing loop (before)',
      peerValue: Math.round(probing),
      ratio: now / probing,
      params,
    });
    figures.push({
      name: `populate ${caseName(c)}, distinct sets, probe tail vs none`,
      value: Math.round(now),
      unit: 'ns/table',
      peer: 'same, tail off',
      peerValue: Math.round(noTail),
      ratio: now / noTail,
      params,
    });
  }
  return figures;
}

/**
 * Wall time of `work`, the process's CPU time meanwhile (all threads: on a machine other processes
 * load, the pool's wall time can only gain what free cores allow), and the main thread's event-loop
 * utilization.
 */
async function timed(work: () => Promise<void> | void): Promise<{ ms: number; cpuMs: number; utilization: number }> {
  const loop = performance.eventLoopUtilization();
  const cpu = process.cpuUsage();
  const start = performance.now();
  await work();
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000, utilization: performance.eventLoopUtilization(loop).utilization };
}

async function poolFigures(): Promise<BenchFigure[]> {
  const c = { size: 16381, backends: 10 };
  const requests = (first: number): MaglevTableRequest[] =>
    Array.from({ length: POOL_TABLES }, (_, i) => ({ backends: distinctBackendSet(c.backends, first + i), size: c.size, seed }));
  const cache = new MaglevTableCache({ maxEntries: 1 });
  try {
    const startup = await timed(() => cache.warm(requests(100_000).slice(0, 64)));
    cache.clear();
    log(`pool: ${availableParallelism()} threads started and warm in ${startup.ms.toFixed(0)} ms; ${POOL_ROUNDS} rounds of ${POOL_TABLES} tables`);
    let sequential = Infinity;
    let sequentialCpu = Infinity;
    let pool = Infinity;
    let poolCpu = Infinity;
    let utilization = 1;
    for (let round = 0; round < POOL_ROUNDS; round++) {
      const forMain = requests(2 * round * POOL_TABLES);
      const forPool = requests((2 * round + 1) * POOL_TABLES);
      const main = await timed(() => {
        for (const r of forMain) buildMaglevTable(r.backends, r.size, r.seed);
      });
      sequential = Math.min(sequential, main.ms);
      sequentialCpu = Math.min(sequentialCpu, main.cpuMs);
      const warm = await timed(() => cache.warm(forPool));
      poolCpu = Math.min(poolCpu, warm.cpuMs);
      if (warm.ms < pool) {
        pool = warm.ms;
        utilization = warm.utilization;
      }
      // What warm() pinned is what the main thread would have built.
      for (const r of forPool.filter((_, i) => i % 97 === 0)) {
        sameTables('pool', cache.table(r.backends, r.size, r.seed), buildMaglevTable(r.backends, r.size, r.seed));
      }
      if (cache.builds !== 0) throw new Error(`pool: cache.table() built ${cache.builds} tables after warm()`);
      cache.clear();
    }
    return [
      {
        name: `warm() ${POOL_TABLES} tables ${caseName(c)} on the pool`,
        value: Math.round(pool),
        unit: 'ms',
        peer: 'sequential, main thread',
        peerValue: Math.round(sequential),
        ratio: pool / sequential,
        params: {
          M: c.size,
          N: c.backends,
          tables: POOL_TABLES,
          threads: availableParallelism(),
          rounds: POOL_ROUNDS,
          mainThreadBusy: Number(utilization.toFixed(3)),
          sequentialCpuMs: Math.round(sequentialCpu),
          poolCpuMs: Math.round(poolCpu),
          startupMs: Math.round(startup.ms),
          load1m: Number(loadavg()[0]?.toFixed(2) ?? NaN),
        },
      },
    ];
  } finally {
    await cache.close();
  }
}

async function main(): Promise<void> {
  const root = repoRoot();
  const buildDir = join(root, 'build', 'bench');
  mkdirSync(buildDir, { recursive: true });
  log('building the C peer with gcc -O2');
  const peer = buildPeer(root, buildDir);

  const figures: BenchFigure[] = [];
  const prepared = CASES.map((c) => {
    const backends = backendSet(c.backends);
    return { c, backends, input: prepareMaglevPopulation(backends, c.size, seed) };
  });

  const peerNs = new Map<BenchCase, number>();
  for (const { c, input } of prepared) {
    const inputPath = join(buildDir, `maglev-${c.size}-${c.backends}.in`);
    const tablePath = join(buildDir, `maglev-${c.size}-${c.backends}.table`);
    writePeerInput(inputPath, input);
    const estimate = runPeer(peer, inputPath, tablePath, 3);
    const iterations = Math.max(10, Math.ceil(PEER_TARGET_NS / estimate));
    log(`C peer ${caseName(c)}: ${iterations} builds`);
    peerNs.set(c, runPeer(peer, inputPath, tablePath, iterations));
    assertSameTable(c, populateMaglevTable(input), readPeerTable(tablePath));
    log(`C peer ${caseName(c)}: table identical to TypeScript's (${c.size} entries)`);
  }

  const bench = new Bench({ name: 'maglev', time: 1500, warmupTime: 300 });
  for (const { c, backends, input } of prepared) {
    bench.add(`populate ${caseName(c)}`, () => void populateMaglevTable(input), { async: false });
    bench.add(`build ${caseName(c)}`, () => void buildMaglevTable(backends, c.size, seed), { async: false });
  }
  bench.addEventListener('cycle', (event) => {
    const task = event.task;
    if (task !== undefined) log(`tinybench: ${task.name} done`);
  });
  log('tinybench: measuring TypeScript (1.5 s per task)');
  await bench.run();

  for (const { c } of prepared) {
    const ts = meanLatencyNs(bench, `populate ${caseName(c)}`);
    const cNs = peerNs.get(c) ?? NaN;
    figures.push({
      name: `populate ${caseName(c)}`,
      value: Math.round(ts),
      unit: 'ns/build',
      peer: 'C gcc -O2',
      peerValue: Math.round(cNs),
      ratio: ts / cNs,
      params: { M: c.size, N: c.backends, weights: 'all 100', scope: 'populate from given offsets/skips' },
    });
  }
  for (const { c } of prepared) {
    figures.push({
      name: `build ${caseName(c)} (hash + sort + populate)`,
      value: Math.round(meanLatencyNs(bench, `build ${caseName(c)}`)),
      unit: 'ns/build',
      params: { M: c.size, N: c.backends, weights: 'all 100' },
    });
  }
  figures.push(...distinctFigures());
  figures.push(...(await poolFigures()));
  log('measuring disruption and share spread');
  for (const { c, backends } of prepared) {
    const { changed, removedShare } = disruption(backends, c.size);
    const theory = 1 / c.backends;
    figures.push({
      name: `entries changed removing 1 of ${c.backends} (M=${c.size})`,
      value: changed,
      unit: 'of table',
      peer: 'theory 1/N',
      peerValue: theory,
      ratio: changed / theory,
      params: {
        M: c.size,
        N: c.backends,
        removals: REMOVALS_PER_CASE,
        removedShare: Number(removedShare.toFixed(6)),
        excess: Number((changed - removedShare).toFixed(6)),
      },
    });
  }
  for (const { c, backends } of prepared) {
    figures.push({
      name: `max/min share, equal weights ${caseName(c)}`,
      value: shareSpread(buildMaglevTable(backends, c.size, seed), c.backends),
      unit: '×',
      peer: 'ideal',
      peerValue: 1,
      params: { M: c.size, N: c.backends, 'M/N': Math.round(c.size / c.backends) },
    });
  }
  writeBenchReport('maglev', figures);
}

main().catch((err: unknown) => {
  process.stderr.write(`[maglev bench] FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
