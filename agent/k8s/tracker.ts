/**
 * kube-proxy's change tracker (ServiceChangeTracker + EndpointsChangeTracker + endpointslicecache.go)
 * for xlb: it holds what the watches delivered, parsed once per object version, notes which
 * Kubernetes services (namespace/name) a change touched, and on flush() recomputes only those —
 * servicesOf() over the service and its slices — and returns the xlb services that really differ
 * from what the store last accepted. No I/O, no timers: the syncer drives it, tests feed it objects.
 *
 * - An EndpointSlice change touches the service its label kubernetes.io/service-name names (both
 *   services, if the label moved). A Node change that moves the node to another zone touches every
 *   service (topology hints depend on it).
 * - A list (first, or after a watch failed) is compared with what is held: objects it lacks were
 *   deleted meanwhile and are removed; objects of the same resourceVersion are not parsed again.
 * - What the store refused is not taken as served: its service is flushed again after a backoff
 *   (RETRY: 1 s doubling to 1 min), so a service that can never be served does not spin the loop,
 *   and one that can (its conflicting neighbour left) is served again within a minute.
 * - Problems (malformed objects and fields) are returned once: a parse problem with the object
 *   version that has it, a problem found while computing a service when it first appears. The
 *   count of current problems is kept for the metrics and the status.
 * - The EndpointSlice annotation endpoints.kubernetes.io/last-change-trigger-time of each changed
 *   slice is handed out with the flush of its service (kube-proxy's network programming latency);
 *   times from before the tracker started are not (they measure the agent's start, not the network).
 */
import {
  healthCheckOf,
  nodeInfo,
  parseEndpointSlice,
  parseService,
  problemText,
  servicesOf,
  type EndpointSliceSpec,
  type HealthCheck,
  type NodeInfo,
  type Problem,
  type ServiceOptions,
  type ServiceSpec,
} from '../../lb/k8s/index.js';
import type { Service } from '../../lb/service.js';
import type { EventType, ResourceKind } from './informers.js';

export const ANNOTATION_TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';
/** The Cluster Autoscaler's taint on a node it is about to delete (kube-proxy's ToBeDeletedTaint). */
export const TAINT_TO_BE_DELETED = 'ToBeDeletedByClusterAutoscaler';

export interface RetryOptions {
  initialMs: number;
  maxMs: number;
}

export const RETRY: RetryOptions = { initialMs: 1_000, maxMs: 60_000 };

export interface TrackerOptions {
  /** This node (--node-name): its endpoints are local; only its Node object is used. */
  nodeName: string;
  serviceOptions?: ServiceOptions;
  /** Milliseconds since the epoch (tests); default Date.now. */
  now?: () => number;
  retry?: RetryOptions;
}

/** What a flush hands the store, and what the syncer reports. */
export interface Flush {
  /** xlb service id → the service to serve, or undefined: remove it. Only real differences. */
  readonly changes: Map<string, Service | undefined>;
  /** The Kubernetes services (namespace/name) recomputed. */
  readonly services: string[];
  /** Every health check this node serves, when one changed with this flush; else undefined. */
  readonly healthChecks: HealthCheck[] | undefined;
  /** Problems not reported before (log each). */
  readonly newProblems: Problem[];
  /** Problems there are now, over every object held. */
  readonly problems: number;
  /** Kubernetes service → its changed slices' trigger times (ms since the epoch). */
  readonly triggerTimes: Map<string, number[]>;
  /** xlb service id → its Kubernetes service, for confirm(). */
  readonly owners: Map<string, string>;
}

export type ChangeKind = EventType | 'unchanged';

interface Held<T> {
  resourceVersion: string | undefined;
  spec: T | undefined;
  problems: Problem[];
}

interface HeldSlice extends Held<EndpointSliceSpec> {
  /** The Kubernetes service (namespace/name) it is indexed under. */
  service: string | undefined;
}

function metadataOf(object: unknown): { namespace?: unknown; name?: unknown; resourceVersion?: unknown; annotations?: unknown; deletionTimestamp?: unknown } {
  const metadata = typeof object === 'object' && object !== null ? (object as { metadata?: unknown }).metadata : undefined;
  return typeof metadata === 'object' && metadata !== null ? metadata : {};
}

/** namespace/name (name alone for a cluster-scoped object), or undefined when the object has no name. */
export function objectKey(object: unknown): string | undefined {
  const { namespace, name } = metadataOf(object);
  if (typeof name !== 'string' || name === '') return undefined;
  return typeof namespace === 'string' && namespace !== '' ? `${namespace}/${name}` : name;
}

