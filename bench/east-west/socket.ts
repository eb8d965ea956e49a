/**
 * What socket-level load balancing adds to a connect(): one C process (bench/east-west/connect-peer.c)
 * times batches of socket, connect() (timed alone), close, three ways in turn, moving itself between two
 * cgroups of the run's own between batches:
 *   direct   — to the backends in turn, from a cgroup with nothing attached: the baseline;
 *   bypass   — to the backends in turn, from the cgroup socket-LB is attached to (the programs run,
 *              find no service, step aside);
 *   service  — to the ClusterIP, from that cgroup (lookup, Maglev selection, reverse entry, rewrite).
 * Fine interleaving in one process keeps a busy machine's noise out of the differences; each figure is
 * the 10th percentile of its batches (see QUANTILE).
 * UDP connect() is a route lookup and nothing else, so it shows the programs' cost most plainly; TCP
 * adds the loopback handshake. The goal (issue 20): service − direct ≤ 1 µs.
 *
 * measureSocketConnect() is for the east-west bench suite; run alone (node dist/bench/east-west/socket.js)
 * it prints its figures as a table and JSON, and writes no result files.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_BACKEND_MAP_MAX, DEFAULT_SERVICE_MAP_MAX } from '../../agent/flags.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { SocketLb } from '../../agent/socket-lb.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { Topology } from '../../lb/datapath/topology.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService } from '../../lb/service.js';
import { TestCgroup } from '../../test/support/test-cgroup.js';
import { formatNumber, repoRoot, type BenchFigure } from '../lib/report.js';

export interface SocketConnectOptions {
  /** Rounds of the three ways in turn; each figure is a low percentile of the batches (QUANTILE). */
  rounds?: number;
  /** connect() calls per batch, UDP and TCP. */
  udpBatch?: number;
  tcpBatch?: number;
  log?: (line: string) => void;
  /** Ends the measurement: the running C process is killed, everything is taken down. */
  signal?: AbortSignal;
}

const CLUSTER_IP = { v4: '198.18.20.10', v6: '2001:db8:20::10' };
const BACKENDS = { v4: ['198.18.0.11', '198.18.0.12', '198.18.0.13'], v6: ['2001:db8::b', '2001:db8::c', '2001:db8::d'] };
const SERVICE_PORT = 80;
const BACKEND_PORT = 8080;
const MAGLEV_SIZE = 16381;
const GOAL_ADDED_US = 1;

type Way = 'direct' | 'bypass' | 'service';
/** ns per call of each batch, by call and way. */
interface Samples {
  connect: Record<Way, number[]>;
  close: Record<Way, number[]>;
}
interface Case {
  proto: 'udp' | 'tcp';
  family: 'v4' | 'v6';
  batch: number;
}

/** Build the C loop (gcc -O2) into build/bench/. */
function buildPeer(): string {
  const root = repoRoot();
  const dir = join(root, 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  const binary = join(dir, 'connect-peer');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', binary, join(root, 'bench', 'east-west', 'connect-peer.c')], { stdio: 'inherit' });
  return binary;
}

async function collect(child: ChildProcess, what: string): Promise<string> {
  let out = '';
  let err = '';
  let failure: Error | undefined; // not started, or killed by options.signal ('close' follows either way)
  child.once('error', (error) => (failure = error));
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`${what} exited with ${code}: ${failure?.message ?? err.trim()}`);
  return out;
}

/** The q-quantile of `values` (linear between the two nearest). */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = sorted[Math.floor(at)] ?? 0;
  const high = sorted[Math.ceil(at)] ?? low;
  return low + (high - low) * (at - Math.floor(at));
}

/**
 * Batch means are the cost plus whatever else the machine ran meanwhile (on this shared 2-core machine,
 * up to 5x the cost): the 10th percentile of a way's batches is its cost with next to no one else's.
 */
const QUANTILE = 0.1;

/**
 * connect() through socket-LB to a ClusterIP against connect() straight to its backend, same run:
 * µs per connect for UDP (IPv4, IPv6) and TCP (IPv4), and the µs socket-LB adds.
 */
