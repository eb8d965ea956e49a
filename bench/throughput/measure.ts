/**
 * One round of traffic through one system, and what it says.
 *
 * The generator's BPF_PROG_TEST_RUN sends the frames in calls of ~50 ms each until the round's
 * packets are sent or its seconds are up. The kernel times each call, and that time holds the whole
 * pipeline: the frames leave the generator's veth into the node's receive ring, and the softirq that
 * runs when the call re-enables bottom halves after each batch of 64 is the node's NAPI poll (its
 * XDP program or its stack, netfilter included), then the sink's — all on the generator's CPU. Time
 * the call spent preempted (this machine is shared) is left out by the kernel. So:
 *   Mpps          = forwarded / kernel-timed time  (what one CPU does: generator + node + sink)
 *   node ns/pkt   = (kernel-timed time − frames × the reference's ns/frame) / forwarded, the reference
 *                   being the generator with the node dropping every frame on arrival (systems.ts)
 *   wall Mpps     = forwarded / wall time, for comparison (lower when other work took the CPU)
 *   loss          = 1 − forwarded / sent (the node's receive ring overflowing, drops, refusals)
 * /proc/stat is read around the round too: how busy the machine was (other work included).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BpfError } from '../../lb/datapath/errors.js';
import type { BenchService } from '../control-plane/objects.js';
import { ipv4Number, ipv4Text, type Generator, type SinkCounts, type TrafficSpec } from './programs.js';
import type { RunningSystem } from './systems.js';
import { ADDRESSES } from './topology.js';

export type Traffic = 'one' | 'spread';
export type Flows = 'established' | 'new';

export interface TrafficCase {
  services: number;
  traffic: Traffic;
  flows: Flows;
}

export interface RoundBudget {
  packets: number;
  seconds: number;
}

export interface Round {
  sent: number;
  forwarded: number;
  /** the kernel's time for the generator's calls (the whole pipeline), ns */
  cpuNs: number;
  wallNs: number;
  counts: SinkCounts;
  /** the machine's CPUs during the round: busy share 0..1 (all work, not only the bench's) */
  machineBusy: number;
}

/** Frames per test-run call: about this long each, so a round ends near its deadline and Ctrl-C is seen. */
const CALL_NS = 50e6;
const MIN_CALL = 1_024;
const MAX_CALL = 1 << 18;
/** Established flows cycle through this many (one service), or one per service at least (spread). */
export const ESTABLISHED_FLOWS = 1_024;
/** New flows are numbered from here on each wire, above every established flow. */
export const NEW_FLOWS_FROM = 1 << 20;
/** The generator's flows come from 2^13 client addresses, 2^15 ports each. */
const FLOW_SPACE = 2 ** 28;

const count = (n: number): string => n.toLocaleString('en-US');

/** The cases of one service count: with one service, "one" and "spread" are the same traffic. */
export function casesFor(services: number, options: { traffic: readonly Traffic[]; flows: readonly Flows[] }): TrafficCase[] {
  const traffic = services === 1 ? (['one'] as Traffic[]) : options.traffic;
  return options.flows.flatMap((flows) => traffic.map((t) => ({ services, traffic: t, flows })));
}

export function caseLabel(c: TrafficCase): string {
  const where = c.traffic === 'one' ? (c.services === 1 ? 'one service' : `one service of ${count(c.services)}`) : `spread over ${count(c.services)} services`;
  return `${where}, ${c.flows === 'established' ? `${count(establishedFlows(c))} established flows` : 'new flows'}`;
}

/** The service a one-service case sends to: the middle one (iptables walks its list in order). */
export function oneServiceIndex(services: number): number {
  return Math.floor(services / 2);
}

export function establishedFlows(c: TrafficCase): number {
  if (c.traffic === 'one') return ESTABLISHED_FLOWS;
  let flows = ESTABLISHED_FLOWS;
  while (flows < c.services) flows *= 2;
  return flows;
}

function nextPowerOfTwoAtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Where the frames of a case go: the services' addresses or (routing) their endpoints. */
export function trafficSpec(system: RunningSystem, services: readonly BenchService[], c: TrafficCase, firstNewFlow: number): TrafficSpec {
  const first = c.traffic === 'one' ? oneServiceIndex(services.length) : 0;
  const service = services[first];
  if (!service) throw new Error(`no service ${first} of ${services.length}`);
  const toEndpoints = system.destination === 'endpoints';
  const fanout = service.endpoints.length;
  return {
    srcMac: system.wire.gen.mac,
    dstMac: system.wire.nodeFront.mac,
    clientBase: ADDRESSES.clientBase,
    destinationBase: toEndpoints ? (service.endpoints[0] ?? '') : service.clusterIP,
    stride: toEndpoints ? fanout : 1,
    services: c.traffic === 'one' ? 1 : services.length,
    fanout: toEndpoints ? fanout : 1,
    dport: 80,
    flows: c.flows === 'established' ? { kind: 'established', count: establishedFlows(c) } : { kind: 'new', first: firstNewFlow },
  };
}

/**
 * The generator addresses a service's endpoints as base + stride × service + pick: check that the
 * services are laid out so (consecutive addresses, the same count each) before any traffic.
 */
