/**
 * Network policy and egress bandwidth in Kubernetes mode: what the Pod, Namespace, NetworkPolicy and
 * Node watches deliver (informers.ts) → the policy computation (lb/policy/engine.ts PolicyEngine) →
 * the datapath's ipcache and endpoint policy maps (PolicyMapWriter, over tc_pod's object); and the
 * pod annotation kubernetes.io/egress-bandwidth of this node's pods → the EDT rates (EdtDatapath).
 *
 * - Objects are fed to the engine only when what it reads of them changed (a Pod's status heartbeat
 *   changes nothing here). Syncs are coalesced as the service syncer's are: one after the current I/O
 *   callback, so a watch chunk's events make one; the first waits for the first list of all four
 *   watches (start()), so no pod is written as unpoliced because the policies were listed later.
 * - A sync writes the engine's delta: ipcache entries, then the endpoints of this node's pods, each
 *   at the ifindex of its host-side device — the device pods.ts found by the route of the pod's
 *   address (setPodDevices). An endpoint whose device is not known yet is written when it is; one
 *   whose device changed is moved. What a write refused stays queued and is tried again after a
 *   backoff (RETRY), logged once per failure streak.
 * - An earlier agent's numbers are kept: its ipcache, read back when the sync is made, is the engine's
 *   identity hints, so a restarted agent gives each label set and ipBlock prefix the identity it had
 *   and its first sync rewrites nothing that did not change — the datapath, which goes on judging new
 *   connections by the maps as they are, never sees a mix of two agents' numbers.
 * - What an earlier agent left in the pinned maps goes: at the first sync the ipcache entries the
 *   cluster has no more, and once the pods' devices are known the endpoints of devices no pod has.
 * - A NetworkPolicy with problems is not applied (the engine says so): each problem is logged once
 *   per resourceVersion and posted as a Warning event on the policy. A bad bandwidth annotation is
 *   logged and posted as an event on the Pod, and the pod's rate stays as it was.
 */
import { performance } from 'node:perf_hooks';
import { parseBandwidth } from '../../lb/bandwidth.js';
import { nodeInfo } from '../../lb/k8s/node.js';
import { ANNOTATION_EGRESS_BANDWIDTH, namespaceInfo, namespacedName, podEgressBandwidth, podInfo } from '../../lb/k8s/pod.js';
import { PolicyEngine, type IdentityInfo, type LocalEndpoint } from '../../lb/policy/engine.js';
import type { PolicyProblem } from '../../lb/policy/problems.js';
import type { EndpointPolicy, IpcacheEntry, PodInfo, PolicyRule, RulesChange } from '../../lb/policy/types.js';
import type { DirectionView, EndpointPolicyView, IdentityView, PolicyRuleView, PolicySource } from '../api/policy.js';
import type { Logger } from '../log.js';
import type { EventRecorder } from './events.js';
import type { EventType, ResourceKind } from './informers.js';
import type { PolicyMetrics } from './metrics.js';

/** What the sync writes network policy with (lb/datapath/policy-writer.ts PolicyMapWriter). */
export interface PolicyMaps {
  setIpcache(entries: IpcacheEntry[]): void;
  deleteIpcache(cidrs: string[]): void;
  setEndpoint(ifindex: number, endpoint: { identity: number } & EndpointPolicy): void;
  /** The endpoint whose policy at `ifindex` had its rules before `change`: only the change is written. */
  changeEndpoint(ifindex: number, endpoint: { identity: number } & EndpointPolicy, change: RulesChange): void;
  deleteEndpoint(ifindex: number): void;
  /** Remove the endpoints of every ifindex not in `keep`; their ifindexes. */
  prune(keep: Set<number>): number[];
  /** The ipcache as the map holds it (cidr → identity): what an earlier agent left. */
  ipcache(): Map<string, number>;
}

/** What the sync sets pods' egress rates with (agent/edt-datapath.ts EdtDatapath). */
export interface BandwidthRates {
  setRate(ifindex: number, bytesPerSecond: number | undefined): void;
}

/** The kinds of objects network policy is computed from. */
export const POLICY_KINDS: readonly ResourceKind[] = ['Pod', 'Namespace', 'NetworkPolicy', 'Node'];

/** The key a label identity's namespace is shown under beside its pod labels (Cilium's). */
export const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';

