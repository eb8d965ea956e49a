/**
 * The demo's steps. Each configures what it needs through the `xlb` CLI (real processes, against the
 * LB node agent's API socket), sends real traffic from the client namespace, reads the agents'
 * counters from /metrics, prints a small table, and returns its verdict with the figures behind it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LbListEntry } from '../cli/bpf.js';
import { formatMonitorEvent } from '../cli/monitor.js';
import type { ClientReport, HeldAnswer } from '../lab/processes.js';
import type { DemoCluster } from './cluster.js';
import { Counters, fetchMetrics, readCounters } from './counters.js';
import { check, shareRows, shares, stepResult, type Figures, type Output, type StepResult } from './report.js';
import { MonitorProcess, xlb } from './xlb-cli.js';

export const VIP4 = '198.18.10.10';
export const VIP6 = '2001:db8:10::10';
export const RESTRICTED_VIP = '198.18.10.20';
export const CLUSTER_IP = '198.18.10.30';
/** Excludes the lab client, 198.18.0.100. */
export const ALLOWED_RANGE = '198.18.0.0/28';

const HTTP_REQUESTS = 60;
const UDP_REQUESTS = 30;
const HELD_REQUESTS = 30;
const HELD_INTERVAL_MS = 100;
const FRESH_REQUESTS = 30;
const POD_REQUESTS = 30;
/** Requests from the denied client: each must go unanswered. */
const DENIED_REQUESTS = 3;
/** Nothing will answer: a short wait per request keeps the step quick (SYN retransmits come at 1 s). */
const DENIED_TIMEOUT_MS = 700;
const MONITOR_WAIT_MS = 2_000;

export interface DemoContext {
  cluster: DemoCluster;
  out: Output;
}

export interface DemoStep {
  name: string;
  title: string;
  /** what the step expects, for the summary when it cannot even run */
  expected: string;
  run(ctx: DemoContext): Promise<StepResult>;
}

export const bracket = (address: string): string => (address.includes(':') ? `[${address}]` : address);

function backendArgs(ctx: DemoContext, family: 'v4' | 'v6', port: number, skip?: string): string[] {
  return ctx.cluster.backends.filter((b) => b.name !== skip).flatMap((b) => ['--backend', `${bracket(b.host[family])}:${port}`]);
}

/** `xlb ARGS --api-socket $LB`, printed as the user would type it, with its output. */
export async function xlbOnLb(ctx: DemoContext, args: string[]): Promise<string> {
  ctx.out.line(`  $ xlb ${args.join(' ')} --api-socket $LB`);
  const output = await xlb([...args, '--api-socket', ctx.cluster.lb.agent.socket]);
  ctx.out.block(output, '    ');
  return output;
}

export interface Snapshot {
  lb: Counters;
  backends: Map<string, Counters>;
}

export async function snapshot(ctx: DemoContext): Promise<Snapshot> {
  const [lb, ...backends] = await Promise.all([ctx.cluster.lb, ...ctx.cluster.backends].map((n) => readCounters(n.agent.socket)));
  if (!lb) throw new Error('no LB node counters');
  return { lb, backends: new Map(ctx.cluster.backends.map((b, i) => [b.name, backends[i] ?? lb])) };
}

/** What each node counted between two snapshots. */
export function since(after: Snapshot, before: Snapshot): Snapshot {
  const backends = new Map<string, Counters>();
  for (const [name, counters] of after.backends) {
    const earlier = before.backends.get(name);
    backends.set(name, earlier ? counters.since(earlier) : counters);
  }
  return { lb: after.lb.since(before.lb), backends };
}

export function sumBackends(delta: Snapshot, read: (c: Counters) => number): number {
  return [...delta.backends.values()].reduce((sum, c) => sum + read(c), 0);
}

export const dsrReplies = (c: Counters): number => c.get('DSR_REPLY', 'EGRESS');

/**
 * One exchange before a batch: the lab client gives each request 2 s, one after the other, so a
 * broken path would otherwise cost minutes before the step could say so.
 */
export async function probe(ctx: DemoContext, kind: 'http' | 'udp', target: string, fromNs?: string): Promise<void> {
  const report = await ctx.cluster.processes.client(kind, target, 1, undefined, fromNs);
  if (report.answered !== 1) throw new Error(`the first ${kind === 'http' ? 'HTTP request' : 'datagram'} to ${target} got no answer (${report.errors[0] ?? 'no error'})`);
}

