/**
 * Port ranges (NetworkPolicy port..endPort) as the port prefixes a policy map matches: a prefix
 * (port, prefixLen) covers the ports whose first prefixLen bits equal port's. The cover is exact and
 * minimal — the aligned blocks a binary trie splits the range into — so 32000..32768 is
 * 32000/8 (32000–32255), 32256/7 (32256–32767), 32768/16: three entries, not 769.
 */

export interface PortPrefix {
  port: number;
  /** 16: exactly `port`; 0: every port. */
  prefixLen: number;
}

export function portRangePrefixes(first: number, last: number): PortPrefix[] {
  if (!(Number.isInteger(first) && Number.isInteger(last) && first >= 0 && last <= 0xffff && first <= last)) {
    throw new RangeError(`port range ${first}..${last} is not within 0..65535`);
  }
  const out: PortPrefix[] = [];
  let port = first;
  while (port <= last) {
    // The largest block aligned at `port` that does not run past `last`.
    let size = port === 0 ? 0x10000 : port & -port;
    while (port + size - 1 > last) size >>= 1;
    out.push({ port, prefixLen: 16 - Math.log2(size) });
    port += size;
  }
  return out;
}
