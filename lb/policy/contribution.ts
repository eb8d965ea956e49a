/**
 * What one policy gives every pod it selects, as sorted rule keys (rule-keys.ts): each rule's peer
 * identities × its ports, named egress ports resolved per peer identity. Named ingress ports depend
 * on the selected pod, so they are returned apart and resolved per endpoint (endpointKeys).
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
  labelIds: Iterable<number>;
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
  const namedIngress: Contribution['namedIngress'] = [];
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
        if (ids.length > 0) namedIngress.push({ ids, protocol: port.protocol, name: port.name });
      } else if (!rule.peers) {
        // Any peer: the ports any pod gives that name (a name no pod defines allows nothing).
        for (const p of namedPorts.anywhere(namedPortKey(port.protocol, port.name))) keys.push(ruleKey(direction, ReservedIdentity.Any, port.protocol, p, 16));
      } else {
        // Each peer identity with the ports its own pods give that name (CIDR peers have none).
        const key = namedPortKey(port.protocol, port.name);
        for (const id of rule.labelIds) for (const p of namedPorts.of(id, key)) keys.push(ruleKey(direction, id, port.protocol, p, 16));
      }
    }
  }
  return { keys: sortedUnique(Float64Array.from(keys)), namedIngress };
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