function resourceVersionOf(object: unknown): string | undefined {
  const { resourceVersion } = metadataOf(object);
  return typeof resourceVersion === 'string' && resourceVersion !== '' ? resourceVersion : undefined;
}

function triggerTimeOf(object: unknown): number | undefined {
  const { annotations } = metadataOf(object);
  const text = typeof annotations === 'object' && annotations !== null ? (annotations as Record<string, unknown>)[ANNOTATION_TRIGGER_TIME] : undefined;
  const time = typeof text === 'string' ? Date.parse(text) : NaN;
  return Number.isNaN(time) ? undefined : time;
}

/** Whether a Node may take new load-balanced traffic: not being deleted, not tainted for deletion. */
export function nodeEligible(object: unknown): boolean {
  const { deletionTimestamp } = metadataOf(object);
  if (deletionTimestamp !== undefined && deletionTimestamp !== null) return false;
  const spec = typeof object === 'object' && object !== null ? (object as { spec?: { taints?: unknown } }).spec : undefined;
  const taints = Array.isArray(spec?.taints) ? (spec.taints as unknown[]) : [];
  return !taints.some((t) => typeof t === 'object' && t !== null && (t as { key?: unknown }).key === TAINT_TO_BE_DELETED);
}

function sameService(a: Service, b: Service): boolean {
  // Both come from servicesOf, which builds every service member by member in one order.
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameCheck(a: HealthCheck | undefined, b: HealthCheck | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.nodePort === b.nodePort && a.namespace === b.namespace && a.name === b.name && a.localEndpoints === b.localEndpoints);
}

export class ChangeTracker {
  private readonly services = new Map<string, Held<ServiceSpec>>();
  private readonly slices = new Map<string, HeldSlice>();
  /** Kubernetes service → its slices, by slice key. */
  private readonly slicesByService = new Map<string, Map<string, EndpointSliceSpec>>();
  private node: Held<NodeInfo> | undefined;
  private eligible = true;
  /** Kubernetes services touched since the last flush. */
  private readonly pending = new Set<string>();
  /** Kubernetes service → the xlb services the store accepted for it. */
  private readonly served = new Map<string, Map<string, Service>>();
  private servedIds = 0;
  private readonly retries = new Map<string, { attempts: number; at: number }>();
  private readonly healthChecks = new Map<string, HealthCheck>();
  private readonly triggerTimes = new Map<string, number[]>();
  /** Problems found while computing each Kubernetes service, as text (to report only new ones). */
  private readonly computeProblems = new Map<string, Set<string>>();
  private parseProblemCount = 0;
  private computeProblemCount = 0;
  private unreported: Problem[] = [];
  private inFlight: Flush | undefined;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly retry: RetryOptions;

  constructor(private readonly options: TrackerOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.retry = options.retry ?? RETRY;
  }

  // ---- input: watch events and lists ----

  /** One watch event; what it changed ('unchanged': an object version already held). */
  event(kind: ResourceKind, type: EventType, object: unknown): ChangeKind {
    if (type === 'delete') return this.remove(kind, object) ? 'delete' : 'unchanged';
    return this.set(kind, object);
  }

  /** A complete list of `kind`: objects held but not listed are removed. Counts what changed. */
  list(kind: ResourceKind, items: readonly unknown[]): Record<EventType, number> {
    const counts: Record<EventType, number> = { add: 0, update: 0, delete: 0 };
    const listed = new Set<string>();
    for (const item of items) {
      if (kind === 'Node' && objectKey(item) !== this.options.nodeName) continue;
      const key = objectKey(item);
      if (key !== undefined) listed.add(key);
      const change = this.set(kind, item);
      if (change !== 'unchanged') counts[change] += 1;
    }
    const held = kind === 'Service' ? [...this.services.keys()] : kind === 'EndpointSlice' ? [...this.slices.keys()] : this.node ? [this.options.nodeName] : [];
    for (const key of held) {
      if (listed.has(key)) continue;
      this.removeKey(kind, key);
      counts.delete += 1;
    }
    return counts;
  }

  private set(kind: ResourceKind, object: unknown): ChangeKind {
    if (kind === 'Service') return this.setService(object);
    if (kind === 'EndpointSlice') return this.setSlice(object);
    return this.setNode(object);
  }

  private remove(kind: ResourceKind, object: unknown): boolean {
    const key = objectKey(object);
    return key !== undefined && this.removeKey(kind, key);
  }

