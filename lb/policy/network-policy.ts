/**
 * A Kubernetes NetworkPolicy (networking.k8s.io/v1, JSON as the API server serves it) → what the engine
 * computes with, validated as a whole: any problem and the policy is refused (the engine keeps its
 * previous version), so nothing is ever half-applied.
 *
 * Kubernetes' meaning, made explicit here so the engine need not know the API's shapes:
 * - policyTypes absent: Ingress, and Egress too when spec.egress has rules (the API's defaulting). A
 *   direction not in policyTypes is not enforced by this policy, whatever rules it lists.
 * - `from` / `to` absent or []: every peer (`peers` undefined). `ports` absent or []: every protocol and
 *   port (`ports` undefined). A port without `port`: every port of its protocol (default TCP).
 * - A peer with podSelector and namespaceSelector selects pods matching both (not either); podSelector
 *   alone means the policy's namespace.
 */
import { isObject } from '../k8s/objects.js';
import { type PolicyProtocol } from './types.js';
import { isWholeFamily, parsePrefix, prefixContains, type CidrPrefix } from './cidr.js';
import { portRangePrefixes, type PortPrefix } from './ports.js';
import { item, member, PolicyReader, type PolicyProblem } from './problems.js';
import { EVERYTHING, parseSelector, type LabelSelector } from './selector.js';

export const PROTOCOL_NUMBERS = { TCP: 6, UDP: 17, SCTP: 132 } as const satisfies Record<string, PolicyProtocol>;
type ProtocolName = keyof typeof PROTOCOL_NUMBERS;
const PROTOCOL_NAMES = Object.keys(PROTOCOL_NUMBERS) as ProtocolName[];

export type PortSpec =
  | { protocol: PolicyProtocol; kind: 'prefixes'; prefixes: PortPrefix[] }
  /** A container port's name: resolved against pods (ingress: the selected pod; egress: the peer). */
  | { protocol: PolicyProtocol; kind: 'named'; name: string };

export type PeerSpec =
  | { kind: 'pods'; podSelector?: LabelSelector; namespaceSelector?: LabelSelector }
  | { kind: 'ipBlock'; cidr: CidrPrefix; except: CidrPrefix[] };

export interface RuleSpec {
  /** undefined: every peer. */
  peers?: PeerSpec[];
  /** undefined: every protocol and port. */
  ports?: PortSpec[];
}

export interface NetworkPolicySpec {
  namespace: string;
  name: string;
  podSelector: LabelSelector;
  /** Present when policyTypes has Ingress (possibly no rules: deny all). */
  ingress?: RuleSpec[];
  egress?: RuleSpec[];
}

/** `namespace/name` */
export function policyKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The NetworkPolicy, or its problems (at least one) when it must not be applied. */
export function parseNetworkPolicy(value: unknown): { policy: NetworkPolicySpec } | { problems: PolicyProblem[] } {
  const top = isObject(value) ? value : undefined;
  const metadata = isObject(top?.metadata) ? top.metadata : undefined;
  const namespace = typeof metadata?.namespace === 'string' ? metadata.namespace : '';
  const name = typeof metadata?.name === 'string' ? metadata.name : '';
  const reader = new PolicyReader(namespace, name);
  if (name === '') reader.problem('metadata.name', 'required');
  if (namespace === '') reader.problem('metadata.namespace', 'required');
  const spec = reader.object(top?.spec, 'spec');
  if (!spec) {
    if (top?.spec === undefined || top.spec === null) reader.problem('spec', 'required');
    return { problems: reader.policyProblems };
  }

  const podSelector = parseSelector(spec.podSelector, 'spec.podSelector', reader) ?? EVERYTHING;
  const ingressRules = rules(spec.ingress, 'spec.ingress', 'from', reader);
  const egressRules = rules(spec.egress, 'spec.egress', 'to', reader);
  const types = reader.list(spec.policyTypes, 'spec.policyTypes').map((t, i) => reader.oneOf(t, item('spec.policyTypes', i), ['Ingress', 'Egress'] as const));
  const hasEgressRules = Array.isArray(spec.egress) && spec.egress.length > 0;
  const policyTypes = types.length > 0 ? types : ['Ingress', ...(hasEgressRules ? ['Egress'] : [])];
  if (reader.policyProblems.length > 0) return { problems: reader.policyProblems };
  return {
    policy: {
      namespace,
      name,
      podSelector,
      ...(policyTypes.includes('Ingress') ? { ingress: ingressRules } : {}),
      ...(policyTypes.includes('Egress') ? { egress: egressRules } : {}),
    },
  };
}

function rules(value: unknown, field: string, peersKey: 'from' | 'to', reader: PolicyReader): RuleSpec[] {
  return reader.list(value, field).flatMap((raw, index) => {
    const at = item(field, index);
    const rule = reader.object(raw, at);
    if (!rule) return [];
    const peersField = member(at, peersKey);
    const peers = reader.list(rule[peersKey], peersField).flatMap((p, i) => peer(p, item(peersField, i), reader) ?? []);
    const portsField = member(at, 'ports');
    const ports = reader.list(rule.ports, portsField).flatMap((p, i) => port(p, item(portsField, i), reader) ?? []);
    return [{ ...(peers.length > 0 ? { peers } : {}), ...(ports.length > 0 ? { ports } : {}) }];
  });
}

