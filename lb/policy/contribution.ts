/**
 * What one policy gives every pod it selects, as sorted rule keys (rule-keys.ts): each rule's peer
 * identities × its ports, named egress ports resolved per peer identity. Named ingress ports depend
 * on the selected pod, so they are returned apart and resolved per endpoint (endpointKeys). A
 * contribution is patched per label identity when only some identities changed (patchContribution).
 */
import type { PortSpec } from './network-policy.js';
import { PROTOCOL_NUMBERS } from './network-policy.js';
import { ruleKey, sortedUnique } from './rule-keys.js';
import { ReservedIdentity, type PodInfo, type PolicyDirection, type PolicyProtocol } from './types.js';

export interface ContributingRule {
  direction: PolicyDirection;
  /** undefined: every peer (identity 0). */
  peers: Iterable<number> | undefined;
  /** The label identities among the peers: the only ones with named ports. */
  labelIds: ReadonlySet<number>;
  /** undefined: every protocol and port. */
  ports: readonly PortSpec[] | undefined;
}

export interface NamedPorts {
  /** The ports the pods of identity `id` give the name (key: namedPortKey). */
  of(id: number, key: string): readonly number[];
  /** The ports any pod gives the name. */
  anywhere(key: string): Iterable<number>;
}

export interface Contribution {
  /** Sorted, each once. */
  keys: Float64Array;
  /** Ingress rules with named ports: resolved against each selected pod's own ports. */
  namedIngress: { ids: number[]; protocol: PolicyProtocol; name: string }[];
}

export const namedPortKey = (protocol: PolicyProtocol, name: string): string => `${protocol}/${name}`;

export function policyContribution(rules: readonly ContributingRule[], namedPorts: NamedPorts): Contribution {
  const keys: number[] = [];
  for (const rule of rules) {
    const { direction, ports } = rule;
    const ids = rule.peers ? [...rule.peers] : [ReservedIdentity.Any];
    if (!ports) {
      for (const id of ids) keys.push(ruleKey(direction, id, 0, 0, 0));
      continue;
    }
    for (const port of ports) {
      if (port.kind === 'prefixes') {
        // ruleKey is linear in the identity: one key per port prefix, then offsets per identity.
        const base = port.prefixes.map((p) => ruleKey(direction, 0, port.protocol, p.port, p.prefixLen));
        const step = ruleKey(direction, 1, 0, 0, 0) - ruleKey(direction, 0, 0, 0, 0);
        for (const id of ids) for (const key of base) keys.push(key + id * step);
      } else if (direction === 'ingress') {
        continue;
      } else if (!rule.peers) {
        // Any peer: the ports any pod gives that name (a name no pod defines allows nothing).
        for (const p of namedPorts.anywhere(namedPortKey(port.protocol, port.name))) keys.push(ruleKey(direction, ReservedIdentity.Any, port.protocol, p, 16));
      } else {
        // Each peer identity with the ports its own pods give that name (CIDR peers have none).
        for (const id of rule.labelIds) pushNamedEgress(keys, id, port.protocol, port.name, namedPorts);
      }
    }
  }
  return { keys: sortedUnique(Float64Array.from(keys)), namedIngress: namedIngressOf(rules) };
}

/**
 * The contribution after the label identities `ids` joined or left rules' peers, or their pods'
 * named ports changed: the keys of each of them (one range of keys per direction, as keys order by
 * direction, then identity) are computed anew and spliced into a copy of the others. A new identity
 * that broad selectors pick up changes a few keys of policies holding a thousand.
 */
