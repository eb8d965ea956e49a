/**
 * The watches of Kubernetes mode — every Service, every EndpointSlice, this node's Node, and (when
 * asked: the pod datapath, agent/k8s/pods.ts) this node's Pods; with network policy (agent/k8s/policy.ts)
 * every Pod and Node of the cluster, every Namespace and NetworkPolicy — each a list-then-watch loop
 * (client-go's reflector) that never gives up:
 *
 * - A list (in pages of LIST_PAGE) hands the sink every object there is: the sink compares it with
 *   what it holds, so objects deleted while the watch was down are removed (tracker.ts). Then a
 *   watch from the list's resourceVersion hands over each change. A watch the apiserver ends on time
 *   is resumed from the last resourceVersion seen; a 410 Gone (too old) lists again at once.
 * - Any other failure — apiserver unreachable, a 5xx, a broken connection, a watch silent past its
 *   timeout — is logged, and the loop lists again after a backoff (BACKOFF: 0.5 s doubling to 30 s,
 *   with jitter, so a fleet of agents does not hammer a recovering apiserver in step). The backoff
 *   starts over once a connection has held for BACKOFF.resetAfterMs.
 * - Failures change nothing downstream: the sink only ever hears of objects, never of errors, so an
 *   apiserver that is down leaves every service served as it was.
 *
 * Why not client-node's informers (makeInformer / ListWatch): they stop on errors, cannot be made to
 * relist, fire 'connect' before anything is sent, and keep a second copy of every object; what the
 * agent needs of them is this one loop.
 *
 * EndpointSlices are watched as discovery.k8s.io/v1 when the apiserver serves it, else v1beta1
 * (Kubernetes 1.17–1.20), asked again of the API group list at every list, so an apiserver upgraded
 * under a running agent is followed. The parsers read both shapes (lb/k8s/endpoints.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiServerConnection } from '../kubernetes-status.js';
import type { Logger } from '../log.js';
import { KubeRequestError, type KubeClient, type WatchEvent } from './rest.js';

export type ResourceKind = 'Service' | 'EndpointSlice' | 'Node' | 'Pod' | 'Namespace' | 'NetworkPolicy';
export type EventType = 'add' | 'update' | 'delete';
export const RESOURCE_KINDS: readonly ResourceKind[] = ['Service', 'EndpointSlice', 'Node', 'Pod', 'Namespace', 'NetworkPolicy'];

/** Where the objects go (the change tracker). */
export interface ResourceSink {
  /** Every object of `kind` there is now: after the first list, and after every relist. */
  list(kind: ResourceKind, items: unknown[]): void;
  event(kind: ResourceKind, type: EventType, object: unknown): void;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** A delay is scaled by a random factor in [1 - jitter, 1 + jitter]. */
  jitter: number;
  /** A connection that held this long starts the backoff over at its next failure. */
  resetAfterMs: number;
}

export const BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, jitter: 0.2, resetAfterMs: 60_000 };

/** The delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (1 - options.jitter + 2 * options.jitter * random()));
}

/** Objects per list page: bounded memory per answer, as client-go's pager. */
export const LIST_PAGE = 500;
/** Watches last 5 to 10 minutes (random, as client-go): the apiserver ends them, the loop resumes. */
export const WATCH_SECONDS = 300;
/** A watch silent this much longer than its timeoutSeconds is a dead connection. */
const WATCH_IDLE_SLACK_MS = 30_000;
/** A watch shorter than this with no event is a failure, not a normal end. */
const SHORT_WATCH_MS = 1_000;
/** Services and slices of headless services are of no use to a proxy (kube-proxy selects them away too). */
const NOT_HEADLESS = '!service.kubernetes.io/headless';

export interface ConnectionState {
  connection: ApiServerConnection;
  since: Date;
  lastError?: string;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function query(params: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined) search.set(key, value);
  return search.toString();
}

interface ReflectorOptions {
  kind: ResourceKind;
  client: KubeClient;
  /** The collection's path, found anew before every list (EndpointSlice: its API version). */
  resolvePath: (signal: AbortSignal) => Promise<string>;
  labelSelector?: string;
  fieldSelector?: string;
  sink: ResourceSink;
  backoff: BackoffOptions;
  /** Each watch asks for timeoutSeconds in [watchSeconds, 2 * watchSeconds). */
  watchSeconds: number;
  log: Logger;
  onState: () => void;
  onListed: () => void;
}

