/**
 * The demo's world: the lab (agent/lab: a client, an LB node and three backend nodes in network
 * namespaces), a bpffs mounted in a temp dir (`ip netns exec` remounts /sys, so an agent in a netns
 * cannot see /sys/fs/bpf), lab servers on the backends, and a real xlb-agent on every node: XDP on
 * the LB node, tc only (the DSR receive side) on the backends.
 *
 * destroy() removes all of it, once, whatever was built so far (agents SIGTERM'd and awaited, servers
 * and clients stopped, namespaces deleted, bpffs unmounted, temp dir removed). keep() leaves it
 * running and writes a state file from which cleanupKept() removes it later.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMounted, mountBpffs, unmountBpffs } from '../../lb/datapath/bpffs.js';
import { run } from '../../lb/datapath/topology.js';
import { LabProcesses } from '../lab/processes.js';
import { Lab, type LabHost } from '../lab/topology.js';
import { AgentProcess } from './agent-process.js';
import { paths, runDir } from './paths.js';
import type { Output } from './report.js';

const AGENT_READY_TIMEOUT_MS = 45_000;
const SERVER_READY_TIMEOUT_MS = 10_000;
const HTTP_PORT = 8080;
const UDP_PORT = 5353;

export interface DemoNode {
  /** "lb", "b1", "b2", "b3": also the lab server's name on a backend */
  name: string;
  host: LabHost;
  agent: AgentProcess;
}

/** What `--keep` leaves behind, for `xlb demo --cleanup`. */
export interface KeptState {
  dir: string;
  bpffs: string;
  namespaces: string[];
  agents: { node: string; pid: number | undefined; socket: string; bpffs: string; log: string }[];
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class DemoCluster {
  private labValue: Lab | undefined;
  private processesValue: LabProcesses | undefined;
  private dirValue: string | undefined;
  private bpffsMounted = false;
  private readonly nodes: DemoNode[] = [];
  private teardown: Promise<string[]> | undefined;
  private kept = false;

  constructor(private readonly out: Output) {}

  get lab(): Lab {
    if (!this.labValue) throw new Error('the lab is not built');
    return this.labValue;
  }

  get processes(): LabProcesses {
    if (!this.processesValue) throw new Error('the lab processes are not started');
    return this.processesValue;
  }

  get dir(): string {
    if (this.dirValue === undefined) throw new Error('no temp dir');
    return this.dirValue;
  }

  get bpffs(): string {
    return `${this.dir}/bpffs`;
  }

  get lb(): DemoNode {
    const lb = this.nodes.find((n) => n.name === 'lb');
    if (!lb) throw new Error('no LB node agent');
    return lb;
  }

  get backends(): DemoNode[] {
    return this.nodes.filter((n) => n.name !== 'lb');
  }

  /** Builds everything; `interrupted()` is checked between phases (a signal tears down meanwhile). */
  async build(interrupted: () => boolean): Promise<void> {
    const stop = (): void => {
      if (interrupted()) throw new Error('interrupted');
    };
    const started = Date.now();
    this.labValue = Lab.create('demo', 3, (what) => this.out.line(`  ${what}`));
    const lab = this.labValue;
    const roles = lab.topology.namespaces.map((ns) => ns.replace(`xlb-demo-`, '').replace(`-${lab.topology.id}`, ''));
    this.out.line(`  network namespaces xlb-demo-{${roles.join(',')}}-${lab.topology.id}`);
    stop();

    this.dirValue = runDir(lab.topology.id);
    mountBpffs(this.bpffs);
    this.bpffsMounted = true;
    this.out.line(`  RUN=${this.dir}   # the run's temp dir: agents' sockets, logs, state files`);
    this.out.line(`  mounted a bpffs for the agents' pinned maps on $RUN/bpffs`);

    this.processesValue = new LabProcesses(lab);
    const processes = this.processesValue;
    const names = lab.backends.map((_, i) => `b${i + 1}`);
    await Promise.all(lab.backends.map((b, i) => processes.startServer(b, names[i] ?? `b${i + 1}`)));
    this.out.line(`  started an HTTP server (:${HTTP_PORT}) and a UDP echo server (:${UDP_PORT}) on ${names.join(', ')}`);
    stop();

    const specs: { name: string; host: LabHost; xdp: 'native' | 'off' }[] = [
      { name: 'lb', host: lab.lb, xdp: 'native' },
      ...lab.backends.map((host, i) => ({ name: names[i] ?? `b${i + 1}`, host, xdp: 'off' as const })),
    ];
    for (const spec of specs) {
      const agent = AgentProcess.start({
        node: spec.name,
        ns: spec.host.ns,
        xdp: spec.xdp,
        mode: 'dsr',
        nodeAddresses: [spec.host.v4, spec.host.v6],
        dir: this.dir,
        bpffs: this.bpffs,
      });
      this.nodes.push({ name: spec.name, host: spec.host, agent });
    }
    this.out.line(`  starting xlb-agent on every node (4 processes; each loads its eBPF programs through the kernel's verifier)`);
    this.out.line(`    LB node:       ${this.lb.agent.commandLine.replaceAll(this.dir, '$RUN')}`);
    this.out.line(`    backend nodes: the same with --xdp off (tc programs only: the DSR receive side)`);
    const pending = new Set(this.nodes.map((n) => n.name));
    await this.out.during(
      () => `waiting for xlb-agent on ${[...pending].join(', ')}`,
      Promise.all(
        this.nodes.map(async (node) => {
          await node.agent.ready(AGENT_READY_TIMEOUT_MS);
          pending.delete(node.name);
          this.out.line(`    xlb-agent on ${node.name.padEnd(2)} ready after ${((Date.now() - started) / 1000).toFixed(1)} s (pid ${String(node.agent.pid)})`);
        }),
      ),
    );
    stop();
  }

  /** Tears everything down, once (later calls get the first call's promise); resolves with the problems met. */
  destroy(): Promise<string[]> {
    this.teardown ??= this.destroyNow();
    return this.teardown;
  }

  private async destroyNow(): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (what: string, step: () => unknown): Promise<void> => {
      try {
        await step();
      } catch (error) {
        problems.push(`${what}: ${message(error)}`);
      }
    };
    if (this.kept) return problems;
    await attempt('stopping the servers and clients', () => this.processesValue?.stopAll());
    await attempt('stopping the agents', () => Promise.all(this.nodes.map((n) => n.agent.stop())));
    await attempt('deleting the network namespaces', () => this.labValue?.destroy());
    await attempt('unmounting the bpffs', () => this.unmountBpffs());
    await attempt('removing the temp dir', () => this.dirValue !== undefined && rmSync(this.dirValue, { recursive: true, force: true }));
    return problems;
  }

