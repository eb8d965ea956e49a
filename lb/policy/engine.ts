/**
 * Kubernetes NetworkPolicies, Pods, Namespaces and Nodes → security identities, the ipcache and the
 * policy of each local pod (endpoint), incrementally: the agent feeds object changes as its informers
 * see them, and flush() answers what changed since the last flush, for the datapath writer to apply.
 *
 * Identities. A pod with addresses (not hostNetwork) has the identity of its (namespace, labels).
 * Selectors are evaluated against identities — all pods of one identity are alike to a selector — and
 * namespaceSelectors against the namespace's current labels, so a namespace's label change moves no
 * pod between identities, it only re-evaluates selectors. A namespace always has the label
 * kubernetes.io/metadata.name = its name (API servers from 1.22 set it; older ones do not, the engine
 * does). ipBlock prefixes have CIDR identities; everything else is World.
 *
 * The ipcache (longest prefix match) maps every pod address to its identity, this node's addresses to
 * Host, other nodes' to RemoteNode, each ipBlock cidr and except to its CIDR identity and the rest to
 * World. So an ipBlock Q allows each CIDR identity whose prefix lies in Q and in none of its excepts,
 * and World when Q is a /0: whatever prefix of whichever policy an address of Q falls in last, that
 * prefix lies in Q (Q is in the ipcache itself), and it is allowed exactly when it is outside the
 * excepts. Pod and node addresses are not matched by ipBlocks (pods are selected by selectors, as in
 * Cilium). World is one identity for IPv4 and IPv6: a rule allowing 0.0.0.0/0 also allows ::/0.
 *
 * Ingress from Host: Kubernetes does not let a pod block its own node (kubelet's probes), so an
 * ingress-enforced endpoint allows Host unless `allowHostIngress` is false.
 *
 * Incremental: each policy caches the identities its podSelector selects and those each rule's peers
 * select, and the rules it gives every pod it selects. A pod, namespace or policy change re-evaluates
 * only the new, released or re-labelled identities (or the changed policy), and recomputes only the
 * endpoints selected by a policy whose cache changed. *
 * Restarts: given the ipcache an earlier agent left (`identityHints`), the engine gives label sets and
 * prefixes the numbers they had there (identities.ts). Pods given before the first flush are then
 * acquired at that flush, all at once and in a fixed order, so which set takes a hinted number
 * depends on the cluster, not on the order its objects arrived in.
 */
import { hostCidr, isWholeFamily, parsePrefix, prefixContains } from './cidr.js';
import { CidrIdentities, LabelIdentities, type LabelIdentity } from './identities.js';
import { Ipcache } from './ipcache.js';
import { parseNetworkPolicy, policyKey, policyPrefixes, type NetworkPolicySpec, type PeerSpec, type RuleSpec } from './network-policy.js';
import { isObject } from '../k8s/objects.js';
import type { PolicyProblem } from './problems.js';
import { ruleKey, ruleOfKey, sameKeys } from './rule-keys.js';
import { endpointKeys, patchContribution, policyContribution, type Contribution, type ContributingRule } from './contribution.js';
import { NamedPortIndex } from './named-ports.js';
import { selectorMatches } from './selector.js';
import {
  ReservedIdentity,
  type EndpointPolicy,
  type IpcacheEntry,
  type NamespaceInfo,
  type PodInfo,
  type PolicyDirection,
  type PolicyRule,
  type RulesChange,
} from './types.js';

export type { PolicyProblem } from './problems.js';

export interface PolicyEngineOptions {
  /** Pods on this node (not hostNetwork, with addresses) are the local endpoints; its addresses are Host. */
  nodeName: string;
  /** Allow ingress from Host to every ingress-enforced endpoint (default true; see the file comment). */
  allowHostIngress?: boolean;
  /**
   * The ipcache an earlier agent left (cidr → identity, as read back from the pinned map): an address's
   * label identity is the number its pod's label set prefers, a prefix's CIDR identity the number of
   * that prefix. Taken until the first flush; numbers out of their kind's range are ignored.
   */
  identityHints?: ReadonlyMap<string, number>;
}

export interface LocalEndpoint extends EndpointPolicy {
  namespace: string;
  name: string;
  identity: number;
  ips: string[];
}

export interface IdentityInfo {
  id: number;
  kind: 'reserved' | 'labels' | 'cidr';
  namespace?: string;
  labels: Record<string, string>;
  cidr?: string;
}

