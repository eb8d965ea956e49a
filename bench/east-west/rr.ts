/**
 * Request/response from a pod to a ClusterIP service, through xlb and through kube-proxy's iptables
 * rules, each in its own copy of one topology (test/e2e/clusterip-pod.test.ts's):
 *
 *   pod  eth0 198.18.40.2 ── lxc-pod 198.18.40.1   node   bk1 198.18.41.1 ── eth0 198.18.41.2  b1
 *                                                          bk2 198.18.42.1 ── eth0 198.18.42.2  b2
 *                                                          bk3 198.18.43.1 ── eth0 198.18.43.2  b3
 *
 * - xlb's copy: tc_pod on lxc-pod (PodDatapath over createNodeDatapath's maps: devices [], xdp off) and
 *   socket-LB on a cgroup of the run's own; no netfilter tables in its node's netns, as on a node
 *   without kube-proxy;
 * - kube-proxy's copy: no xlb program anywhere; kube-proxy's iptables-mode rules
 *   (bench/control-plane/kube-proxy-rules.ts) loaded in its node's netns with the system's
 *   iptables-restore as kube-proxy does (the jumps, then the sync).
 * Two copies rather than one node switched between the two: a switch is a restore of the rules (a
 * second for a thousand services), and on this shared machine the runs compared must be seconds apart
 * at most. Both copies hold the same services: ours at 198.18.50.10 first in KUBE-SERVICES (what a
 * node with one service walks), the same backends again at 198.18.50.11 in the middle of N other
 * ClusterIP services (kube-proxy writes them in map order: on average a new connection walks half the
 * list). Only new connections walk the nat table, so only connections are timed at .11.
 *
 * The backends run bench/east-west/rr.c's echo server; the clients are rr.c too (Node's socket
 * machinery would cost more than the datapaths compared), one at a time, each run bounded by count
 * and seconds:
 *   ping-pong — one connection, 1 byte out and 1 back: round trips per second;
 *   crr       — connect, 1 byte out and 1 back, close: connections per second.
 * Clients: in the pod (xlb: the tc path), and on the node (a "host process": xlb's in the socket-LB
 * cgroup; kube-proxy's through its OUTPUT chain). A run from xlb's pod to the backends straight (no
 * service; tc_pod attached, passing) shows what the service costs at all; it goes to another port of
 * the backends (DIRECT_PORT), see there.
 *
 * Every run checks it went the way it says. The nodes have no route to the ClusterIPs but a default
 * route to a device that leads nowhere, so a connection nobody translates times out (rr.c fails the
 * run); and counters confirm it: tc_pod's new flows, socket-LB's translations, the KUBE-SVC chain's
 * jumps — or, straight to the backends, no tc_pod translation at all.
 *
 * Rounds run every way once, in an order rotating round by round; each figure is the median of its
 * rounds, with the median of the rounds' own ratios beside it (their runs were seconds apart). On this
 * shared 2-CPU machine a run's rate swings several-fold with what else runs, so every comparison comes
 * twice: per second of wall time, and per CPU-second of the client and the servers (cpuNs: over
 * veths the packets' whole way through the stack is charged to those processes), which holds still.
 * IPv4 only: the rule generator writes kube-proxy's IPv4 table.
 *
 * measureRoundTrips() is for the east-west bench suite; run alone (node dist/bench/east-west/rr.js
 * [--quick]) it prints its figures as a table and JSON, and writes no result files.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ServiceDatapath } from '../../agent/datapath.js';
import { DEFAULT_BACKEND_MAP_MAX, DEFAULT_SERVICE_MAP_MAX } from '../../agent/flags.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { PodDatapath } from '../../agent/pod-datapath.js';
import { SocketLb } from '../../agent/socket-lb.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { Topology } from '../../lb/datapath/topology.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { TestCgroup } from '../../test/support/test-cgroup.js';
import { IPTABLES_JUMPS, iptablesFullSync, kubeSvcChain } from '../control-plane/kube-proxy-rules.js';
import { benchCluster, NAMESPACE, PodAddresses, SERVICE_PORT, TARGET_PORT, type BenchService } from '../control-plane/objects.js';
import { formatNumber, repoRoot, type BenchFigure } from '../lib/report.js';

export interface RoundTripOptions {
  /** Rounds of every way in turn (default 20); each figure is the median of its rounds. */
  rounds?: number;
  /** Seconds per run (default 0.4). */
  seconds?: number;
  /** Transactions per run at most (default 2,000,000: the seconds bound it first). */
  count?: number;
  /** Other ClusterIP services, around ours at the middle address (default 1,000). */
  otherServices?: number;
  /** Ends the measurement: the running client is killed, everything is taken down. */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

