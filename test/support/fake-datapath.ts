/**
 * An in-memory ServiceDatapath for control-plane tests: records every state it was asked to apply,
 * checks that applies never overlap and that a state is not changed while it is being applied, can
 * be told to fail the next apply, and emits events on demand. Ids come from the real IdAllocator,
 * so its limits (service ids, backend ids) refuse an apply as on a node. startFakeAgent() wires the
 * agent's control plane around one, as agent/main.ts does around the real datapath.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { CounterSample } from '../../lb/datapath/lb-datapath.js';
import type { Service } from '../../lb/service.js';
import type { ApplyResult, ServiceChanges, DatapathEvent, DatapathStatus, IdSpaceUse, MapPressure, ServiceDatapath } from '../../agent/datapath.js';
import { backendKey } from '../../lb/lbmap/desired.js';
import { IdAllocator, type IdAllocatorOptions } from '../../lb/lbmap/ids.js';
import { MonitorStreams } from '../../agent/api/monitor.js';
import { buildApiServer, listenTcp, listenUnix } from '../../agent/api/server.js';
import { memoryLogger } from '../../agent/log.js';
import type { KubernetesStatusSource } from '../../agent/kubernetes-status.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { ServiceStore } from '../../agent/store.js';

export class FakeDatapath implements ServiceDatapath {
  /** Every successfully applied state, in order (copies). */
  readonly applied: Map<string, Service>[] = [];
  /** Every apply call, failed ones included. */
  attempts = 0;
  /** Problems the fake saw: overlapping applies, a state mutated during its apply. */
  readonly violations: string[] = [];
  current = new Map<string, Service>();
  counterSamples: CounterSample[] = [];
  pressure: MapPressure[] = [{ map: 'xlb_lb4_svc', entries: 0, maxEntries: 1024 }];
  closed = false;
  /** Ticks each apply takes, so concurrent callers would overlap if the store let them. */
  applyTicks = 2;

  private inFlight = 0;
  private failure: Error | undefined;
  private readonly listeners = new Set<(event: DatapathEvent) => void>();
  private readonly ids: IdAllocator;

  constructor(
    private readonly statusValue: DatapathStatus = { devices: [{ name: 'veth0', mode: 'xdp-native' }], maglevTableSize: 251, defaultMode: 'snat' },
    ids: IdAllocatorOptions = {},
  ) {
    this.ids = new IdAllocator(ids);
  }

  /** The next apply throws `error` (once). */
  failNextApply(error: Error): void {
    this.failure = error;
  }

  async pruneStale(): Promise<ApplyResult> {
    return { written: 0, deleted: 0, durationMs: 0 };
  }

  async apply(changes: ServiceChanges): Promise<ApplyResult> {
    const services = new Map(this.current);
    for (const [id, service] of changes) {
      if (service === undefined) services.delete(id);
      else services.set(id, service);
    }
    this.attempts += 1;
    this.inFlight += 1;
    if (this.inFlight > 1) this.violations.push(`apply #${this.attempts} started while ${this.inFlight - 1} other(s) ran`);
    const snapshot = JSON.stringify([...services]);
    const given = JSON.stringify([...changes]);
    try {
      for (let i = 0; i < this.applyTicks; i++) await yieldToLoop();
      if (JSON.stringify([...changes]) !== given) this.violations.push(`apply #${this.attempts}: the state changed while it was applied`);
      const failure = this.failure;
      this.failure = undefined;
      if (failure) throw failure;
      const next = new Map<string, Service>(JSON.parse(snapshot) as [string, Service][]);
      // As desiredLbState does: every name and every listed backend gets its id, or the apply is refused.
      const refs = new Map<string, number>();
      for (const service of next.values()) {
        for (const b of service.backends) {
          const key = backendKey(b.address, b.port, service.frontend.protocol);
          refs.set(key, (refs.get(key) ?? 0) + 1);
        }
      }
      this.ids.assign([...next.keys()].sort(), refs);
      let written = 0;
      for (const [id, service] of next) {
        if (JSON.stringify(this.current.get(id)) !== JSON.stringify(service)) written += 1;
      }
      const deleted = [...this.current.keys()].filter((id) => !next.has(id)).length;
      this.current = next;
      this.applied.push(next);
      this.pressure = this.pressure.map((p) => ({ ...p, entries: next.size }));
      return { written, deleted, durationMs: 0.1 };
    } finally {
      this.inFlight -= 1;
    }
  }

  status(): DatapathStatus {
    return this.statusValue;
  }

  counters(): CounterSample[] {
    return this.counterSamples;
  }

  mapPressure(): MapPressure[] {
    return this.pressure;
  }

  idSpaces(): IdSpaceUse[] {
    return this.ids.usage();
  }

  subscribe(onEvent: (event: DatapathEvent) => void): () => void {
    this.listeners.add(onEvent);
    return () => void this.listeners.delete(onEvent);
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  emit(event: DatapathEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** The numeric id the fake gave a service (kept while the service is applied). */
  serviceIdOf(name: string): number | undefined {
    return this.ids.serviceId(name);
  }

  serviceName(serviceId: number): string | undefined {
    for (const [name, id] of this.ids.snapshot().services) if (id === serviceId) return name;
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
  }
}

/** A drop event with defaults; override what the test cares about. */
export function fakeEvent(overrides: Partial<DatapathEvent> = {}): DatapathEvent {
  return {
    type: 'drop',
    reason: 18,
    direction: 0,
    timestamp: 123456789012345678n,
    family: 4,
    proto: 6,
    saddr: '198.18.0.9',
    daddr: '198.18.0.10',
    sport: 41000,
    dport: 80,
    ifindex: 3,
    serviceId: 1,
    backendId: 0,
    ...overrides,
  };
}

export interface FakeAgentOptions {
  /** Directory for the socket and the state file; created (and removed on close) when absent. */
  dir?: string;
  configServices?: ReadonlyMap<string, Service>;
  /** Also listen on 127.0.0.1:0 requiring this bearer token. */
  token?: string;
  datapath?: FakeDatapath;
  /** Kubernetes mode's status source (GET /v1/status `kubernetes`); absent: standalone. */
  kubernetes?: KubernetesStatusSource;
}

export interface FakeAgent {
  dir: string;
  socketPath: string;
  stateFile: string;
  tcp?: { host: string; port: number };
  datapath: FakeDatapath;
  store: ServiceStore;
  metrics: AgentMetrics;
  log: ReturnType<typeof memoryLogger>;
  close(): Promise<void>;
}

/** The agent's control plane (store, metrics, API servers) around a FakeDatapath, as agent/main.ts wires it. */
export async function startFakeAgent(options: FakeAgentOptions = {}): Promise<FakeAgent> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'xlb-agent-')));
  const datapath = options.datapath ?? new FakeDatapath();
  const log = memoryLogger();
  const stateFile = join(dir, 'state', 'state.json');
  const socketPath = join(dir, 'run', 'xlb.sock');
  const servers: FastifyInstance[] = [];
  const store = new ServiceStore({ datapath, stateFile, log });
  const metrics = new AgentMetrics({ datapath, store, processMetrics: false });
  const close = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.close()));
    await store.idle();
    metrics.close();
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    await store.start(options.configServices ?? new Map());
    // One set of monitor streams for both listeners, as agent/main.ts should give them.
    const common = { store, datapath, metrics, log, version: '0.0.0-test', startedAt: Date.now(), monitor: new MonitorStreams(), kubernetes: options.kubernetes };
    const unix = await buildApiServer(common);
    servers.push(unix);
    await listenUnix(unix, socketPath);
    const agent: FakeAgent = { dir, socketPath, stateFile, datapath, store, metrics, log, close };
    if (options.token !== undefined) {
      const tcp = await buildApiServer({ ...common, token: options.token });
      servers.push(tcp);
      agent.tcp = await listenTcp(tcp, { host: '127.0.0.1', port: 0 });
    }
    return agent;
  } catch (error) {
    await close();
    throw error;
  }
}
