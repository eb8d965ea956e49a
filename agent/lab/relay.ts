#!/usr/bin/env node
/**
 * A lab node reaching the apiserver. The test apiserver listens on the host's loopback; an agent in a
 * node's network namespace has a loopback of its own. Real nodes reach their apiserver over the
 * network; the lab must not route anything through the host's namespace, so it joins the two
 * loopbacks with a unix socket, which every namespace shares (the file system is not per namespace):
 *
 *   agent (node netns) → 127.0.0.1:P (this script, in the netns) → unix socket → LoopbackRelay (host)
 *   → 127.0.0.1:apiserver
 *
 * Byte streams only (TLS stays end to end; the serving certificate names 127.0.0.1, which is right on
 * both sides). Run as `ip netns exec NS node relay.js SOCKET`: it listens on 127.0.0.1 with a free
 * port and prints that port on its first line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const START_TIMEOUT_MS = 10_000;

function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', close).on('close', close);
  b.on('error', close).on('close', close);
}

/** The host side: a unix socket whose every connection goes on to host:port. */
export class LoopbackRelay {
  private child: ChildProcess | undefined;

  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
  ) {}

  /** Relays connections to `target` (on this namespace's loopback) from 127.0.0.1:`port` inside `ns`. */
  static async start(ns: string, socketPath: string, target: { host: string; port: number }): Promise<{ relay: LoopbackRelay; port: number }> {
    rmSync(socketPath, { force: true });
    const server = createServer((from) => join(from, createConnection(target.port, target.host)));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
    const relay = new LoopbackRelay(server, socketPath);
    try {
      return { relay, port: await relay.startInside(ns) };
    } catch (error) {
      await relay.stop();
      throw error;
    }
  }

  private startInside(ns: string): Promise<number> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), this.socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay in ${ns} did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
      child.once('exit', (code) => reject(new Error(`relay in ${ns} exited with ${String(code)}: ${stderr}`)));
      if (!child.stdout) return;
      createInterface({ input: child.stdout }).once('line', (line) => {
        clearTimeout(timer);
        const port = Number(line);
        if (Number.isInteger(port) && port > 0) resolve(port);
        else reject(new Error(`relay in ${ns} printed ${JSON.stringify(line)}, not a port`));
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }
}

/** The namespace side (this file run as a script). */
function relayInside(socketPath: string): void {
  const server = createServer((from) => join(from, createConnection(socketPath)));
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
  });
  // Open streams (an agent's watches) would keep a graceful close waiting: just go.
  process.once('SIGTERM', () => process.exit(0));
  process.once('SIGINT', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const socketPath = process.argv[2];
  if (!socketPath) {
    process.stderr.write('usage: relay.js SOCKET\n');
    process.exit(2);
  }
  relayInside(socketPath);
}