export function everyBackendServed(report: ClientReport, names: string[]): boolean {
  return names.every((n) => (report.byBackend[n] ?? 0) > 0);
}

export function answeredText(report: ClientReport): string {
  return `${report.answered}/${report.sent} answered${report.errors.length > 0 ? ` (first error: ${report.errors[0]})` : ''}`;
}

/** Steps 1 and 2: a DSR VIP; replies go from the backends straight to the client. */
function dsrStep(family: 'v4' | 'v6'): DemoStep {
  const vip = family === 'v4' ? VIP4 : VIP6;
  const id = family === 'v4' ? 'web4' : 'web6';
  const name = `DSR over IPv${family === 'v4' ? 4 : 6}`;
  const expected = `${HTTP_REQUESTS}/${HTTP_REQUESTS} answered, 3 backends, 0 replies via LB`;
  return {
    name,
    expected,
    title:
      family === 'v4'
        ? 'A VIP in DSR mode (direct server return). The LB node forwards each new connection to a backend\n' +
          'chosen by Maglev; the backend answers the client directly, from the VIP, so replies skip the LB node.'
        : 'The same over IPv6.',
    async run(ctx) {
      const { cluster, out } = ctx;
      const names = cluster.backends.map((b) => b.name);
      await xlbOnLb(ctx, ['service', 'add', id, '--frontend', `${bracket(vip)}:80/TCP`, '--mode', 'dsr', ...backendArgs(ctx, family, 8080)]);
      await probe(ctx, 'http', `${bracket(vip)}:80`);
      const before = await snapshot(ctx);
      out.line(`  ${HTTP_REQUESTS} HTTP requests from the client (${cluster.lab.client[family]}) to http://${bracket(vip)}/, each on a new TCP connection:`);
      const report = await out.during(() => 'requests under way', cluster.processes.client('http', `${bracket(vip)}:80`, HTTP_REQUESTS));
      const delta = since(await snapshot(ctx), before);
      const lbNewFlows = delta.lb.get('FWD_NEW_FLOW', 'INGRESS');
      const lbEstablished = delta.lb.get('FWD_ESTABLISHED', 'INGRESS');
      const lbReplies = delta.lb.get('FWD_REPLY', 'INGRESS');
      const backendReplies = Object.fromEntries([...delta.backends].map(([n, c]) => [n, dsrReplies(c)]));
      const totalDsr = sumBackends(delta, dsrReplies);

      out.table(['backend', 'answered', 'share'], shareRows(report.byBackend, names));
      out.line('  where the packets went (counters from each agent\'s /metrics):');
      out.table(['node', 'counter', 'packets'], [
        ['LB', 'new connections forwarded to a backend (FWD_NEW_FLOW)', lbNewFlows],
        ['LB', 'further client packets forwarded (FWD_ESTABLISHED)', lbEstablished],
        ['LB', 'replies passed back through the LB node (FWD_REPLY)', lbReplies],
        ...names.map((n): (string | number)[] => [n, 'replies sent straight to the client from the VIP (DSR_REPLY)', backendReplies[n] ?? 0]),
      ]);
      const checks = [
        check(report.answered === HTTP_REQUESTS, `${HTTP_REQUESTS}/${HTTP_REQUESTS} answered`, answeredText(report)),
        check(everyBackendServed(report, names), 'every backend answered some', shares(report.byBackend, names)),
        check(lbNewFlows >= HTTP_REQUESTS, `≥ ${HTTP_REQUESTS} new flows forwarded by the LB`, `${lbNewFlows}`),
        check(lbReplies === 0, '0 replies through the LB node', `${lbReplies}`),
        check(totalDsr >= HTTP_REQUESTS, `≥ ${HTTP_REQUESTS} DSR replies from the backends`, `${totalDsr}`),
      ];
      const seen = `${report.answered}/${report.sent}; ${shares(report.byBackend, names)}; ${lbReplies} via LB`;
      return stepResult(name, { expected, seen }, checks, {
        requests: report.sent,
        answered: report.answered,
        byBackend: report.byBackend,
        lbNewFlows,
        lbEstablished,
        lbReplies,
        backendDsrReplies: backendReplies,
        dsrReplies: totalDsr,
      });
    },
  };
}

