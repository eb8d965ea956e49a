/**
 * The identity policy's model, shared by its computation (lb/policy), its datapath writer
 * (lb/datapath) and the agent: what the pure functions take and give. Numbers follow Cilium's where
 * Cilium has them, so users recognise them in `xlb identity list` and monitor output.
 */

/** Reserved security identities. 0 never names a peer: in a policy rule it means "any identity". */
export const ReservedIdentity = {
  Any: 0,
  Host: 1,
  World: 2,
  Unmanaged: 3,
  RemoteNode: 6,
} as const;

/** Identities of label sets (namespace + pod labels) start here; CIDR identities (ipBlock peers) at the second. */
export const FIRST_LABEL_IDENTITY = 256;
export const FIRST_CIDR_IDENTITY = 1 << 24;

export type PolicyDirection = 'ingress' | 'egress';

/** IANA protocol numbers a rule may name; 0 = any protocol (a rule without ports). */
export type PolicyProtocol = 0 | 6 | 17 | 132;

/** What the policy computation needs to know of a Pod (anywhere in the cluster). */
export interface PodInfo {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** status.podIPs; none while pending. */
  ips: string[];
  nodeName: string;
  hostNetwork: boolean;
  /** containers[].ports with a name: what named ports in policies resolve to on this pod. */
  namedPorts: { name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[];
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

/** One entry of the ipcache: every address in cidr has this identity (longest prefix wins). */
export interface IpcacheEntry {
  cidr: string;
  identity: number;
}

/**
 * One allow entry of an endpoint's policy map: traffic in `direction` with a peer of `identity`
 * (0: any peer), `protocol` (0: any protocol and port) and a destination port whose first
 * `portPrefixLen` bits equal `port`'s (0: any port; 16: exactly `port`). An endPort range becomes the
 * few prefixes that cover it exactly.
 */
export interface PolicyRule {
  direction: PolicyDirection;
  identity: number;
  protocol: PolicyProtocol;
  port: number;
  portPrefixLen: number;
}

/** What the datapath enforces for one local pod (endpoint). */
export interface EndpointPolicy {
  /** Selected by some policy with that policyType: default deny in that direction, rules allow. */
  ingressEnforced: boolean;
  egressEnforced: boolean;
  rules: PolicyRule[];
}

/**
 * How an endpoint's rules changed: what to add to and remove from its previous rules to get the new
 * ones. An endpoint may hold a thousand rules and a new identity changes a few of them: the writer
 * applies these instead of comparing every rule.
 */
export interface RulesChange {
  added: PolicyRule[];
  removed: PolicyRule[];
}
