/**
 * The `xlb` CLI as the demo's user runs it: a real process per command (`node dist/agent/cli/main.js
 * ...`), and `xlb monitor --json` running in the background while a step sends traffic.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { paths } from './paths.js';

export interface XlbRun {
  code: number | null;
  out: string;
  err: string;
}

const RUN_TIMEOUT_MS = 20_000;

/** Runs `xlb ARGS` to completion (killed after a deadline). */
export async function runXlb(args: string[]): Promise<XlbRun> {
  const child = spawn(process.execPath, [paths.cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  try {
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, out, err };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `xlb ARGS` and returns its stdout; a non-zero exit throws with its stderr. */
export async function xlb(args: string[]): Promise<string> {
  const run = await runXlb(args);
  if (run.code !== 0) throw new Error(`xlb ${args.join(' ')} exited with ${String(run.code)}: ${run.err.trim() || run.out.trim()}`);
  return run.out;
}

/** One line of GET /v1/monitor (agent/api/monitor.ts: type, reasonLabel, saddr, daddr, ports, service). */
export type MonitorEvent = Record<string, unknown>;

/** `xlb monitor --json` in the background: its events as they come. */
export class MonitorProcess {
  readonly events: MonitorEvent[] = [];
  readonly lines: string[] = [];
  private readonly closed: Promise<unknown>;
  private readonly child;

  private constructor(args: string[]) {
    this.child = spawn(process.execPath, [paths.cli, 'monitor', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Settles once the process is gone, whatever the reason (a spawn error included).
    this.closed = once(this.child, 'close').catch(() => undefined);
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.lines.push(line);
      try {
        const event: unknown = JSON.parse(line);
        if (typeof event === 'object' && event !== null && !Array.isArray(event)) this.events.push(event as MonitorEvent);
      } catch {
        // not an event line; kept in `lines`
      }
    });
  }

  /** Starts the monitor and resolves once it listens (it says so on stderr). */
  static async start(args: string[], timeoutMs: number): Promise<MonitorProcess> {
    const monitor = new MonitorProcess(args);
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`xlb monitor did not start listening within ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
      monitor.child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (/Listening/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
      monitor.child.once('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`xlb monitor exited with ${String(code)}: ${stderr.trim()}`));
      });
    }).catch(async (error: unknown) => {
      await monitor.stop();
      throw error;
    });
    return monitor;
  }

  /** Ctrl-C, as a user would stop it; resolves when it has exited. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGINT');
    await this.closed;
  }
}
