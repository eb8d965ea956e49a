/**
 * The HTTP health endpoints a kube-proxy replacement owes the cluster (kube-proxy's
 * pkg/proxy/healthcheck):
 *
 * - The node's health server on --healthz-addr (default 0.0.0.0:10256), proxier_health.go: /livez is
 *   200 while the proxy keeps up (no change has waited for a sync longer than the timeout), else 503;
 *   /healthz is the same and also 503 while this node's Node is being deleted or is tainted
 *   ToBeDeletedByClusterAutoscaler (nodeEligible false), so cloud load balancers drain it first.
 *   Both answer {"lastUpdated", "currentTime"} (and /healthz "nodeEligible"), times in ISO 8601;
 *   lastUpdated reads as now while healthy, as kube-proxy keeps it for old clients.
 * - One server per healthCheckNodePort (LoadBalancer services with externalTrafficPolicy Local),
 *   answering any path with lb/k8s/health.ts healthCheckResponse: 200 while this node has a ready
 *   endpoint of the service, else 503.
 *
 * A port that cannot be bound is logged and reported (failures()), never fatal: the datapath
 * serves on without it. node:http, not fastify: two fixed answers need no framework.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { healthCheckResponse, type HealthCheck } from '../../lb/k8s/index.js';
import type { HostPort } from '../flags.js';
import type { Logger } from '../log.js';

/** kube-proxy's healthz timeout: twice its 30 s sync period. */
export const HEALTH_TIMEOUT_MS = 60_000;
/** What kube-proxy answers as lastUpdated before its first sync (Go's zero time). */
const NEVER = '0001-01-01T00:00:00Z';

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether the proxy keeps up with the changes it receives (kube-proxy's proxierHealthServer state). */
export class ProxierHealth {
  private oldestPending: number | undefined;
  private lastUpdated: number | undefined;

  constructor(
    private readonly timeoutMs = HEALTH_TIMEOUT_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A change arrived that a sync has yet to apply. */
  queued(): void {
    this.oldestPending ??= this.now();
  }

  /** A sync applied everything queued before it. */
  updated(): void {
    this.oldestPending = undefined;
    this.lastUpdated = this.now();
  }

  /** Healthy while nothing waits, or the oldest change has waited less than the timeout. */
  healthy(): boolean {
    return this.oldestPending === undefined || this.now() - this.oldestPending < this.timeoutMs;
  }

  /** The answer of /livez (nodeEligible undefined) or /healthz. */
  answer(nodeEligible?: boolean): { status: 200 | 503; body: Record<string, unknown> } {
    const now = this.now();
    const healthy = this.healthy() && nodeEligible !== false;
    const lastUpdated = healthy ? now : this.lastUpdated;
    return {
      status: healthy ? 200 : 503,
      body: {
        lastUpdated: lastUpdated === undefined ? NEVER : new Date(lastUpdated).toISOString(),
        currentTime: new Date(now).toISOString(),
        ...(nodeEligible === undefined ? {} : { nodeEligible }),
      },
    };
  }
}

function hostPortText(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

const JSON_HEADERS = { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' };

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  res.writeHead(status, headers);
  res.end(`${JSON.stringify(body)}\n`);
}

async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error as Error))]);
  return server.address() as AddressInfo;
}

async function close(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections(); // load balancers probe with keep-alive: do not wait for them
  await closed;
}

/** The node's /healthz and /livez. */
export class NodeHealthServer {
  private constructor(
    private readonly server: Server,
    readonly address: HostPort,
  ) {}

  /** Listens on `addr` (port 0: any free port, see address); rejects when it cannot. */
  static async start(addr: HostPort, health: ProxierHealth, nodeEligible: () => boolean): Promise<NodeHealthServer> {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = new URL(req.url ?? '/', 'http://healthz').pathname;
      if (path !== '/healthz' && path !== '/livez') return send(res, 404, JSON_HEADERS, { error: `no ${path}: /healthz or /livez` });
      const { status, body } = health.answer(path === '/healthz' ? nodeEligible() : undefined);
      send(res, status, JSON_HEADERS, body);
    });
    try {
      const bound = await listen(server, addr.host, addr.port);
      return new NodeHealthServer(server, { host: addr.host, port: bound.port });
    } catch (error) {
      server.close();
      throw error;
    }
  }

  async close(): Promise<void> {
    await close(this.server);
  }
}

interface ServiceHealthEntry {
  check: HealthCheck;
  /** One server per listening address; undefined where listening failed (retried on the next update). */
  servers: Map<string, Server | undefined>;
}

/** The healthCheckNodePort servers, started, updated and stopped as the checks change. */
export class ServiceHealthServers {
  private readonly entries = new Map<number, ServiceHealthEntry>();
  private readonly failed = new Map<string, string>();

  constructor(
    private readonly options: {
      /** Where each server listens: 0.0.0.0 (every IPv4 address), or the node's --nodeport-addresses. */
      addresses: readonly string[];
      /** The proxy's own health (serviceProxyHealthy in each answer). */
      proxyHealthy: () => boolean;
      log: Logger;
    },
  ) {}

  /** Serve exactly `checks`: new ports start listening, gone ones stop, the others answer with the new count. */
  async update(checks: readonly HealthCheck[]): Promise<void> {
    const wanted = new Map(checks.map((c) => [c.nodePort, c]));
    for (const [port, entry] of this.entries) {
      if (wanted.has(port)) continue;
      this.entries.delete(port);
      for (const address of entry.servers.keys()) this.failed.delete(hostPortText(address, port));
      await Promise.all([...entry.servers.values()].map((s) => (s ? close(s) : undefined)));
      this.options.log.info(`health check server for service ${entry.check.namespace}/${entry.check.name} on port ${port} stopped`);
    }
    for (const [port, check] of wanted) {
      const entry = this.entries.get(port) ?? { check, servers: new Map<string, Server | undefined>() };
      entry.check = check;
      this.entries.set(port, entry);
      for (const address of this.options.addresses) {
        if (entry.servers.get(address)) continue;
        entry.servers.set(address, await this.start(entry, address, port));
      }
    }
  }

  /** Ports being served (on at least one address). */
  ports(): number[] {
    return [...this.entries].filter(([, e]) => [...e.servers.values()].some(Boolean)).map(([port]) => port);
  }

  /** "address:port" → why it could not listen, for each server that could not. */
  failures(): ReadonlyMap<string, string> {
    return this.failed;
  }

  async close(): Promise<void> {
    const servers = [...this.entries.values()].flatMap((e) => [...e.servers.values()]);
    this.entries.clear();
    this.failed.clear();
    await Promise.all(servers.map((s) => (s ? close(s) : undefined)));
  }

  private async start(entry: ServiceHealthEntry, address: string, port: number): Promise<Server | undefined> {
    const where = hostPortText(address, port);
    const server = createServer((_req, res) => {
      const { status, headers, body } = healthCheckResponse(entry.check, this.options.proxyHealthy());
      send(res, status, headers, body);
    });
    try {
      await listen(server, address, port);
    } catch (error) {
      server.close();
      this.failed.set(where, message(error));
      this.options.log.error(`health check server for service ${entry.check.namespace}/${entry.check.name} cannot listen on ${where}: ${message(error)}`);
      return undefined;
    }
    this.failed.delete(where);
    this.options.log.info(`health check server for service ${entry.check.namespace}/${entry.check.name} on ${where}`);
    return server;
  }
}