const snatStep: DemoStep = {
  name: 'UDP with SNAT',
  expected: `${UDP_REQUESTS}/${UDP_REQUESTS} answered, 3 backends, replies via LB`,
  title:
    'A UDP service in SNAT mode. The LB node rewrites the source to its own address, so replies come\n' +
    'back through it and are translated back to the VIP.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const names = cluster.backends.map((b) => b.name);
    await xlbOnLb(ctx, ['service', 'add', 'dns4', '--frontend', `${VIP4}:53/UDP`, '--mode', 'snat', ...backendArgs(ctx, 'v4', 5353)]);
    await probe(ctx, 'udp', `${VIP4}:53`);
    const before = await snapshot(ctx);
    out.line(`  ${UDP_REQUESTS} UDP datagrams from the client to ${VIP4}:53, each from a new source port:`);
    const report = await out.during(() => 'datagrams under way', cluster.processes.client('udp', `${VIP4}:53`, UDP_REQUESTS));
    const delta = since(await snapshot(ctx), before);
    const lbNewFlows = delta.lb.get('FWD_NEW_FLOW', 'INGRESS');
    const lbReplies = delta.lb.get('FWD_REPLY', 'INGRESS');
    const totalDsr = sumBackends(delta, dsrReplies);
    out.table(['backend', 'answered', 'share'], shareRows(report.byBackend, names));
    out.table(['node', 'counter', 'packets'], [
      ['LB', 'new flows forwarded, source rewritten to the LB node (FWD_NEW_FLOW)', lbNewFlows],
      ['LB', 'replies translated back to VIP → client (FWD_REPLY)', lbReplies],
      ['b1-b3', 'replies rewritten by the backends (DSR_REPLY)', totalDsr],
    ]);
    const checks = [
      check(report.answered === UDP_REQUESTS, `${UDP_REQUESTS}/${UDP_REQUESTS} answered`, answeredText(report)),
      check(everyBackendServed(report, names), 'every backend answered some', shares(report.byBackend, names)),
      check(lbReplies >= UDP_REQUESTS, `≥ ${UDP_REQUESTS} replies translated by the LB`, `${lbReplies}`),
      check(totalDsr === 0, '0 DSR replies from the backends', `${totalDsr}`),
    ];
    const seen = `${report.answered}/${report.sent}; ${shares(report.byBackend, names)}; ${lbReplies} via LB`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      requests: report.sent,
      answered: report.answered,
      byBackend: report.byBackend,
      lbNewFlows,
      lbReplies,
      dsrReplies: totalDsr,
    });
  },
};

const maglevStep: DemoStep = {
  name: 'Maglev: remove a backend',
  expected: 'held conn. keeps its backend; none to removed',
  title:
    'Maglev at work. One long-lived connection stays open while ANOTHER backend is removed through the\n' +
    'API: the connection keeps its backend (conntrack + consistent hashing); new connections go to the\n' +
    'remaining two only.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const names = cluster.backends.map((b) => b.name);
    await probe(ctx, 'http', `${VIP4}:80`);
    out.line(`  the client opens one TCP connection to ${VIP4}:80 and sends a request on it every ${HELD_INTERVAL_MS} ms (HTTP keep-alive)`);
    const held = cluster.processes.hold(`${VIP4}:80`, HELD_REQUESTS, HELD_INTERVAL_MS);
    const first: HeldAnswer = await held.next();
    const kept = first.backend ?? '';
    const removed = names.find((n) => n !== kept);
    if (first.error !== undefined || removed === undefined) {
      const rest = await held.rest();
      throw new Error(`the held connection's first request failed: ${first.error ?? `answered by ${kept}`} (${rest.length} more)`);
    }
    out.line(`  its first request was answered by ${kept} (client port ${String(first.localPort)}); now remove ${removed}:`);
    await xlbOnLb(ctx, ['service', 'add', 'web4', '--frontend', `${VIP4}:80/TCP`, '--mode', 'dsr', ...backendArgs(ctx, 'v4', 8080, removed)]);
    out.line(`  meanwhile, ${FRESH_REQUESTS} new connections from the client:`);
    const fresh = await out.during(() => 'requests under way', cluster.processes.client('http', `${VIP4}:80`, FRESH_REQUESTS));
    const rest = await out.during(() => 'the held connection is still sending', held.rest());
    const judged = judgeRemoval(out, { first, rest, fresh, kept, removed, names, heldRequests: HELD_REQUESTS, freshRequests: FRESH_REQUESTS });
    return stepResult(this.name, { expected: this.expected, seen: judged.seen }, judged.checks, judged.details);
  },
};