  private removeKey(kind: ResourceKind, key: string): boolean {
    if (kind === 'Service') {
      const held = this.services.get(key);
      if (!held) return false;
      this.services.delete(key);
      this.parseProblemCount -= held.problems.length;
      this.pending.add(key);
      return true;
    }
    if (kind === 'EndpointSlice') {
      const held = this.slices.get(key);
      if (!held) return false;
      this.slices.delete(key);
      this.parseProblemCount -= held.problems.length;
      this.unindex(key, held.service);
      // kube-proxy: a deleted slice's annotation tells the time of its last update, not of this change.
      if (held.service !== undefined) this.triggerTimes.delete(held.service);
      return true;
    }
    if (key !== this.options.nodeName || !this.node) return false;
    const zone = this.node.spec?.zone;
    this.parseProblemCount -= this.node.problems.length;
    this.node = undefined;
    this.eligible = false;
    if (zone !== undefined) this.touchAll();
    return true;
  }

  private setService(object: unknown): ChangeKind {
    const key = objectKey(object);
    const problems: Problem[] = [];
    if (key === undefined) {
      parseService(object, problems, this.options.serviceOptions); // names what is wrong
      this.unreported.push(...problems);
      return 'unchanged';
    }
    const held = this.services.get(key);
    const resourceVersion = resourceVersionOf(object);
    if (held && resourceVersion !== undefined && held.resourceVersion === resourceVersion) return 'unchanged';
    const spec = parseService(object, problems, this.options.serviceOptions);
    this.services.set(key, { resourceVersion, spec, problems });
    this.countProblems(held, problems);
    this.pending.add(key);
    return held ? 'update' : 'add';
  }

  private setSlice(object: unknown): ChangeKind {
    const key = objectKey(object);
    const problems: Problem[] = [];
    if (key === undefined) {
      parseEndpointSlice(object, problems);
      this.unreported.push(...problems);
      return 'unchanged';
    }
    const held = this.slices.get(key);
    const resourceVersion = resourceVersionOf(object);
    if (held && resourceVersion !== undefined && held.resourceVersion === resourceVersion) return 'unchanged';
    const spec = parseEndpointSlice(object, problems);
    const service = spec ? `${spec.namespace}/${spec.serviceName}` : undefined;
    if (held && held.service !== service) this.unindex(key, held.service);
    if (spec && service !== undefined) {
      const index = this.slicesByService.get(service) ?? new Map<string, EndpointSliceSpec>();
      index.set(key, spec);
      this.slicesByService.set(service, index);
      this.pending.add(service);
      const time = triggerTimeOf(object);
      if (time !== undefined && time > this.startedAt) this.triggerTimes.set(service, [...(this.triggerTimes.get(service) ?? []), time]);
    }
    this.slices.set(key, { resourceVersion, spec, problems, service });
    this.countProblems(held, problems);
    return held ? 'update' : 'add';
  }

  private setNode(object: unknown): ChangeKind {
    if (objectKey(object) !== this.options.nodeName) return 'unchanged'; // not this node's (the watch selects it alone)
    const held = this.node;
    const resourceVersion = resourceVersionOf(object);
    if (held && resourceVersion !== undefined && held.resourceVersion === resourceVersion) return 'unchanged';
    const problems: Problem[] = [];
    const spec = nodeInfo(object, problems);
    this.node = { resourceVersion, spec, problems };
    this.eligible = nodeEligible(object);
    this.countProblems(held, problems);
    if (held?.spec?.zone !== spec?.zone) this.touchAll();
    return held ? 'update' : 'add';
  }

  private countProblems(previous: Held<unknown> | undefined, problems: Problem[]): void {
    this.parseProblemCount += problems.length - (previous?.problems.length ?? 0);
    this.unreported.push(...problems);
  }

  private unindex(sliceKey: string, service: string | undefined): void {
    if (service === undefined) return;
    const index = this.slicesByService.get(service);
    index?.delete(sliceKey);
    if (index?.size === 0) this.slicesByService.delete(service);
    this.pending.add(service);
  }

  private touchAll(): void {
    for (const key of this.services.keys()) this.pending.add(key);
    for (const key of this.served.keys()) this.pending.add(key);
  }

  // ---- output: flush and confirm ----

  /** Whether a flush would recompute anything now (a change, or a retry that is due). */
  hasPending(): boolean {
    if (this.pending.size > 0) return true;
    const now = this.now();
    for (const retry of this.retries.values()) if (retry.at <= now) return true;
    return false;
  }

  /** When the earliest retry is due (ms since the epoch), if any is waiting. */
  nextRetryAt(): number | undefined {
    let next: number | undefined;
    for (const retry of this.retries.values()) if (next === undefined || retry.at < next) next = retry.at;
    return next;
  }

