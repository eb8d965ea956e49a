/**
 * What the control-plane bench starts, and takes down again — in `finally`, and on Ctrl-C: child
 * processes (each killed by its own pid), network namespaces of its own, a bpffs on a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Topology } from '../../lb/datapath/topology.js';

const STDERR_TAIL = 2_000;

export interface TimedRun {
  ms: number;
  /** false: stopped at the cap (ms is then the cap, a lower bound). */
  completed: boolean;
  stdout: string;
  /** User + system CPU time of the command (options.cpu), when it completed. */
  cpuMs?: number;
}

export interface RunOptions {
  /** Written to its stdin. */
  input?: string;
  /** Killed after this long; the run is then not completed. */
  capMs?: number;
  /** Its stderr shown as it comes (else kept for the error message). */
  showStderr?: boolean;
  /**
   * Measure its CPU time: run under /usr/bin/time, in a process group of its own that a cap or the
   * cleanup kills whole (time's child would outlive time otherwise).
   */
  cpu?: boolean;
}

const CPU_MARK = 'xlb-bench-cpu';
/** Children started in a process group of their own (options.cpu). */
const groupLeaders = new WeakSet<ChildProcess>();
const CPU_LINE = new RegExp(`^${CPU_MARK} ([\\d.]+) ([\\d.]+)$`, 'm');

export class BenchResources {
  private readonly children = new Set<ChildProcess>();
  private readonly topologies = new Set<Topology>();
  private readonly cleanups: { what: string; run: () => void }[] = [];

  /** A network namespace of its own (xlb-<tag>-<role>-<id>); drop() or cleanup() deletes it. */
  namespace(tag: string, role: string): { name: string; drop: () => void } {
    const topology = new Topology(tag);
    this.topologies.add(topology);
    try {
      const name = topology.namespace(role);
      return {
        name,
        drop: () => {
          this.topologies.delete(topology);
          topology.destroy();
        },
      };
    } catch (error) {
      this.topologies.delete(topology);
      topology.destroy();
      throw error;
    }
  }

  /** Something else to undo in cleanup() (last registered, first undone). */
  onCleanup(what: string, run: () => void): void {
    this.cleanups.push({ what, run });
  }

  /**
   * Runs `command` to its end: wall time from spawn to exit, `input` on its stdin. A non-zero exit
   * throws with its stderr (or shows it as it comes: showStderr); past `capMs` it is killed and the
   * run reported as not completed.
   */
  run(command: string, args: string[], options: RunOptions = {}): Promise<TimedRun> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const [file, argv] = options.cpu ? ['/usr/bin/time', ['-f', `${CPU_MARK} %U %S`, command, ...args]] : [command, args];
      const child = spawn(file, argv, { stdio: ['pipe', 'pipe', options.showStderr ? 'inherit' : 'pipe'], detached: options.cpu === true });
      this.children.add(child);
      if (options.cpu) groupLeaders.add(child);
      let stdout = '';
      let stderr = '';
      let capped = false;
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => void (stdout += chunk));
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => void (stderr = (stderr + chunk).slice(-STDERR_TAIL)));
      // A command that exits before reading all of its input: its exit status tells why.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(options.input ?? '');
      const timer = options.capMs === undefined ? undefined : setTimeout(() => {
        capped = true;
        kill(child);
      }, options.capMs);
      child.on('error', (error) => {
        clearTimeout(timer);
        this.children.delete(child);
        reject(new Error(`${command}: ${error.message}`));
      });
      child.on('close', (code, signal) => {
        const ms = performance.now() - started;
        clearTimeout(timer);
        this.children.delete(child);
        const cpu = CPU_LINE.exec(stderr);
        const cpuMs = cpu ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : undefined;
        if (capped) resolve({ ms: options.capMs ?? ms, completed: false, stdout });
        else if (code === 0) resolve({ ms, completed: true, stdout, ...(cpuMs !== undefined ? { cpuMs } : {}) });
        else reject(new Error(`${command} ${args.slice(0, 6).join(' ')} exited with ${code ?? signal}: ${stderr.trim()}`));
      });
    });
  }

  /** Kills every child still running, deletes the namespaces, undoes the rest. Idempotent. */
  cleanup(log: (line: string) => void): void {
    for (const child of this.children) kill(child);
    this.children.clear();
    for (const topology of this.topologies) {
      try {
        topology.destroy();
      } catch (error) {
        log(`cleanup: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    this.topologies.clear();
    for (const { what, run } of this.cleanups.splice(0).reverse()) {
      try {
        run();
      } catch (error) {
        log(`cleanup: ${what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}

/** SIGKILL to a child still running, to its whole process group when it leads one (detached). */
function kill(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    if (groupLeaders.has(child)) process.kill(-child.pid, 'SIGKILL');
    else child.kill('SIGKILL');
  } catch {
    // Gone meanwhile.
  }
}
