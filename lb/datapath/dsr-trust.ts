/**
 * xlb_dsr_trust: the service addresses a DSR option arriving at this node may name (--dsr-service-ranges).
 * Written whole at start-up, so a restarted agent with other ranges leaves none of the old ones behind.
 */
import { AF_INET, AF_INET6, DsrTrustKey } from '../layouts.js';
import { parseCidr } from '../service.js';
import type { BpfMap } from './map.js';

const FAMILY_BITS = 32;
const TRUSTED = Buffer.from([1]);

export function dsrTrustKey(range: string): Buffer {
  const cidr = parseCidr(range);
  if (typeof cidr === 'string') throw new Error(`xlb_dsr_trust: ${cidr}`);
  return DsrTrustKey.encode({ prefixlen: FAMILY_BITS + cidr.prefix, family: cidr.family === 4 ? AF_INET : AF_INET6, addr: cidr.network });
}

/** Makes the map hold exactly `ranges` (canonical CIDRs). */
export function writeDsrTrust(map: BpfMap, ranges: readonly string[]): void {
  const wanted = new Map(ranges.map((range) => [dsrTrustKey(range).toString('hex'), range]));
  for (const key of [...map.keys()]) {
    if (!wanted.delete(key.toString('hex'))) map.delete(key);
  }
  for (const range of wanted.values()) map.update(dsrTrustKey(range), TRUSTED);
}