export function patchContribution(contribution: Contribution, rules: readonly ContributingRule[], ids: readonly number[], namedPorts: NamedPorts): Contribution {
  const blocks: { from: number; to: number; keys: Float64Array }[] = [];
  for (const direction of ['ingress', 'egress'] as const) {
    for (const id of ids) {
      const keys: number[] = [];
      for (const rule of rules) if (rule.direction === direction && rule.peers && rule.labelIds.has(id)) pushKeysOf(keys, rule, id, namedPorts);
      blocks.push({ from: ruleKey(direction, id, 0, 0, 0), to: ruleKey(direction, id + 1, 0, 0, 0), keys: sortedUnique(Float64Array.from(keys)) });
    }
  }
  blocks.sort((a, b) => a.from - b.from);
  const old = contribution.keys;
  const out = new Float64Array(old.length + blocks.reduce((n, b) => n + b.keys.length, 0));
  let i = 0;
  let n = 0;
  for (const block of blocks) {
    const start = lowerBound(old, block.from, i);
    out.set(old.subarray(i, start), n);
    n += start - i;
    out.set(block.keys, n);
    n += block.keys.length;
    i = lowerBound(old, block.to, start);
  }
  out.set(old.subarray(i), n);
  n += old.length - i;
  return { keys: out.subarray(0, n), namedIngress: namedIngressOf(rules) };
}

/** The keys `rule` (with peers, `id` among them) gives the label identity `id`, named ingress ports apart. */
function pushKeysOf(keys: number[], rule: ContributingRule, id: number, namedPorts: NamedPorts): void {
  const { direction, ports } = rule;
  if (!ports) {
    keys.push(ruleKey(direction, id, 0, 0, 0));
    return;
  }
  for (const port of ports) {
    if (port.kind === 'prefixes') for (const p of port.prefixes) keys.push(ruleKey(direction, id, port.protocol, p.port, p.prefixLen));
    else if (direction === 'egress') pushNamedEgress(keys, id, port.protocol, port.name, namedPorts);
  }
}

function pushNamedEgress(keys: number[], id: number, protocol: PolicyProtocol, name: string, namedPorts: NamedPorts): void {
  for (const p of namedPorts.of(id, namedPortKey(protocol, name))) keys.push(ruleKey('egress', id, protocol, p, 16));
}

/** The ingress rules with named ports, with their peers: resolved per endpoint (endpointKeys). */
function namedIngressOf(rules: readonly ContributingRule[]): Contribution['namedIngress'] {
  const namedIngress: Contribution['namedIngress'] = [];
  for (const rule of rules) {
    if (rule.direction !== 'ingress') continue;
    for (const port of rule.ports ?? []) {
      if (port.kind !== 'named') continue;
      const ids = rule.peers ? [...rule.peers] : [ReservedIdentity.Any];
      if (ids.length > 0) namedIngress.push({ ids, protocol: port.protocol, name: port.name });
    }
  }
  return namedIngress;
}

/** The first index from `from` on whose key is not below `key` (keys sorted). */
function lowerBound(keys: Float64Array, key: number, from: number): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((keys[mid] as number) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** An endpoint's rule keys: its policies' contributions, its own named ingress ports, and `extra`. */
export function endpointKeys(contributions: readonly Contribution[], ownPorts: PodInfo['namedPorts'], extra: readonly number[]): Float64Array {
  const own: number[] = [...extra];
  for (const { namedIngress } of contributions) {
    for (const { ids, protocol, name } of namedIngress) {
      for (const port of ownPorts) {
        if (port.name !== name || PROTOCOL_NUMBERS[port.protocol] !== protocol) continue;
        for (const id of ids) own.push(ruleKey('ingress', id, protocol, port.port, 16));
      }
    }
  }
  return mergeSortedUnique([...contributions.map((c) => c.keys), sortedUnique(Float64Array.from(own))]);
}

/** Sorted arrays of keys → one, each key once. Pairwise merges: an endpoint has a few policies. */
export function mergeSortedUnique(arrays: readonly Float64Array[]): Float64Array {
  let merged: Float64Array = new Float64Array();
  for (const next of arrays) {
    if (next.length === 0) continue;
    if (merged.length === 0) {
      merged = next;
      continue;
    }
    const out = new Float64Array(merged.length + next.length);
    let i = 0;
    let j = 0;
    let n = 0;
    while (i < merged.length || j < next.length) {
      const a = i < merged.length ? (merged[i] as number) : Infinity;
      const b = j < next.length ? (next[j] as number) : Infinity;
      const key = a <= b ? a : b;
      if (a === key) i++;
      if (b === key) j++;
      out[n++] = key;
    }
    merged = out.subarray(0, n);
  }
  return merged;
}