const sourceRangeStep: DemoStep = {
  name: 'source ranges',
  expected: 'no answer; drops in monitor and counters',
  title:
    `A VIP only clients from ${ALLOWED_RANGE} may use (loadBalancerSourceRanges). The client, 198.18.0.100, is\n` +
    'outside it: the LB node drops its packets in XDP, counts them and reports each drop with its reason.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const socket = cluster.lb.agent.socket;
    await xlbOnLb(ctx, ['service', 'add', 'restricted', '--frontend', `${RESTRICTED_VIP}:80/TCP`, '--mode', 'dsr', '--source-range', ALLOWED_RANGE, ...backendArgs(ctx, 'v4', 8080)]);
    out.line('  $ xlb monitor --json --type drop --api-socket $LB &');
    const monitor = await MonitorProcess.start(['--type', 'drop', '--api-socket', socket], 5_000);
    let report: ClientReport;
    let before: Counters;
    const isOurs = (e: Record<string, unknown>): boolean => e.reasonLabel === 'source_range' && e.daddr === RESTRICTED_VIP;
    try {
      before = await readCounters(socket);
      out.line(`  ${DENIED_REQUESTS} HTTP requests from the client to http://${RESTRICTED_VIP}/ (each given ${DENIED_TIMEOUT_MS} ms):`);
      report = await out.during(() => 'the client is waiting for answers that will not come', cluster.processes.client('http', `${RESTRICTED_VIP}:80`, DENIED_REQUESTS, DENIED_TIMEOUT_MS));
      const deadline = Date.now() + MONITOR_WAIT_MS;
      while (!monitor.events.some(isOurs) && Date.now() < deadline) await sleep(50);
    } finally {
      await monitor.stop();
    }
    const drops = (await readCounters(socket)).since(before).get('DROP_SOURCE_RANGE', 'INGRESS');
    const events = monitor.events.filter(isOurs);
    out.line(`  the client: ${answeredText(report)}`);
    out.line(`  xlb monitor printed ${events.length} drop event(s), e.g. (as text, without --json):`);
    for (const event of events.slice(0, 3)) out.line(`    ${formatMonitorEvent(event)}`);
    out.table(['node', 'counter', 'packets'], [['LB', 'dropped: source not in the service\'s ranges (DROP_SOURCE_RANGE)', drops]]);
    const checks = [
      check(report.answered === 0, 'no answer', answeredText(report)),
      check(events.length > 0, 'source_range drops in xlb monitor', `${events.length} events`),
      check(drops >= DENIED_REQUESTS, `≥ ${DENIED_REQUESTS} DROP_SOURCE_RANGE`, `${drops}`),
    ];
    const seen = `${report.answered}/${report.sent} answered; ${events.length} events, ${drops} drops`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      requests: report.sent,
      answered: report.answered,
      monitorDropEvents: events.length,
      dropSourceRange: drops,
    });
  },
};

/** "198.18.20.2" from the "address:port" a backend saw (an IPv4 client of a dual-stack socket is ::ffff:-mapped). */
function seenAddress(seen: string): string {
  return seen.slice(0, seen.lastIndexOf(':')).replace(/^::ffff:/, '');
}