export interface PolicyDelta {
  ipcacheSet: IpcacheEntry[];
  /** cidrs, e.g. "198.18.5.7/32" */
  ipcacheDeleted: string[];
  endpointsSet: LocalEndpoint[];
  endpointsDeleted: { namespace: string; name: string }[];
  /**
   * For each endpoint of endpointsSet that the previous flush gave too: how its rules changed since
   * then (in endpointsSet's order). Applied to the previous flush's rules, it gives the new ones.
   */
  endpointsChanged: EndpointRulesChange[];
}

export interface EndpointRulesChange extends RulesChange {
  namespace: string;
  name: string;
}

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

const RESERVED: readonly IdentityInfo[] = [
  { id: ReservedIdentity.Host, kind: 'reserved', labels: { reserved: 'host' } },
  { id: ReservedIdentity.World, kind: 'reserved', labels: { reserved: 'world' } },
  { id: ReservedIdentity.Unmanaged, kind: 'reserved', labels: { reserved: 'unmanaged' } },
  { id: ReservedIdentity.RemoteNode, kind: 'reserved', labels: { reserved: 'remote-node' } },
];

interface PodState {
  info: PodInfo;
  /** Its addresses as ipcache keys. */
  cidrs: string[];
  /** While it has addresses and is not hostNetwork. */
  identity: number | undefined;
  local: boolean;
}

interface RuleState {
  direction: PolicyDirection;
  spec: RuleSpec;
  /** Label identities its pod peers select (unused when it has no peers: every peer). */
  labelIds: Set<number>;
  /** CIDR identities (and World) its ipBlock peers allow. */
  cidrIds: Set<number>;
}

interface PolicyState {
  key: string;
  spec: NetworkPolicySpec;
  /** The spec's JSON as received: an update that changes nothing (a resync) is skipped. */
  specText: string;
  prefixes: string[];
  selected: Set<number>;
  rules: RuleState[];
  /** undefined: to be recomputed (when an endpoint needs it). */
  contribution: Contribution | undefined;
  /** The label identities whose keys in `contribution` are to be recomputed (patchContribution). */
  changedIds: Set<number>;
}

interface FlushedEndpoint {
  endpoint: LocalEndpoint;
  /** endpoint.rules as rule keys, in the same order. */
  keys: Float64Array;
}