/** One list-then-watch loop (see the file comment). */
class Reflector {
  state: ConnectionState = { connection: 'connecting', since: new Date() };
  listedOnce = false;
  /** Lists and watches made (each list counts once, however many pages). */
  readonly counts = { lists: 0, watches: 0 };
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: ReflectorOptions) {}

  get kind(): ResourceKind {
    return this.options.kind;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private setState(connection: ApiServerConnection, lastError?: string): void {
    if (this.state.connection === connection && this.state.lastError === lastError) return;
    const since = this.state.connection === connection ? this.state.since : new Date();
    this.state = { connection, since, ...(lastError !== undefined ? { lastError } : {}) };
    this.options.onState();
  }

  private async run(): Promise<void> {
    const { kind, backoff, log } = this.options;
    let attempt = 0;
    let failing = false;
    while (!this.stopped) {
      let connectedAt: number | undefined;
      try {
        const path = await this.options.resolvePath(this.abort.signal);
        let resourceVersion = await this.list(path);
        connectedAt = Date.now();
        if (failing) log.info(`kubernetes: ${kind} listed again from ${path}`);
        failing = false;
        this.setState('connected');
        for (;;) {
          resourceVersion = await this.watch(path, resourceVersion);
          if (this.stopped) return;
        }
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof KubeRequestError && error.gone) {
          // The resourceVersion was compacted away: nothing is wrong, list again at once.
          log.info(`kubernetes: ${kind}: ${error.message}; listing again`);
          continue;
        }
        if (connectedAt !== undefined && Date.now() - connectedAt >= backoff.resetAfterMs) attempt = 0;
        const delay = backoffDelay(attempt++, backoff);
        failing = true;
        log.warn(`kubernetes: ${kind} list/watch failed: ${message(error)}; listing again in ${(delay / 1000).toFixed(1)} s`);
        this.setState('disconnected', message(error));
        try {
          await sleep(delay, undefined, { signal: this.abort.signal });
        } catch {
          return; // stopped
        }
      }
    }
  }

  /** Lists every object, page by page; hands them to the sink; returns the list's resourceVersion. */
  private async list(path: string): Promise<string> {
    const { kind, client, labelSelector, fieldSelector } = this.options;
    const items: unknown[] = [];
    let resourceVersion = '';
    let next: string | undefined;
    do {
      const page = (await client.getJson(
        `${path}?${query({ limit: String(LIST_PAGE), continue: next, labelSelector, fieldSelector })}`,
        this.abort.signal,
      )) as { metadata?: { resourceVersion?: unknown; continue?: unknown }; items?: unknown };
      if (!Array.isArray(page.items)) throw new KubeRequestError(client.server + path, 'the list answer has no items');
      items.push(...(page.items as unknown[]));
      resourceVersion = typeof page.metadata?.resourceVersion === 'string' ? page.metadata.resourceVersion : '';
      next = typeof page.metadata?.continue === 'string' && page.metadata.continue !== '' ? page.metadata.continue : undefined;
    } while (next !== undefined);
    if (resourceVersion === '') throw new KubeRequestError(client.server + path, `the ${kind} list has no resourceVersion`);
    this.counts.lists += 1;
    this.options.sink.list(kind, items);
    if (!this.listedOnce) {
      this.listedOnce = true;
      this.options.onListed();
    }
    return resourceVersion;
  }

  /** One watch from `resourceVersion`, until the apiserver ends it; returns the last resourceVersion seen. */
  private async watch(path: string, resourceVersion: string): Promise<string> {
    const { kind, client, labelSelector, fieldSelector, sink } = this.options;
    const seconds = this.options.watchSeconds + Math.floor(Math.random() * this.options.watchSeconds);
    let last = resourceVersion;
    const onEvent = (event: WatchEvent): void => {
      if (event.type === 'ERROR') {
        const status = (event.object ?? {}) as { code?: unknown; reason?: unknown; message?: unknown };
        const code = typeof status.code === 'number' ? status.code : undefined;
        const reason = typeof status.reason === 'string' ? status.reason : undefined;
        throw new KubeRequestError(client.server + path, `watch error: ${typeof status.message === 'string' ? status.message : 'no message'}`, code, reason);
      }
      const rv = (event.object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
      if (typeof rv === 'string' && rv !== '') last = rv;
      if (event.type === 'BOOKMARK') return;
      sink.event(kind, event.type === 'ADDED' ? 'add' : event.type === 'MODIFIED' ? 'update' : 'delete', event.object);
    };
    const watchQuery = query({ watch: '1', allowWatchBookmarks: 'true', resourceVersion, timeoutSeconds: String(seconds), labelSelector, fieldSelector });
    const started = Date.now();
    this.counts.watches += 1;
    let events = 0;
    const counted = (event: WatchEvent): void => {
      events += 1;
      onEvent(event);
    };
    await client.watch(`${path}?${watchQuery}`, { idleMs: seconds * 1000 + WATCH_IDLE_SLACK_MS, signal: this.abort.signal, onEvent: counted });
    // A watch that ends at once with nothing in it would be resumed in a tight loop (a proxy in the
    // way that closes long requests, say): an error, so the backoff applies (client-go does the same).
    if (events === 0 && Date.now() - started < SHORT_WATCH_MS) {
      throw new KubeRequestError(client.server + path, `the watch ended after ${Date.now() - started} ms without an event`);
    }
    return last;
  }
}

