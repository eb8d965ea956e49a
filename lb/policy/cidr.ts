/**
 * CIDRs as the ipcache keys them: canonical text ("198.18.0.0/16", "2001:db8::/32"), and containment,
 * which decides the CIDR identities an ipBlock allows (the datapath takes the longest prefix match).
 */
import { isIP } from 'node:net';
import { encodeXlbAddr } from '../layouts.js';
import { canonicalIpAddress } from '../maglev/backend-key.js';
import { parseCidrMasked } from '../k8s/addresses.js';
import type { Family } from '../service.js';

export interface CidrPrefix {
  /** Canonical, host bits cleared. */
  text: string;
  family: Family;
  prefix: number;
  /** The network address's bytes (16, IPv4 in the first 4). */
  bytes: Buffer;
}

/** A CIDR as Kubernetes accepts it (host bits set mean the network, as Go's net.ParseCIDR does); a string is why not. */
export function parsePrefix(value: string): CidrPrefix | string {
  const cidr = parseCidrMasked(value);
  if (typeof cidr === 'string') return cidr;
  return { text: cidr.text, family: cidr.family, prefix: cidr.prefix, bytes: encodeXlbAddr(cidr.network) };
}

/** Whether every address of `inner` is in `outer`. */
export function prefixContains(outer: CidrPrefix, inner: CidrPrefix): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  const whole = outer.prefix >> 3;
  for (let i = 0; i < whole; i++) if (outer.bytes[i] !== inner.bytes[i]) return false;
  const rest = outer.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((outer.bytes[whole] ?? 0) & mask) === ((inner.bytes[whole] ?? 0) & mask);
}

export function isWholeFamily(prefix: CidrPrefix): boolean {
  return prefix.prefix === 0;
}

/** "198.18.5.7/32", "2001:db8::7/128": the ipcache key of one address; undefined for what is not an address. */
export function hostCidr(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0 || address.includes('%')) return undefined;
  return `${canonicalIpAddress(address)}/${family === 4 ? 32 : 128}`;
}

/** The ipcache keys that map everything not otherwise known to World. */
export const WORLD_CIDRS = ['0.0.0.0/0', '::/0'] as const;
