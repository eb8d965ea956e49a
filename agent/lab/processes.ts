/**
 * The lab's programs: servers on the backends and clients on the client, each a child process inside
 * its network namespace (`ip netns exec`), stopped by stopAll() — call it in finally.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab, LabHost } from './topology.js';

const here = dirname(fileURLToPath(import.meta.url));
const SERVER = join(here, 'server.js');
const CLIENT = join(here, 'client.js');
const START_TIMEOUT_MS = 10_000;

export interface ClientReport {
  sent: number;
  answered: number;
  byBackend: Record<string, number>;
  /** Where the backends saw the exchanges come from ("address:port", as each answer says). */
  seenFrom: string[];
  errors: string[];
}

export interface HeldAnswer {
  i: number;
  backend?: string;
  localPort?: number;
  error?: string;
}

/** A long-lived connection (client.js hold): answers as they come. */
export interface HeldConnection {
  next(): Promise<HeldAnswer>;
  /** Every remaining answer, once the client has finished. */
  rest(): Promise<HeldAnswer[]>;
}

export class LabProcesses {
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly lab: Lab) {}

  private spawnIn(ns: string, script: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** HTTP on :8080 and UDP echo on :5353, on the backend's IPv4 and IPv6 addresses. */
  startServer(host: LabHost, name: string): Promise<void> {
    const child = this.spawnIn(host.ns, SERVER, ['--name', name, '--listen', host.v4, '--listen', host.v6, '--http-port', '8080', '--udp-port', '5353']);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server ${name} in ${host.ns} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server ${name} exited with ${code}: ${stderr.trim()}`));
      });
    });
  }

  /** N exchanges from the client namespace (or `fromNs`), each given `timeoutMs`; resolves with the client's report. */
  client(kind: 'http' | 'udp', target: string, count: number, timeoutMs = 2000, fromNs = this.lab.client.ns): Promise<ClientReport> {
    const child = this.spawnIn(fromNs, CLIENT, [kind, '--target', target, '--count', String(count), '--timeout-ms', String(timeoutMs)]);
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('exit', (code) => {
        if (code !== 0) reject(new Error(`client ${kind} ${target} exited with ${code}: ${stderr.trim()}`));
        else resolve(JSON.parse(stdout) as ClientReport);
      });
    });
  }

  /** One TCP connection sending `count` requests, one every `intervalMs`. */
  hold(target: string, count: number, intervalMs: number): HeldConnection {
    const child = this.spawnIn(this.lab.client.ns, CLIENT, ['hold', '--target', target, '--count', String(count), '--interval-ms', String(intervalMs)]);
    const lines = createInterface({ input: child.stdout ?? process.stdin })[Symbol.asyncIterator]();
    const parse = (line: string): HeldAnswer => JSON.parse(line) as HeldAnswer;
    return {
      async next() {
        const { value, done } = await lines.next();
        if (done) throw new Error(`held connection to ${target} ended early`);
        return parse(value);
      },
      async rest() {
        const answers: HeldAnswer[] = [];
        for (let step = await lines.next(); !step.done; step = await lines.next()) answers.push(parse(step.value));
        return answers;
      },
    };
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((child) => new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    })));
  }
}