/** Backoff of writes the datapath refused: 1 s doubling to 30 s. */
export const RETRY = { initialMs: 1_000, maxMs: 30_000 };

export interface PolicySyncOptions {
  /** This node (--node-name): its pods are the endpoints written here. */
  nodeName: string;
  maps: PolicyMaps;
  /** The EDT bandwidth manager; absent: the annotation is not enforced. */
  bandwidth?: BandwidthRates;
  events: Pick<EventRecorder, 'warn'>;
  metrics: PolicyMetrics;
  log: Logger;
  /** A device's ifindex, or undefined when there is none by that name. */
  ifindexOf: (device: string) => number | undefined;
  /**
   * Every address of this node's interfaces: all are the Host identity, not only its Node's (the
   * gateway addresses on pods' devices and their link-local ones send probes and neighbour discovery).
   */
  localAddresses?: () => string[];
  retry?: { initialMs: number; maxMs: number };
}

interface HeldPolicy {
  resourceVersion: string | undefined;
  problems: PolicyProblem[];
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function resourceVersionOf(object: unknown): string | undefined {
  const version = (object as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
  return typeof version === 'string' && version !== '' ? version : undefined;
}

const PROTOCOL_NAMES: Record<number, PolicyRuleView['protocol']> = { 0: 'any', 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

/** A policy rule as the API shows it: the peer's labels, the port prefix as a range. */
function ruleView(rule: PolicyRule, peer: IdentityInfo | undefined, labels: Record<string, string> | undefined): PolicyRuleView {
  const view: PolicyRuleView = { identity: rule.identity, labels: labels ?? {}, protocol: PROTOCOL_NAMES[rule.protocol] ?? 'any' };
  if (peer?.cidr !== undefined) view.cidr = peer.cidr;
  if (rule.protocol !== 0 && rule.portPrefixLen > 0) {
    view.port = rule.port;
    const last = rule.port + 2 ** (16 - rule.portPrefixLen) - 1;
    if (last !== rule.port) view.endPort = last;
  }
  return view;
}

export class PolicySync implements PolicySource {
  private readonly engine: PolicyEngine;
  /** What the engine was last given of each object ("namespace/name", or the name), to skip what it does not read. */
  private readonly pods = new Map<string, { info: PodInfo; text: string }>();
  private readonly namespaces = new Map<string, string>();
  private readonly nodes = new Map<string, string>();
  private readonly policies = new Map<string, HeldPolicy>();
  private problemCount = 0;
  /** This node's addresses from its Node object, and the Host addresses last given to the engine. */
  private nodeAddresses: string[] = [];
  private hostAddresses: string | undefined;

  /** Local endpoints as computed, and the ifindex each was written at. */
  private readonly desired = new Map<string, LocalEndpoint>();
  private readonly written = new Map<string, number>();
  /**
   * How a desired endpoint's rules differ from those written at its ifindex, while that is known: the
   * engine's change since the endpoint it gave before, when that one was written. A refused write
   * drops it (the next write compares the whole policy).
   */
  private readonly rulesChanges = new Map<string, RulesChange>();
  /** Local pods' annotated egress rates (bytes/s), and the ifindex and rate each was written at. */
  private readonly wantedRates = new Map<string, number>();
  private readonly badBandwidth = new Map<string, string>();
  private readonly writtenRates = new Map<string, { ifindex: number; rate: number }>();
  /** Ipcache writes and local pods still to write (new, changed, or refused last time). */
  private readonly ipcacheQueue = new Map<string, number | undefined>();
  private readonly dirtyPods = new Set<string>();
  /** "namespace/name" → host-side device (pods.ts); undefined until it first reported. */
  private devices: ReadonlyMap<string, string> | undefined;
  private pruneDue = true;
  /** The ipcache an earlier agent left, until the first sync removes what the cluster has no more. */
  private leftIpcache: Map<string, number> | undefined;

  private identityCache: Map<number, IdentityInfo> | undefined;
  private ready = false;
  private stopped = false;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(private readonly options: PolicySyncOptions) {
    this.leftIpcache = options.maps.ipcache();
    this.engine = new PolicyEngine({ nodeName: options.nodeName, identityHints: this.leftIpcache });
  }

  // ---- what the watches deliver ----

  /** Every object of `kind` there is now: those held but not listed are gone. Counts what changed. */
  list(kind: ResourceKind, items: readonly unknown[]): Record<EventType, number> {
    const counts: Record<EventType, number> = { add: 0, update: 0, delete: 0 };
    const listed = new Set<string>();
    for (const item of items) {
      const key = this.keyOf(kind, item);
      if (key === undefined) continue;
      listed.add(key);
      const change = this.set(kind, key, item);
      if (change !== 'unchanged') counts[change] += 1;
    }
    for (const key of this.heldKeys(kind)) {
      if (listed.has(key)) continue;
      this.remove(kind, key);
      counts.delete += 1;
    }
    this.schedule();
    return counts;
  }

  event(kind: ResourceKind, type: EventType, object: unknown): void {
    const key = this.keyOf(kind, object);
    if (key === undefined) return;
    if (type === 'delete') this.remove(kind, key);
    else this.set(kind, key, object);
    this.schedule();
  }

  /** Each local pod's host-side device (pods.ts onPods): endpoints and rates follow their device. */
  setPodDevices(devices: ReadonlyMap<string, string>): void {
    this.devices = new Map(devices);
    for (const key of [...this.desired.keys(), ...this.written.keys(), ...this.wantedRates.keys(), ...this.writtenRates.keys()]) this.dirtyPods.add(key);
    this.pruneDue = true;
    this.schedule();
  }

  /** Every watch has listed once: syncs may start. */
  start(): void {
    if (this.ready) return;
    this.ready = true;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  private keyOf(kind: ResourceKind, object: unknown): string | undefined {
    if (kind === 'Pod' || kind === 'NetworkPolicy') {
      const id = namespacedName(object);
      return id && `${id.namespace}/${id.name}`;
    }
    const name = (object as { metadata?: { name?: unknown } } | undefined)?.metadata?.name;
    return typeof name === 'string' && name !== '' ? name : undefined;
  }

  private heldKeys(kind: ResourceKind): string[] {
    const held = kind === 'Pod' ? this.pods : kind === 'Namespace' ? this.namespaces : kind === 'Node' ? this.nodes : this.policies;
    return [...held.keys()];
  }

  private set(kind: ResourceKind, key: string, object: unknown): 'add' | 'update' | 'unchanged' {
    switch (kind) {
      case 'Pod':
        return this.setPod(key, object);
      case 'Namespace': {
        const info = namespaceInfo(object);
        if (!info) return 'unchanged';
        return this.setIfChanged(this.namespaces, key, JSON.stringify(info.labels), () => this.engine.upsertNamespace(info));
      }
      case 'Node': {
        const info = nodeInfo(object, []);
        if (!info) return 'unchanged';
        return this.setIfChanged(this.nodes, key, info.addresses.join(','), () =>
          key === this.options.nodeName ? this.setHostAddresses(info.addresses) : this.engine.upsertNode(info.name, info.addresses),
        );
      }
      case 'NetworkPolicy':
        return this.setPolicy(key, object);
      default:
        return 'unchanged';
    }
  }

  private setIfChanged(held: Map<string, string>, key: string, text: string, apply: () => void): 'add' | 'update' | 'unchanged' {
    const before = held.get(key);
    if (before === text) return 'unchanged';
    held.set(key, text);
    apply();
    return before === undefined ? 'add' : 'update';
  }

  private setPod(key: string, object: unknown): 'add' | 'update' | 'unchanged' {
    const info = podInfo(object);
    if (!info) return 'unchanged';
    if (info.nodeName === this.options.nodeName) this.setBandwidth(key, podEgressBandwidth(object));
    const text = JSON.stringify(info);
    const held = this.pods.get(key);
    if (held?.text === text) return 'unchanged';
    this.pods.set(key, { info, text });
    this.engine.upsertPod(info);
    return held ? 'update' : 'add';
  }

  /** This node's addresses: its Node's (`fromNode`, when given) and its interfaces' now, all Host. */
  private setHostAddresses(fromNode?: string[]): void {
    if (fromNode) this.nodeAddresses = fromNode;
    const addresses = [...new Set([...this.nodeAddresses, ...(this.options.localAddresses?.() ?? [])])].sort();
    const text = addresses.join(',');
    if (text === this.hostAddresses) return;
    this.hostAddresses = text;
    if (addresses.length > 0) this.engine.upsertNode(this.options.nodeName, addresses);
    else this.engine.deleteNode(this.options.nodeName);
  }

  private setBandwidth(key: string, annotation: string | undefined): void {
    if (annotation === undefined) {
      this.badBandwidth.delete(key);
      if (this.wantedRates.delete(key)) this.dirtyPods.add(key);
      return;
    }
    if (this.badBandwidth.get(key) === annotation) return;
    let rate: number;
    try {
      rate = parseBandwidth(annotation);
    } catch (error) {
      // The rate stays as it was: a typo must not lift a pod's limit.
      this.badBandwidth.set(key, annotation);
      const [namespace = '', name = ''] = key.split('/');
      const why = `metadata.annotations["${ANNOTATION_EGRESS_BANDWIDTH}"]: ${message(error)}; the pod's egress rate stays as it was`;
      this.options.log.warn(`kubernetes: Pod ${key}: ${why}`);
      this.options.events.warn({ kind: 'Pod', namespace, name }, 'InvalidField', why);
      return;
    }
    this.badBandwidth.delete(key);
    if (this.wantedRates.get(key) === rate) return;
    this.wantedRates.set(key, rate);
    this.dirtyPods.add(key);
  }

  private setPolicy(key: string, object: unknown): 'add' | 'update' | 'unchanged' {
    const resourceVersion = resourceVersionOf(object);
    const held = this.policies.get(key);
    if (held && resourceVersion !== undefined && held.resourceVersion === resourceVersion) return 'unchanged';
    const problems = this.engine.upsertPolicy(object);
    this.problemCount += problems.length - (held?.problems.length ?? 0);
    this.policies.set(key, { resourceVersion, problems });
    for (const problem of problems) {
      const why = `${problem.field === '' ? '' : `${problem.field}: `}${problem.message}; the policy is not applied`;
      this.options.log.warn(`kubernetes: NetworkPolicy ${problem.namespace}/${problem.name}: ${why}`);
      this.options.events.warn({ kind: 'NetworkPolicy', namespace: problem.namespace, name: problem.name }, 'InvalidField', why);
    }
    return held ? 'update' : 'add';
  }

  private remove(kind: ResourceKind, key: string): void {
    const [first = '', second = ''] = key.split('/');
    switch (kind) {
      case 'Pod':
        if (!this.pods.delete(key)) return;
        this.engine.deletePod(first, second);
        this.badBandwidth.delete(key);
        if (this.wantedRates.delete(key)) this.dirtyPods.add(key);
        return;
      case 'Namespace':
        if (this.namespaces.delete(key)) this.engine.deleteNamespace(key);
        return;
      case 'Node':
        if (!this.nodes.delete(key)) return;
        if (key === this.options.nodeName) this.setHostAddresses([]);
        else this.engine.deleteNode(key);
        return;
      case 'NetworkPolicy': {
        const held = this.policies.get(key);
        if (!held) return;
        this.policies.delete(key);
        this.problemCount -= held.problems.length;
        this.engine.deletePolicy(first, second);
        return;
      }
      default:
        return;
    }
  }

  // ---- syncs ----

  /** A sync after the current I/O callback: the rest of the watch chunk's events join it. */
  private schedule(): void {
    if (!this.ready || this.stopped || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.stopped) return;
      try {
        this.sync();
      } catch (error) {
        this.options.log.error(`kubernetes policy sync failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
    });
  }

  private sync(): void {
    const started = performance.now();
    // A pod's device and its gateway address come and go with the pod: the interfaces are read anew.
    this.setHostAddresses();
    const delta = this.engine.flush();
    if (delta.ipcacheSet.length > 0 || delta.ipcacheDeleted.length > 0 || delta.endpointsSet.length > 0 || delta.endpointsDeleted.length > 0) {
      this.identityCache = undefined;
    }
    const left = this.leftIpcache;
    this.leftIpcache = undefined;
    for (const entry of delta.ipcacheSet) if (left?.get(entry.cidr) !== entry.identity) this.ipcacheQueue.set(entry.cidr, entry.identity);
    for (const cidr of delta.ipcacheDeleted) this.ipcacheQueue.set(cidr, undefined);
    if (left) {
      const wanted = new Set(delta.ipcacheSet.map((e) => e.cidr));
      for (const cidr of left.keys()) if (!wanted.has(cidr)) this.ipcacheQueue.set(cidr, undefined);
    }
    for (const { namespace, name } of delta.endpointsDeleted) {
      const key = `${namespace}/${name}`;
      this.desired.delete(key);
      this.rulesChanges.delete(key);
      this.dirtyPods.add(key);
    }
    const changes = new Map(delta.endpointsChanged.map((change) => [`${change.namespace}/${change.name}`, change]));
    for (const endpoint of delta.endpointsSet) {
      const key = `${endpoint.namespace}/${endpoint.name}`;
      const change = changes.get(key);
      if (change && this.written.has(key) && !this.dirtyPods.has(key)) this.rulesChanges.set(key, change);
      else this.rulesChanges.delete(key);
      this.desired.set(key, endpoint);
      this.dirtyPods.add(key);
    }
    const failed = [this.writeIpcache(), this.writePods(), this.pruneStale()].filter((f): f is string => f !== undefined);
    this.options.metrics.sync((performance.now() - started) / 1000, this.written.size, this.engine.identities().length, this.problemCount);
    if (failed.length > 0) this.retryLater(failed.join('; '));
    else this.failures = 0;
  }

  /** The queued ipcache writes; what failed stays queued. Returns why, on failure. */
  private writeIpcache(): string | undefined {
    if (this.ipcacheQueue.size === 0) return undefined;
    const set: IpcacheEntry[] = [];
    const deleted: string[] = [];
    for (const [cidr, identity] of this.ipcacheQueue) {
      if (identity === undefined) deleted.push(cidr);
      else set.push({ cidr, identity });
    }
    try {
      // New entries first: an address moving to a longer prefix is never without one.
      if (set.length > 0) this.options.maps.setIpcache(set);
      for (const entry of set) this.ipcacheQueue.delete(entry.cidr);
      if (deleted.length > 0) this.options.maps.deleteIpcache(deleted);
      for (const cidr of deleted) this.ipcacheQueue.delete(cidr);
      return undefined;
    } catch (error) {
      return `ipcache: ${message(error)}`;
    }
  }

  /** Each dirty local pod's endpoint and rate, at its device's ifindex now. Returns why, on failure. */
  private writePods(): string | undefined {
    const failures: string[] = [];
    for (const key of [...this.dirtyPods]) {
      const ifindex = this.ifindexOfPod(key);
      try {
        this.writeEndpoint(key, ifindex);
        this.writeRate(key, ifindex);
        this.dirtyPods.delete(key);
      } catch (error) {
        failures.push(`pod ${key}: ${message(error)}`);
      }
    }
    return failures.length === 0 ? undefined : failures.slice(0, 3).join('; ') + (failures.length > 3 ? ` (and ${failures.length - 3} more)` : '');
  }

  private ifindexOfPod(key: string): number | undefined {
    const device = this.devices?.get(key);
    return device === undefined ? undefined : this.options.ifindexOf(device);
  }

  private writeEndpoint(key: string, ifindex: number | undefined): void {
    const endpoint = this.desired.get(key);
    const before = this.written.get(key);
    // Taken before any write: should one be refused, the retry writes the whole policy.
    const change = this.rulesChanges.get(key);
    this.rulesChanges.delete(key);
    if (before !== undefined && (endpoint === undefined || before !== ifindex)) {
      this.options.maps.deleteEndpoint(before);
      this.written.delete(key);
    }
    if (endpoint === undefined || ifindex === undefined) return;
    const { identity, ingressEnforced, egressEnforced, rules } = endpoint;
    if (change && before === ifindex) this.options.maps.changeEndpoint(ifindex, { identity, ingressEnforced, egressEnforced, rules }, change);
    else this.options.maps.setEndpoint(ifindex, { identity, ingressEnforced, egressEnforced, rules });
    this.written.set(key, ifindex);
  }

  private writeRate(key: string, ifindex: number | undefined): void {
    const { bandwidth } = this.options;
    if (!bandwidth) return;
    const rate = this.wantedRates.get(key);
    const before = this.writtenRates.get(key);
    if (before !== undefined && (before.ifindex !== ifindex || rate === undefined)) {
      bandwidth.setRate(before.ifindex, undefined);
      this.writtenRates.delete(key);
    }
    if (rate === undefined || ifindex === undefined || (before?.ifindex === ifindex && before.rate === rate)) return;
    bandwidth.setRate(ifindex, rate);
    this.writtenRates.set(key, { ifindex, rate });
  }

  /** Once the pods' devices are known: endpoints of devices no longer a pod's (an earlier agent's) go. */
  private pruneStale(): string | undefined {
    if (!this.pruneDue || this.devices === undefined || this.dirtyPods.size > 0) return undefined;
    try {
      const pruned = this.options.maps.prune(new Set(this.written.values()));
      if (pruned.length > 0) this.options.log.info(`kubernetes policy: removed the policy of ${pruned.length} device(s) no pod has now (ifindex ${pruned.join(', ')})`);
      this.pruneDue = false;
      return undefined;
    } catch (error) {
      return `pruning endpoints: ${message(error)}`;
    }
  }

  private retryLater(why: string): void {
    if (this.failures === 0) this.options.log.error(`kubernetes policy: the datapath refused a write: ${why}; retrying`);
    const delay = Math.min(this.options.retry?.maxMs ?? RETRY.maxMs, (this.options.retry?.initialMs ?? RETRY.initialMs) * 2 ** Math.min(this.failures, 20));
    this.failures += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, delay);
    this.retryTimer.unref();
  }

  // ---- what the API shows (PolicySource) ----

  private identityOf(id: number): IdentityInfo | undefined {
    this.identityCache ??= new Map(this.engine.identities().map((i) => [i.id, i]));
    return this.identityCache.get(id);
  }

  /** The labels of identity `id` (a label identity's with its namespace, as Cilium shows them); undefined when not known. */
  identityLabels(id: number): Record<string, string> | undefined {
    const identity = this.identityOf(id);
    if (identity?.namespace === undefined) return identity?.labels;
    return { [NAMESPACE_LABEL]: identity.namespace, ...identity.labels };
  }

  identities(): IdentityView[] {
    const pods = new Map<number, number>();
    for (const { info } of this.pods.values()) {
      const id = this.engine.podIdentity(info.namespace, info.name);
      if (id !== undefined) pods.set(id, (pods.get(id) ?? 0) + 1);
    }
    return this.engine
      .identities()
      .map((i) => ({
        id: i.id,
        kind: i.kind,
        ...(i.namespace !== undefined ? { namespace: i.namespace } : {}),
        labels: i.labels,
        ...(i.cidr !== undefined ? { cidr: i.cidr } : {}),
        pods: pods.get(i.id) ?? 0,
      }))
      .sort((a, b) => a.id - b.id);
  }

  endpoint(namespace: string, pod: string): EndpointPolicyView | { missing: string } {
    const key = `${namespace}/${pod}`;
    const held = this.pods.get(key)?.info;
    if (!held) return { missing: `no pod ${key} in the cluster` };
    if (held.nodeName !== this.options.nodeName) {
      return { missing: `pod ${key} runs on node ${held.nodeName || '(not scheduled yet)'}, not on this node (${this.options.nodeName}): ask that node's agent` };
    }
    if (held.hostNetwork) return { missing: `pod ${key} uses the node's network (hostNetwork): network policy does not apply to it` };
    const endpoint = this.engine.endpoint(namespace, pod);
    if (!endpoint) return { missing: `pod ${key} has no policy endpoint yet (no address, or not computed yet)` };
    const selecting = this.engine.selectingPolicies(namespace, pod);
    const direction = (name: 'ingress' | 'egress', enforced: boolean): DirectionView => ({
      enforced,
      policies: selecting[name],
      rules: endpoint.rules
        .filter((r) => r.direction === name)
        .map((r) => (r.identity === 0 ? ruleView(r, undefined, undefined) : ruleView(r, this.identityOf(r.identity), this.identityLabels(r.identity)))),
    });
    const device = this.devices?.get(key);
    const ifindex = this.written.get(key);
    return {
      namespace,
      pod,
      ips: endpoint.ips,
      identity: { id: endpoint.identity, labels: this.identityLabels(endpoint.identity) ?? {} },
      ...(device !== undefined ? { device } : {}),
      ...(ifindex !== undefined ? { ifindex } : {}),
      ingress: direction('ingress', endpoint.ingressEnforced),
      egress: direction('egress', endpoint.egressEnforced),
    };
  }
}