export async function measureSocketConnect(options: SocketConnectOptions = {}): Promise<BenchFigure[]> {
  const rounds = options.rounds ?? 150;
  const log = options.log ?? (() => undefined);
  const peer = buildPeer();
  const topology = new Topology('ew-sock');
  let bpffs: TempBpffs | undefined;
  let cgroup: TestCgroup | undefined;
  let plain: TestCgroup | undefined;
  let datapath: Awaited<ReturnType<typeof createNodeDatapath>> | undefined;
  let socketLb: SocketLb | undefined;
  let server: ChildProcess | undefined;
  try {
    const ns = topology.namespace('node');
    for (const address of [...BACKENDS.v4.map((a) => `${a}/32`), ...BACKENDS.v6.map((a) => `${a}/128`)]) topology.address(ns, 'lo', address);
    server = spawn('ip', ['netns', 'exec', ns, peer, 'serve', '::', String(BACKEND_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      server?.stdout?.once('data', () => resolve());
      server?.once('exit', (code) => reject(new Error(`connect-peer serve exited with ${code}`)));
    });

    bpffs = TempBpffs.mount('ew-sock');
    cgroup = TestCgroup.create('ew-sock');
    plain = TestCgroup.create('ew-plain');
    const capacity = { services: DEFAULT_SERVICE_MAP_MAX, backends: DEFAULT_BACKEND_MAP_MAX };
    const maglevSeed = parseMaglevSeed(DEFAULT_MAGLEV_SEED);
    const pinDir = join(bpffs.dir, 'node');
    datapath = inNetns(ns, () =>
      createNodeDatapath({
        devices: [], xdp: 'off', mode: 'snat', maglevTableSize: MAGLEV_SIZE, maglevSeed, bpffs: pinDir, nodeAddresses: [],
        nodeName: 'bench', conntrackEntries: 16384, snatPorts: { min: 40000, max: 40999 }, nodeSetup: false, dsrServiceRanges: [], capacity, log: () => undefined,
      }),
    );
    const services = new Map(
      (['v4', 'v6'] as const).flatMap((family) =>
        (['TCP', 'UDP'] as const).map((protocol) => {
          const id = `${family}-${protocol.toLowerCase()}`;
          const raw = {
            type: 'ClusterIP',
            frontend: { address: CLUSTER_IP[family], port: SERVICE_PORT, protocol },
            backends: BACKENDS[family].map((address) => ({ address, port: BACKEND_PORT })),
          };
          return [id, validateService(raw, id, { clusterIP: true })] as const;
        }),
      ),
    );
    await datapath.apply(services);
    socketLb = SocketLb.load({ pinDir, capacity, maglevTableSize: MAGLEV_SIZE, maglevSeed, cgroupRoot: cgroup.dir, log });

    const procs = (dir: string): string => join(dir, 'cgroup.procs');
    const way = (name: Way, dir: string, addresses: string[], port: number): string => `${name}:${procs(dir)}:${addresses.map((a) => a.replaceAll(':', '-')).join(',')}:${port}`;
    const compare = async (c: Case): Promise<Samples> => {
      if (!cgroup || !plain) throw new Error('no cgroups');
      // Straight to the backends in turn, as the ClusterIP spreads its connections (to one address only,
      // TCP connects measurably faster: the comparison would credit socket-LB with the kernel's cost of
      // changing destinations).
      const backends = BACKENDS[c.family];
      const args = ['compare', c.proto, String(c.batch), String(rounds), `/run/netns/${ns}`,
        way('direct', plain.dir, backends, BACKEND_PORT), way('bypass', cgroup.dir, backends, BACKEND_PORT), way('service', cgroup.dir, [CLUSTER_IP[c.family]], SERVICE_PORT)];
      // It enters the namespace and moves itself between the two cgroups of the run's own.
      const out = await collect(spawn(peer, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal }), `connect-peer ${args.slice(0, 4).join(' ')}`);
      const samples: Samples = { connect: { direct: [], bypass: [], service: [] }, close: { direct: [], bypass: [], service: [] } };
      for (const line of out.trim().split('\n')) {
        const [name, connectNs, closeNs] = line.split(' ');
        if ((name === 'direct' || name === 'bypass' || name === 'service') && connectNs !== undefined && closeNs !== undefined) {
          samples.connect[name].push(Number(connectNs));
          samples.close[name].push(Number(closeNs));
        }
      }
      if (samples.connect.direct.length !== rounds || samples.connect.service.length !== rounds) throw new Error(`connect-peer printed ${JSON.stringify(out.slice(0, 200))}`);
      return samples;
    };

    const cases: Case[] = [
      { proto: 'udp', family: 'v4', batch: options.udpBatch ?? 1_000 },
      { proto: 'udp', family: 'v6', batch: options.udpBatch ?? 1_000 },
      { proto: 'tcp', family: 'v4', batch: options.tcpBatch ?? 100 },
    ];
    const figures: BenchFigure[] = [];
    for (const c of cases) {
      const samples = await compare(c);
      const us = (w: Way, call: keyof Samples = 'connect'): number => quantile(samples[call][w], QUANTILE) / 1000;
      const [direct, bypass, service] = [us('direct'), us('bypass'), us('service')];
      const added = service - direct;
      // The same from each round's own difference (its batches ran back to back), as a check.
      const pairedAdded = quantile(samples.connect.service.map((ns, round) => ns - (samples.connect.direct[round] ?? ns)), 0.5) / 1000;
      // close() of a socket socket-LB translated: sock_release deletes its reverse entry.
      const [closeDirect, closeService] = [us('direct', 'close'), us('service', 'close')];
      const name = `${c.proto.toUpperCase()} ${c.family === 'v4' ? 'IPv4' : 'IPv6'}`;
      const params = { proto: c.proto, family: c.family, batch: c.batch, rounds, statistic: 'p10 of batch means', backends: BACKENDS[c.family].length, maglevTableSize: MAGLEV_SIZE };
      log(`${name}: connect() direct ${direct.toFixed(3)} µs, under socket-LB to a backend ${bypass.toFixed(3)} µs, to the ClusterIP ${service.toFixed(3)} µs (10th percentiles of ${rounds} batches of ${c.batch}): added ${added.toFixed(3)} µs; median of the rounds' own differences ${pairedAdded.toFixed(3)} µs; close() ${closeDirect.toFixed(3)} → ${closeService.toFixed(3)} µs`);
      figures.push(
        { name: `connect() to a ClusterIP through socket-LB, ${name}`, value: service, unit: 'µs', peer: 'connect() straight to the backend, no socket-LB', peerValue: direct, ratio: service / direct, params },
        { name: `socket-LB added per connect(), ${name}`, value: added, unit: 'µs', peer: 'goal (issue 20)', peerValue: GOAL_ADDED_US, ratio: added / GOAL_ADDED_US, params },
        { name: `connect() to a non-service address under socket-LB, ${name}`, value: bypass, unit: 'µs', peer: 'the same, no socket-LB', peerValue: direct, ratio: bypass / direct, params },
        { name: `close() of a socket socket-LB translated, ${name}`, value: closeService, unit: 'µs', peer: 'close() of a socket to the backend, no socket-LB', peerValue: closeDirect, ratio: closeService / closeDirect, params },
      );
    }
    return figures;
  } finally {
    socketLb?.detach();
    socketLb?.close();
    await datapath?.close();
    await cgroup?.remove();
    await plain?.remove();
    server?.kill('SIGTERM');
    topology.destroy();
    bpffs?.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await measureSocketConnect({ log: (line) => process.stdout.write(`[east-west socket] ${line}\n`) });
  process.stdout.write('\n| figure | value | peer | peer value |\n|---|---|---|---|\n');
  for (const f of figures) process.stdout.write(`| ${f.name} | ${formatNumber(f.value)} ${f.unit} | ${f.peer ?? ''} | ${f.peerValue === undefined ? '' : `${formatNumber(f.peerValue)} ${f.unit}`} |\n`);
  process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
}
