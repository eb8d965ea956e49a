/**
 * Address helpers for Kubernetes input: families, CIDR membership and CIDRs written with host bits set
 * (Kubernetes accepts "10.0.0.1/8" in loadBalancerSourceRanges and means 10.0.0.0/8, as Go's
 * net.ParseCIDR does; xlb's model keeps only the network, so it is masked here).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AF_INET, AF_INET6, decodeXlbAddr, encodeXlbAddr } from '../layouts.js';
import { parseCidr, type Cidr, type Family } from '../service.js';

export function familyOf(address: string): Family {
  return isIPv4(address) ? 4 : 6;
}

/** Kubernetes' name of a family (spec.ipFamilies, EndpointSlice addressType). */
export const FAMILY_NAMES: Record<Family, 'IPv4' | 'IPv6'> = { 4: 'IPv4', 6: 'IPv6' };

/** A CIDR, its host bits cleared ("198.18.0.7/24" → 198.18.0.0/24); a string is why it is not one. */
export function parseCidrMasked(value: string): Cidr | string {
  const [addr = '', length = ''] = value.trim().split('/');
  const family = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : undefined;
  const prefix = Number(length);
  if (family === undefined || !/^\d{1,3}$/.test(length) || prefix > (family === 4 ? 32 : 128)) return parseCidr(value.trim());
  const raw = encodeXlbAddr(addr);
  for (let bit = prefix; bit < raw.length * 8; bit++) raw[bit >> 3] = (raw[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return parseCidr(`${decodeXlbAddr(raw, 0, family === 4 ? AF_INET : AF_INET6)}/${prefix}`);
}

/** Whether `address` (canonical text) lies in `cidr`. */
export function inCidr(address: string, cidr: Cidr): boolean {
  if (familyOf(address) !== cidr.family) return false;
  const raw = encodeXlbAddr(address);
  const network = encodeXlbAddr(cidr.network);
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    if (((raw[bit >> 3] ?? 0) & mask) !== ((network[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}
