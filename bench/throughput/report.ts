/**
 * The throughput report: medians of the rounds per system and case, the issue's goals as ratios of
 * systems measured in the same run, and three files — throughput.json in the bench results shape
 * (bench/lib/report.ts: every figure with its unit, parameters, and the peer it was compared with),
 * throughput.md (tables by service count, the goals, how to read them, what was run) and
 * throughput.svg (Mpps by service count, one line per system, a panel per kind of traffic).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { repoRoot, writeBenchReport, type BenchFigure } from '../lib/report.js';
import type { SymbolCost } from './profile.js';
import { caseLabel, establishedFlows, oneServiceIndex, type Round, type TrafficCase } from './measure.js';
import { EXPECTED, SYSTEM_LABELS, type SystemId } from './catalog.js';
import { ADDRESSES } from './topology.js';
import type { ThroughputOptions } from './options.js';

export interface CaseResult {
  system: SystemId;
  case: TrafficCase;
  rounds: Round[];
}

export interface ThroughputRun {
  options: ThroughputOptions;
  results: CaseResult[];
  setups: { services: number; ms: number; systems: { id: SystemId; describe: string }[] }[];
  /** --perf: one profiled round per case of xlb and the forwarder */
  profiles: { system: SystemId; case: TrafficCase; pipelineNs: number; symbols: SymbolCost[] }[];
  load: { before: number; after: number };
  durationMs: number;
}

export interface Summary {
  system: SystemId;
  case: TrafficCase;
  /** forwarded per second of the kernel-timed pipeline (generator + node + sink on one CPU) */
  mpps: number;
  wallMpps: number;
  /** 0..1 */
  loss: number;
  /** the pipeline's ns per forwarded packet */
  pipelineNs: number;
  /** the node's own: the pipeline minus the reference (generator, node drops on arrival) */
  nodeNs: number;
  sent: number;
  forwarded: number;
  /** shares of what arrived: to the endpoints' range, from the node's address, with an IPv4 option */
  toEndpoints: number;
  fromNode: number;
  ipOptions: number;
  machineBusy: number;
  /** what the sink saw that this system should not produce, or "" */
  problem: string;
}

function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
const count = (n: number): string => n.toLocaleString('en-US');
const sameCase = (a: TrafficCase, b: TrafficCase): boolean => a.services === b.services && a.traffic === b.traffic && a.flows === b.flows;

function checkProblem(system: SystemId, c: TrafficCase, s: Pick<Summary, 'forwarded' | 'toEndpoints' | 'fromNode' | 'ipOptions'>): string {
  if (system === 'generator' || s.forwarded === 0) return s.forwarded === 0 ? 'nothing arrived' : '';
  const expected = EXPECTED[system];
  const problems: string[] = [];
  if (s.toEndpoints < 0.99) problems.push(`${((1 - s.toEndpoints) * 100).toFixed(1)}% not to an endpoint`);
  if (expected.fromNode && s.fromNode < 0.99) problems.push(`${((1 - s.fromNode) * 100).toFixed(1)}% not from the node's address (no SNAT)`);
  if (!expected.fromNode && s.fromNode > 0.01) problems.push(`${(s.fromNode * 100).toFixed(1)}% from the node's address`);
  if (expected.optionOnNewFlows && c.flows === 'new' && s.ipOptions < 0.99) problems.push(`${((1 - s.ipOptions) * 100).toFixed(1)}% of new flows without the DSR option`);
  return problems.join(', ');
}

