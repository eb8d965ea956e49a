/**
 * A cgroup v2 directory of a test's own, a child of the unified hierarchy's root (never the root
 * itself), for socket-LB programs to attach to. Only processes the test spawns through it are moved
 * in; remove() ends those that are left, and removes the directory — call it in finally.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findCgroup2Root } from '../../lb/datapath/cgroup.js';

export interface ProcessRun {
  code: number | null;
  out: string;
  err: string;
}

export class TestCgroup {
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly dir: string) {}

  static create(tag: string): TestCgroup {
    const root = findCgroup2Root();
    if (root === undefined) throw new Error('no cgroup v2 hierarchy is mounted: socket-LB tests need one');
    const dir = join(root, `xlb-test-${tag}-${process.pid.toString(36)}${randomBytes(2).toString('hex')}`);
    mkdirSync(dir);
    return new TestCgroup(dir);
  }

  /**
   * `command` in network namespace `ns`, moved into this cgroup before it runs: the shell writes its own
   * pid into cgroup.procs, then execs (`ip netns exec` keeps the cgroup).
   */
  spawn(ns: string, command: string, args: string[]): ChildProcess {
    const child = spawn('sh', ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', join(this.dir, 'cgroup.procs'), 'ip', 'netns', 'exec', ns, command, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** A Node script run to its end in `ns` and this cgroup; past `timeoutMs` it gets SIGTERM. */
  async runNode(ns: string, script: string, args: string[], timeoutMs = 60_000): Promise<ProcessRun> {
    const child = this.spawn(ns, process.execPath, [script, ...args]);
    let out = '';
    let err = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    try {
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      return { code, out, err };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Pids in the cgroup now. */
  pids(): number[] {
    return readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  }

  /** Ends the processes this cgroup still holds (all of them ours), then removes it. */
  async remove(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    if (!existsSync(this.dir)) return;
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const pid of this.pids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      try {
        rmdirSync(this.dir);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) throw error;
      }
      await sleep(20);
    }
  }
}
