#!/usr/bin/env node
/**
 * A client for the socket-LB tests, run inside the test's cgroup and a network namespace. It asks the
 * lab servers (agent/lab/server.ts: HTTP answers {backend, client}, UDP echoes the same) and reports
 * what the application saw — which backend answered, and the peer address the socket API showed.
 *
 *   tcp  --target A:P --count N    N connections, one HTTP request each; peer = getpeername()
 *   udp  --target A:P --count N    N unconnected datagrams (sendto), each from a new socket unless
 *                                  --one-socket; peer = the reply's source as recvmsg() gave it
 *   cudp --target A:P --count N    N datagrams over one connect()ed UDP socket; peer = getpeername()
 *   hold --target A:P --count N --interval-ms T   one keep-alive TCP connection, a request every T ms,
 *                                  a JSON line per answer with a fresh getpeername() (the others print
 *                                  one JSON report)
 * Errors are reported by their code (ECONNREFUSED ...). IPv6 targets as [ADDR]:PORT.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Agent, request } from 'node:http';
import { connect, isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';

// `node --test dist/test/` runs every file there, this one too, without arguments: nothing to do then.
if (process.argv.length <= 2) process.exit(0);

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    count: { type: 'string' },
    'timeout-ms': { type: 'string' },
    'interval-ms': { type: 'string' },
    'one-socket': { type: 'boolean' },
  },
});
const kind = positionals[0] ?? '';
const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(values.target ?? '');
if (!match || !['tcp', 'udp', 'cudp', 'hold'].includes(kind)) {
  process.stderr.write('usage: sock-client.js tcp|udp|cudp|hold --target ADDR:PORT --count N [--timeout-ms T] [--interval-ms T] [--one-socket]\n');
  process.exit(2);
}
const [, host = '', portText = ''] = match;
const port = Number(portText);
const count = Number(values.count ?? 10);
const timeoutMs = Number(values['timeout-ms'] ?? 2000);
const intervalMs = Number(values['interval-ms'] ?? 50);
const family = isIPv6(host) ? 'udp6' : 'udp4';

/** One exchange as the application saw it. */
export interface SockAnswer {
  backend: string;
  /** The peer address the socket API reported: "addr:port" ("[v6]:port"). */
  peer: string;
  /** Where the backend saw the exchange come from. */
  client: string;
}

export interface SockReport {
  answers: SockAnswer[];
  errors: string[];
}

const endpoint = (address: string | undefined, p: number | undefined): string => (address?.includes(':') ? `[${address}]:${p}` : `${address}:${p}`);
const codeOf = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));

function tcpOnce(i: number): Promise<SockAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let peer = '';
    let data = '';
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`connection ${i} timed out`)));
    socket.on('connect', () => {
      peer = endpoint(socket.remoteAddress, socket.remotePort);
      socket.write(`GET /${i} HTTP/1.1\r\nhost: service\r\nconnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        const answer = JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4)) as { backend: string; client: string };
        resolve({ backend: answer.backend, client: answer.client, peer });
      } catch {
        reject(new Error(`connection ${i}: no answer in ${JSON.stringify(data.slice(0, 80))}`));
      }
    });
  });
}

function udpExchange(socket: UdpSocket, i: number, connected: boolean): Promise<SockAnswer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('message', onMessage);
      reject(new Error(`datagram ${i} got no answer`));
    }, timeoutMs);
    const onMessage = (message: Buffer, rinfo: { address: string; port: number }): void => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      const answer = JSON.parse(message.toString()) as { backend: string; client: string };
      const peer = connected ? endpoint(socket.remoteAddress().address, socket.remoteAddress().port) : endpoint(rinfo.address, rinfo.port);
      resolve({ backend: answer.backend, client: answer.client, peer: connected ? `${peer} from ${endpoint(rinfo.address, rinfo.port)}` : peer });
    };
    socket.on('message', onMessage);
    const done = (error: Error | null): void => {
      if (!error) return;
      clearTimeout(timer);
      socket.off('message', onMessage);
      reject(error);
    };
    if (connected) socket.send(`ping ${i}`, done);
    else socket.send(`ping ${i}`, port, host, done);
  });
}

async function openUdp(connected: boolean): Promise<UdpSocket> {
  const socket = createSocket(family);
  socket.on('error', () => undefined); // errors reach the exchange's send callback
  if (connected) {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  }
  return socket;
}

async function report(exchange: (i: number) => Promise<SockAnswer>): Promise<SockReport> {
  const answers: SockAnswer[] = [];
  const errors: string[] = [];
  for (let i = 0; i < count; i++) {
    try {
      answers.push(await exchange(i));
    } catch (error) {
      errors.push(codeOf(error));
    }
  }
  return { answers, errors };
}

async function udpReport(connected: boolean, oneSocket: boolean): Promise<SockReport> {
  let shared: UdpSocket | undefined;
  try {
    return await report(async (i) => {
      if (oneSocket || connected) {
        shared ??= await openUdp(connected);
        return udpExchange(shared, i, connected);
      }
      const socket = await openUdp(false);
      try {
        return await udpExchange(socket, i, false);
      } finally {
        socket.close();
      }
    });
  } finally {
    shared?.close();
  }
}

async function hold(): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < count; i++) {
    const line = await new Promise<Record<string, unknown>>((resolve) => {
      const req = request({ host, port, path: `/${i}`, agent, timeout: timeoutMs }, (res) => {
        let body = '';
        // Node keeps a socket's first getpeername() answer: forget it, so each answer asks the kernel again.
        Reflect.deleteProperty(res.socket, '_peername');
        const peer = endpoint(res.socket.remoteAddress, res.socket.remotePort);
        const localPort = res.socket.localPort;
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => {
          const answer = JSON.parse(body) as { backend: string };
          resolve({ i, backend: answer.backend, peer, localPort });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`request ${i} timed out`)));
      req.on('error', (error) => resolve({ i, error: codeOf(error) }));
      req.end();
    });
    process.stdout.write(`${JSON.stringify(line)}\n`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  agent.destroy();
}

if (kind === 'hold') {
  await hold();
} else {
  const result = kind === 'tcp' ? await report(tcpOnce) : await udpReport(kind === 'cudp', values['one-socket'] === true);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
process.exit(0);