export function summarize(run: Pick<ThroughputRun, 'results'>): Summary[] {
  const reference = (c: TrafficCase): number => {
    const ref = run.results.find((r) => r.system === 'generator' && sameCase(r.case, c));
    return ref ? median(ref.rounds.map((r) => r.cpuNs / r.sent)) : 0;
  };
  return run.results.map(({ system, case: c, rounds }) => {
    const refNs = system === 'generator' ? 0 : reference(c);
    const forwarded = sum(rounds.map((r) => r.forwarded));
    const share = (key: 'toEndpoints' | 'fromNode' | 'ipOptions'): number => (forwarded > 0 ? sum(rounds.map((r) => r.counts[key])) / forwarded : 0);
    const shares = { forwarded, toEndpoints: share('toEndpoints'), fromNode: share('fromNode'), ipOptions: share('ipOptions') };
    return {
      system,
      case: c,
      mpps: median(rounds.map((r) => (r.cpuNs > 0 ? (r.forwarded / r.cpuNs) * 1000 : 0))),
      wallMpps: median(rounds.map((r) => (r.wallNs > 0 ? (r.forwarded / r.wallNs) * 1000 : 0))),
      loss: median(rounds.map((r) => (r.sent > 0 ? 1 - r.forwarded / r.sent : 0))),
      pipelineNs: median(rounds.map((r) => (r.forwarded > 0 ? r.cpuNs / r.forwarded : NaN))),
      nodeNs: median(rounds.map((r) => (r.forwarded > 0 ? (r.cpuNs - r.sent * refNs) / r.forwarded : NaN))),
      sent: sum(rounds.map((r) => r.sent)),
      machineBusy: median(rounds.map((r) => r.machineBusy)),
      ...shares,
      problem: checkProblem(system, c, shares),
    };
  });
}

// ---- goals ----

export interface GoalResult {
  goal: string;
  system: SystemId;
  peer: SystemId;
  case: TrafficCase;
  /** xlb's Mpps over the peer's (the minimum the goal asks for: `target`) */
  ratio: number;
  target: number;
  met: boolean;
  value: number;
  peerValue: number;
}

/**
 * The issue's goals, each checked in every case it covers: xlb established ≥ 0.85x the minimal XDP
 * forwarder; ≥ 5x iptables and nftables on established flows; on new flows ≥ 8x both at 1 service and
 * ≥ 10x at 10,000 services.
 */
export function goals(summaries: readonly Summary[]): GoalResult[] {
  const find = (system: SystemId, c: TrafficCase): Summary | undefined => summaries.find((s) => s.system === system && sameCase(s.case, c));
  const out: GoalResult[] = [];
  for (const s of summaries) {
    if (s.system !== 'xlb-snat' && s.system !== 'xlb-dsr') continue;
    const c = s.case;
    const checks: { peer: SystemId; target: number; goal: string }[] = [];
    if (c.flows === 'established') {
      checks.push({ peer: 'xdp-forwarder', target: 0.85, goal: 'established ≥ 0.85x the minimal XDP forwarder' });
      checks.push({ peer: 'iptables', target: 5, goal: 'established ≥ 5x iptables' });
      checks.push({ peer: 'nftables', target: 5, goal: 'established ≥ 5x nftables' });
    } else if (c.services === 1 || c.services === 10_000) {
      const target = c.services === 1 ? 8 : 10;
      checks.push({ peer: 'iptables', target, goal: `new flows ≥ ${target}x iptables at ${count(c.services)} service${c.services === 1 ? '' : 's'}` });
      checks.push({ peer: 'nftables', target, goal: `new flows ≥ ${target}x nftables at ${count(c.services)} service${c.services === 1 ? '' : 's'}` });
    }
    for (const check of checks) {
      const peer = find(check.peer, c);
      if (!peer || !(peer.mpps > 0)) continue;
      const ratio = s.mpps / peer.mpps;
      out.push({ goal: check.goal, system: s.system, peer: check.peer, case: c, ratio, target: check.target, met: ratio >= check.target, value: s.mpps, peerValue: peer.mpps });
    }
  }
  return out;
}

function goalVerdict(g: GoalResult): string {
  if (g.met) return `met (${g.ratio.toFixed(2)}x)`;
  return `missed: ${g.ratio.toFixed(2)}x, ${((1 - g.ratio / g.target) * 100).toFixed(0)}% short (xlb needs ${(g.target / g.ratio).toFixed(2)}x its rate)`;
}

// ---- figures (bench/results/throughput.json) ----

