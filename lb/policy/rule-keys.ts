/**
 * PolicyRules as numbers while an endpoint's rules are gathered: one exact integer (< 2^49) per rule,
 * ordered by direction, identity, protocol, port, prefix length. Sorting and deduplicating a
 * Float64Array of them is the whole "sorted, deduplicated" step, and comparing two endpoints' rule
 * sets is comparing two arrays — thousands of rules per endpoint stay cheap.
 */
import { FIRST_CIDR_IDENTITY, type PolicyDirection, type PolicyProtocol, type PolicyRule } from './types.js';

const PROTOCOLS: readonly PolicyProtocol[] = [0, 6, 17, 132];
const IDENTITY_LIMIT = 2 * FIRST_CIDR_IDENTITY;

export function ruleKey(direction: PolicyDirection, identity: number, protocol: PolicyProtocol, port: number, prefixLen: number): number {
  const dir = direction === 'ingress' ? 0 : 1;
  return (((dir * IDENTITY_LIMIT + identity) * 4 + PROTOCOLS.indexOf(protocol)) * 0x10000 + port) * 32 + prefixLen;
}

export function ruleOfKey(key: number): PolicyRule {
  const prefixLen = key % 32;
  let rest = (key - prefixLen) / 32;
  const port = rest % 0x10000;
  rest = (rest - port) / 0x10000;
  const protocol = PROTOCOLS[rest % 4] ?? 0;
  rest = (rest - (rest % 4)) / 4;
  const identity = rest % IDENTITY_LIMIT;
  const direction: PolicyDirection = rest >= IDENTITY_LIMIT ? 'egress' : 'ingress';
  return { direction, identity, protocol, port, portPrefixLen: prefixLen };
}

/** The keys sorted, each once (sorts `keys` in place). */
export function sortedUnique(keys: Float64Array): Float64Array {
  const sorted = keys.sort();
  let n = 0;
  for (let i = 0; i < sorted.length; i++) {
    const key = sorted[i] ?? 0;
    if (n === 0 || sorted[n - 1] !== key) sorted[n++] = key;
  }
  return sorted.subarray(0, n);
}

export function sameKeys(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