const clusterIpStep: DemoStep = {
  name: 'ClusterIP from a pod',
  expected: `${POD_REQUESTS}/${POD_REQUESTS} answered, 3 backends, seen from the pod`,
  title:
    `A ClusterIP service, called from a pod on the LB node (east-west). tc_pod, on the host side of the pod's\n` +
    'veth (--pod-devices), sends each new connection to a backend and gives the replies the service address\n' +
    'back; nothing is source-NATed, so the backends see the pod\'s own address.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const pod = cluster.lab.pod;
    if (!pod) throw new Error('the lab has no pod');
    const names = cluster.backends.map((b) => b.name);
    const target = `${CLUSTER_IP}:80`;
    await xlbOnLb(ctx, ['service', 'add', 'cluster4', '--frontend', `${target}/TCP`, '--type', 'ClusterIP', ...backendArgs(ctx, 'v4', 8080)]);
    await probe(ctx, 'http', target, pod.ns);
    const before = await snapshot(ctx);
    out.line(`  ${POD_REQUESTS} HTTP requests from the pod (${pod.v4}, default route via the LB node) to http://${CLUSTER_IP}/, each on a new TCP connection:`);
    const report = await out.during(() => 'requests under way', cluster.processes.client('http', target, POD_REQUESTS, undefined, pod.ns));
    const delta = since(await snapshot(ctx), before);
    const newFlows = delta.lb.get('FWD_NEW_FLOW', 'INGRESS');
    const replies = delta.lb.get('FWD_REPLY', 'EGRESS');
    const sources = new Map<string, number>();
    for (const seen of report.seenFrom) sources.set(seenAddress(seen), (sources.get(seenAddress(seen)) ?? 0) + 1);
    const fromPod = sources.get(pod.v4) ?? 0;
    const sourcesText = [...sources].map(([address, n]) => `${address} ${n}`).join(' · ') || 'none';

    out.table(['backend', 'answered', 'share'], shareRows(report.byBackend, names));
    out.line(`  the source address the backends saw: ${sourcesText}`);
    out.table(['node', 'counter', 'packets'], [
      ['LB', `pod's new connections sent to a backend by tc_pod on ${pod.hostDevice} (FWD_NEW_FLOW)`, newFlows],
      ['LB', 'replies given the service address back on their way into the pod (FWD_REPLY, egress)', replies],
    ]);
    const checks = [
      check(report.answered === POD_REQUESTS, `${POD_REQUESTS}/${POD_REQUESTS} answered`, answeredText(report)),
      check(everyBackendServed(report, names), 'every backend answered some', shares(report.byBackend, names)),
      check(fromPod === POD_REQUESTS && sources.size === 1, `every request seen from the pod's ${pod.v4}`, sourcesText),
      check(newFlows >= POD_REQUESTS, `≥ ${POD_REQUESTS} new flows by tc_pod`, `${newFlows}`),
      check(replies >= POD_REQUESTS, `≥ ${POD_REQUESTS} replies translated back`, `${replies}`),
    ];
    const seen = `${report.answered}/${report.sent}; ${shares(report.byBackend, names)}; from ${sourcesText}`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      requests: report.sent,
      answered: report.answered,
      byBackend: report.byBackend,
      seenFromPod: fromPod,
      podNewFlows: newFlows,
      podReplies: replies,
    });
  },
};

const EXCERPT = /^xlb_(services|datapath_packets_total|drop_count_total|bpf_map_entries\{map_name="xlb_(ct|lb_svc|lb_be)"\})/;

const inspectStep: DemoStep = {
  name: 'metrics and maps',
  expected: 'xlb_* metrics; lb list shows the 5 services',
  title: 'What an operator sees: an excerpt of /metrics, and the datapath\'s maps through `xlb bpf lb list` / `ct list`.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const socket = cluster.lb.agent.socket;
    const bpffs = cluster.lb.agent.bpffs;
    const text = await fetchMetrics(socket);
    const lines = text.split('\n').filter((l) => EXCERPT.test(l) && !/ 0$/.test(l));
    out.line('  $ curl --unix-socket $LB http://xlb/metrics | grep ...   (the LB node; non-zero series)');
    for (const l of lines.slice(0, 14)) out.line(`    ${l}`);
    if (lines.length > 14) out.line(`    … ${lines.length - 14} more`);

    out.line(`  $ xlb bpf lb list --bpffs $RUN/bpffs/lb`);
    out.block(await xlb(['bpf', 'lb', 'list', '--bpffs', bpffs]), '    ');
    const list = JSON.parse(await xlb(['bpf', 'lb', 'list', '--bpffs', bpffs, '--json'])) as LbListEntry[];
    const ctText = await xlb(['bpf', 'ct', 'list', '--bpffs', bpffs]);
    const ct = JSON.parse(await xlb(['bpf', 'ct', 'list', '--bpffs', bpffs, '--json'])) as unknown[];
    out.line(`  $ xlb bpf ct list --bpffs $RUN/bpffs/lb   (${ct.length} tracked flows; the most recent:)`);
    out.block(ctText.split('\n').slice(0, 6).join('\n'), '    ');

    const backendsByFrontend = Object.fromEntries(list.map((e) => [e.frontend, e.backends.length]));
    const expectedBackends: Record<string, number> = {
      [`${VIP4}:80/TCP`]: 2,
      [`[${VIP6}]:80/TCP`]: 3,
      [`${VIP4}:53/UDP`]: 3,
      [`${RESTRICTED_VIP}:80/TCP`]: 3,
      [`${CLUSTER_IP}:80/TCP`]: 3,
    };
    const listMatches = Object.entries(expectedBackends).every(([f, n]) => backendsByFrontend[f] === n) && list.length === Object.keys(expectedBackends).length;
    const restricted = list.find((e) => e.frontend === `${RESTRICTED_VIP}:80/TCP`);
    const checks = [
      check(lines.some((l) => l.startsWith('xlb_datapath_packets_total')), 'xlb_datapath_packets_total in /metrics', `${lines.length} non-zero xlb_* lines`),
      check(listMatches, `lb list: ${Object.entries(expectedBackends).map(([f, n]) => `${f} ${n}`).join(', ')}`,
        list.map((e) => `${e.frontend} ${e.backends.length}`).join(', ') || 'nothing'),
      check(restricted?.sourceRanges.includes(ALLOWED_RANGE) === true, `source range ${ALLOWED_RANGE} in the maps`, restricted?.sourceRanges.join(',') ?? 'no such service'),
      check(ct.length > 0, 'tracked flows in ct list', `${ct.length}`),
    ];
    const seen = `${lines.length} lines; ${list.length} services; ${ct.length} flows`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      metricsLines: lines.length,
      lbListServices: list.length,
      lbListBackends: backendsByFrontend,
      ctEntries: ct.length,
    });
  },
};