function caseParams(c: TrafficCase): Record<string, string | number> {
  return {
    services: c.services,
    endpointsPerService: 10,
    traffic: c.traffic === 'one' ? `one service (#${oneServiceIndex(c.services)})` : 'spread over all',
    flows: c.flows === 'established' ? `${establishedFlows(c)} established` : 'new (a SYN of a new flow each frame)',
  };
}

export function figures(run: ThroughputRun, summaries: readonly Summary[]): BenchFigure[] {
  const out: BenchFigure[] = [];
  const method = `median of ${run.options.rounds} rounds of ≤ ${run.options.packets} frames / ≤ ${run.options.seconds} s; Mpps per kernel-timed CPU second of generator + node + sink`;
  for (const s of summaries) {
    const peer = summaries.find((p) => p.system === 'xdp-forwarder' && sameCase(p.case, s.case));
    const usePeer = peer !== undefined && s.system !== 'xdp-forwarder' && s.system !== 'generator';
    const params = {
      system: s.system,
      ...caseParams(s.case),
      method,
      wallMpps: round(s.wallMpps, 3),
      lossPercent: round(s.loss * 100, 2),
      pipelineNsPerPacket: round(s.pipelineNs, 1),
      sent: s.sent,
      forwarded: s.forwarded,
      toEndpointsShare: round(s.toEndpoints, 4),
      fromNodeShare: round(s.fromNode, 4),
      ipOptionShare: round(s.ipOptions, 4),
      machineBusy: round(s.machineBusy, 2),
      ...(s.problem ? { check: s.problem } : {}),
    };
    const label = `${SYSTEM_LABELS[s.system]}, ${caseLabel(s.case)}`;
    out.push({
      name: `${label}: forwarded`,
      value: round(s.mpps, 3),
      unit: 'Mpps',
      ...(usePeer ? { peer: SYSTEM_LABELS['xdp-forwarder'], peerValue: round(peer.mpps, 3), ratio: round(s.mpps / peer.mpps, 3) } : {}),
      params,
    });
    if (s.system !== 'generator') {
      out.push({
        name: `${label}: node CPU per packet`,
        value: round(s.nodeNs, 1),
        unit: 'ns/packet',
        ...(usePeer ? { peer: SYSTEM_LABELS['xdp-forwarder'], peerValue: round(peer.nodeNs, 1), ratio: round(s.nodeNs / peer.nodeNs, 3) } : {}),
        params: { system: s.system, ...caseParams(s.case), method: 'kernel-timed pipeline minus the generator-alone reference, per forwarded packet (= node CPU ms per million packets)' },
      });
      out.push({ name: `${label}: loss`, value: round(s.loss * 100, 3), unit: '%', params: { system: s.system, ...caseParams(s.case), sent: s.sent, forwarded: s.forwarded } });
    }
  }
  for (const g of goals(summaries)) {
    out.push({
      name: `goal: ${SYSTEM_LABELS[g.system]} ${g.goal}, ${caseLabel(g.case)}`,
      value: round(g.value, 3),
      unit: 'Mpps',
      peer: SYSTEM_LABELS[g.peer],
      peerValue: round(g.peerValue, 3),
      ratio: round(g.ratio, 3),
      params: { ...caseParams(g.case), goalRatio: g.target, verdict: goalVerdict(g) },
    });
  }
  return out;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Number.isFinite(value) ? Math.round(value * f) / f : value;
}

// ---- markdown ----

