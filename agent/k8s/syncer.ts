/**
 * Kubernetes mode, assembled: the watches (informers.ts) feed the change tracker (tracker.ts); syncs
 * hand what changed to the store (ServiceStore.syncKubernetes), which applies it to the datapath;
 * health servers (health.ts), metrics (metrics.ts) and the status follow. With the pod datapath,
 * this node's Pods' devices (pods.ts), and with `policy` network policy and pods' egress bandwidth
 * (policy.ts: Pods, Nodes, Namespaces and NetworkPolicies → the policy maps and EDT rates).
 *
 * How agent/main.ts uses it, once the store has started:
 *
 *   const watcher = await startKubernetes({ flags: flags.kubernetes, nodeName: flags.nodeName, store,
 *                                           registry: metrics.registry, log, nodeAddresses });
 *   teardown.add('stopping the Kubernetes watcher', () => watcher.stop());
 *   await watcher.initialSync();   // every Service, EndpointSlice and this Node listed and applied once
 *   await store.pruneStale();      // now the pinned maps hold nothing the cluster no longer has
 *   // GET /v1/status and `xlb status`: watcher.status() (KubernetesStatusSource)
 *
 * startKubernetes throws ConnectionConfigError when no apiserver is configured usably (no kubeconfig,
 * not in a pod); an apiserver that does not answer is not an error: the watches retry forever, and
 * initialSync() waits for them (bound it with a timeout if the agent must start without it).
 *
 * Syncs run one at a time, as soon as something is pending: no fixed period, so one endpoint change
 * reaches the maps in a few milliseconds; changes that arrive during a sync are coalesced into the
 * next one. The first sync waits for the first list of all three watches, so it applies a complete
 * picture (no service flaps to zero backends because its slices were listed a moment later).
 */
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { isIPv6 } from 'node:net';
import { nodePortAddresses, problemText, type NodePortAddressSpec, type ServiceOptions } from '../../lb/k8s/index.js';
import type { Service } from '../../lb/service.js';
import { formatHostPort, type HostPort, type KubernetesFlags } from '../flags.js';
import type { KubernetesStatus, KubernetesStatusSource, KubernetesSyncSummary } from '../kubernetes-status.js';
import type { Logger } from '../log.js';
import type { KubernetesSyncResult } from '../store.js';
import { kubeConnection, type Connection } from './connection.js';
import { HEALTH_TIMEOUT_MS, NodeHealthServer, ProxierHealth, ServiceHealthServers } from './health.js';
import { Informers, type BackoffOptions, type EventType, type ResourceKind } from './informers.js';
import { KubernetesMetrics, PolicyMetrics } from './metrics.js';
import { EventRecorder } from './events.js';
import { PodDeviceTracker, type RouteLookup } from './pods.js';
import { POLICY_KINDS, PolicySync, type PolicySyncOptions } from './policy.js';
import { KubeClient } from './rest.js';
import { ChangeTracker, type Flush, type RetryOptions } from './tracker.js';

/** The store as the watcher uses it. */
export interface KubernetesSink {
  syncKubernetes(changes: ReadonlyMap<string, Service | undefined>): Promise<KubernetesSyncResult>;
}

export interface KubernetesWatcherOptions {
  connection: Connection;
  nodeName: string;
  store: KubernetesSink;
  /** The agent's metrics registry (AgentMetrics.registry). */
  registry: Registry;
  log: Logger;
  /** --healthz-addr; absent: no node health server. */
  healthzAddr?: HostPort;
  /** Where healthCheckNodePort servers listen (default 0.0.0.0). */
  healthCheckAddresses?: readonly string[];
  /** Changes pending longer than this make /healthz and /livez answer 503 (default 60 s). */
  healthTimeoutMs?: number;
  /** Watch restart backoff (tests shorten it). */
  backoff?: BackoffOptions;
  /** How long watches last before the apiserver ends them and they are resumed (tests shorten it). */
  watchSeconds?: number;
  /** Backoff of services the store refused. */
  retry?: RetryOptions;
  serviceOptions?: ServiceOptions;
  /** Watch this node's Pods and hand their host-side devices here (pods.ts); absent: no Pod watch. */
  onPodDevices?: (devices: string[]) => void;
  /** The node's devices (--device): never a pod's. */
  nodeDevices?: readonly string[];
  /** How a pod address's device is found (default `ip -j route get`; tests inject their own). */
  podRouteLookup?: RouteLookup;
  /** Enforce network policy and pods' egress bandwidth (policy.ts); needs onPodDevices (the pods' devices). */
  policy?: PolicyWiring;
}