export function checkContiguous(services: readonly BenchService[]): void {
  const first = services[0];
  const last = services[services.length - 1]?.endpoints.at(-1);
  if (!first || last === undefined) throw new Error('no services');
  if (ipv4Number(last) > ipv4Number(ADDRESSES.endpointsLast)) throw new Error(`endpoint ${last} is past ${ADDRESSES.endpointsLast}, the last address the bench's wire routes to endpoints`);
  const base = ipv4Number(first.endpoints[0] ?? '0.0.0.0');
  const vip = ipv4Number(first.clusterIP);
  const n = first.endpoints.length;
  services.forEach((s, i) => {
    if (ipv4Number(s.clusterIP) !== vip + i) throw new Error(`service ${s.name}: ${s.clusterIP} is not ${ipv4Text(vip + i)}`);
    s.endpoints.forEach((e, j) => {
      if (ipv4Number(e) !== base + n * i + j) throw new Error(`service ${s.name}: endpoint ${e} is not ${ipv4Text(base + n * i + j)}`);
    });
  });
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

function minus(a: SinkCounts, b: SinkCounts): SinkCounts {
  return { packets: a.packets - b.packets, toEndpoints: a.toEndpoints - b.toEndpoints, fromNode: a.fromNode - b.fromNode, ipOptions: a.ipOptions - b.ipOptions };
}

/** Waits until the system's counter stops moving (frames still in rings or softirq), at most 300 ms. */
async function settle(system: RunningSystem): Promise<SinkCounts> {
  let last = system.counts();
  const deadline = performance.now() + 300;
  while (performance.now() < deadline) {
    await sleep(10);
    const now = system.counts();
    if (now.packets === last.packets) return now;
    last = now;
  }
  return last;
}

/** The generator's call was cut short by a signal. */
class SignalDuringCall extends Error {
  override name = 'SignalDuringCall';
}

/** Per wire: the next new flow's number, so no flow is ever sent twice as new. */
const nextNewFlow = new WeakMap<RunningSystem, number>();

export class Bench {
  constructor(
    private readonly generator: Generator,
    private readonly services: readonly BenchService[],
    private readonly interrupted: () => boolean,
  ) {}

  private configure(system: RunningSystem, c: TrafficCase): void {
    const first = nextNewFlow.get(system) ?? NEW_FLOWS_FROM;
    this.generator.configure(trafficSpec(system, this.services, c, first % FLOW_SPACE));
  }

  /** Untimed frames before a case's rounds: flows established, neighbours resolved, caches warm. */
  async warmUp(system: RunningSystem, c: TrafficCase, packets: number): Promise<void> {
    this.configure(system, c);
    const frames = c.flows === 'established' ? Math.max(packets, 2 * establishedFlows(c)) : packets;
    try {
      this.send(system, frames, Infinity);
    } catch (error) {
      if (error instanceof SignalDuringCall) {
        await sleep(0);
        if (this.interrupted()) throw new Error('interrupted');
      } else {
        throw error;
      }
    }
    if (c.flows === 'new') nextNewFlow.set(system, (nextNewFlow.get(system) ?? NEW_FLOWS_FROM) + this.generator.sent());
    await settle(system);
  }

  /**
   * A round. A signal makes the generator's call fail with EINTR: when it was the run's stop, the
   * round ends the run; any other (a child's SIGCHLD) leaves the round's timing incomplete, so the
   * round is made again.
   */
  async round(system: RunningSystem, c: TrafficCase, budget: RoundBudget): Promise<Round> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.roundOnce(system, c, budget);
      } catch (error) {
        if (!(error instanceof SignalDuringCall)) throw error;
        await sleep(0); // the signal's handler runs now
        if (this.interrupted() || attempt >= 3) throw new Error('interrupted');
      }
    }
  }

  private async roundOnce(system: RunningSystem, c: TrafficCase, budget: RoundBudget): Promise<Round> {
    this.configure(system, c);
    const before = system.counts();
    const ticks = machineTicks();
    const started = performance.now();
    const { sent, cpuNs } = this.send(system, budget.packets, budget.seconds * 1000);
    const wallNs = (performance.now() - started) * 1e6;
    if (c.flows === 'new') nextNewFlow.set(system, (nextNewFlow.get(system) ?? NEW_FLOWS_FROM) + sent);
    const counts = minus(await settle(system), before);
    const after = machineTicks();
    const total = after.total - ticks.total;
    return { sent, forwarded: counts.packets, cpuNs, wallNs, counts, machineBusy: total > 0 ? (after.busy - ticks.busy) / total : 0 };
  }

  /** Sends up to `packets` frames, in calls of ~CALL_NS each, stopping after `ms`; the kernel's total time. */
  private send(system: RunningSystem, packets: number, ms: number): { sent: number; cpuNs: number } {
    const { ns, dev } = system.wire.gen;
    const deadline = performance.now() + ms;
    let call = MIN_CALL * 8;
    let sent = 0;
    let cpuNs = 0;
    while (sent < packets && performance.now() < deadline && !this.interrupted()) {
      const count = Math.min(call, packets - sent);
      let perFrame: number;
      try {
        perFrame = this.generator.send(ns, dev, count);
      } catch (error) {
        if (error instanceof BpfError && error.code === 'EINTR') throw new SignalDuringCall();
        throw error;
      }
      sent += count;
      cpuNs += perFrame * count;
      call = Math.min(MAX_CALL, Math.max(MIN_CALL, nextPowerOfTwoAtLeast(Math.round(CALL_NS / Math.max(perFrame, 1)))));
    }
    return { sent, cpuNs };
  }
}
