/**
 * The string a backend is hashed and sorted by, exactly as Cilium ≥ 1.17 builds it
 * (pkg/maglev BackendInfo.setHashString): "[198.18.1.2:8080/TCP,State:active]",
 * "[[2001:db8::2]:53/UDP,State:active]". Cilium writes the literal "State:active" whatever the
 * backend's state (only active backends — or terminating ones when none is active — enter a table),
 * so the key does not depend on state. Addresses print as Go's netip.Addr.String() does, since all
 * nodes (Cilium's and ours) must derive identical strings. Cilium appends "/i" for internal-scope
 * (internalTrafficPolicy) addresses; xlb has no such scope, so never does.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { endpointText } from '../codec.js';

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';

export const L4_PROTOCOLS: readonly L4Protocol[] = ['TCP', 'UDP', 'SCTP'];

export interface MaglevBackendAddress {
  address: string;
  port: number;
  protocol: L4Protocol;
}

export function maglevBackendKey(backend: MaglevBackendAddress): string {
  const { address, port, protocol } = backend;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`backend port ${port} is not an integer in 0..65535`);
  }
  if (!L4_PROTOCOLS.includes(protocol)) {
    throw new Error(`backend protocol ${JSON.stringify(protocol)} is not one of ${L4_PROTOCOLS.join(', ')}`);
  }
  return `[${endpointText(canonicalIpAddress(address), port, protocol)},State:active]`;
}

/**
 * The address as Go's netip.Addr.String() prints it: dotted IPv4; IPv6 in lowercase hex without
 * leading zeros, the first longest run of two or more zero groups written "::", and IPv4-mapped
 * addresses as "::ffff:a.b.c.d". Throws on anything else (zones included: backends have none).
 */
export function canonicalIpAddress(address: string): string {
  if (isIPv4(address)) return address;
  if (!isIPv6(address) || address.includes('%')) {
    throw new Error(`${JSON.stringify(address)} is not an IPv4 or IPv6 address (without zone)`);
  }
  const groups = parseIPv6Groups(address);
  if (isIPv4Mapped(groups)) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return `::ffff:${hi >>> 8}.${hi & 0xff}.${lo >>> 8}.${lo & 0xff}`;
  }
  return formatIPv6Groups(groups);
}

function isIPv4Mapped(groups: readonly number[]): boolean {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

/** Eight 16-bit groups of an address node:net already accepted as IPv6. */
function parseIPv6Groups(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
        groups.push((a << 8) | b, (c << 8) | d);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const left = toGroups(head);
  const right = tail === undefined ? [] : toGroups(tail);
  const zeros = new Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}

function formatIPv6Groups(groups: readonly number[]): string {
  let runStart = -1;
  let runLength = 0;
  for (let i = 0; i < groups.length; ) {
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i >= 2 && j - i > runLength) {
      runStart = i;
      runLength = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = (gs: readonly number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (runStart < 0) return hex(groups);
  return `${hex(groups.slice(0, runStart))}::${hex(groups.slice(runStart + runLength))}`;
}