const CASE_COLUMNS: { traffic: TrafficCase['traffic']; flows: TrafficCase['flows']; title: string }[] = [
  { traffic: 'one', flows: 'established', title: 'one service, established' },
  { traffic: 'one', flows: 'new', title: 'one service, new flows' },
  { traffic: 'spread', flows: 'established', title: 'spread, established' },
  { traffic: 'spread', flows: 'new', title: 'spread, new flows' },
];

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function table(run: ThroughputRun, summaries: readonly Summary[], cell: (s: Summary) => string): string[] {
  const lines: string[] = [];
  const systems: SystemId[] = [...run.options.systems, 'generator'];
  for (const n of run.options.serviceCounts) {
    const columns = CASE_COLUMNS.filter((col) => (n === 1 ? col.traffic === 'one' : true)).filter((col) => summaries.some((s) => s.case.services === n && s.case.traffic === col.traffic && s.case.flows === col.flows));
    if (columns.length === 0) continue;
    lines.push(`**${count(n)} service${n === 1 ? '' : 's'}** × 10 endpoints`, '');
    lines.push(`| system | ${columns.map((c) => c.title).join(' | ')} |`, `| --- |${columns.map(() => ' ---: |').join('')}`);
    for (const id of systems) {
      const cells = columns.map((col) => {
        const s = summaries.find((x) => x.system === id && x.case.services === n && x.case.traffic === col.traffic && x.case.flows === col.flows);
        return s ? cell(s) : '';
      });
      if (cells.every((c) => c === '')) continue;
      lines.push(`| ${SYSTEM_LABELS[id]} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }
  return lines;
}

/** The checkout the run was made from, "abc1234" or "abc1234-dirty"; undefined outside git. */
function checkout(): string | undefined {
  try {
    return execFileSync('git', ['-C', repoRoot(), 'describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** ns/packet figures of bench/results/datapath.json, when that suite has run: what xdp_lb costs alone. */
function datapathFigures(): Map<string, number> {
  const path = join(repoRoot(), 'bench', 'results', 'datapath.json');
  const out = new Map<string, number>();
  if (!existsSync(path)) return out;
  try {
    const report = JSON.parse(readFileSync(path, 'utf8')) as { figures?: { name: string; value: number }[] };
    for (const f of report.figures ?? []) out.set(f.name, f.value);
  } catch {
    // an unreadable file: no such figures
  }
  return out;
}

/** Kernel functions only BPF programs call here: map lookups (hash maps are not inlined), the FIB lookup helper. */
const PROGRAM_HELPERS = /^(lookup_nulls_elem_raw|__htab_map_lookup_elem|htab_map_\w+|bpf_ipv[46]_fib_lookup|fib_table_lookup|fib6_\w+|bpf_xdp_adjust_head)$/;

/**
 * The node's own BPF programs in a profile, with the helpers they call: every bpf: symbol but the
 * generator's, the sink's and xdp_pass, and the kernel functions of PROGRAM_HELPERS.
 */
function nodePrograms(symbols: readonly SymbolCost[]): SymbolCost[] {
  return symbols.filter((x) => (x.symbol.startsWith('bpf: ') && !/^bpf: (xdp_gen|xdp_sink|tc_sink|xdp_pass)$/.test(x.symbol)) || PROGRAM_HELPERS.test(x.symbol));
}

function programText(symbols: readonly SymbolCost[]): string {
  const programs = nodePrograms(symbols);
  const total = programs.reduce((n, x) => n + x.nsPerPacket, 0);
  return `${total.toFixed(0)} ns (${programs.map((x) => `${x.symbol.replace(/^bpf: /, '')} ${x.nsPerPacket.toFixed(0)}`).join(', ') || 'none sampled'})`;
}

/**
 * For each missed goal (grouped by system, peer and kind of flows; the worst case shown): the two
 * pipelines, what the node's own time would have to be for the goal, and, with --perf, xlb's programs
 * beside the forwarder's.
 */
function whyMissed(run: ThroughputRun, summaries: readonly Summary[], missed: readonly GoalResult[]): string[] {
  if (missed.length === 0) return [];
  const lines = ['## Why goals were missed, from the figures of this run', ''];
  const find = (system: SystemId, c: TrafficCase): Summary | undefined => summaries.find((s) => s.system === system && sameCase(s.case, c));
  const profileOf = (system: SystemId, c: TrafficCase): SymbolCost[] | undefined => run.profiles.find((p) => p.system === system && sameCase(p.case, c))?.symbols;
  const groups = new Map<string, GoalResult[]>();
  for (const g of missed) {
    const key = `${g.system}|${g.peer}|${g.case.flows}`;
    groups.set(key, [...(groups.get(key) ?? []), g]);
  }
  for (const group of groups.values()) {
    const worst = [...group].sort((a, b) => a.ratio / a.target - b.ratio / b.target)[0];
    if (!worst) continue;
    const xlb = find(worst.system, worst.case);
    const peer = find(worst.peer, worst.case);
    if (!xlb || !peer) continue;
    const genSink = xlb.pipelineNs - xlb.nodeNs;
    // The goal holds when xlb's pipeline ≤ the peer's / target: the node's share of that.
    const needed = peer.pipelineNs / worst.target - genSink;
    const ratios = group.map((g) => g.ratio);
    const cases = group.length === 1 ? caseLabel(worst.case) : `${group.length} cases, ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}x; worst: ${caseLabel(worst.case)}`;
    let text =
      `- **${SYSTEM_LABELS[worst.system]} vs ${SYSTEM_LABELS[worst.peer]}**, ${worst.goal} (${cases}): ` +
      `${fixed(xlb.pipelineNs, 0)} vs ${fixed(peer.pipelineNs, 0)} ns per forwarded packet in all, the generator and sink ~${fixed(genSink, 0)} of it; ` +
      `the node's own ${fixed(xlb.nodeNs, 0)} vs ${fixed(peer.nodeNs, 0)} ns. ` +
      (needed > 0
        ? `The goal needs xlb's node time ≤ ${needed.toFixed(0)} ns (${((1 - needed / xlb.nodeNs) * 100).toFixed(0)}% less).`
        : `Here no node time reaches it: the generator and sink alone cost more than the peer's pipeline / ${worst.target} (the shared CPU caps this ratio at ${(peer.pipelineNs / genSink).toFixed(1)}x).`);
    if (xlb.loss > 0.01) text += ` ${(xlb.loss * 100).toFixed(1)}% of xlb's frames were not forwarded.`;
    const mine = profileOf(worst.system, worst.case);
    const ceiling = profileOf('xdp-forwarder', worst.case);
    if (mine) text += ` perf: xlb's programs and the helpers they call ${programText(mine)}${ceiling ? ` vs the forwarder's ${programText(ceiling)}` : ''}; the rest of the node's path (veth receive, redirect, transmit) is the same code for both.`;
    lines.push(text);
  }
  const datapath = datapathFigures();
  const fromDatapath = (name: string): string => (datapath.has(name) ? `${datapath.get(name)} ns` : 'not measured');
  lines.push(
    '',
    `For scale, xdp_lb alone under BPF_PROG_TEST_RUN (bench/results/datapath.json, hot caches, one flow): established DSR flow ${fromDatapath('established flow IPv4')}, ` +
      `established SNAT flow ${fromDatapath('established flow, SNAT IPv4 (harness subtracted)')}, new DSR flow ${fromDatapath('new flow IPv4 (harness subtracted)')}, ` +
      `new SNAT flow ${fromDatapath('new flow, SNAT IPv4 (harness subtracted)')}, refused SNAT flow (ports exhausted) ${fromDatapath('new flow, SNAT IPv4, port range exhausted (harness subtracted)')}.`,
    '',
  );
  return lines;
}

/** --perf: the profiled rounds, a table per case. */
function whereTimeGoes(run: ThroughputRun): string[] {
  if (run.profiles.length === 0) return [];
  const lines = [
    '## Where the time goes (perf record of one more round each; ns per forwarded packet)',
    '',
    'Samples of this process, where the whole pipeline runs: the generator (xdp_gen, xdp_test_run_batch), the node, the sink. ' +
      "A symbol's share of the samples × the round's ns per forwarded packet.",
    '',
  ];
  const cases: TrafficCase[] = [];
  for (const p of run.profiles) if (!cases.some((c) => sameCase(c, p.case))) cases.push(p.case);
  for (const c of cases) {
    lines.push(`**${caseLabel(c)}** (${count(c.services)} service${c.services === 1 ? '' : 's'})`, '', '| system | in all | node programs (+ map, FIB helpers) | top symbols |', '| --- | ---: | ---: | --- |');
    for (const p of run.profiles.filter((x) => sameCase(x.case, c))) {
      const programs = nodePrograms(p.symbols).reduce((n, x) => n + x.nsPerPacket, 0);
      lines.push(`| ${SYSTEM_LABELS[p.system]} | ${p.pipelineNs.toFixed(0)} | ${programs.toFixed(0)} | ${p.symbols.slice(0, 8).map((x) => `${x.symbol} ${x.nsPerPacket.toFixed(0)}`).join(' · ')} |`);
    }
    lines.push('');
  }
  return lines;
}

function checkoutText(): string {
  const at = checkout();
  return at === undefined ? '' : ` · checkout ${at}`;
}

export function renderMarkdown(run: ThroughputRun, summaries: readonly Summary[], date: string): string {
  const o = run.options;
  const cpu = cpus();
  const goalResults = goals(summaries);
  const missed = goalResults.filter((g) => !g.met);
  const problems = summaries.filter((s) => s.problem !== '');
  const lines = [
    '# Benchmark: throughput (live, through a node in network namespaces)',
    '',
    `${date} · ${cpu.length} × ${cpu[0]?.model ?? 'unknown'} · Linux ${release()} · Node ${process.version} · 1-min load ${run.load.before.toFixed(1)} before, ` +
      `${run.load.after.toFixed(1)} after · run took ${(run.durationMs / 1000).toFixed(0)} s${o.quick ? ' · --quick' : ''}${checkoutText()}`,
    '',
    `${o.rounds} rounds of ≤ ${count(o.packets)} frames (≤ ${o.seconds} s) per system and case, the systems taking turns in every round; medians. ` +
      `64-byte TCP frames (IPv4); established flows: ACK+PSH with 10 bytes of data cycling through a fixed set of flows (picked up ` +
      `mid-stream by every conntrack); new flows: a SYN from a client address and port never used before, each frame.`,
    '',
    '**How to read it.** The generator (BPF_PROG_TEST_RUN, live frames, XDP_TX), the node and the sink share one CPU: the node\'s and ' +
      'the sink\'s receive work runs in the softirq of the generator\'s call, which the kernel times (leaving out time the call was ' +
      'preempted — this 2-core machine is shared). **Mpps** is packets forwarded per second of that time; **node ns/packet** takes away ' +
      'what the generator and a sink cost alone (the reference row: the node drops every frame on arrival), so it is the node\'s CPU ' +
      'time per packet (= ms per million packets). Compare systems as ratios within this run, not with another machine. ' +
      'Wall-clock rates (lower: other work on this machine took the CPU between calls) are in throughput.json (wallMpps).',
    '',
    '## Forwarded Mpps (loss)',
    '',
    ...table(run, summaries, (s) => `${fixed(s.mpps, 2)}${s.loss >= 0.0005 ? ` (${(s.loss * 100).toFixed(1)}%)` : ''}`),
    '## Node CPU time, ns per forwarded packet (= ms per million packets)',
    '',
    ...table(run, summaries, (s) => (s.system === 'generator' ? `${fixed(s.pipelineNs, 0)} (gen+sink)` : fixed(s.nodeNs, 0))),
    '## Goals (ratios of Mpps in this run)',
    '',
    '| goal | system | case | xlb Mpps | peer Mpps | verdict |',
    '| --- | --- | --- | ---: | ---: | --- |',
    ...goalResults.map((g) => `| ${g.goal} | ${SYSTEM_LABELS[g.system]} | ${caseLabel(g.case)} | ${fixed(g.value, 2)} | ${fixed(g.peerValue, 2)} | ${goalVerdict(g)} |`),
    '',
    goalResults.length === 0 ? 'No goal could be checked: the run did not measure xlb beside its peers.' : `${goalResults.length - missed.length} of ${goalResults.length} goal checks met.`,
    '',
    ...whyMissed(run, summaries, missed),
    ...whereTimeGoes(run),
    '## What ran',
    '',
    `- Wire: generator netns → node netns (eth0 from the generator, eth1 to the endpoints) → sink netns, veth pairs; clients ` +
      `${ADDRESSES.clients}, services from 198.19.192.0 (port 80), endpoints from 198.18.0.1 (port 8080), routed through the sink, ` +
      'which counts and drops every frame (at XDP behind xlb and the forwarder, at tc ingress behind the stack). A fresh wire for each system and service count.',
    '- IPVS: not measured — this kernel has no IPVS (and loads no modules).',
    `- iptables: the ${o.iptables === 'legacy' ? 'legacy (x_tables)' : 'nf_tables'} backend. The peers' eth0 carries xdp_pass (a veth takes XDP_TX frames only with NAPI, ` +
      'which an XDP program gives it): their packets pay for it, ~20 ns, and for an skb built from the XDP frame.',
    '- nftables: the kube-proxy table has its nat chains only (no filter chains); loaded in groups of 1,000 services.',
    ...run.setups.flatMap((setup) => [
      `- ${count(setup.services)} services: all systems set up in ${(setup.ms / 1000).toFixed(1)} s`,
      ...setup.systems.filter((s) => s.id !== 'generator').map((s) => `  - ${SYSTEM_LABELS[s.id]}: \`${s.describe}\``),
    ]),
    '',
    ...(problems.length > 0
      ? ['**Checks the sink made that failed** (what arrived is not what the system should have sent):', '', ...problems.map((s) => `- ${SYSTEM_LABELS[s.system]}, ${caseLabel(s.case)}: ${s.problem}`), '']
      : ['Every frame that arrived went to an endpoint, from the node\'s address where the system masquerades (xlb SNAT, iptables, nftables) and not elsewhere; xlb DSR\'s new flows carried the DSR option.', '']),
  ];
  return `${lines.join('\n')}\n`;
}

// ---- SVG: Mpps by service count, one line per system, a panel per kind of traffic ----

const COLORS: Record<SystemId, string> = {
  'xlb-snat': '#1f5fbf',
  'xlb-dsr': '#2ca02c',
  iptables: '#d62728',
  nftables: '#ff7f0e',
  routing: '#7f7f7f',
  'xdp-forwarder': '#9467bd',
  generator: '#bbbbbb',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Ticks of a log axis between lo and hi: 1, 2, 5 of every decade. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let decade = Math.floor(Math.log10(lo)); decade <= Math.ceil(Math.log10(hi)); decade++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** decade;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/**
 * A panel per kind of traffic (2 × 2), service counts across, Mpps up on a log scale — a ratio between
 * two systems is the same distance wherever it is — and a line per system.
 */
export function renderSvg(run: ThroughputRun, summaries: readonly Summary[], date: string): string {
  const panels = CASE_COLUMNS.filter((col) => summaries.some((s) => s.case.flows === col.flows && (s.case.traffic === col.traffic || s.case.services === 1)));
  const systems: SystemId[] = [...run.options.systems];
  const counts = run.options.serviceCounts;
  const pw = 380;
  const ph = 250;
  const margin = { left: 56, top: 34, right: 16, bottom: 40 };
  const cols = 2;
  const rows = Math.ceil(panels.length / cols);
  const width = cols * (pw + margin.left + margin.right) + 20;
  // The legend wraps: an entry is as wide as its label.
  const legend: { id: SystemId; x: number; y: number }[] = [];
  let lx = 12;
  let ly = 58;
  for (const id of systems) {
    const w = 30 + SYSTEM_LABELS[id].length * 6.6;
    if (lx + w > width - 12) {
      lx = 12;
      ly += 18;
    }
    legend.push({ id, x: lx, y: ly });
    lx += w;
  }
  const top = ly + 14;
  const height = top + rows * (ph + margin.top + margin.bottom);
  const at = (id: SystemId, n: number, col: (typeof CASE_COLUMNS)[number]): number | undefined => {
    // With one service there is no "spread": it is the same traffic as "one".
    const traffic = n === 1 ? 'one' : col.traffic;
    return summaries.find((s) => s.system === id && s.case.services === n && s.case.traffic === traffic && s.case.flows === col.flows)?.mpps;
  };
  const values = summaries.filter((s) => s.system !== 'generator' && Number.isFinite(s.mpps) && s.mpps > 0).map((s) => s.mpps);
  const lo = 10 ** Math.floor(Math.log10(Math.min(1, ...values)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(1, ...values)));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">Throughput through a node: forwarded Mpps by service count (10 endpoints each)</text>`,
    `<text x="12" y="40" fill="#555555">${escapeXml(`${date} · Mpps per kernel-timed CPU second of generator + node + sink, medians of ${run.options.rounds} rounds · log scale: compare as ratios`)}</text>`,
    ...legend.map(({ id, x, y }) => `<rect x="${x}" y="${y - 6}" width="16" height="4" fill="${COLORS[id]}"/><text x="${x + 21}" y="${y}">${escapeXml(SYSTEM_LABELS[id])}</text>`),
  ];
  panels.forEach((col, p) => {
    const ox = 10 + (p % cols) * (pw + margin.left + margin.right) + margin.left;
    const oy = top + Math.floor(p / cols) * (ph + margin.top + margin.bottom) + margin.top;
    parts.push(`<text x="${ox}" y="${oy - 12}" font-weight="bold">${escapeXml(col.title)}</text>`);
    parts.push(`<rect x="${ox}" y="${oy}" width="${pw}" height="${ph}" fill="none" stroke="#cccccc"/>`);
    const xOf = (i: number): number => ox + (counts.length === 1 ? pw / 2 : 30 + (i * (pw - 60)) / (counts.length - 1));
    const yOf = (v: number): number => oy + ph - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
    for (const v of logTicks(lo, hi)) {
      parts.push(`<line x1="${ox}" x2="${ox + pw}" y1="${yOf(v).toFixed(1)}" y2="${yOf(v).toFixed(1)}" stroke="#eeeeee"/>`);
      parts.push(`<text x="${ox - 6}" y="${(yOf(v) + 4).toFixed(1)}" text-anchor="end">${v >= 1 ? v.toFixed(0) : String(Number(v.toPrecision(1)))}</text>`);
    }
    counts.forEach((n, i) => parts.push(`<text x="${xOf(i).toFixed(1)}" y="${oy + ph + 16}" text-anchor="middle">${count(n)}</text>`));
    parts.push(`<text x="${ox + pw / 2}" y="${oy + ph + 32}" text-anchor="middle" fill="#555555">services</text>`);
    parts.push(`<text x="${ox - 40}" y="${oy + ph / 2}" transform="rotate(-90 ${ox - 40} ${oy + ph / 2})" text-anchor="middle" fill="#555555">Mpps</text>`);
    for (const id of systems) {
      const points = counts.flatMap((n, i) => {
        const v = at(id, n, col);
        return v === undefined || !Number.isFinite(v) || v <= 0 ? [] : [{ x: xOf(i), y: yOf(v), v }];
      });
      if (points.length === 0) continue;
      if (points.length > 1) parts.push(`<polyline fill="none" stroke="${COLORS[id]}" stroke-width="2" points="${points.map((q) => `${q.x.toFixed(1)},${q.y.toFixed(1)}`).join(' ')}"/>`);
      for (const q of points) parts.push(`<circle cx="${q.x.toFixed(1)}" cy="${q.y.toFixed(1)}" r="3" fill="${COLORS[id]}"><title>${escapeXml(`${SYSTEM_LABELS[id]}: ${q.v.toFixed(2)} Mpps`)}</title></circle>`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes throughput.{json,md,svg} into `dir` (default bench/results); returns the path without extension. */
export function writeThroughputReport(run: ThroughputRun, dir: string | undefined): string {
  const summaries = summarize(run);
  const report = writeBenchReport('throughput', figures(run, summaries), { ...(dir === undefined ? {} : { dir }), print: false });
  const out = dir ?? join(repoRoot(), 'bench', 'results');
  // The bench results shape's JSON as written; the table and the chart of this suite in place of the generic ones.
  writeFileSync(join(out, 'throughput.md'), renderMarkdown(run, summaries, report.date));
  writeFileSync(join(out, 'throughput.svg'), renderSvg(run, summaries, report.date));
  return join(out, 'throughput');
}
