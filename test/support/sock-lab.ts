/**
 * The socket-LB lab: a node network namespace (where client processes run, in a test cgroup) with a
 * bridge to three backend namespaces running the lab servers (agent/lab/server.ts: HTTP on 8080, UDP
 * echo on 5353, IPv4 and IPv6). The node's LB maps are filled by the agent's own datapath (xdp off, no
 * devices: maps only) and socket-LB is loaded on them. Everything is removed by destroy() — in finally.
 *
 *   node 198.18.0.1 / 2001:db8::1 (br0) ── b1 198.18.0.11, b2 .12, b3 .13 (2001:db8::b, ::c, ::d)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceDatapath } from '../../agent/datapath.js';
import { DEFAULT_BACKEND_MAP_MAX, DEFAULT_SERVICE_MAP_MAX } from '../../agent/flags.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { SocketLb } from '../../agent/socket-lb.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { Topology } from '../../lb/datapath/topology.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService, type Service } from '../../lb/service.js';
import type { SockAnswer, SockReport } from './sock-client.js';
import { TestCgroup, type ProcessRun } from './test-cgroup.js';

const here = dirname(fileURLToPath(import.meta.url));
export const SOCK_CLIENT = join(here, 'sock-client.js');
const SERVER = join(here, '..', '..', 'agent', 'lab', 'server.js');

export const NODE_NAME = 'node-a';
export const NODE = { v4: '198.18.0.1', v6: '2001:db8::1' };
export const CAPACITY = { services: DEFAULT_SERVICE_MAP_MAX, backends: DEFAULT_BACKEND_MAP_MAX };
export const MAGLEV = { size: 251, seed: parseMaglevSeed(DEFAULT_MAGLEV_SEED) };

export interface SockBackend {
  name: string;
  ns: string;
  v4: string;
  v6: string;
}

/** What sock-client.ts prints: its types only (importing its code would run it). */
export type { SockAnswer, SockReport };

export class SockLab {
  readonly backends: SockBackend[] = [];
  readonly node: string;
  readonly cgroup: TestCgroup;
  datapath: ServiceDatapath | undefined;
  socketLb: SocketLb | undefined;
  private readonly servers: ChildProcess[] = [];
  private services = new Map<string, Service>();

  private constructor(
    readonly topology: Topology,
    readonly bpffs: TempBpffs,
    cgroup: TestCgroup,
  ) {
    this.node = topology.namespace('node');
    this.cgroup = cgroup;
  }

  /** Namespaces, bridge, servers, the node's datapath (maps only) and socket-LB on a test cgroup. */
  static async create(tag: string, log: (line: string) => void = () => undefined): Promise<SockLab> {
    const topology = new Topology(tag);
    let bpffs: TempBpffs | undefined;
    let cgroup: TestCgroup | undefined;
    let lab: SockLab | undefined;
    try {
      bpffs = TempBpffs.mount(tag);
      cgroup = TestCgroup.create(tag);
      lab = new SockLab(topology, bpffs, cgroup);
      lab.build();
      await Promise.all(lab.backends.map((b) => lab?.startServer(b)));
      lab.datapath = lab.loadDatapath(log);
      lab.socketLb = lab.loadSocketLb(log);
      return lab;
    } catch (error) {
      if (lab) await lab.destroy();
      else {
        await cgroup?.remove();
        bpffs?.remove();
        topology.destroy();
      }
      throw error;
    }
  }

  get pinDir(): string {
    return join(this.bpffs.dir, 'node');
  }

  /** The node's datapath as the agent loads it (maps only: no devices, xdp off), on the lab's pins. */
  loadDatapath(log: (line: string) => void = () => undefined): ServiceDatapath {
    return inNetns(this.node, () =>
      createNodeDatapath({
        devices: [], xdp: 'off', mode: 'snat', maglevTableSize: MAGLEV.size, maglevSeed: MAGLEV.seed, bpffs: this.pinDir,
        nodeAddresses: [NODE.v4, NODE.v6], nodeName: NODE_NAME, conntrackEntries: 16384, snatPorts: { min: 40000, max: 40999 },
        nodeSetup: false, dsrServiceRanges: [], capacity: CAPACITY, log,
      }),
    );
  }

  /**
   * An agent restart: both datapaths closed (programs stay attached, maps pinned), loaded again, and
   * every service applied again, as the agent's store does. Resolves with the new socket-LB's log.
   */
  async restart(): Promise<{ log: string[]; written: number }> {
    const log: string[] = [];
    this.socketLb?.close();
    this.socketLb = undefined;
    await this.datapath?.close();
    this.datapath = undefined;
    this.datapath = this.loadDatapath();
    this.socketLb = this.loadSocketLb((line) => log.push(line));
    const result = await this.datapath.apply(new Map(this.services));
    return { log, written: result.written };
  }