const POD = { address: '198.18.40.2', gateway: '198.18.40.1' };
const BACKENDS = [1, 2, 3].map((n) => ({ name: `b${n}`, dev: `bk${n}`, address: `198.18.4${n}.2`, gateway: `198.18.4${n}.1` }));
/** Ours first in KUBE-SERVICES, and the same backends in the middle of the other services. */
const CLUSTER_IP = { first: '198.18.50.10', middle: '198.18.50.11' };
/**
 * The runs straight to the backends go to a port of theirs no service targets. At TARGET_PORT, a
 * pod's connection that reuses the source port of a closed ClusterIP connection to the same backend
 * (TIME_WAIT reuse, here within seconds) has its SYN-ACK given the service's address by tc_pod (the
 * old flow's reply entry still matches), and never completes.
 */
const DIRECT_PORT = TARGET_PORT + 1;
const MAGLEV_SIZE = 16381;
const CONNTRACK_ENTRIES = 262144;
const SNAT_PORTS = { min: 20000, max: 29999 };
const GOAL_CRR_RATIO = 1.3;
/** Generous: a run is bounded by its seconds, and rr.c's own 2 s timeouts end a broken one. */
const RUN_GRACE_MS = 10_000;

type Workload = 'pingpong' | 'crr';
type Copy = 'xlb' | 'iptables';
type Client = 'pod' | 'node';
/** One run's way: which copy, who calls, where to. */
interface Way {
  id: string;
  copy: Copy;
  client: Client;
  workload: Workload;
  to: 'first' | 'middle' | 'direct';
}
interface RunResult {
  transactions: number;
  seconds: number;
  rate: number;
  p50Us: number;
  p99Us: number;
  /** CPU time of the client and the copy's servers per transaction (see cpuNs). */
  cpuUs: number;
}

/** `short` names figures (the report's SVG gives names ~70 characters); `name` goes in their parameters. */
const WORKLOAD_TEXT: Record<Workload, { short: string; name: string; unit: string }> = {
  pingpong: { short: 'ping-pong', name: '1-byte TCP ping-pong over one connection', unit: 'round trips/s' },
  crr: { short: 'connect+req+close', name: 'connect + 1-byte request/response + close', unit: 'connections/s' },
};

function ways(): Way[] {
  const all: Way[] = [];
  const way = (copy: Copy, client: Client, workload: Workload, to: Way['to']): void =>
    void all.push({ id: `${copy}-${client}-${workload}${to === 'first' ? '' : `-${to}`}`, copy, client, workload, to });
  for (const workload of ['pingpong', 'crr'] as const) {
    for (const copy of ['xlb', 'iptables'] as const) for (const client of ['pod', 'node'] as const) way(copy, client, workload, 'first');
    way('xlb', 'pod', workload, 'direct');
  }
  for (const copy of ['xlb', 'iptables'] as const) for (const client of ['pod', 'node'] as const) way(copy, client, 'crr', 'middle');
  return all;
}

