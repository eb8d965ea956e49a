#!/usr/bin/env node
/**
 * A lab client, run inside the client network namespace: N HTTP requests (each on a new connection, so
 * each is a new flow) or N UDP exchanges (each from a new source port), with a deadline per exchange.
 * Prints one JSON line: {sent, answered, byBackend: {name: count}, errors: [first few]}.
 * `hold` keeps ONE TCP connection and sends a request every --interval-ms, printing a JSON line per
 * answer ({i, backend}) — a long-lived flow to watch while backends change.
 * Usage: client.js http|udp|hold --target ADDR:PORT (IPv6 as [ADDR]:PORT) --count N [--timeout-ms T] [--interval-ms T]
 */
import { Agent } from 'node:http';
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    count: { type: 'string' },
    'timeout-ms': { type: 'string' },
    'interval-ms': { type: 'string' },
  },
});
const kind = positionals[0];
const target = values.target ?? '';
const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
if (!match || (kind !== 'http' && kind !== 'udp' && kind !== 'hold')) {
  process.stderr.write('usage: client.js http|udp|hold --target ADDR:PORT --count N [--timeout-ms T] [--interval-ms T]\n');
  process.exit(2);
}
const [, host = '', portText = ''] = match;
const port = Number(portText);
const count = Number(values.count ?? 10);
const timeoutMs = Number(values['timeout-ms'] ?? 2000);

const intervalMs = Number(values['interval-ms'] ?? 100);

/** The local port of the last answered request: the same port across `hold` answers means one connection. */
let lastLocalPort = 0;

/** What a lab server answers: its name, and where it saw the exchange come from. */
interface Answer {
  backend: string;
  client: string;
}

function httpOnce(i: number, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = agent ? {} : { connection: 'close' };
    const req = request({ host, port, path: `/${i}`, agent, timeout: timeoutMs, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      lastLocalPort = res.socket.localPort ?? 0;
      res.on('end', () => resolve(JSON.parse(body) as Answer));
    });
    req.on('timeout', () => req.destroy(new Error(`request ${i} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function udpOnce(i: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`datagram ${i} got no answer`));
    }, timeoutMs);
    socket.on('message', (message) => {
      clearTimeout(timer);
      socket.close();
      resolve(JSON.parse(message.toString()) as Answer);
    });
    socket.send(`ping ${i}`, port, host);
  });
}

if (kind === 'hold') {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < count; i++) {
    try {
      const { backend } = await httpOnce(i, agent);
      process.stdout.write(`${JSON.stringify({ i, backend, localPort: lastLocalPort })}\n`);
    } catch (error) {
      process.stdout.write(`${JSON.stringify({ i, error: error instanceof Error ? error.message : String(error) })}\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  agent.destroy();
  process.exit(0);
}

const byBackend: Record<string, number> = {};
const seenFrom: string[] = [];
const errors: string[] = [];
let answered = 0;
for (let i = 0; i < count; i++) {
  try {
    const { backend, client } = await (kind === 'http' ? httpOnce(i) : udpOnce(i));
    byBackend[backend] = (byBackend[backend] ?? 0) + 1;
    seenFrom.push(client);
    answered += 1;
  } catch (error) {
    if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
  }
}
process.stdout.write(`${JSON.stringify({ sent: count, answered, byBackend, seenFrom, errors })}\n`);