  /** Socket-LB as the agent loads it (a second call is a restarted agent's load: the links get the new programs). */
  loadSocketLb(log: (line: string) => void = () => undefined): SocketLb {
    return SocketLb.load({ pinDir: this.pinDir, capacity: CAPACITY, maglevTableSize: MAGLEV.size, maglevSeed: MAGLEV.seed, cgroupRoot: this.cgroup.dir, log });
  }

  private build(): void {
    const t = this.topology;
    t.exec(this.node, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    t.exec(this.node, 'ip', ['link', 'set', 'br0', 'up']);
    t.address(this.node, 'br0', `${NODE.v4}/24`);
    t.address(this.node, 'br0', `${NODE.v6}/64`);
    [11, 12, 13].forEach((n, i) => {
      const name = `b${i + 1}`;
      const ns = t.namespace(name);
      t.veth({ ns, name: 'eth0' }, { ns: this.node, name: `p-${name}` });
      t.exec(this.node, 'ip', ['link', 'set', `p-${name}`, 'master', 'br0']);
      const backend = { name, ns, v4: `198.18.0.${n}`, v6: `2001:db8::${n.toString(16)}` };
      t.address(ns, 'eth0', `${backend.v4}/24`);
      t.address(ns, 'eth0', `${backend.v6}/64`);
      this.backends.push(backend);
    });
  }

  private startServer(b: SockBackend): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', b.ns, process.execPath, SERVER, '--name', b.name, '--listen', b.v4, '--listen', b.v6, '--http-port', '8080', '--udp-port', '5353'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.servers.push(child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server ${b.name} did not start within 10 s`)), 10_000);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server ${b.name} exited with ${code}: ${stderr.trim()}`));
      });
    });
  }

  /** Backends of every lab backend (or those named), on `port`, of one family. */
  backendList(family: 'v4' | 'v6', port: number, names?: string[], extra: Record<string, unknown> = {}): Record<string, unknown>[] {
    return this.backends.filter((b) => !names || names.includes(b.name)).map((b) => ({ address: b[family], port, ...extra }));
  }

  /** Set services (id → raw service object, validated as the API does; ClusterIP allowed); undefined removes. */
  async apply(raw: Record<string, unknown | undefined>): Promise<void> {
    const changes = new Map<string, Service | undefined>();
    for (const [id, input] of Object.entries(raw)) {
      const service = input === undefined ? undefined : validateService(input, id, { clusterIP: true });
      changes.set(id, service);
      if (service) this.services.set(id, service);
      else this.services.delete(id);
    }
    if (!this.datapath) throw new Error('the lab has no datapath');
    await this.datapath.apply(changes);
  }

  /** sock-client.js in the node namespace and the test cgroup; its JSON report. */
  async client(kind: 'tcp' | 'udp' | 'cudp', target: string, count: number, extra: string[] = []): Promise<SockReport> {
    const run = await this.cgroup.runNode(this.node, SOCK_CLIENT, [kind, '--target', target, '--count', String(count), ...extra]);
    return parseReport(run, `${kind} ${target}`);
  }

  /** One keep-alive connection, a request every `intervalMs`: its answers as they come. */
  hold(target: string, count: number, intervalMs: number): { next(): Promise<Record<string, unknown>>; rest(): Promise<Record<string, unknown>[]> } {
    const child = this.cgroup.spawn(this.node, process.execPath, [SOCK_CLIENT, 'hold', '--target', target, '--count', String(count), '--interval-ms', String(intervalMs)]);
    const lines: string[] = [];
    const waiters: (() => void)[] = [];
    let buffer = '';
    let ended = false;
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let at;
      while ((at = buffer.indexOf('\n')) >= 0) {
        lines.push(buffer.slice(0, at));
        buffer = buffer.slice(at + 1);
      }
      for (const wake of waiters.splice(0)) wake();
    });
    child.once('close', () => {
      ended = true;
      for (const wake of waiters.splice(0)) wake();
    });
    const wait = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));
    return {
      async next() {
        while (lines.length === 0 && !ended) await wait();
        const line = lines.shift();
        if (line === undefined) throw new Error(`held connection to ${target} ended early`);
        return JSON.parse(line) as Record<string, unknown>;
      },
      async rest() {
        while (!ended) await wait();
        return lines.splice(0).map((line) => JSON.parse(line) as Record<string, unknown>);
      },
    };
  }

  async destroy(): Promise<void> {
    const steps: (() => unknown)[] = [
      () => this.socketLb?.detach(),
      () => this.socketLb?.close(),
      () => this.datapath?.close(),
      () => this.cgroup.remove(),
      () => Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
        if (s.exitCode !== null || s.signalCode !== null) return resolve();
        s.once('exit', () => resolve());
        s.kill('SIGTERM');
      }))),
      () => this.topology.destroy(),
      () => this.bpffs.remove(),
    ];
    const errors: unknown[] = [];
    for (const step of steps) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

export function parseReport(run: ProcessRun, what: string): SockReport {
  if (run.code !== 0) throw new Error(`sock-client ${what} exited with ${run.code}: ${run.err.trim()}`);
  return JSON.parse(run.out) as SockReport;
}