/** What network policy writes to, and how it finds a device's ifindex. */
export type PolicyWiring = Pick<PolicySyncOptions, 'maps' | 'bandwidth' | 'ifindexOf' | 'localAddresses' | 'retry'>;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class KubernetesWatcher implements KubernetesStatusSource {
  private readonly tracker: ChangeTracker;
  private readonly events: EventRecorder;
  private readonly informers: Informers;
  private readonly pods: PodDeviceTracker | undefined;
  /** Network policy and bandwidth (policy.ts), when asked for. */
  readonly policy: PolicySync | undefined;
  private readonly metrics: KubernetesMetrics;
  private readonly health: ProxierHealth;
  private readonly serviceHealth: ServiceHealthServers;
  private nodeHealth: NodeHealthServer | undefined;
  private readonly log: Logger;
  /** Every watch has listed once: syncs may start. */
  private ready = false;
  private stopped = false;
  private scheduled = false;
  /** The sync loop under way, if any. */
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastSync: KubernetesSyncSummary | undefined;
  private problemCount = 0;
  private initialDone = false;
  private readonly initial: Promise<void>;
  private settleInitial: { resolve: () => void; reject: (error: Error) => void } | undefined;

  constructor(private readonly options: KubernetesWatcherOptions) {
    this.log = options.log;
    this.tracker = new ChangeTracker({
      nodeName: options.nodeName,
      ...(options.serviceOptions ? { serviceOptions: options.serviceOptions } : {}),
      ...(options.retry ? { retry: options.retry } : {}),
    });
    this.metrics = new KubernetesMetrics(options.registry);
    this.health = new ProxierHealth(options.healthTimeoutMs ?? HEALTH_TIMEOUT_MS);
    this.serviceHealth = new ServiceHealthServers({
      addresses: options.healthCheckAddresses ?? ['0.0.0.0'],
      proxyHealthy: () => this.health.healthy(),
      log: this.log,
    });
    const { onPodDevices } = options;
    const client = new KubeClient(options.connection);
    this.events = new EventRecorder(client, options.nodeName, this.log);
    const policy = onPodDevices ? options.policy : undefined;
    if (options.policy && !policy) this.log.warn('kubernetes: network policy needs the pod datapath (the pods\' devices): not enforced');
    this.policy = policy
      ? new PolicySync({ ...policy, nodeName: options.nodeName, events: this.events, metrics: new PolicyMetrics(options.registry), log: this.log })
      : undefined;
    this.pods = onPodDevices
      ? new PodDeviceTracker({
          onDevices: (devices) => {
            this.log.info(`kubernetes: pod devices: ${devices.join(', ') || 'none'}`);
            onPodDevices(devices);
          },
          ...(this.policy ? { onPods: (devices: ReadonlyMap<string, string>) => this.policy?.setPodDevices(devices) } : {}),
          // With policy the Pod watch delivers every node's Pods.
          nodeName: options.nodeName,
          ...(options.nodeDevices ? { nodeDevices: options.nodeDevices } : {}),
          ...(options.podRouteLookup ? { lookup: options.podRouteLookup } : {}),
          log: this.log,
        })
      : undefined;
    this.informers = new Informers({
      client,
      nodeName: options.nodeName,
      sink: { list: (kind, items) => this.listed(kind, items), event: (kind, type, object) => this.received(kind, type, object) },
      log: this.log,
      pods: this.pods !== undefined,
      policy: this.policy !== undefined,
      onPolicySynced: () => this.policy?.start(),
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.watchSeconds !== undefined ? { watchSeconds: options.watchSeconds } : {}),
      onConnection: (state) => this.metrics.connected(state.connection === 'connected'),
      onSynced: () => {
        if (this.ready) return;
        this.ready = true;
        this.scheduleSync();
      },
    });
    this.initial = new Promise<void>((resolve, reject) => (this.settleInitial = { resolve, reject }));
    this.initial.catch(() => undefined); // stop() before the first sync rejects it; only callers care
  }

  /** Starts the node health server (a failure to listen is logged, not thrown) and the watches. */
  async start(): Promise<void> {
    const { healthzAddr, connection, nodeName } = this.options;
    if (healthzAddr) {
      try {
        this.nodeHealth = await NodeHealthServer.start(healthzAddr, this.health, () => this.tracker.nodeEligible);
        this.log.info(`kubernetes: node health on http://${formatHostPort(this.nodeHealth.address)}/healthz and /livez`);
      } catch (error) {
        this.log.error(`--healthz-addr ${formatHostPort(healthzAddr)}: cannot listen: ${message(error)}; /healthz and /livez are not served`);
      }
    }
    this.log.info(`kubernetes: watching ${connection.server} (${connection.source}) as node ${nodeName}`);
    this.informers.start();
  }

  /** Resolves once the first lists of Services, EndpointSlices and this Node are applied; rejects if stopped first. */
  initialSync(): Promise<void> {
    return this.initial;
  }

  /** Stops the watches, waits for a sync under way, closes the health servers. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.informers.stop();
    await this.pods?.stop();
    this.policy?.stop();
    await this.running;
    await this.serviceHealth.close();
    await this.nodeHealth?.close();
    if (!this.initialDone) this.settleInitial?.reject(new Error('the Kubernetes watcher stopped before its first sync'));
  }

  status(): KubernetesStatus {
    const state = this.informers.connection();
    const sliceVersion = this.informers.endpointSliceVersion;
    return {
      apiServer: this.options.connection.server,
      connection: state.connection,
      since: state.since.toISOString(),
      ...(state.lastError !== undefined ? { lastError: state.lastError } : {}),
      ...(sliceVersion !== undefined ? { endpointSliceVersion: sliceVersion } : {}),
      nodeName: this.options.nodeName,
      services: this.tracker.servedCount,
      ...(this.lastSync ? { lastSync: this.lastSync } : {}),
      problems: this.problemCount,
    };
  }

  /** The node health server's address (its port chosen by the OS when --healthz-addr gave 0). */
  get healthzAddress(): HostPort | undefined {
    return this.nodeHealth?.address;
  }

  /** Lists and watches made per kind: a watch the apiserver ended on time is resumed, not relisted. */
  watchCounts(): Record<ResourceKind, { lists: number; watches: number }> {
    return this.informers.counts();
  }

  /** healthCheckNodePorts being served, and the ones that could not listen ("address:port" → why). */
  healthChecks(): { ports: number[]; failures: ReadonlyMap<string, string> } {
    return { ports: this.serviceHealth.ports(), failures: this.serviceHealth.failures() };
  }

  // ---- what the watches deliver ----

  private listed(kind: ResourceKind, items: unknown[]): void {
    // Policy holds every Pod and Node the watches deliver: its counts are the changes received.
    const policyCounts = POLICY_KINDS.includes(kind) ? this.policy?.list(kind, items) : undefined;
    let counts = policyCounts;
    if (kind === 'Pod') {
      const podCounts = this.pods?.list(items);
      counts ??= podCounts;
    } else if (kind === 'Service' || kind === 'EndpointSlice' || kind === 'Node') {
      const serviceCounts = this.tracker.list(kind, items);
      counts ??= serviceCounts;
      this.changed();
    }
    if (counts) for (const type of ['add', 'update', 'delete'] as const) this.metrics.event(kind, type, counts[type]);
  }

  private received(kind: ResourceKind, type: EventType, object: unknown): void {
    this.metrics.event(kind, type);
    if (POLICY_KINDS.includes(kind)) this.policy?.event(kind, type, object);
    if (kind === 'Pod') this.pods?.event(type, object);
    else if (kind === 'Service' || kind === 'EndpointSlice' || kind === 'Node') {
      this.tracker.event(kind, type, object);
      this.changed();
    }
  }

  private changed(): void {
    if (!this.tracker.hasPending()) return;
    this.health.queued();
    this.scheduleSync();
  }

  // ---- syncs ----

  /** A sync as soon as possible: now if none runs, else one more right after the one under way. */
  private scheduleSync(): void {
    if (!this.ready || this.stopped) return;
    // A sync under way runs another when it finds something pending (runSyncs).
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    // After the current I/O callback: the other events of the same watch chunk join this sync.
    setImmediate(() => {
      this.scheduled = false;
      if (this.stopped || this.running) return;
      this.running = this.runSyncs().finally(() => {
        this.running = undefined;
        this.armRetry();
        if (this.tracker.hasPending()) this.scheduleSync();
      });
    });
  }

  private async runSyncs(): Promise<void> {
    do {
      try {
        await this.syncOnce();
      } catch (error) {
        // A bug, not a refusal (those are per service): logged, and the loop goes on with the next change.
        this.log.error(`kubernetes sync failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    } while (!this.stopped && this.tracker.hasPending());
  }

  /** Wakes a sync when the earliest refused service is due again. */
  private armRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const at = this.tracker.nextRetryAt();
    if (at === undefined || this.stopped) return;
    this.retryTimer = setTimeout(() => this.scheduleSync(), Math.max(0, at - Date.now()));
    this.retryTimer.unref();
  }

  private async syncOnce(): Promise<void> {
    const started = performance.now();
    const flush = this.tracker.flush();
    let result: KubernetesSyncResult = { applied: [], failed: [], durationMs: 0 };
    let completed = true;
    if (flush.changes.size > 0) {
      try {
        result = await this.options.store.syncKubernetes(flush.changes);
      } catch (error) {
        // Not a refused service (those come back in `failed`): the store itself failed. Retry it all.
        completed = false;
        this.log.error(`kubernetes sync: the store failed: ${message(error)}`);
        result = { applied: [], failed: [...flush.changes.keys()].map((id) => ({ id, error: message(error) })), durationMs: 0 };
      }
    }
    const resolvedAt = Date.now();
    const failed = result.failed.map((f) => f.id);
    this.tracker.confirm(flush, failed);
    if (flush.healthChecks) await this.serviceHealth.update(flush.healthChecks);
    if (completed) this.health.updated();
    const seconds = (performance.now() - started) / 1000;
    this.report(flush, result, failed, seconds, resolvedAt);
  }

  private report(flush: Flush, result: KubernetesSyncResult, failed: string[], seconds: number, resolvedAt: number): void {
    for (const problem of flush.newProblems) {
      this.log.warn(`kubernetes: ${problemText(problem)}`);
      this.events.warn(problem.object, 'InvalidField', problem.field === '' ? problem.message : `${problem.field}: ${problem.message}`);
    }
    for (const { id, error } of result.failed) {
      const [namespace, name] = (flush.owners.get(id) ?? '').split('/');
      if (namespace && name) this.events.warn({ kind: 'Service', namespace, name }, 'ServiceRefused', `xlb service ${id} is not served: ${error}`);
    }
    this.problemCount = flush.problems;
    this.metrics.problems(flush.problems);
    this.metrics.sync(seconds);
    const refused = new Set(failed.map((id) => flush.owners.get(id)));
    for (const [service, times] of flush.triggerTimes) {
      if (refused.has(service)) continue;
      for (const time of times) this.metrics.programmed((resolvedAt - time) / 1000);
    }
    this.lastSync = { at: new Date(resolvedAt).toISOString(), durationMs: seconds * 1000, changed: result.applied.length, failed: failed.length };
    const first = !this.initialDone;
    this.log.info(
      `kubernetes ${first ? 'initial sync' : 'sync'}: ${flush.services.length} Kubernetes service(s) recomputed, ` +
        `${result.applied.length} xlb service(s) changed${failed.length > 0 ? `, ${failed.length} refused (retried later)` : ''}, ` +
        `${this.tracker.servedCount} served, in ${(seconds * 1000).toFixed(1)} ms`,
    );
    if (first) {
      this.initialDone = true;
      this.settleInitial?.resolve();
    }
  }
}

/**
 * Where healthCheckNodePort servers listen: every IPv4 address (0.0.0.0) and the node's IPv6 ones
 * when --nodeport-addresses selects all, else the node addresses it selects.
 */
export function healthCheckAddresses(spec: NodePortAddressSpec, nodeAddresses: readonly string[] = []): string[] {
  if (spec.kind === 'all') return ['0.0.0.0', ...nodeAddresses.filter((a) => isIPv6(a))];
  return nodePortAddresses(nodeAddresses, spec);
}

export interface StartKubernetesOptions {
  /** AgentFlags.kubernetes */
  flags: KubernetesFlags;
  /** --node-name */
  nodeName: string;
  store: KubernetesSink;
  registry: Registry;
  log: Logger;
  /** This node's addresses (--node-address, or the devices'): where health check servers may listen. */
  nodeAddresses?: readonly string[];
  /** The host-side devices of this node's Pods, the whole list each time it changes (PodDatapath.setNamed); absent: Pods are not watched. */
  onPodDevices?: (devices: string[]) => void;
  /** --device: never a pod's device. */
  nodeDevices?: readonly string[];
  /** Network policy and egress bandwidth (policy.ts): their maps; needs onPodDevices. */
  policy?: PolicyWiring;
  /** Overrides for tests: watch backoff and length, refused-service retry, health timeout, health check addresses, pod route lookup. */
  tuning?: Pick<KubernetesWatcherOptions, 'backoff' | 'watchSeconds' | 'retry' | 'healthTimeoutMs' | 'healthCheckAddresses' | 'podRouteLookup'>;
}

/** Connects (see connection.ts), starts the health server and the watches; see the file comment. */
export async function startKubernetes(options: StartKubernetesOptions): Promise<KubernetesWatcher> {
  const { flags, nodeName, store, registry, log, tuning } = options;
  const connection = kubeConnection({
    ...(flags.kubeconfig !== undefined ? { kubeconfig: flags.kubeconfig } : {}),
    ...(flags.apiServer !== undefined ? { apiServer: flags.apiServer } : {}),
  });
  const addresses = tuning?.healthCheckAddresses ?? healthCheckAddresses(flags.nodePortAddresses, options.nodeAddresses);
  if (addresses.length === 0) log.warn('--nodeport-addresses selects none of the node addresses: no healthCheckNodePort server will listen');
  const watcher = new KubernetesWatcher({
    connection,
    nodeName,
    store,
    registry,
    log,
    healthCheckAddresses: addresses,
    ...(flags.healthzAddr ? { healthzAddr: flags.healthzAddr } : {}),
    ...(tuning?.backoff ? { backoff: tuning.backoff } : {}),
    ...(tuning?.watchSeconds !== undefined ? { watchSeconds: tuning.watchSeconds } : {}),
    ...(tuning?.retry ? { retry: tuning.retry } : {}),
    ...(tuning?.healthTimeoutMs !== undefined ? { healthTimeoutMs: tuning.healthTimeoutMs } : {}),
    ...(options.onPodDevices ? { onPodDevices: options.onPodDevices } : {}),
    ...(options.nodeDevices ? { nodeDevices: options.nodeDevices } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(tuning?.podRouteLookup ? { podRouteLookup: tuning.podRouteLookup } : {}),
  });
  await watcher.start();
  return watcher;
}