function peer(value: unknown, at: string, reader: PolicyReader): PeerSpec | undefined {
  const object = reader.object(value, at);
  if (!object) return undefined;
  const podSelector = parseSelector(object.podSelector, member(at, 'podSelector'), reader);
  const namespaceSelector = parseSelector(object.namespaceSelector, member(at, 'namespaceSelector'), reader);
  const present = (key: string): boolean => object[key] !== undefined && object[key] !== null;
  if (present('ipBlock')) {
    if (present('podSelector') || present('namespaceSelector')) {
      reader.problem(member(at, 'ipBlock'), 'may not be combined with podSelector or namespaceSelector in one peer');
      return undefined;
    }
    return ipBlock(object.ipBlock, member(at, 'ipBlock'), reader);
  }
  if (!present('podSelector') && !present('namespaceSelector')) {
    reader.problem(at, 'must specify podSelector, namespaceSelector or ipBlock');
    return undefined;
  }
  return { kind: 'pods', ...(podSelector ? { podSelector } : {}), ...(namespaceSelector ? { namespaceSelector } : {}) };
}

function ipBlock(value: unknown, at: string, reader: PolicyReader): PeerSpec | undefined {
  const object = reader.object(value, at);
  if (!object) return undefined;
  const cidrText = reader.string(object.cidr, member(at, 'cidr'));
  if (cidrText === undefined) {
    if (object.cidr === undefined || object.cidr === null) reader.problem(member(at, 'cidr'), 'required');
    return undefined;
  }
  const cidr = parsePrefix(cidrText);
  if (typeof cidr === 'string') {
    reader.problem(member(at, 'cidr'), cidr);
    return undefined;
  }
  const exceptField = member(at, 'except');
  const except = reader.list(object.except, exceptField).flatMap((raw, i) => {
    const field = item(exceptField, i);
    const text = reader.string(raw, field);
    if (text === undefined) return [];
    const block = parsePrefix(text);
    if (typeof block === 'string') {
      reader.problem(field, block);
      return [];
    }
    if (!prefixContains(cidr, block) || block.prefix === cidr.prefix) {
      reader.problem(field, `${block.text} is not strictly inside cidr ${cidr.text}`);
      return [];
    }
    return [block];
  });
  return { kind: 'ipBlock', cidr, except };
}

/** An IANA service name, as Kubernetes validates a named port: ≤ 15 of [a-z0-9-], a letter, no "--" or edge '-'. */
function isPortName(name: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(name) && /[a-z]/.test(name) && !name.includes('--');
}

function port(value: unknown, at: string, reader: PolicyReader): PortSpec | undefined {
  const object = reader.object(value, at);
  if (!object) return undefined;
  const protocolName = reader.oneOf(object.protocol, member(at, 'protocol'), PROTOCOL_NAMES);
  const hasProtocol = object.protocol !== undefined && object.protocol !== null;
  if (hasProtocol && protocolName === undefined) return undefined;
  const protocol = PROTOCOL_NUMBERS[protocolName ?? 'TCP'];
  const portValue = object.port;
  const hasEndPort = object.endPort !== undefined && object.endPort !== null;
  if (typeof portValue === 'string') {
    if (!isPortName(portValue)) {
      reader.problem(member(at, 'port'), `${JSON.stringify(portValue)} is not a port name (1-15 of a-z, 0-9, '-', with a letter) nor a number`);
      return undefined;
    }
    if (hasEndPort) {
      reader.problem(member(at, 'endPort'), `may not be used with the named port ${JSON.stringify(portValue)}`);
      return undefined;
    }
    return { protocol, kind: 'named', name: portValue };
  }
  if (portValue === undefined || portValue === null) {
    if (hasEndPort) {
      reader.problem(member(at, 'endPort'), 'may only be used with a numeric port');
      return undefined;
    }
    return { protocol, kind: 'prefixes', prefixes: [{ port: 0, prefixLen: 0 }] };
  }
  const first = reader.integer(portValue, member(at, 'port'), 1, 65535);
  if (first === undefined) return undefined;
  const last = hasEndPort ? reader.integer(object.endPort, member(at, 'endPort'), 1, 65535) : first;
  if (last === undefined) return undefined;
  if (last < first) {
    reader.problem(member(at, 'endPort'), `${last} is below port ${first}`);
    return undefined;
  }
  return { protocol, kind: 'prefixes', prefixes: portRangePrefixes(first, last) };
}

/** Every prefix a policy names (ipBlock cidrs and excepts, except the /0s, which are World): each gets a CIDR identity. */
export function policyPrefixes(policy: NetworkPolicySpec): CidrPrefix[] {
  const out = new Map<string, CidrPrefix>();
  for (const rule of [...(policy.ingress ?? []), ...(policy.egress ?? [])]) {
    for (const p of rule.peers ?? []) {
      if (p.kind !== 'ipBlock') continue;
      for (const block of [p.cidr, ...p.except]) if (!isWholeFamily(block)) out.set(block.text, block);
    }
  }
  return [...out.values()];
}