export const STEPS: DemoStep[] = [dsrStep('v4'), dsrStep('v6'), snatStep, maglevStep, sourceRangeStep, clusterIpStep, inspectStep];

/**
 * What a backend's removal did, as both demos judge it: a connection held across the removal stays on
 * its backend, on one client port; new connections are all answered, none by the removed backend, and
 * spread over the rest. Prints the two tables; returns the checks, the summary and the details.
 */
export function judgeRemoval(
  out: Output,
  run: { first: HeldAnswer; rest: HeldAnswer[]; fresh: ClientReport; kept: string; removed: string; names: string[]; heldRequests: number; freshRequests: number },
): { checks: ReturnType<typeof check>[]; seen: string; details: Figures } {
  const { first, rest, fresh, kept, removed, names, heldRequests, freshRequests } = run;
  const all = [first, ...rest];
  const heldAnswered = all.filter((a) => a.backend !== undefined).length;
  const heldOnKept = all.filter((a) => a.backend === kept).length;
  const heldSamePort = all.filter((a) => a.localPort === first.localPort).length;
  const freshToRemoved = fresh.byBackend[removed] ?? 0;
  const remaining = names.filter((n) => n !== removed);
  out.table(['connection', 'requests', 'answered', `by ${kept}`, 'same client port'], [['the held one', all.length, heldAnswered, heldOnKept, heldSamePort]]);
  out.table(['backend', 'new connections', 'share'], shareRows(fresh.byBackend, names).map((r) => (r[0] === removed ? [`${removed} (removed)`, ...r.slice(1)] : r)));
  const heldError = rest.find((a) => a.error)?.error;
  const checks = [
    check(heldOnKept === heldRequests && heldSamePort === heldRequests, `all ${heldRequests} held requests by ${kept} on one connection`,
      `${heldOnKept} by ${kept}, ${heldSamePort} on port ${String(first.localPort)}${heldError ? ` (${heldError})` : ''}`),
    check(fresh.answered === freshRequests, `${freshRequests}/${freshRequests} new connections answered`, answeredText(fresh)),
    check(freshToRemoved === 0, `none to the removed ${removed}`, `${freshToRemoved}`),
    check(everyBackendServed(fresh, remaining), `both ${remaining.join(' and ')} answered some`, shares(fresh.byBackend, remaining)),
  ];
  return {
    checks,
    seen: `held ${heldOnKept}/${all.length} on ${kept}; new ${shares(fresh.byBackend, names)}`,
    details: {
      keptBackend: kept,
      removedBackend: removed,
      heldRequests: all.length,
      heldAnswered,
      heldOnKeptBackend: heldOnKept,
      heldSameConnection: heldSamePort,
      freshRequests: fresh.sent,
      freshAnswered: fresh.answered,
      freshByBackend: fresh.byBackend,
      freshToRemoved,
    },
  };
}