  /** Recomputes the touched Kubernetes services (see the file comment). confirm() must follow. */
  flush(): Flush {
    if (this.inFlight) throw new Error('ChangeTracker.flush: the previous flush was not confirmed');
    const now = this.now();
    for (const [key, retry] of this.retries) if (retry.at <= now) this.pending.add(key);
    const services = [...this.pending].sort();
    this.pending.clear();
    const here = { nodeName: this.options.nodeName, zone: this.node?.spec?.zone };
    const changes = new Map<string, Service | undefined>();
    const owners = new Map<string, string>();
    const newProblems = this.unreported;
    this.unreported = [];
    const triggerTimes = new Map<string, number[]>();
    let healthChanged = false;

    for (const key of services) {
      const spec = this.services.get(key)?.spec;
      const slices = [...(this.slicesByService.get(key)?.values() ?? [])];
      const problems: Problem[] = [];
      const desired = new Map(spec ? servicesOf(spec, slices, here, problems).map((e) => [e.id, e.service]) : []);
      const served = this.served.get(key);
      for (const [id, service] of desired) {
        const current = served?.get(id);
        if (current && sameService(current, service)) continue;
        changes.set(id, service);
        owners.set(id, key);
      }
      for (const id of served?.keys() ?? []) {
        if (desired.has(id)) continue;
        changes.set(id, undefined);
        owners.set(id, key);
      }

      const before = this.computeProblems.get(key) ?? new Set<string>();
      const texts = new Set<string>();
      for (const problem of problems) {
        const text = problemText(problem);
        if (!before.has(text) && !texts.has(text)) newProblems.push(problem);
        texts.add(text);
      }
      this.computeProblemCount += texts.size - before.size;
      if (texts.size > 0) this.computeProblems.set(key, texts);
      else this.computeProblems.delete(key);

      const check = spec ? healthCheckOf(spec, slices, this.options.nodeName) : undefined;
      if (!sameCheck(check, this.healthChecks.get(key))) {
        healthChanged = true;
        if (check) this.healthChecks.set(key, check);
        else this.healthChecks.delete(key);
      }

      const times = this.triggerTimes.get(key);
      if (times) triggerTimes.set(key, times);
      this.triggerTimes.delete(key);
    }

    const flush: Flush = {
      changes,
      services,
      healthChecks: healthChanged ? [...this.healthChecks.values()].sort((a, b) => a.nodePort - b.nodePort) : undefined,
      newProblems,
      problems: this.parseProblemCount + this.computeProblemCount,
      triggerTimes,
      owners,
    };
    this.inFlight = flush;
    return flush;
  }

  /**
   * What the store did with a flush: every change but `failed` ids is now served; the Kubernetes
   * services of failed ids are flushed again after their backoff.
   */
  confirm(flush: Flush, failed: Iterable<string>): void {
    if (this.inFlight !== flush) throw new Error('ChangeTracker.confirm: not the flush in flight');
    this.inFlight = undefined;
    const refused = new Set(failed);
    const refusedServices = new Set<string>();
    for (const [id, service] of flush.changes) {
      const key = flush.owners.get(id);
      if (key === undefined) continue;
      if (refused.has(id)) {
        refusedServices.add(key);
        continue;
      }
      const served = this.served.get(key) ?? new Map<string, Service>();
      const had = served.has(id);
      if (service === undefined) served.delete(id);
      else served.set(id, service);
      this.servedIds += (served.has(id) ? 1 : 0) - (had ? 1 : 0);
      if (served.size > 0) this.served.set(key, served);
      else this.served.delete(key);
    }
    const now = this.now();
    for (const key of flush.services) {
      if (!refusedServices.has(key)) {
        this.retries.delete(key);
        continue;
      }
      const attempts = (this.retries.get(key)?.attempts ?? 0) + 1;
      const delay = Math.min(this.retry.maxMs, this.retry.initialMs * 2 ** Math.min(attempts - 1, 30));
      this.retries.set(key, { attempts, at: now + delay });
    }
  }

  // ---- what the status and the health server read ----

  /** xlb services the store accepted and serves. */
  get servedCount(): number {
    return this.servedIds;
  }

  /** This node's Node, as last seen (undefined before it was, or after it was deleted). */
  get nodeInfo(): NodeInfo | undefined {
    return this.node?.spec;
  }

  /** kube-proxy's nodeEligible: false while this node's Node is being deleted or tainted for deletion. */
  get nodeEligible(): boolean {
    return this.eligible;
  }

  /** Kubernetes services waiting for a retry after the store refused one of their xlb services. */
  get retrying(): number {
    return this.retries.size;
  }
}