export interface InformersOptions {
  client: KubeClient;
  nodeName: string;
  sink: ResourceSink;
  log: Logger;
  backoff?: BackoffOptions;
  /** Watches last [watchSeconds, 2 * watchSeconds) (default WATCH_SECONDS; tests shorten it). */
  watchSeconds?: number;
  /** The connection state changed (see connection()). */
  onConnection?: (state: ConnectionState) => void;
  /** Every watch of services (Service, EndpointSlice, Node) has listed once: the sink holds a complete picture. */
  onSynced?: () => void;
  /** Watch this node's Pods too (spec.nodeName=nodeName); they do not hold back onSynced. */
  pods?: boolean;
  /**
   * Watch what network policy is computed from: every Pod and every Node of the cluster (identities
   * and the ipcache need every pod's and node's addresses; the sink picks this node's out), every
   * Namespace and NetworkPolicy. They do not hold back onSynced; onPolicySynced follows their lists.
   */
  policy?: boolean;
  /** Pods, Nodes, Namespaces and NetworkPolicies have all listed once (policy only). */
  onPolicySynced?: () => void;
}

/** The reflectors, and the connection state they add up to. */
export class Informers {
  private readonly reflectors: Reflector[];
  /** The reflectors of what services are made of: the first sync waits for their lists. */
  private readonly serviceReflectors: Reflector[];
  /** The reflectors network policy is computed from: its first computation waits for their lists. */
  private readonly policyReflectors: Reflector[] = [];
  private overall: ConnectionState = { connection: 'connecting', since: new Date() };
  private sliceVersion: 'v1' | 'v1beta1' | undefined;

