/**
 * `xlb bench throughput` and `npm run bench -- throughput`: the live suite. For each service count, every
 * chosen system is set up on a wire of its own (systems.ts), then each traffic case runs its rounds
 * with the systems taking turns inside every round — on a shared machine, a burst of other work then
 * falls on all of them alike. Medians of the rounds go into the report (report.ts).
 *
 * Everything made — namespaces, agents, the bpffs, the temp dir — is removed in `finally`, and on
 * SIGINT/SIGTERM (the first signal stops the run after the call under way and cleans up; a second one
 * cleans up at once, synchronously, and exits).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { PodAddresses, benchCluster, type BenchService } from '../control-plane/objects.js';
import { Bench, caseLabel, casesFor, checkContiguous, oneServiceIndex, type Round } from './measure.js';
import { Profiler } from './profile.js';
import { Generator } from './programs.js';
import { writeThroughputReport, type CaseResult, type ThroughputRun } from './report.js';
import { SYSTEM_LABELS, type SystemId } from './catalog.js';
import type { ThroughputOptions } from './options.js';
import { startSystem, type RunningSystem } from './systems.js';
import type { BenchWire } from './topology.js';

export const ENDPOINTS_PER_SERVICE = 10;

const AGENT_READY_MS = 240_000;
/** Profiled with --perf: xlb and the ceiling it is held to. */
const PROFILED: readonly SystemId[] = ['xlb-snat', 'xlb-dsr', 'xdp-forwarder'];

export interface ThroughputIO {
  line(text: string): void;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}


const count = (n: number): string => n.toLocaleString('en-US');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** What the run made, so `finally` and a signal can undo it. */
class RunResources {
  readonly wires = new Set<BenchWire>();
  readonly stops = new Set<() => Promise<void>>();
  readonly pids = new Set<number>();
  dir: string | undefined;
  bpffs: TempBpffs | undefined;
  generator: Generator | undefined;
  profiler: Profiler | undefined;

  async release(log: (line: string) => void): Promise<void> {
    for (const stop of [...this.stops]) {
      try {
        await stop();
      } catch (error) {
        log(`stopping an agent: ${message(error)}`);
      }
    }
    this.stops.clear();
    this.releaseSync(log);
  }

