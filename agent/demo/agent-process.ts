/**
 * One real `xlb-agent` process inside a lab node's network namespace, exactly as a user would run it
 * (`ip netns exec NS xlb-agent ...`): standalone, or in Kubernetes mode with a kubeconfig. Its log is
 * in a file beside its socket. ready() waits for GET /healthz on its API socket; stop() sends SIGTERM
 * and waits for the exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiRequest } from '../cli/api-client.js';
import { paths } from './paths.js';

export interface AgentSpec {
  /** lab role: "lb", "b1", ... */
  node: string;
  ns: string;
  /** --xdp: native on the LB node; off on backend nodes (tc only: the DSR receive side) */
  xdp: 'native' | 'off';
  mode: 'snat' | 'dsr' | 'hybrid';
  nodeAddresses: string[];
  /** the run's temp dir: socket, state file, log and pin directory go there */
  dir: string;
  bpffs: string;
  /** --dsr-service-ranges: the VIP ranges and LB node addresses DSR options may name */
  dsrServiceRanges: string[];
  /** more flags, after the ones above */
  extraArgs?: string[];
  /**
   * Socket-level load balancing for the processes of this cgroup v2 directory (one the caller made).
   * Absent: --no-socket-lb — a lab node shares the machine's cgroups, and its agent must not take the
   * connect() of every process on the machine.
   */
  cgroupRoot?: string;
  /** Kubernetes mode instead of --standalone: the kubeconfig and the apiserver URL as the node reaches it. */
  kubernetes?: { kubeconfig: string; apiServer: string };
}

const READY_POLL_MS = 50;
const STOP_TIMEOUT_MS = 10_000;

export class AgentProcess {
  readonly socket: string;
  readonly bpffs: string;
  readonly log: string;
  readonly args: string[];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(readonly spec: AgentSpec) {
    this.socket = `${spec.dir}/${spec.node}.sock`;
    this.bpffs = `${spec.bpffs}/${spec.node}`;
    this.log = `${spec.dir}/${spec.node}.log`;
    const source = spec.kubernetes ? ['--kubeconfig', spec.kubernetes.kubeconfig, '--k8s-api-server', spec.kubernetes.apiServer] : ['--standalone'];
    this.args = [
      ...source,
      '--device', 'eth0',
      '--xdp', spec.xdp,
      '--mode', spec.mode,
      '--bpffs', this.bpffs,
      '--api-socket', this.socket,
      '--state-file', `${spec.dir}/${spec.node}.state.json`,
      '--node-address', spec.nodeAddresses.join(','),
      '--dsr-service-ranges', spec.dsrServiceRanges.join(','),
      ...(spec.cgroupRoot === undefined ? ['--no-socket-lb'] : ['--cgroup-root', spec.cgroupRoot]),
      ...(spec.extraArgs ?? []),
    ];
    const log = openSync(this.log, 'a');
    try {
      // `ip netns exec` execs the agent: the child's pid is the agent's. In a process group of its
      // own, so a Ctrl-C in the terminal reaches only the demo, which stops the agents in order.
      this.child = spawn('ip', ['netns', 'exec', spec.ns, process.execPath, paths.agent, ...this.args], {
        stdio: ['ignore', log, log],
        detached: true,
      });
    } finally {
      closeSync(log);
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : null);
        resolve(this.exitCode);
      });
      this.child.once('error', () => {
        this.exitCode = 127;
        resolve(127);
      });
    });
  }

  static start(spec: AgentSpec): AgentProcess {
    return new AgentProcess(spec);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The command line a user would type for this agent. */
  get commandLine(): string {
    return `ip netns exec ${this.spec.ns} xlb-agent ${this.args.join(' ')}`;
  }

  /** Resolves once GET /healthz answers 200; rejects with the log's tail if the agent exits or the deadline passes. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exitCode !== undefined) {
        throw new Error(`xlb-agent on ${this.spec.node} exited with ${String(this.exitCode)}: ${this.lastError()}\n${this.logTail()}`);
      }
      try {
        const response = await apiRequest(this.socket, 'GET', '/healthz');
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(READY_POLL_MS);
    }
    throw new Error(`xlb-agent on ${this.spec.node} was not ready within ${timeoutMs / 1000} s:\n${this.logTail()}`);
  }

  private logLines(): string[] {
    try {
      return readFileSync(this.log, 'utf8').trimEnd().split('\n');
    } catch {
      return [];
    }
  }

  /** The last error the agent logged, without its timestamp. */
  lastError(): string {
    const line = this.logLines().reverse().find((l) => / error /.test(l));
    return line === undefined ? '(nothing logged)' : line.replace(/^\S+ error\s+/, '');
  }

  logTail(lines = 15): string {
    const tail = this.logLines().slice(-lines);
    return tail.length === 0 ? '    (no log)' : tail.map((l) => `    ${l}`).join('\n');
  }

  /** SIGTERM, then wait for the clean shutdown (SIGKILL after a deadline). */
  async stop(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Leave the agent running after the demo exits (--keep). */
  detach(): void {
    this.child.unref();
  }
}
