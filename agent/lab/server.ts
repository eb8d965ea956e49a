#!/usr/bin/env node
/**
 * A lab backend: an HTTP server answering every request with its name and the client it saw, and a UDP
 * echo answering with its name. Run inside a backend network namespace by tests, the demo and benchmarks.
 * Usage: server.js --name NAME --listen ADDR [--listen ADDR] --http-port P --udp-port P
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    listen: { type: 'string', multiple: true },
    'http-port': { type: 'string' },
    'udp-port': { type: 'string' },
  },
});
const name = values.name ?? 'backend';
const addresses = values.listen ?? [];
const httpPort = Number(values['http-port'] ?? 8080);
const udpPort = Number(values['udp-port'] ?? 5353);

let listening = 0;
const ready = (): void => {
  listening += 1;
  if (listening === addresses.length * 2) process.stdout.write('ready\n');
};

for (const address of addresses) {
  const http = createServer((req, res) => {
    const body = JSON.stringify({ backend: name, client: `${req.socket.remoteAddress}:${req.socket.remotePort}`, path: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  http.keepAliveTimeout = 60_000;
  http.listen(httpPort, address, ready);

  const udp = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
  udp.on('message', (message, peer) => {
    udp.send(Buffer.from(JSON.stringify({ backend: name, client: `${peer.address}:${peer.port}`, echo: message.toString() })), peer.port, peer.address);
  });
  udp.bind(udpPort, address, ready);
}

process.on('SIGTERM', () => process.exit(0));