  /** Everything but a graceful agent stop: for a second signal (agents get SIGKILL). */
  releaseSync(log: (line: string) => void): void {
    this.profiler?.stop();
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    this.pids.clear();
    for (const wire of [...this.wires]) {
      try {
        wire.destroy();
      } catch (error) {
        log(`deleting namespaces: ${message(error)}`);
      }
    }
    this.wires.clear();
    this.generator?.close();
    this.generator = undefined;
    try {
      this.bpffs?.remove();
    } catch (error) {
      log(`unmounting ${this.bpffs?.dir ?? 'the bpffs'}: ${message(error)}`);
    }
    this.bpffs = undefined;
    if (this.dir !== undefined && existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

export async function runThroughputBench(options: ThroughputOptions, io: ThroughputIO): Promise<ThroughputRun> {
  const log = (line: string): void => io.line(`[bench throughput] ${line}`);
  const resources = new RunResources();
  let interrupted = false;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    interrupted = true;
    if (signals === 1) {
      log(`${signal}: stopping after the call under way, then cleaning up (again to clean up at once)`);
    } else {
      log(`${signal}: cleaning up now`);
      resources.releaseSync(log);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const checkInterrupted = (): void => {
    if (interrupted) throw new Error('interrupted');
  };
  const started = performance.now();
  const load = { before: loadavg()[0] ?? 0, after: 0 };
  const results: CaseResult[] = [];
  const setups: ThroughputRun['setups'] = [];
  const profiles: ThroughputRun['profiles'] = [];
  try {
    resources.dir = mkdtempSync(join(tmpdir(), 'xlb-tput-'));
    resources.bpffs = TempBpffs.mount('tput');
    resources.generator = new Generator();
    const generator = resources.generator;
    const profiler = options.perf ? new Profiler(resources.dir) : undefined;
    resources.profiler = profiler;
    const systems: SystemId[] = ['generator', ...options.systems];
    log(
      `systems: ${options.systems.join(', ')} (and the generator alone, for reference); services: ${options.serviceCounts.map(count).join(', ')} ` +
        `× ${ENDPOINTS_PER_SERVICE} endpoints; ${options.rounds} rounds of ≤ ${count(options.packets)} frames / ≤ ${options.seconds} s each; ` +
        `IPVS: not in this kernel, not measured`,
    );
    const totalCases = options.serviceCounts.reduce((n, services) => n + casesFor(services, options).length, 0);
    let caseNumber = 0;
    const elapsed = (): string => `${Math.round((performance.now() - started) / 1000)} s`;
    for (const serviceCount of options.serviceCounts) {
      checkInterrupted();
      const services = benchCluster(serviceCount, ENDPOINTS_PER_SERVICE, new PodAddresses());
      checkContiguous(services);
      const setupStarted = performance.now();
      const running = await startSystems(systems, services, options, resources, log, () => interrupted);
      try {
        setups.push({ services: serviceCount, ms: performance.now() - setupStarted, systems: running.map((r) => ({ id: r.id, describe: r.describe })) });
        log(`${count(serviceCount)} service${serviceCount === 1 ? '' : 's'}: every system ready after ${seconds(performance.now() - setupStarted)}`);
        const bench = new Bench(generator, services, () => interrupted);
        for (const c of casesFor(serviceCount, options)) {
          checkInterrupted();
          caseNumber += 1;
          const which = c.traffic === 'one' && serviceCount > 1 ? ` (service #${oneServiceIndex(serviceCount)})` : '';
          log(`case ${caseNumber}/${totalCases}, ${elapsed()} in: ${caseLabel(c)}${which}; warming up`);
          for (const system of running) await bench.warmUp(system, c, options.warmUpPackets);
          const rounds = new Map<SystemId, Round[]>(running.map((r) => [r.id, []]));
          for (let r = 0; r < options.rounds; r++) {
            const line: string[] = [];
            for (const system of running) {
              checkInterrupted();
              const round = await bench.round(system, c, { packets: options.packets, seconds: options.seconds });
              rounds.get(system.id)?.push(round);
              line.push(`${system.id} ${((round.forwarded / round.cpuNs) * 1000).toFixed(2)}`);
            }
            log(`  round ${r + 1}/${options.rounds} Mpps: ${line.join('  ')}`);
          }
          for (const system of running) results.push({ system: system.id, case: c, rounds: rounds.get(system.id) ?? [] });
          for (const system of running.filter((r) => profiler !== undefined && PROFILED.includes(r.id))) {
            checkInterrupted();
            const budget = { packets: options.packets, seconds: options.seconds };
            try {
              const { result, symbols } = await (profiler as Profiler).profile(`${system.id}-${caseNumber}`, () => bench.round(system, c, budget), (r) => r.cpuNs / Math.max(r.forwarded, 1));
              profiles.push({ system: system.id, case: c, pipelineNs: result.cpuNs / Math.max(result.forwarded, 1), symbols });
              const top = symbols.slice(0, 3).map((x) => `${x.symbol} ${x.nsPerPacket.toFixed(0)} ns`);
              log(`  perf, ${system.id}: ${(result.cpuNs / Math.max(result.forwarded, 1)).toFixed(0)} ns/packet in all; ${top.join(', ')}`);
            } catch (error) {
              if (interrupted) throw error;
              log(`  perf, ${system.id}: no profile (${message(error)})`);
            }
          }
        }
      } finally {
        await Promise.all(running.map((r) => r.stop()));
        for (const r of running) resources.wires.delete(r.wire);
      }
    }
    load.after = loadavg()[0] ?? 0;
    const run: ThroughputRun = { options, results, setups, profiles, load, durationMs: performance.now() - started };
    const written = writeThroughputReport(run, options.out);
    log(`done in ${seconds(performance.now() - started)}; written: ${written}.{json,md,svg}`);
    return run;
  } finally {
    await resources.release(log);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Every system of one service count: the agents are started first and load while the rules of the
 * others are written (iptables-restore and nft block this thread), then awaited.
 */
async function startSystems(
  ids: SystemId[],
  services: readonly BenchService[],
  options: ThroughputOptions,
  resources: RunResources,
  log: (line: string) => void,
  interrupted: () => boolean,
): Promise<RunningSystem[]> {
  const { dir, bpffs } = resources;
  if (dir === undefined || bpffs === undefined) throw new Error('the run has no temp dir or bpffs');
  const ctx = {
    services,
    dir,
    bpffs: bpffs.dir,
    iptables: options.iptables,
    log,
    agentReadyMs: AGENT_READY_MS,
    onProcess: (stop: () => Promise<void>, pid: number | undefined) => {
      resources.stops.add(stop);
      if (pid !== undefined) resources.pids.add(pid);
    },
  };
  const track = (wire: BenchWire): void => void resources.wires.add(wire);
  const order = [...ids].sort((a, b) => Number(b.startsWith('xlb')) - Number(a.startsWith('xlb')));
  const what = `${count(services.length)} service${services.length === 1 ? '' : 's'}`;
  const pending: { id: SystemId; promise: Promise<RunningSystem> }[] = [];
  for (const id of order) {
    if (interrupted()) break;
    const agent = id.startsWith('xlb');
    log(`${what}: setting up ${SYSTEM_LABELS[id]}${agent ? ' (its agent loads the services while the next systems are set up)' : ''}`);
    const started = performance.now();
    const promise = startSystem(id, ctx, track).then((system) => {
      if (agent) log(`${what}: ${SYSTEM_LABELS[id]} ready, ${seconds(performance.now() - started)} after its start`);
      return system;
    });
    if (!agent) await promise.catch(() => undefined);
    pending.push({ id, promise });
  }
  // The agents, unless a signal comes first (their stops are registered: the run's cleanup stops them).
  const settled = Promise.allSettled(pending.map((p) => p.promise));
  let polling = true;
  const signalled = (async (): Promise<void> => {
    while (polling && !interrupted()) await sleep(100);
  })();
  await Promise.race([settled, signalled]);
  polling = false;
  if (interrupted()) throw new Error('interrupted');
  const results = await settled;
  const running = results.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = results.flatMap((s, i) => (s.status === 'rejected' ? [`${pending[i]?.id}: ${message(s.reason)}`] : []));
  if (failed.length > 0) {
    await Promise.all(running.map((r) => r.stop()));
    throw new Error(`setting up ${failed.join('; ')}`);
  }
  // The order of the report and of the turns: as asked.
  return ids.flatMap((id) => running.filter((r) => r.id === id));
}