const podKey = (namespace: string, name: string): string => `${namespace}/${name}`;
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export class PolicyEngine {
  private readonly nodeName: string;
  private readonly allowHostIngress: boolean;

  private readonly pods = new Map<string, PodState>();
  /** Namespace → its labels (with kubernetes.io/metadata.name). */
  private readonly namespaces = new Map<string, Record<string, string>>();
  private readonly nodes = new Map<string, string[]>();
  private readonly policies = new Map<string, PolicyState>();
  /** The policies of each namespace: the only ones whose podSelector, or peers without namespaceSelector, select its pods. */
  private readonly policiesByNamespace = new Map<string, Set<PolicyState>>();
  /** The policies with a namespaceSelector peer: they may select pods of any namespace. */
  private readonly namespaceSelecting = new Set<PolicyState>();
  /** Namespace → the policies of other namespaces whose namespaceSelector peers select it (a cache). */
  private readonly reachers = new Map<string, PolicyState[]>();
  /** Label identity → the policies with a rule whose peers select it. */
  private readonly peerOf = new Map<number, Set<PolicyState>>();

  private readonly labelIdentities = new LabelIdentities();
  private readonly cidrIdentities = new CidrIdentities();
  private readonly identitiesByNamespace = new Map<string, Set<number>>();
  private readonly ipcache = new Ipcache();
  /** Label identity → keys of the policies whose podSelector selects it. */
  private readonly selectedBy = new Map<number, Set<string>>();
  /** Label identity → keys of the local pods that have it. */
  private readonly localByIdentity = new Map<number, Set<string>>();
  private readonly namedPorts = new NamedPortIndex((id) =>
    [...(this.labelIdentities.get(id)?.pods ?? [])].map((key) => this.pods.get(key)?.info.namedPorts ?? []),
  );

  private readonly flushed = new Map<string, FlushedEndpoint>();

  /** With identity hints, until the first flush: the pods given, and the label identities their addresses had. */
  private unsettledPods: Map<string, PodInfo> | undefined;
  private readonly addressHints = new Map<string, number>();

  // What changed since the last flush.
  private readonly createdIdentities = new Set<number>();
  private readonly releasedIdentities = new Set<number>();
  private readonly namedPortsChanged = new Set<number>();
  private allNamedPortsChanged = false;
  private readonly changedNamespaces = new Set<string>();
  private readonly pendingPolicies = new Set<string>();
  private prefixesChanged = false;
  private readonly stalePolicies = new Set<string>();
  private readonly dirtyEndpoints = new Set<string>();

  constructor(options: PolicyEngineOptions) {
    this.nodeName = options.nodeName;
    this.allowHostIngress = options.allowHostIngress ?? true;
    if (options.identityHints) this.takeHints(options.identityHints);
  }

  // ---- inputs -------------------------------------------------------------------------------

  upsertPod(pod: PodInfo): void {
    const key = podKey(pod.namespace, pod.name);
    if (this.unsettledPods) this.unsettledPods.set(key, pod);
    else this.setPod(key, pod);
  }

  deletePod(namespace: string, name: string): void {
    const key = podKey(namespace, name);
    if (this.unsettledPods) this.unsettledPods.delete(key);
    else this.setPod(key, undefined);
  }

  upsertNamespace(ns: NamespaceInfo): void {
    const labels = { [NAMESPACE_NAME_LABEL]: ns.name, ...ns.labels };
    const before = this.namespaces.get(ns.name);
    this.namespaces.set(ns.name, labels);
    if (!before || !sameLabels(before, labels)) this.changedNamespaces.add(ns.name);
  }

  deleteNamespace(name: string): void {
    if (this.namespaces.delete(name)) this.changedNamespaces.add(name);
  }

  /**
   * A Kubernetes NetworkPolicy object (JSON as the API serves it). Invalid → its problems (each naming
   * the field), and the policy's previous version (if any) stays in force: nothing half-applied.
   */
  upsertPolicy(policy: unknown): PolicyProblem[] {
    const parsed = parseNetworkPolicy(policy);
    if ('problems' in parsed) return parsed.problems;
    const spec = parsed.policy;
    const key = policyKey(spec.namespace, spec.name);
    const specText = JSON.stringify(isObject(policy) ? policy.spec : null);
    const before = this.policies.get(key);
    if (before?.specText === specText) return [];
    // The new version's prefixes are taken before the old version's are given back, so a prefix both
    // name keeps its identity.
    const prefixes = policyPrefixes(spec);
    for (const prefix of prefixes) {
      const { id, created } = this.cidrIdentities.acquire(prefix);
      if (!created) continue;
      this.ipcache.set('prefix', prefix.text, prefix.text, id);
      this.prefixesChanged = true;
    }
    if (before) this.removePolicy(before);
    const rules = [
      ...(spec.ingress ?? []).map((rule) => newRule('ingress', rule)),
      ...(spec.egress ?? []).map((rule) => newRule('egress', rule)),
    ];
    const state: PolicyState = { key, spec, specText, prefixes: prefixes.map((p) => p.text), selected: new Set(), rules, contribution: undefined, changedIds: new Set() };
    this.policies.set(key, state);
    this.pendingPolicies.add(key);
    const ofNamespace = this.policiesByNamespace.get(spec.namespace) ?? new Set<PolicyState>();
    this.policiesByNamespace.set(spec.namespace, ofNamespace.add(state));
    if (rules.some((r) => r.spec.peers?.some((peer) => peer.kind === 'pods' && peer.namespaceSelector))) {
      this.namespaceSelecting.add(state);
      this.reachers.clear();
    }
    return [];
  }

  deletePolicy(namespace: string, name: string): void {
    const state = this.policies.get(policyKey(namespace, name));
    if (state) this.removePolicy(state);
  }

  /** A Node's addresses (InternalIP etc.): this node's → Host identity, other nodes' → RemoteNode. */
  upsertNode(name: string, addresses: string[]): void {
    const cidrs = unique(addresses.flatMap((a) => hostCidr(a) ?? []));
    const identity = name === this.nodeName ? ReservedIdentity.Host : ReservedIdentity.RemoteNode;
    this.ipcache.replace('node', name, this.nodes.get(name) ?? [], cidrs, identity);
    this.nodes.set(name, cidrs);
  }

  deleteNode(name: string): void {
    this.ipcache.replace('node', name, this.nodes.get(name) ?? [], [], undefined);
    this.nodes.delete(name);
  }

  // ---- output -------------------------------------------------------------------------------

  /**
   * What changed since the last flush; the first flush gives everything. Only endpoints whose
   * identity, addresses, enforcement or rules changed are in endpointsSet. Sorted by cidr / pod.
   */
  flush(): PolicyDelta {
    if (this.unsettledPods) this.settleHints(this.unsettledPods);
    this.updateSelections();
    for (const key of this.stalePolicies) {
      const policy = this.policies.get(key);
      if (policy) for (const id of policy.selected) this.dirtyEndpointsOf(id);
    }
    this.stalePolicies.clear();

    const endpointsSet: LocalEndpoint[] = [];
    const endpointsDeleted: { namespace: string; name: string }[] = [];
    const endpointsChanged: EndpointRulesChange[] = [];
    const computed = new Map<string, Float64Array>();
    for (const key of [...this.dirtyEndpoints].sort(byText)) {
      const pod = this.pods.get(key);
      const before = this.flushed.get(key);
      if (!pod?.local || pod.identity === undefined) {
        if (before) endpointsDeleted.push({ namespace: before.endpoint.namespace, name: before.endpoint.name });
        this.flushed.delete(key);
        continue;
      }
      const { next, change } = this.computeEndpoint(pod, pod.identity, computed, before);
      if (before && sameEndpoint(before, next)) continue;
      this.flushed.set(key, next);
      endpointsSet.push(next.endpoint);
      if (change) endpointsChanged.push({ namespace: next.endpoint.namespace, name: next.endpoint.name, ...change });
    }
    this.dirtyEndpoints.clear();
    const ipcache = this.ipcache.flush();
    return { ipcacheSet: ipcache.set, ipcacheDeleted: ipcache.deleted, endpointsSet, endpointsDeleted, endpointsChanged };
  }

  /** Every identity in use (reserved ones always), sorted by number. */
  identities(): IdentityInfo[] {
    const out: IdentityInfo[] = [...RESERVED];
    for (const identity of this.labelIdentities.all()) {
      out.push({ id: identity.id, kind: 'labels', namespace: identity.namespace, labels: { ...identity.labels } });
    }
    for (const { id, prefix } of this.cidrIdentities.all()) {
      out.push({ id, kind: 'cidr', labels: { cidr: prefix.text }, cidr: prefix.text });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** A local endpoint as of the last flush. */
  endpoint(namespace: string, name: string): LocalEndpoint | undefined {
    return this.flushed.get(podKey(namespace, name))?.endpoint;
  }

  /** The identity of any pod (local or not) as the engine has it now; undefined while it has none. */
  podIdentity(namespace: string, name: string): number | undefined {
    return this.pods.get(podKey(namespace, name))?.identity;
  }

  /** Who selects this pod, for `xlb policy get`: `namespace/name` of the policies per direction, sorted. */
  selectingPolicies(namespace: string, name: string): { ingress: string[]; egress: string[] } {
    const identity = this.pods.get(podKey(namespace, name))?.identity;
    const keys = [...(identity === undefined ? [] : this.selectedBy.get(identity) ?? [])].sort(byText);
    const policies = keys.flatMap((key) => this.policies.get(key) ?? []);
    return {
      ingress: policies.filter((p) => p.spec.ingress !== undefined).map((p) => p.key),
      egress: policies.filter((p) => p.spec.egress !== undefined).map((p) => p.key),
    };
  }

  // ---- pods and identities ------------------------------------------------------------------

  /** Host entries (/32, /128) hint their pod's label set; every entry hints its prefix (each kind keeps its range's numbers). */
  private takeHints(ipcache: ReadonlyMap<string, number>): void {
    const prefixes = new Map<string, number>();
    for (const [cidr, id] of ipcache) {
      const prefix = parsePrefix(cidr);
      if (typeof prefix === 'string') continue;
      prefixes.set(prefix.text, id);
      if (prefix.prefix === (prefix.family === 4 ? 32 : 128)) this.addressHints.set(prefix.text, id);
    }
    this.cidrIdentities.prefer(prefixes);
    this.labelIdentities.avoid(this.addressHints.values());
    this.unsettledPods = new Map();
  }

  /** The first flush: the pods given so far acquire their identities, preferring their addresses' hints. */
  private settleHints(pods: Map<string, PodInfo>): void {
    this.unsettledPods = undefined;
    const sorted = [...pods].sort(([a], [b]) => byText(a, b));
    const claims = sorted.flatMap(([, info]) => {
      if (info.hostNetwork) return [];
      const hinted = info.ips.flatMap((ip) => {
        const cidr = hostCidr(ip);
        const id = cidr === undefined ? undefined : this.addressHints.get(cidr);
        return id === undefined ? [] : [id];
      });
      return [{ namespace: info.namespace, labels: info.labels, hinted }];
    });
    this.labelIdentities.prefer(claims);
    for (const [key, info] of sorted) this.setPod(key, info);
    this.labelIdentities.endPreferences();
    this.cidrIdentities.endPreferences();
    this.addressHints.clear();
  }

  private setPod(key: string, info: PodInfo | undefined): void {
    const before = this.pods.get(key);
    const cidrs = info ? unique(info.ips.flatMap((ip) => hostCidr(ip) ?? [])) : [];
    const ips = cidrs.map((cidr) => cidr.slice(0, cidr.indexOf('/')));
    const hasIdentity = info !== undefined && !info.hostNetwork && ips.length > 0;
    let identity: LabelIdentity | undefined;
    if (info && hasIdentity) {
      const acquired = this.labelIdentities.acquire(info.namespace, info.labels, key);
      identity = acquired.identity;
      if (acquired.created) this.identityCreated(identity);
    }
    const previousId = before?.identity;
    if (previousId !== undefined && previousId !== identity?.id && this.labelIdentities.release(previousId, key)) {
      this.identityReleased(previousId, before?.info.namespace ?? '');
    }
    const previousPorts = previousId === undefined ? [] : before?.info.namedPorts ?? [];
    const ports = identity && info ? info.namedPorts : [];
    const portsChanged = !sameNamedPorts(previousPorts, ports);
    if (portsChanged) {
      if (this.namedPorts.count(previousPorts, -1)) this.allNamedPortsChanged = true;
      if (this.namedPorts.count(ports, +1)) this.allNamedPortsChanged = true;
    }
    // The named ports of the identities the pod left and joined (if it has any).
    if (previousId !== undefined && previousPorts.length > 0 && (portsChanged || previousId !== identity?.id)) this.namedPortsChanged.add(previousId);
    if (identity && ports.length > 0 && (portsChanged || previousId !== identity.id)) this.namedPortsChanged.add(identity.id);

    this.ipcache.replace('pod', key, before?.cidrs ?? [], cidrs, identity?.id);
    const local = identity !== undefined && info?.nodeName === this.nodeName;
    if (before?.local && previousId !== undefined) this.localByIdentity.get(previousId)?.delete(key);
    if (local && identity) {
      const set = this.localByIdentity.get(identity.id) ?? new Set<string>();
      set.add(key);
      this.localByIdentity.set(identity.id, set);
    }
    if (before?.local || local) this.dirtyEndpoints.add(key);
    if (info) this.pods.set(key, { info: { ...info, ips }, cidrs, identity: identity?.id, local });
    else this.pods.delete(key);
  }

  private identityCreated(identity: LabelIdentity): void {
    this.createdIdentities.add(identity.id);
    const set = this.identitiesByNamespace.get(identity.namespace) ?? new Set<number>();
    set.add(identity.id);
    this.identitiesByNamespace.set(identity.namespace, set);
  }

  private identityReleased(id: number, namespace: string): void {
    if (!this.createdIdentities.delete(id)) this.releasedIdentities.add(id);
    const set = this.identitiesByNamespace.get(namespace);
    set?.delete(id);
    if (set?.size === 0) this.identitiesByNamespace.delete(namespace);
    this.localByIdentity.delete(id);
    this.namedPorts.forget(id);
  }

  private namespaceLabels(namespace: string): Record<string, string> {
    return this.namespaces.get(namespace) ?? { [NAMESPACE_NAME_LABEL]: namespace };
  }

  // ---- policies -----------------------------------------------------------------------------

  private removePolicy(state: PolicyState): void {
    for (const id of state.selected) {
      this.selectedBy.get(id)?.delete(state.key);
      this.dirtyEndpointsOf(id);
    }
    for (const cidr of state.prefixes) {
      if (this.cidrIdentities.release(cidr) === undefined) continue;
      this.ipcache.set('prefix', cidr, cidr, undefined);
      this.prefixesChanged = true;
    }
    this.policies.delete(state.key);
    const ofNamespace = this.policiesByNamespace.get(state.spec.namespace);
    ofNamespace?.delete(state);
    if (ofNamespace?.size === 0) this.policiesByNamespace.delete(state.spec.namespace);
    if (this.namespaceSelecting.delete(state)) this.reachers.clear();
    for (const rule of state.rules) for (const id of rule.labelIds) this.peerOf.get(id)?.delete(state);
    this.pendingPolicies.delete(state.key);
    this.stalePolicies.delete(state.key);
  }

  /** Brings every policy's selections up to date with what changed since the last flush. */
  private updateSelections(): void {
    for (const id of this.releasedIdentities) {
      const selecting = [...(this.selectedBy.get(id) ?? [])].flatMap((key) => this.policies.get(key) ?? []);
      for (const policy of new Set([...selecting, ...(this.peerOf.get(id) ?? [])])) this.forgetIdentity(policy, id);
      this.selectedBy.delete(id);
      this.peerOf.delete(id);
    }
    for (const key of this.pendingPolicies) {
      const policy = this.policies.get(key);
      if (policy) this.evaluatePolicy(policy);
    }
    if (this.prefixesChanged) {
      for (const policy of this.policies.values()) if (!this.pendingPolicies.has(policy.key)) this.updateCidrIds(policy);
    }

    if (this.changedNamespaces.size > 0) this.reachers.clear();
    const relabelled = [...this.changedNamespaces].flatMap((namespace) => [...(this.identitiesByNamespace.get(namespace) ?? [])]);
    for (const id of new Set([...this.createdIdentities, ...relabelled])) {
      const identity = this.labelIdentities.get(id);
      if (!identity) continue;
      // A new identity is in no policy's sets yet: only the policies that can select its namespace
      // need it. One of a re-labelled namespace may leave any namespace-selecting policy.
      const others = this.createdIdentities.has(id) ? this.reachersOf(identity.namespace) : this.namespaceSelecting;
      for (const policy of [...(this.policiesByNamespace.get(identity.namespace) ?? []), ...others]) {
        if (!this.pendingPolicies.has(policy.key)) this.evaluateIdentity(policy, identity);
      }
    }

    // Egress rules naming ports follow the ports of their peers' pods. A new identity was evaluated
    // above (it made its rules stale if it joined them), a released one was forgotten.
    for (const id of this.namedPortsChanged) {
      const identity = this.labelIdentities.get(id);
      if (!identity || this.createdIdentities.has(id) || !this.namedPorts.changed(id)) continue;
      for (const policy of this.peerOf.get(id) ?? []) {
        if (policy.rules.some((rule) => rule.direction === 'egress' && rule.labelIds.has(id) && namesPorts(rule))) this.markIdentityStale(policy, id);
      }
    }
    if (this.allNamedPortsChanged) {
      for (const policy of this.policies.values()) {
        if (policy.rules.some((rule) => rule.direction === 'egress' && !rule.spec.peers && namesPorts(rule))) this.markStale(policy);
      }
    }

    this.releasedIdentities.clear();
    this.pendingPolicies.clear();
    this.prefixesChanged = false;
    this.createdIdentities.clear();
    this.changedNamespaces.clear();
    this.namedPortsChanged.clear();
    this.allNamedPortsChanged = false;
  }

  /** The policies of other namespaces that may select pods of `namespace`, by their namespaceSelector peers. */
  private reachersOf(namespace: string): PolicyState[] {
    let reachers = this.reachers.get(namespace);
    if (!reachers) {
      const labels = this.namespaceLabels(namespace);
      reachers = [...this.namespaceSelecting].filter(
        (policy) =>
          policy.spec.namespace !== namespace &&
          policy.rules.some((rule) => rule.spec.peers?.some((peer) => peer.kind === 'pods' && peer.namespaceSelector && selectorMatches(peer.namespaceSelector, labels))),
      );
      this.reachers.set(namespace, reachers);
    }
    return reachers;
  }

  /** A new policy's selections, from every identity there is. */
  private evaluatePolicy(policy: PolicyState): void {
    const { namespace, podSelector } = policy.spec;
    for (const id of this.identitiesByNamespace.get(namespace) ?? []) {
      const identity = this.labelIdentities.get(id);
      if (identity && selectorMatches(podSelector, identity.labels)) this.select(policy, id, true);
    }
    for (const rule of policy.rules) {
      for (const peer of rule.spec.peers ?? []) {
        if (peer.kind !== 'pods') continue;
        const namespaces = peer.namespaceSelector
          ? [...this.identitiesByNamespace.keys()].filter((ns) => peer.namespaceSelector && selectorMatches(peer.namespaceSelector, this.namespaceLabels(ns)))
          : [namespace];
        for (const ns of namespaces) {
          for (const id of this.identitiesByNamespace.get(ns) ?? []) {
            const identity = this.labelIdentities.get(id);
            if (identity && (!peer.podSelector || selectorMatches(peer.podSelector, identity.labels))) this.setPeer(policy, rule, id, true);
          }
        }
      }
    }
    this.updateCidrIds(policy);
    this.markStale(policy);
  }

  /** Re-evaluates one (new or re-labelled) identity against a policy's selectors. */
  private evaluateIdentity(policy: PolicyState, identity: LabelIdentity): void {
    const selected = identity.namespace === policy.spec.namespace && selectorMatches(policy.spec.podSelector, identity.labels);
    this.select(policy, identity.id, selected);
    const namespaceLabels = this.namespaceLabels(identity.namespace);
    for (const rule of policy.rules) {
      if (!rule.spec.peers) continue;
      const member = rule.spec.peers.some((peer) => peerSelects(peer, policy.spec.namespace, identity, namespaceLabels));
      this.setPeer(policy, rule, identity.id, member);
    }
  }

  /** Whether identity `id` is among the peers of `rule` (of `policy`). */
  private setPeer(policy: PolicyState, rule: RuleState, id: number, member: boolean): void {
    if (member === rule.labelIds.has(id)) return;
    if (member) {
      rule.labelIds.add(id);
      const set = this.peerOf.get(id) ?? new Set<PolicyState>();
      this.peerOf.set(id, set.add(policy));
    } else {
      rule.labelIds.delete(id);
      if (!policy.rules.some((r) => r.labelIds.has(id))) this.peerOf.get(id)?.delete(policy);
    }
    this.markIdentityStale(policy, id);
  }

  private forgetIdentity(policy: PolicyState, id: number): void {
    this.select(policy, id, false);
    for (const rule of policy.rules) this.setPeer(policy, rule, id, false);
  }

  private select(policy: PolicyState, id: number, selected: boolean): void {
    if (selected === policy.selected.has(id)) return;
    if (selected) {
      policy.selected.add(id);
      const set = this.selectedBy.get(id) ?? new Set<string>();
      set.add(policy.key);
      this.selectedBy.set(id, set);
    } else {
      policy.selected.delete(id);
      this.selectedBy.get(id)?.delete(policy.key);
    }
    this.dirtyEndpointsOf(id);
  }

  /** The CIDR identities (and World) each ipBlock rule allows, from the prefixes there are now. */
  private updateCidrIds(policy: PolicyState): void {
    for (const rule of policy.rules) {
      const blocks = (rule.spec.peers ?? []).filter((p) => p.kind === 'ipBlock');
      if (blocks.length === 0) continue;
      const ids = new Set<number>();
      for (const block of blocks) {
        if (isWholeFamily(block.cidr)) ids.add(ReservedIdentity.World);
        for (const { id, prefix } of this.cidrIdentities.all()) {
          if (prefixContains(block.cidr, prefix) && !block.except.some((e) => prefixContains(e, prefix))) ids.add(id);
        }
      }
      if (sameSet(ids, rule.cidrIds)) continue;
      rule.cidrIds = ids;
      this.markStale(policy);
    }
  }

  private markStale(policy: PolicyState): void {
    policy.contribution = undefined;
    policy.changedIds.clear();
    this.stalePolicies.add(policy.key);
  }

  /** Only the keys of label identity `id` in the policy's contribution changed. */
  private markIdentityStale(policy: PolicyState, id: number): void {
    if (policy.contribution) policy.changedIds.add(id);
    this.stalePolicies.add(policy.key);
  }

  private dirtyEndpointsOf(id: number): void {
    for (const key of this.localByIdentity.get(id) ?? []) this.dirtyEndpoints.add(key);
  }

  // ---- endpoints ----------------------------------------------------------------------------

  /** The rule keys a policy gives every pod it selects (named ingress ports apart), cached until stale. */
  private contributionOf(policy: PolicyState): Contribution {
    if (!policy.contribution) {
      policy.contribution = policyContribution(contributingRules(policy), this.namedPorts);
    } else if (policy.changedIds.size > 0) {
      policy.contribution = patchContribution(policy.contribution, contributingRules(policy), [...policy.changedIds], this.namedPorts);
    }
    policy.changedIds.clear();
    return policy.contribution;
  }

  /**
   * One local endpoint's policy. `computed` shares the work between the pods of one identity (and the
   * same named ports) within a flush: replicas on one node have the same rules.
   */
  private computeEndpoint(
    pod: PodState,
    identity: number,
    computed: Map<string, Float64Array>,
    before: FlushedEndpoint | undefined,
  ): { next: FlushedEndpoint; change: RulesChange | undefined } {
    const policies = [...(this.selectedBy.get(identity) ?? [])].flatMap((key) => this.policies.get(key) ?? []);
    const ingressEnforced = policies.some((p) => p.spec.ingress !== undefined);
    const egressEnforced = policies.some((p) => p.spec.egress !== undefined);
    const contributions = policies.map((p) => this.contributionOf(p));
    const ownPorts = contributions.some((c) => c.namedIngress.length > 0) ? pod.info.namedPorts : [];
    const signature = ownPorts.length === 0 ? String(identity) : `${identity} ${JSON.stringify(ownPorts)}`;
    let keys = computed.get(signature);
    if (!keys) {
      const host = ingressEnforced && this.allowHostIngress ? [ruleKey('ingress', ReservedIdentity.Host, 0, 0, 0)] : [];
      keys = endpointKeys(contributions, ownPorts, host);
      computed.set(signature, keys);
    }
    const { namespace, name, ips } = pod.info;
    const { rules, change } = before ? changedRules(keys, before) : { rules: Array.from(keys, ruleOfKey), change: undefined };
    return { next: { endpoint: { namespace, name, identity, ips, ingressEnforced, egressEnforced, rules }, keys }, change };
  }
}

/**
 * The rules of sorted `keys` and how they differ from the endpoint's previous rules, in one walk of
 * both: the previous rules' objects are reused (most stay), and only the differences are collected.
 */
function changedRules(keys: Float64Array, before: FlushedEndpoint): { rules: PolicyRule[]; change: RulesChange } {
  const rules = new Array<PolicyRule>(keys.length);
  const added: PolicyRule[] = [];
  const removed: PolicyRule[] = [];
  const previousKeys = before.keys;
  const previousRules = before.endpoint.rules;
  let j = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as number;
    while (j < previousKeys.length && (previousKeys[j] as number) < key) removed.push(previousRules[j++] as PolicyRule);
    if (j < previousKeys.length && previousKeys[j] === key) {
      rules[i] = previousRules[j++] as PolicyRule;
    } else {
      const rule = ruleOfKey(key);
      rules[i] = rule;
      added.push(rule);
    }
  }
  while (j < previousKeys.length) removed.push(previousRules[j++] as PolicyRule);
  return { rules, change: { added, removed } };
}

function contributingRules(policy: PolicyState): ContributingRule[] {
  return policy.rules.map((rule) => ({
    direction: rule.direction,
    // A lazy union: patchContribution reads only the label identities it patches.
    peers: rule.spec.peers ? union(rule.labelIds, rule.cidrIds) : undefined,
    labelIds: rule.labelIds,
    ports: rule.spec.ports,
  }));
}

/** a then b, each time it is iterated. */
function union(a: Iterable<number>, b: Iterable<number>): Iterable<number> {
  return {
    *[Symbol.iterator]() {
      yield* a;
      yield* b;
    },
  };
}

function namesPorts(rule: RuleState): boolean {
  return rule.spec.ports?.some((port) => port.kind === 'named') ?? false;
}

function newRule(direction: PolicyDirection, spec: RuleSpec): RuleState {
  return { direction, spec, labelIds: new Set(), cidrIds: new Set() };
}

function peerSelects(peer: PeerSpec, policyNamespace: string, identity: LabelIdentity, namespaceLabels: Record<string, string>): boolean {
  if (peer.kind !== 'pods') return false;
  const namespaceOk = peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, namespaceLabels) : identity.namespace === policyNamespace;
  return namespaceOk && (!peer.podSelector || selectorMatches(peer.podSelector, identity.labels));
}

function sameEndpoint(before: FlushedEndpoint, next: FlushedEndpoint): boolean {
  const a = before.endpoint;
  const b = next.endpoint;
  return (
    a.identity === b.identity &&
    a.ingressEnforced === b.ingressEnforced &&
    a.egressEnforced === b.egressEnforced &&
    a.ips.length === b.ips.length &&
    a.ips.every((ip, i) => ip === b.ips[i]) &&
    sameKeys(before.keys, next.keys)
  );
}

function sameNamedPorts(a: PodInfo['namedPorts'], b: PodInfo['namedPorts']): boolean {
  return a.length === b.length && a.every((p, i) => p.name === b[i]?.name && p.port === b[i]?.port && p.protocol === b[i]?.protocol);
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