  private unmountBpffs(): void {
    if (!this.bpffsMounted) return;
    unmountBpffs(this.bpffs);
    this.bpffsMounted = false;
  }

  /**
   * Leaves the topology and the agents running (--keep): the servers move from this process's
   * LabProcesses to detached processes, the agents are let go, and the state file is written.
   */
  async keep(): Promise<KeptState> {
    if (existsSync(paths.keptState)) throw new Error(`${paths.keptState} exists: a kept demo is running; remove it first with xlb demo --cleanup`);
    await this.processes.stopAll();
    await Promise.all(this.backends.map((b) => startDetachedServer(b.host, b.name, `${this.dir}/${b.name}-server.log`)));
    for (const node of this.nodes) node.agent.detach();
    const state: KeptState = {
      dir: this.dir,
      bpffs: this.bpffs,
      namespaces: [...this.lab.topology.namespaces],
      agents: this.nodes.map((n) => ({ node: n.name, pid: n.agent.pid, socket: n.agent.socket, bpffs: n.agent.bpffs, log: n.agent.log })),
    };
    mkdirSync(dirname(paths.keptState), { recursive: true });
    writeFileSync(paths.keptState, `${JSON.stringify(state, null, 2)}\n`);
    this.kept = true;
    return state;
  }
}

/** A lab server (agent/lab/server.js, as LabProcesses starts it) that outlives this process. */
async function startDetachedServer(host: LabHost, name: string, log: string): Promise<void> {
  const fd = openSync(log, 'a');
  try {
    const args = ['--name', name, '--listen', host.v4, '--listen', host.v6, '--http-port', String(HTTP_PORT), '--udp-port', String(UDP_PORT)];
    spawn('ip', ['netns', 'exec', host.ns, process.execPath, paths.server, ...args], { detached: true, stdio: ['ignore', fd, fd] }).unref();
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
  while (!/^ready$/m.test(readFileSync(log, 'utf8'))) {
    if (Date.now() > deadline) throw new Error(`server ${name} in ${host.ns} did not start: ${readFileSync(log, 'utf8').trim()}`);
    await sleep(50);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what `xlb demo --keep` left: every process in the demo's namespaces is sent SIGTERM (the
 * agents shut down cleanly) and awaited, then the namespaces, the bpffs mount and the temp dir go.
 * Reports what it did through `log`; returns false when there was nothing to remove.
 */
export async function cleanupKept(log: (line: string) => void): Promise<boolean> {
  if (!existsSync(paths.keptState)) return false;
  const state = JSON.parse(readFileSync(paths.keptState, 'utf8')) as KeptState;
  // Remove only what a demo run makes: its namespaces, its temp dir and the bpffs inside it.
  const ours =
    Array.isArray(state.namespaces) &&
    state.namespaces.every((ns) => /^xlb-demo-[a-z0-9]+-[a-z0-9]+$/.test(ns)) &&
    typeof state.dir === 'string' &&
    /^\/run\/xlb-demo-[a-z0-9]+$/.test(state.dir) &&
    state.bpffs === `${state.dir}/bpffs`;
  if (!ours) throw new Error(`${paths.keptState} does not describe a demo run; remove what it names by hand`);
  const pids: number[] = [];
  for (const ns of state.namespaces) {
    const listed = run('ip', ['netns', 'pids', ns], { allowFailure: true });
    pids.push(...listed.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number));
  }
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(isRunning)) signal(pid, 'SIGKILL');
  log(`stopped ${pids.length} processes (agents and servers)`);
  for (const ns of state.namespaces) run('ip', ['netns', 'delete', ns], { allowFailure: true });
  log(`deleted ${state.namespaces.length} network namespaces`);
  if (isMounted(state.bpffs)) {
    unmountBpffs(state.bpffs);
    log(`unmounted ${state.bpffs}`);
  }
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(dirname(paths.keptState), { recursive: true, force: true });
  log(`removed ${state.dir} and ${paths.keptState}`);
  return true;
}