  constructor(private readonly options: InformersOptions) {
    const { client, sink, log, nodeName } = options;
    const common = { client, sink, log, backoff: options.backoff ?? BACKOFF, watchSeconds: options.watchSeconds ?? WATCH_SECONDS, onState: () => this.updateState(), onListed: () => this.checkSynced() };
    const policy = options.policy === true;
    const node = new Reflector({ ...common, kind: 'Node', resolvePath: async () => '/api/v1/nodes', ...(policy ? {} : { fieldSelector: `metadata.name=${nodeName}` }) });
    this.reflectors = [
      new Reflector({ ...common, kind: 'Service', resolvePath: async () => '/api/v1/services', labelSelector: NOT_HEADLESS }),
      new Reflector({ ...common, kind: 'EndpointSlice', resolvePath: (signal) => this.endpointSlicePath(signal), labelSelector: NOT_HEADLESS }),
      node,
    ];
    this.serviceReflectors = [...this.reflectors];
    if (options.pods || policy) {
      const pods = new Reflector({ ...common, kind: 'Pod', resolvePath: async () => '/api/v1/pods', ...(policy ? {} : { fieldSelector: `spec.nodeName=${nodeName}` }) });
      this.reflectors.push(pods);
      if (policy) this.policyReflectors.push(pods, node);
    }
    if (policy) {
      const namespaces = new Reflector({ ...common, kind: 'Namespace', resolvePath: async () => '/api/v1/namespaces' });
      const policies = new Reflector({ ...common, kind: 'NetworkPolicy', resolvePath: async () => '/apis/networking.k8s.io/v1/networkpolicies' });
      this.reflectors.push(namespaces, policies);
      this.policyReflectors.push(namespaces, policies);
    }
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.stop()));
  }

  /** connected when every service watch is; disconnected when any failed last; connecting before that. */
  connection(): ConnectionState {
    return this.overall;
  }

  get synced(): boolean {
    return this.serviceReflectors.every((r) => r.listedOnce);
  }

  /** Lists and watches each kind made so far (a watch resumed after the apiserver ended it is one more watch, no list). */
  counts(): Record<ResourceKind, { lists: number; watches: number }> {
    const counts = Object.fromEntries(RESOURCE_KINDS.map((kind) => [kind, { lists: 0, watches: 0 }])) as Record<ResourceKind, { lists: number; watches: number }>;
    for (const r of this.reflectors) counts[r.kind] = { ...r.counts };
    return counts;
  }

  /** The EndpointSlice API version in use, once known. */
  get endpointSliceVersion(): 'v1' | 'v1beta1' | undefined {
    return this.sliceVersion;
  }

  /** Every watch network policy is computed from has listed once (false without policy). */
  get policySynced(): boolean {
    return this.policyReflectors.length > 0 && this.policyReflectors.every((r) => r.listedOnce);
  }

  private checkSynced(): void {
    if (this.synced) this.options.onSynced?.();
    if (this.policySynced) this.options.onPolicySynced?.();
  }

  private updateState(): void {
    // What services are made of: a Pod, Namespace or NetworkPolicy watch refused (an older ClusterRole
    // without them) only costs pod devices named from Kubernetes and network policy, and is logged; it
    // does not make the apiserver "disconnected".
    const states = this.serviceReflectors.map((r) => r.state);
    const failed = states.filter((s) => s.connection === 'disconnected');
    const connection: ApiServerConnection =
      failed.length > 0 ? 'disconnected' : states.every((s) => s.connection === 'connected') ? 'connected' : 'connecting';
    // The most recent error of a watch that is down says best why.
    const lastError = failed.sort((a, b) => b.since.getTime() - a.since.getTime())[0]?.lastError;
    if (connection === this.overall.connection && lastError === this.overall.lastError) return;
    const since = connection === this.overall.connection ? this.overall.since : new Date();
    this.overall = { connection, since, ...(lastError !== undefined ? { lastError } : {}) };
    if (connection !== 'disconnected') this.options.log.info(`kubernetes: apiserver ${this.options.client.server} ${connection}`);
    this.options.onConnection?.(this.overall);
  }

  /** discovery.k8s.io/v1 if the apiserver serves it, else v1beta1 (asked of its API group). */
  private async endpointSlicePath(signal: AbortSignal): Promise<string> {
    const { client, log } = this.options;
    let group: unknown;
    try {
      group = await client.getJson('/apis/discovery.k8s.io', signal);
    } catch (error) {
      if (error instanceof KubeRequestError && error.status === 404) {
        throw new KubeRequestError(error.url, 'the apiserver serves no discovery.k8s.io API: EndpointSlices need Kubernetes 1.17 or later', 404);
      }
      throw error;
    }
    const versions = (group as { versions?: { version?: unknown }[] }).versions;
    const served = new Set(Array.isArray(versions) ? versions.map((v) => v.version) : []);
    const version = served.has('v1') ? 'v1' : served.has('v1beta1') ? 'v1beta1' : undefined;
    if (version === undefined) {
      throw new KubeRequestError(`${client.server}/apis/discovery.k8s.io`, `serves neither v1 nor v1beta1 (only ${[...served].join(', ') || 'nothing'})`);
    }
    if (version !== this.sliceVersion) log.info(`kubernetes: EndpointSlices watched as discovery.k8s.io/${version}`);
    this.sliceVersion = version;
    return `/apis/discovery.k8s.io/${version}/endpointslices`;
  }
}
