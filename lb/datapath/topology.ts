import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** Run `ip` (or another command) and return its stdout; failures name the command and its stderr. */
export interface RunOptions {
  input?: string;
  /** return stdout even when the command exits non-zero (e.g. a ping expected to get no answer) */
  allowFailure?: boolean;
}

export function run(command: string, args: string[], options: RunOptions = {}): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: options.input ?? '' });
  } catch (error) {
    const { stdout, stderr: rawStderr } = error as { stdout?: string; stderr?: string };
    if (options.allowFailure) return stdout ?? '';
    const stderr = rawStderr?.trim();
    throw new Error(`${command} ${args.join(' ')} failed${stderr ? `: ${stderr}` : ''}`);
  }
}

/**
 * Network namespaces and veth links made for one run (test, benchmark or demo), with unique names,
 * all removed by destroy() — call it from finally/trap so nothing is left even on failure.
 */
export class Topology {
  readonly namespaces: string[] = [];
  readonly id: string;

  constructor(readonly tag: string) {
    this.id = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  }

  /** Unique namespace name for `role`, e.g. xlb-test-lb-1a2b3c. */
  namespace(role: string): string {
    const name = `xlb-${this.tag}-${role}-${this.id}`;
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    this.exec(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  exec(ns: string, command: string, args: string[], options: RunOptions = {}): string {
    return run('ip', ['netns', 'exec', ns, command, ...args], options);
  }

  /** A veth pair between two namespaces, both ends up. */
  veth(a: { ns: string; name: string }, b: { ns: string; name: string }): void {
    run('ip', ['link', 'add', a.name, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.ns]);
    this.exec(a.ns, 'ip', ['link', 'set', a.name, 'up']);
    this.exec(b.ns, 'ip', ['link', 'set', b.name, 'up']);
  }

  address(ns: string, dev: string, cidr: string): void {
    this.exec(ns, 'ip', ['address', 'add', cidr, 'dev', dev, ...(cidr.includes(':') ? ['nodad'] : [])]);
  }

  destroy(): void {
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        run('ip', ['netns', 'delete', ns]);
      } catch {
        // Already gone; nothing else to undo.
      }
    }
  }
}