/** Build the C client/server (gcc -O2) into build/bench/, as connect-peer is. */
function buildRr(): string {
  const root = repoRoot();
  const dir = join(root, 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  const binary = join(dir, 'rr');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', binary, join(root, 'bench', 'east-west', 'rr.c')], { stdio: 'inherit' });
  return binary;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 === 1 ? (sorted[Math.floor(mid)] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Its stdout once it exits 0; killed on abort or past `timeoutMs`. */
async function collect(child: ChildProcess, what: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  let out = '';
  let err = '';
  let failure: Error | undefined; // not started ('close' follows)
  child.once('error', (error) => (failure = error));
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const kill = (): void => void child.kill('SIGKILL');
  const timer = setTimeout(kill, timeoutMs);
  signal?.addEventListener('abort', kill, { once: true });
  try {
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    if (signal?.aborted) throw new Error(`${what}: interrupted`);
    if (code !== 0) throw new Error(`${what} exited with ${code}: ${failure?.message ?? err.trim()}`);
    return out;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', kill);
  }
}

/** rr.c's line, with the servers' CPU time meanwhile. */
function parseDone(out: string, what: string, serverCpuNs: number): RunResult {
  const match = /^done (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$/m.exec(out);
  if (!match) throw new Error(`${what} printed ${JSON.stringify(out.slice(0, 200))}`);
  const [transactions, elapsedNs, p50Ns, , p99Ns, clientCpuNs] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const seconds = elapsedNs / 1e9;
  return { transactions, seconds, rate: transactions / seconds, p50Us: p50Ns / 1000, p99Us: p99Ns / 1000, cpuUs: (clientCpuNs + serverCpuNs) / 1000 / transactions };
}

/**
 * CPU time of processes so far, ns (/proc/PID/schedstat: sum_exec_runtime). With veths, a packet's way
 * through the stack runs in the softirq its sender raised, in the sender's context (this kernel has
 * no IRQ time accounting, so the task is charged): the client's and the servers' CPU time is the
 * transactions' cost whatever else the machine ran meanwhile, unlike the rate.
 */
function cpuNs(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  return total;
}

/**
 * One copy of the topology, as a CNI leaves it: a veth per pod and per backend, the node their
 * gateway, forwarding on; rr.c's echo server on every backend. The node's default route leads nowhere
 * (a veth whose peer stays down; not every kernel has dummy devices): a ClusterIP nobody translates is
 * lost there, and OUTPUT's DNAT (iptables, host processes) has a route to start from, as on a real node.
 */
async function buildCopy(topology: Topology, copy: Copy, rr: string, servers: Set<ChildProcess>): Promise<{ nodeNs: string; podNs: string; serverPids: number[] }> {
  const nodeNs = topology.namespace(`${copy}-node`);
  const podNs = topology.namespace(`${copy}-pod`);
  const serverPids: number[] = [];
  topology.veth({ ns: podNs, name: 'eth0' }, { ns: nodeNs, name: 'lxc-pod' });
  topology.address(podNs, 'eth0', `${POD.address}/24`);
  topology.address(nodeNs, 'lxc-pod', `${POD.gateway}/24`);
  topology.exec(podNs, 'ip', ['route', 'add', 'default', 'via', POD.gateway]);
  topology.exec(nodeNs, 'ip', ['link', 'add', 'nowhere', 'type', 'veth', 'peer', 'name', 'nowhere-peer']);
  topology.exec(nodeNs, 'ip', ['link', 'set', 'nowhere', 'up']);
  topology.exec(nodeNs, 'ip', ['route', 'add', 'default', 'dev', 'nowhere']);
  topology.exec(nodeNs, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // Short connections, client side: a TIME_WAIT port is reused after a second (timestamps on).
  for (const ns of [podNs, nodeNs]) topology.exec(ns, 'sysctl', ['-qw', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65535']);
  for (const b of BACKENDS) {
    const ns = topology.namespace(`${copy}-${b.name}`);
    topology.veth({ ns, name: 'eth0' }, { ns: nodeNs, name: b.dev });
    topology.address(ns, 'eth0', `${b.address}/24`);
    topology.address(nodeNs, b.dev, `${b.gateway}/24`);
    topology.exec(ns, 'ip', ['route', 'add', 'default', 'via', b.gateway]);
    // `ip netns exec` execs the server: the pid is the server's.
    const server = spawn('ip', ['netns', 'exec', ns, rr, 'serve', `${TARGET_PORT},${DIRECT_PORT}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    servers.add(server);
    if (server.pid !== undefined) serverPids.push(server.pid);
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`rr serve in ${ns} exited with ${code}`)));
    });
  }
  return { nodeNs, podNs, serverPids };
}

/** Pod → ClusterIP request/response rates through xlb (tc_pod, socket-LB) and kube-proxy's iptables rules. */
export async function measureRoundTrips(options: RoundTripOptions = {}): Promise<BenchFigure[]> {
  const rounds = options.rounds ?? 20;
  const seconds = options.seconds ?? 0.4;
  const count = options.count ?? 2_000_000;
  const otherCount = options.otherServices ?? 1_000;
  const log = options.log ?? (() => undefined);
  const signal = options.signal;
  const rr = buildRr();
  const topology = new Topology('ew-rr');
  const servers = new Set<ChildProcess>();
  let bpffs: TempBpffs | undefined;
  let socketCgroup: TestCgroup | undefined;
  let plainCgroup: TestCgroup | undefined;
  let node: ServiceDatapath | undefined;
  let pods: PodDatapath | undefined;
  let socketLb: SocketLb | undefined;
  try {
    const copies = { xlb: await buildCopy(topology, 'xlb', rr, servers), iptables: await buildCopy(topology, 'iptables', rr, servers) };
    const ours = (name: string, clusterIP: string): BenchService => ({ namespace: NAMESPACE, name, clusterIP, endpoints: BACKENDS.map((b) => b.address), resourceVersion: 1 });
    const first = ours('web', CLUSTER_IP.first);
    const middle = ours('web-middle', CLUSTER_IP.middle);
    const others = benchCluster(otherCount, BACKENDS.length, new PodAddresses());
    const half = Math.floor(others.length / 2);
    const cluster = [first, ...others.slice(0, half), middle, ...others.slice(half)];

    // xlb: the node datapath's maps, tc_pod over them, socket-LB on a cgroup of ours.
    bpffs = TempBpffs.mount('ew-rr');
    socketCgroup = TestCgroup.create('ew-rr-sock');
    plainCgroup = TestCgroup.create('ew-rr-plain');
    const pinDir = join(bpffs.dir, 'node');
    const capacity = { services: DEFAULT_SERVICE_MAP_MAX, backends: DEFAULT_BACKEND_MAP_MAX };
    const maglevSeed = parseMaglevSeed(DEFAULT_MAGLEV_SEED);
    const shared = { maglevTableSize: MAGLEV_SIZE, maglevSeed, conntrackEntries: CONNTRACK_ENTRIES, capacity };
    const datapath = inNetns(copies.xlb.nodeNs, () =>
      createNodeDatapath({
        ...shared, devices: [], xdp: 'off', mode: 'snat', bpffs: pinDir, nodeAddresses: [POD.gateway], nodeName: 'bench',
        snatPorts: SNAT_PORTS, nodeSetup: false, dsrServiceRanges: [], log: () => undefined,
      }),
    );
    node = datapath;
    await datapath.apply(new Map<string, Service>(
      cluster.map((s) => {
        const id = `${s.namespace}/${s.name}`;
        const raw = { type: 'ClusterIP', frontend: { address: s.clusterIP, port: SERVICE_PORT, protocol: 'TCP' }, backends: s.endpoints.map((address) => ({ address, port: TARGET_PORT })) };
        return [id, validateService(raw, id, { defaultMode: 'snat', clusterIP: true })];
      }),
    ));
    const podDatapath = PodDatapath.load({ ...shared, pinDir, podDevices: ['lxc+'], log: () => undefined, netns: copies.xlb.nodeNs });
    pods = podDatapath;
    const sync = podDatapath.attachMatching();
    if (sync.failed.length > 0 || podDatapath.attached().join() !== 'lxc-pod') throw new Error(`tc_pod: attached to ${podDatapath.attached().join(', ') || 'nothing'}`);
    socketLb = SocketLb.load({ pinDir, capacity, maglevTableSize: MAGLEV_SIZE, maglevSeed, cgroupRoot: socketCgroup.dir, log: () => undefined });

    // kube-proxy: its rules, loaded as it loads them.
    const iptablesVersion = execFileSync('iptables', ['--version'], { encoding: 'utf8' }).trim();
    const inIptablesNode = (command: string, args: string[], input = ''): string =>
      execFileSync('ip', ['netns', 'exec', copies.iptables.nodeNs, command, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
    const rules = iptablesFullSync(cluster);
    const restoreStarted = performance.now();
    inIptablesNode('iptables-restore', ['--noflush'], IPTABLES_JUMPS);
    inIptablesNode('iptables-restore', ['--noflush', '--counters'], rules.text);
    const restoreMs = performance.now() - restoreStarted;
    log(`kube-proxy's rules for ${cluster.length} services (${rules.chains} chains, ${rules.rules} rules) restored in ${(restoreMs / 1000).toFixed(1)} s`);

    /** Connections the KUBE-SVC chain of ours at `to` sent to an endpoint (its jumps' packets: each connection's first). */
    const svcJumps = (to: 'first' | 'middle'): number => {
      const chain = kubeSvcChain(to === 'first' ? first : middle);
      let packets = 0;
      for (const line of inIptablesNode('iptables', ['-t', 'nat', '-L', chain, '-n', '-v', '-x']).split('\n')) {
        const match = /^\s*(\d+)\s+\d+\s+KUBE-SEP-/.exec(line);
        if (match) packets += Number(match[1]);
      }
      return packets;
    };
    const counter = (reason: number, direction: number): number =>
      Number(datapath.counters().find((c) => c.reason === reason && c.direction === direction)?.packets ?? 0n);
    /** tc_pod's translations both ways: none for connections straight to the backends. */
    const tcPodTranslations = (): number =>
      counter(Reason.FWD_NEW_FLOW, Direction.INGRESS) + counter(Reason.FWD_ESTABLISHED, Direction.INGRESS) + counter(Reason.FWD_REPLY, Direction.EGRESS);
    /** What shows a run went the way it says: read before and after, with what it counts. */
    const evidence = (way: Way): { read: () => number; what: string } => {
      if (way.to === 'direct') return { read: tcPodTranslations, what: 'tc_pod translations' };
      if (way.copy === 'iptables') return { read: () => svcJumps(way.to === 'middle' ? 'middle' : 'first'), what: 'KUBE-SVC jumps to an endpoint' };
      if (way.client === 'pod') return { read: () => counter(Reason.FWD_NEW_FLOW, Direction.INGRESS), what: 'tc_pod new flows' };
      return { read: () => counter(Reason.SOCK_XLATE, Direction.EGRESS), what: 'socket-LB translations' };
    };

    const run = async (way: Way): Promise<RunResult> => {
      if (!socketCgroup || !plainCgroup) throw new Error('no cgroups');
      const cgroup = way.copy === 'xlb' && way.client === 'node' ? socketCgroup : plainCgroup;
      const to = way.to === 'direct' ? BACKENDS.map((b) => b.address).join(',') : CLUSTER_IP[way.to];
      const port = way.to === 'direct' ? DIRECT_PORT : SERVICE_PORT;
      const args = [way.workload, to, String(port), String(seconds), String(count)];
      const { read, what } = evidence(way);
      const before = read();
      const { podNs, nodeNs, serverPids } = copies[way.copy];
      const ns = way.client === 'pod' ? podNs : nodeNs;
      const serverCpu = cpuNs(serverPids);
      let out: string;
      try {
        out = await collect(cgroup.spawn(ns, rr, args), `rr ${args.join(' ')} (${way.id})`, seconds * 1000 + RUN_GRACE_MS, signal);
      } catch (error) {
        throw new Error(`${(error as Error).message}; ${what} meanwhile: ${read() - before}`);
      }
      const result = parseDone(out, way.id, cpuNs(serverPids) - serverCpu);
      const seen = read() - before;
      if (way.to === 'direct') {
        if (seen !== 0) throw new Error(`${way.id}: tc_pod translated ${seen} packets of connections to no service`);
      } else {
        // ping-pong opens one connection; crr one per transaction.
        const expected = way.workload === 'crr' ? result.transactions : 1;
        if (seen < expected) throw new Error(`${way.id}: ${seen} ${what} for ${expected} connections: the traffic did not go the way measured`);
      }
      return result;
    };

    const all = ways();
    const results = new Map<string, RunResult[]>(all.map((w) => [w.id, []]));
    const started = performance.now();
    log(`${rounds} rounds of ${all.length} runs of ${seconds} s; ${iptablesVersion}`);
    for (let round = 0; round < rounds; round++) {
      const line: string[] = [];
      for (let i = 0; i < all.length; i++) {
        const way = all[(i + round) % all.length];
        if (!way) continue;
        if (signal?.aborted) throw new Error('interrupted');
        const result = await run(way);
        results.get(way.id)?.push(result);
      }
      for (const way of all) {
        const last = results.get(way.id)?.at(-1);
        if (last && way.to === 'first') line.push(`${way.copy} ${way.client} ${way.workload} ${formatNumber(Math.round(last.rate))}/s (${last.cpuUs.toFixed(0)} µs CPU)`);
      }
      log(`round ${round + 1}/${rounds} (${((performance.now() - started) / 1000).toFixed(0)} s): ${line.join(', ')}`);
    }

    const stats = (id: string): { rate: number; cpuUs: number; p50Us: number; p99Us: number; runs: RunResult[] } => {
      const runs = results.get(id) ?? [];
      const of = (pick: (r: RunResult) => number): number => median(runs.map(pick));
      return { rate: of((r) => r.rate), cpuUs: of((r) => r.cpuUs), p50Us: of((r) => r.p50Us), p99Us: of((r) => r.p99Us), runs };
    };
    const common = {
      rounds,
      secondsPerRun: seconds,
      statistic: 'median of the rounds (runs in rotating order)',
      backends: BACKENDS.length,
      services: cluster.length,
      path: 'veth → node netns (forwarding) → veth, one client at a time',
      iptables: iptablesVersion,
      iptablesRestoreMs: Math.round(restoreMs),
    };
    const figures: BenchFigure[] = [];
    const round1 = (n: number): number => Number(n.toFixed(1));
    /** Issue 20's goal for short connections. */
    const goal = (ratio: number): string =>
      ratio >= GOAL_CRR_RATIO
        ? `≥ ${GOAL_CRR_RATIO}x iptables: met (${ratio.toFixed(2)}x)`
        : `≥ ${GOAL_CRR_RATIO}x iptables: missed by ${(GOAL_CRR_RATIO / ratio).toFixed(2)}x (${ratio.toFixed(2)}x)`;
    /**
     * Two figures: `valueId`'s median rate beside `peerId`'s, and the same per CPU-second of the client
     * and the servers (the cost, whatever else the machine ran); ratios above 1: the value is faster.
     */
    const compare = (c: { who: string; scope?: string; versus: string; valueId: string; peer: string; peerId: string; workload: Workload; goal?: boolean }): void => {
      const v = stats(c.valueId);
      const p = stats(c.peerId);
      const { unit, name: workload, short } = WORKLOAD_TEXT[c.workload];
      const name = (perCpu: boolean): string => `${c.who} → ClusterIP${c.scope ?? ''} ${short}${perCpu ? ' per CPU-s' : ''}: ${c.versus}`;
      const paired = (pick: (r: RunResult, peer: RunResult) => number): number =>
        Number(median(v.runs.flatMap((r, i) => { const peer = p.runs[i]; return peer ? [pick(r, peer)] : []; })).toFixed(3));
      const params = {
        ...common, workload,
        p50Us: round1(v.p50Us), p99Us: round1(v.p99Us), peerP50Us: round1(p.p50Us), peerP99Us: round1(p.p99Us),
        cpuUsPerTransaction: round1(v.cpuUs), peerCpuUsPerTransaction: round1(p.cpuUs),
      };
      const wallRatio = v.rate / p.rate;
      const cpuRatio = p.cpuUs / v.cpuUs;
      figures.push({
        name: name(false), value: Math.round(v.rate), unit, peer: c.peer, peerValue: Math.round(p.rate), ratio: wallRatio,
        params: { ...params, pairedRatioMedian: paired((r, peer) => r.rate / peer.rate), ...(c.goal ? { goal: goal(wallRatio) } : {}) },
      });
      figures.push({
        name: name(true), value: Math.round(1e6 / v.cpuUs), unit: unit.replace('/s', '/CPU-s'), peer: c.peer, peerValue: Math.round(1e6 / p.cpuUs), ratio: cpuRatio,
        params: { ...params, method: 'per CPU-second of client and servers: 1 / (their CPU time per transaction), medians of the rounds', pairedRatioMedian: paired((r, peer) => peer.cpuUs / r.cpuUs), ...(c.goal ? { goal: goal(cpuRatio) } : {}) },
      });
    };
    const middleText = `in the middle of ${cluster.length} services`;
    const firstText = 'the service first in KUBE-SERVICES';
    const scope = ` (${formatNumber(cluster.length)} services)`;
    for (const workload of ['pingpong', 'crr'] as const) {
      compare({ who: 'pod', versus: 'tc_pod vs iptables', valueId: `xlb-pod-${workload}`, peer: `kube-proxy iptables rules, ${firstText}`, peerId: `iptables-pod-${workload}`, workload, goal: workload === 'crr' });
    }
    compare({ who: 'pod', scope, versus: 'tc_pod vs iptables', valueId: 'xlb-pod-crr-middle', peer: `kube-proxy iptables rules, the service ${middleText}`, peerId: 'iptables-pod-crr-middle', workload: 'crr', goal: true });
    for (const workload of ['pingpong', 'crr'] as const) {
      compare({ who: 'pod', versus: 'tc_pod vs no service', valueId: `xlb-pod-${workload}`, peer: 'pod → the backends\' addresses straight (tc_pod attached, passing)', peerId: `xlb-pod-${workload}-direct`, workload });
    }
    for (const workload of ['pingpong', 'crr'] as const) {
      compare({ who: 'node process', versus: 'socket-LB vs iptables', valueId: `xlb-node-${workload}`, peer: `kube-proxy iptables rules (OUTPUT), ${firstText}`, peerId: `iptables-node-${workload}`, workload });
    }
    compare({ who: 'node process', scope, versus: 'socket-LB vs iptables', valueId: 'xlb-node-crr-middle', peer: `kube-proxy iptables rules (OUTPUT), the service ${middleText}`, peerId: 'iptables-node-crr-middle', workload: 'crr' });
    return figures;
  } finally {
    for (const server of servers) server.kill('SIGTERM');
    socketLb?.detach();
    socketLb?.close();
    await pods?.close();
    await node?.close();
    await socketCgroup?.remove();
    await plainCgroup?.remove();
    topology.destroy();
    bpffs?.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const abort = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => abort.abort());
  const figures = await measureRoundTrips({
    ...(quick ? { rounds: 4, seconds: 0.2 } : {}),
    signal: abort.signal,
    log: (line) => process.stdout.write(`[east-west rr] ${line}\n`),
  });
  process.stdout.write('\n| figure | value | peer | peer value | ratio |\n|---|---|---|---|---|\n');
  for (const f of figures) process.stdout.write(`| ${f.name} | ${formatNumber(f.value)} ${f.unit} | ${f.peer ?? ''} | ${f.peerValue === undefined ? '' : `${formatNumber(f.peerValue)} ${f.unit}`} | ${f.ratio === undefined ? '' : formatNumber(f.ratio)} |\n`);
  process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
}
