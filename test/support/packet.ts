/**
 * Packet builder and parser for datapath tests: Ethernet (+ 802.1Q) / IPv4 (options, fragments) /
 * IPv6 (hop-by-hop, destination options, fragment headers) / TCP, UDP, SCTP, ICMP, ICMPv6, with every
 * checksum computed on build and verifiable on the way back (checksumErrors), so a test can assert
 * both the fields a program rewrote and that it kept the packet valid.
 */
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from '../../lb/codec.js';

export const IPPROTO = { HOPOPTS: 0, ICMP: 1, TCP: 6, UDP: 17, ROUTING: 43, FRAGMENT: 44, ICMPV6: 58, DSTOPTS: 60, SCTP: 132 } as const;
export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;

export interface EthSpec { src?: string; dst?: string; vlan?: number }

/** One spec for both families (the family follows the addresses); v4-only and v6-only fields are checked. */
export interface IpSpec {
  src: string;
  dst: string;
  ttl?: number; // IPv6 hop limit
  tos?: number; // IPv6 traffic class
  id?: number; // IPv4 identification
  dontFragment?: boolean;
  moreFragments?: boolean;
  fragmentOffset?: number; // bytes, a multiple of 8
  options?: Buffer; // IPv4 options, a multiple of 4 bytes
  ext?: Ipv6Ext[]; // IPv6 extension headers, in order
}

/** hopopts/dstopts take the option bytes; the builder adds next header, length and PadN to 8n bytes. */
export type Ipv6Ext = { type: 'hopopts' | 'dstopts'; options: Buffer } | { type: 'fragment'; id: number; offset?: number; more?: boolean };

export type L4Spec =
  | { proto: 'tcp'; sport: number; dport: number; flags?: number; seq?: number; ack?: number; window?: number; mss?: number; payload?: Buffer }
  | { proto: 'udp'; sport: number; dport: number; payload?: Buffer; noChecksum?: boolean } // noChecksum: IPv4 checksum 0
  | { proto: 'sctp'; sport: number; dport: number; tag?: number; payload?: Buffer }
  /** ICMP for IPv4, ICMPv6 for IPv6; errors quote an inner IP packet (buildIp) in `quote`. */
  | { proto: 'icmp'; type: number; code?: number; id?: number; seq?: number; mtu?: number; payload?: Buffer; quote?: Buffer }
  | { proto: 'raw'; protocol: number; payload: Buffer }; // e.g. a later fragment

export interface FrameSpec { eth?: EthSpec; ip: IpSpec; l4: L4Spec }

export interface ParsedL4 {
  proto: number;
  offset: number; // of the L4 header in the buffer
  sport: number; // 0 where the protocol has no ports
  dport: number;
  checksum: number;
  payload: Buffer;
  tcpFlags?: number;
  seq?: number;
  ack?: number;
  tcpOptions?: Buffer;
  mss?: number;
  sctpTag?: number;
  icmpType?: number;
  icmpCode?: number;
  echoId?: number;
  echoSeq?: number;
  inner?: ParsedIp; // ICMP errors: the quoted packet (possibly truncated)
}

export interface ParsedIp {
  version: 4 | 6;
  offset: number; // of the IP header in the buffer
  src: string;
  dst: string;
  ttl: number;
  tos: number;
  id: number | undefined; // IPv4 identification, or the IPv6 fragment header's
  dontFragment: boolean;
  moreFragments: boolean;
  fragmentOffset: number;
  headerLength: number; // IPv4 with options; IPv6 with extension headers
  totalLength: number; // as the header says
  truncated: boolean; // a quote in an ICMP error that stops before totalLength
  checksum: number; // IPv4 header checksum; 0 for IPv6
  options: Buffer; // IPv4 options
  ext: { type: number; bytes: Buffer }[]; // IPv6 extension headers, raw
  proto: number; // the upper-layer protocol after any extension headers
  l4: ParsedL4 | undefined; // absent on later fragments
}

export interface ParsedFrame { eth: { dst: string; src: string; type: number }; vlan: number | undefined; ip: ParsedIp }

// ---- checksums ----

/** One's complement sum of 16-bit big-endian words, not folded and not complemented. */
function sum16(buf: Buffer, start = 0, end = buf.length, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += buf.readUInt16BE(i);
  if ((end - start) % 2 === 1) sum += (buf[end - 1] ?? 0) << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** RFC 1071 checksum of buf[start, end) plus an initial (pseudo-header) sum: the value for the field. */
export function internetChecksum(buf: Buffer, start = 0, end = buf.length, initial = 0): number {
  return ~fold(sum16(buf, start, end, initial)) & 0xffff;
}

function pseudoHeaderSum(src: Buffer, dst: Buffer, proto: number, length: number): number {
  return sum16(src) + sum16(dst) + proto + length;
}

const CRC32C_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC32c (Castagnoli), as SCTP uses it; stored little-endian in the SCTP header (RFC 4960 app. B). */
export function crc32c(buf: Buffer, start = 0, end = buf.length): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = (CRC32C_TABLE[(crc ^ (buf[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ---- building ----

const macBytes = (mac: string): Buffer => Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
const isV6 = (ip: IpSpec): boolean => ip.src.includes(':');
const addrBytes = (address: string): Buffer => (address.includes(':') ? ipv6ToBytes(address) : ipv4ToBytes(address));

/** The L4 message with its checksum filled in; `pseudo` is the pseudo-header sum (ignored by ICMPv4, SCTP). */
function buildL4(l4: L4Spec, v6: boolean, pseudo: (proto: number, length: number) => number): { proto: number; bytes: Buffer } {
  switch (l4.proto) {
    case 'tcp': {
      const options = l4.mss === undefined ? Buffer.alloc(0) : Buffer.from([2, 4, l4.mss >> 8, l4.mss & 0xff]);
      const h = Buffer.alloc(20 + options.length);
      h.writeUInt16BE(l4.sport, 0);
      h.writeUInt16BE(l4.dport, 2);
      h.writeUInt32BE(l4.seq ?? 0, 4);
      h.writeUInt32BE(l4.ack ?? 0, 8);
      h[12] = (h.length / 4) << 4;
      h[13] = l4.flags ?? TCP_FLAGS.SYN;
      h.writeUInt16BE(l4.window ?? 64240, 14);
      options.copy(h, 20);
      const bytes = Buffer.concat([h, l4.payload ?? Buffer.alloc(0)]);
      bytes.writeUInt16BE(internetChecksum(bytes, 0, bytes.length, pseudo(IPPROTO.TCP, bytes.length)), 16);
      return { proto: IPPROTO.TCP, bytes };
    }
    case 'udp': {
      const bytes = Buffer.concat([Buffer.alloc(8), l4.payload ?? Buffer.alloc(0)]);
      bytes.writeUInt16BE(l4.sport, 0);
      bytes.writeUInt16BE(l4.dport, 2);
      bytes.writeUInt16BE(bytes.length, 4);
      if (l4.noChecksum && v6) throw new Error('IPv6 UDP must carry a checksum');
      // A computed 0 is sent as 0xffff: 0 means "no checksum" (RFC 768).
      if (!l4.noChecksum) bytes.writeUInt16BE(internetChecksum(bytes, 0, bytes.length, pseudo(IPPROTO.UDP, bytes.length)) || 0xffff, 6);
      return { proto: IPPROTO.UDP, bytes };
    }
    case 'sctp': {
      const bytes = Buffer.concat([Buffer.alloc(12), l4.payload ?? Buffer.alloc(0)]);
      bytes.writeUInt16BE(l4.sport, 0);
      bytes.writeUInt16BE(l4.dport, 2);
      bytes.writeUInt32BE(l4.tag ?? 0, 4);
      bytes.writeUInt32LE(crc32c(bytes), 8);
      return { proto: IPPROTO.SCTP, bytes };
    }
    case 'icmp': {
      const proto = v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP;
      const bytes = Buffer.concat([Buffer.alloc(8), l4.quote ?? l4.payload ?? Buffer.alloc(0)]);
      bytes[0] = l4.type;
      bytes[1] = l4.code ?? 0;
      if (l4.mtu !== undefined) {
        if (v6) bytes.writeUInt32BE(l4.mtu, 4); // packet too big
        else bytes.writeUInt16BE(l4.mtu, 6); // fragmentation needed
      } else {
        bytes.writeUInt16BE(l4.id ?? 0, 4);
        bytes.writeUInt16BE(l4.seq ?? 0, 6);
      }
      bytes.writeUInt16BE(internetChecksum(bytes, 0, bytes.length, v6 ? pseudo(proto, bytes.length) : 0), 2);
      return { proto, bytes };
    }
    case 'raw':
      return { proto: l4.protocol, bytes: l4.payload };
  }
}

function buildIpv6Ext(ext: Ipv6Ext, next: number): { code: number; bytes: Buffer } {
  if (ext.type === 'fragment') {
    const bytes = Buffer.alloc(8);
    bytes[0] = next;
    bytes.writeUInt16BE((ext.offset ?? 0) | (ext.more ? 1 : 0), 2);
    bytes.writeUInt32BE(ext.id, 4);
    return { code: IPPROTO.FRAGMENT, bytes };
  }
  const padding = (8 - ((2 + ext.options.length) % 8)) % 8;
  const pad = padding === 0 ? [] : padding === 1 ? [0] : [1, padding - 2, ...new Array<number>(padding - 2).fill(0)];
  const bytes = Buffer.concat([Buffer.from([next, 0]), ext.options, Buffer.from(pad)]);
  bytes[1] = bytes.length / 8 - 1;
  return { code: ext.type === 'hopopts' ? IPPROTO.HOPOPTS : IPPROTO.DSTOPTS, bytes };
}

/** An IP packet (no Ethernet header): what a frame carries, or what an ICMP error quotes. */
export function buildIp(ip: IpSpec, l4: L4Spec): Buffer {
  const v6 = isV6(ip);
  const src = addrBytes(ip.src);
  const dst = addrBytes(ip.dst);
  if (src.length !== dst.length) throw new Error(`mixed address families: ${ip.src} → ${ip.dst}`);
  const segment = buildL4(l4, v6, (proto, length) => pseudoHeaderSum(src, dst, proto, length));
  if (!v6) {
    if (ip.ext) throw new Error('IPv6 extension headers on an IPv4 packet');
    const options = ip.options ?? Buffer.alloc(0);
    if (options.length % 4 !== 0 || options.length > 40) throw new Error(`IPv4 options must be 4n ≤ 40 bytes, got ${options.length}`);
    const h = Buffer.alloc(20 + options.length);
    h[0] = 0x40 | (h.length / 4);
    h[1] = ip.tos ?? 0;
    h.writeUInt16BE(h.length + segment.bytes.length, 2);
    h.writeUInt16BE(ip.id ?? 0, 4);
    h.writeUInt16BE((ip.dontFragment ? 0x4000 : 0) | (ip.moreFragments ? 0x2000 : 0) | ((ip.fragmentOffset ?? 0) >> 3), 6);
    h[8] = ip.ttl ?? 64;
    h[9] = segment.proto;
    src.copy(h, 12);
    dst.copy(h, 16);
    options.copy(h, 20);
    h.writeUInt16BE(internetChecksum(h), 10);
    return Buffer.concat([h, segment.bytes]);
  }
  if (ip.options || ip.id !== undefined || ip.fragmentOffset || ip.moreFragments || ip.dontFragment) {
    throw new Error('IPv4 options/id/fragment fields on an IPv6 packet: use ext');
  }
  let next = segment.proto;
  const exts: Buffer[] = [];
  for (const ext of [...(ip.ext ?? [])].reverse()) {
    const built = buildIpv6Ext(ext, next);
    exts.unshift(built.bytes);
    next = built.code;
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE((0x60000000 | ((ip.tos ?? 0) << 20)) >>> 0, 0);
  h.writeUInt16BE(exts.reduce((n, e) => n + e.length, 0) + segment.bytes.length, 4);
  h[6] = next;
  h[7] = ip.ttl ?? 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, ...exts, segment.bytes]);
}

export function buildFrame(spec: FrameSpec): Buffer {
  const ip = buildIp(spec.ip, spec.l4);
  const type = isV6(spec.ip) ? ETH_P_IPV6 : ETH_P_IP;
  const eth = Buffer.alloc(spec.eth?.vlan === undefined ? 14 : 18);
  macBytes(spec.eth?.dst ?? '02:00:00:00:00:02').copy(eth, 0);
  macBytes(spec.eth?.src ?? '02:00:00:00:00:01').copy(eth, 6);
  if (spec.eth?.vlan !== undefined) {
    eth.writeUInt16BE(ETH_P_8021Q, 12);
    eth.writeUInt16BE(spec.eth.vlan, 14);
  }
  eth.writeUInt16BE(type, eth.length - 2);
  return Buffer.concat([eth, ip]);
}

// ---- parsing ----

const IPV6_EXT_HEADERS = new Set<number>([IPPROTO.HOPOPTS, IPPROTO.ROUTING, IPPROTO.DSTOPTS, IPPROTO.FRAGMENT]);
const macText = (buf: Buffer, at: number): string => [...buf.subarray(at, at + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');

function need(buf: Buffer, end: number, what: string): void {
  if (end > buf.length) throw new Error(`truncated ${what}: need ${end} bytes, frame has ${buf.length}`);
}

/** L4 at `at` up to `end`; `quoted`: inside an ICMP error, where only the first bytes may be there. */
function parseL4(buf: Buffer, at: number, end: number, proto: number, quoted: boolean): ParsedL4 {
  const have = (n: number): boolean => at + n <= end;
  const ports = (proto === IPPROTO.TCP || proto === IPPROTO.UDP || proto === IPPROTO.SCTP) && have(4);
  const l4: ParsedL4 = {
    proto, offset: at,
    sport: ports ? buf.readUInt16BE(at) : 0,
    dport: ports ? buf.readUInt16BE(at + 2) : 0,
    checksum: 0,
    payload: Buffer.alloc(0),
  };
  if (proto === IPPROTO.TCP && have(20)) {
    const headerLength = (buf[at + 12] ?? 0) >> 2;
    Object.assign(l4, {
      seq: buf.readUInt32BE(at + 4), ack: buf.readUInt32BE(at + 8), tcpFlags: buf[at + 13], checksum: buf.readUInt16BE(at + 16),
      tcpOptions: Buffer.from(buf.subarray(at + 20, at + headerLength)), payload: Buffer.from(buf.subarray(at + headerLength, end)),
    });
    for (let o = at + 20; o < at + headerLength && buf[o] !== 0; o += buf[o] === 1 ? 1 : Math.max(2, buf[o + 1] ?? 2)) {
      if (buf[o] === 2 && buf[o + 1] === 4) l4.mss = buf.readUInt16BE(o + 2);
    }
  } else if (proto === IPPROTO.UDP && have(8)) {
    Object.assign(l4, { checksum: buf.readUInt16BE(at + 6), payload: Buffer.from(buf.subarray(at + 8, end)) });
  } else if (proto === IPPROTO.SCTP && have(12)) {
    Object.assign(l4, { sctpTag: buf.readUInt32BE(at + 4), checksum: buf.readUInt32LE(at + 8), payload: Buffer.from(buf.subarray(at + 12, end)) });
  } else if ((proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) && have(8)) {
    const type = buf[at] ?? 0;
    const error = proto === IPPROTO.ICMP ? type === 3 || type === 11 || type === 12 : type >= 1 && type <= 4;
    Object.assign(l4, { icmpType: type, icmpCode: buf[at + 1], checksum: buf.readUInt16BE(at + 2), payload: Buffer.from(buf.subarray(at + 8, end)) });
    if (error && !quoted) l4.inner = parseIp(buf, at + 8, end, true);
    else if (!error) Object.assign(l4, { echoId: buf.readUInt16BE(at + 4), echoSeq: buf.readUInt16BE(at + 6) });
  }
  return l4;
}

/** The IP packet at `at`; `limit` bounds it (the frame's end, or the ICMP message's end for a quote). */
export function parseIp(buf: Buffer, at = 0, limit = buf.length, quoted = false): ParsedIp {
  need(buf, at + 1, 'IP header');
  const version = (buf[at] ?? 0) >> 4;
  if (version === 4) {
    need(buf, at + 20, 'IPv4 header');
    const headerLength = ((buf[at] ?? 0) & 0xf) * 4;
    const totalLength = buf.readUInt16BE(at + 2);
    const frag = buf.readUInt16BE(at + 6);
    const end = Math.min(limit, at + totalLength);
    if (!quoted) need(buf, at + totalLength, 'IPv4 packet');
    need(buf, at + headerLength, 'IPv4 options');
    const proto = buf[at + 9] ?? 0;
    const fragmentOffset = (frag & 0x1fff) * 8;
    return {
      version: 4, offset: at, src: bytesToIpv4(buf, at + 12), dst: bytesToIpv4(buf, at + 16), ttl: buf[at + 8] ?? 0, tos: buf[at + 1] ?? 0,
      id: buf.readUInt16BE(at + 4), dontFragment: (frag & 0x4000) !== 0, moreFragments: (frag & 0x2000) !== 0, fragmentOffset,
      headerLength, totalLength, truncated: end < at + totalLength, checksum: buf.readUInt16BE(at + 10), options: Buffer.from(buf.subarray(at + 20, at + headerLength)), ext: [], proto,
      l4: fragmentOffset === 0 ? parseL4(buf, at + headerLength, end, proto, quoted) : undefined,
    };
  }
  if (version !== 6) throw new Error(`IP version ${version} at offset ${at}`);
  need(buf, at + 40, 'IPv6 header');
  const totalLength = 40 + buf.readUInt16BE(at + 4);
  const end = Math.min(limit, at + totalLength);
  if (!quoted) need(buf, at + totalLength, 'IPv6 packet');
  const ip: ParsedIp = {
    version: 6, offset: at, src: bytesToIpv6(buf, at + 8), dst: bytesToIpv6(buf, at + 24), ttl: buf[at + 7] ?? 0,
    tos: (buf.readUInt16BE(at) >> 4) & 0xff, id: undefined, dontFragment: false, moreFragments: false, fragmentOffset: 0,
    headerLength: 40, totalLength, truncated: end < at + totalLength, checksum: 0, options: Buffer.alloc(0), ext: [], proto: buf[at + 6] ?? 0, l4: undefined,
  };
  let off = at + 40;
  while (IPV6_EXT_HEADERS.has(ip.proto)) {
    need(buf, off + 8, 'IPv6 extension header');
    const length = ip.proto === IPPROTO.FRAGMENT ? 8 : ((buf[off + 1] ?? 0) + 1) * 8;
    need(buf, off + length, 'IPv6 extension header');
    if (ip.proto === IPPROTO.FRAGMENT) {
      const frag = buf.readUInt16BE(off + 2);
      Object.assign(ip, { id: buf.readUInt32BE(off + 4), fragmentOffset: frag & 0xfff8, moreFragments: (frag & 1) !== 0 });
    }
    ip.ext.push({ type: ip.proto, bytes: Buffer.from(buf.subarray(off, off + length)) });
    ip.proto = buf[off] ?? 0;
    off += length;
  }
  ip.headerLength = off - at;
  ip.l4 = ip.fragmentOffset === 0 ? parseL4(buf, off, end, ip.proto, quoted) : undefined;
  return ip;
}

export function parseFrame(buf: Buffer): ParsedFrame {
  need(buf, 14, 'Ethernet header');
  let type = buf.readUInt16BE(12);
  let l3 = 14;
  let vlan: number | undefined;
  if (type === ETH_P_8021Q) {
    need(buf, 18, '802.1Q tag');
    vlan = buf.readUInt16BE(14);
    type = buf.readUInt16BE(16);
    l3 = 18;
  }
  if (type !== ETH_P_IP && type !== ETH_P_IPV6) throw new Error(`not an IP frame: ethertype 0x${type.toString(16)}`);
  return { eth: { dst: macText(buf, 0), src: macText(buf, 6), type }, vlan, ip: parseIp(buf, l3) };
}

// ---- verification ----

function ipChecksumErrors(buf: Buffer, ip: ParsedIp, what: string): string[] {
  const errors: string[] = [];
  if (ip.version === 4 && internetChecksum(buf, ip.offset, ip.offset + ip.headerLength) !== 0) {
    errors.push(`${what} IPv4 header checksum 0x${ip.checksum.toString(16)} is wrong`);
  }
  const l4 = ip.l4;
  const end = ip.offset + ip.totalLength;
  // Fragments and truncated quotes do not hold the whole segment the checksum covers.
  if (!l4 || ip.moreFragments || ip.truncated) return errors;
  const addrLength = ip.version === 4 ? 4 : 16;
  const addrAt = ip.offset + (ip.version === 4 ? 12 : 8);
  const pseudo = pseudoHeaderSum(buf.subarray(addrAt, addrAt + addrLength), buf.subarray(addrAt + addrLength, addrAt + 2 * addrLength), l4.proto, end - l4.offset);
  const bad = (name: string): number => errors.push(`${what} ${name} checksum 0x${l4.checksum.toString(16)} is wrong`);
  if (l4.proto === IPPROTO.TCP || l4.proto === IPPROTO.ICMPV6 || (l4.proto === IPPROTO.UDP && (l4.checksum !== 0 || ip.version === 6))) {
    if (internetChecksum(buf, l4.offset, end, pseudo) !== 0) bad(l4.proto === IPPROTO.TCP ? 'TCP' : l4.proto === IPPROTO.UDP ? 'UDP' : 'ICMPv6');
  } else if (l4.proto === IPPROTO.ICMP && internetChecksum(buf, l4.offset, end) !== 0) {
    bad('ICMP');
  } else if (l4.proto === IPPROTO.SCTP) {
    const copy = Buffer.from(buf.subarray(l4.offset, end));
    copy.writeUInt32LE(0, 8);
    if (crc32c(copy) !== l4.checksum) bad('SCTP CRC32c');
  }
  if (l4.inner) errors.push(...ipChecksumErrors(buf, l4.inner, `${what} quoted`));
  return errors;
}

/** Every checksum in the frame that does not verify, described; empty when all are right. */
export function checksumErrors(buf: Buffer): string[] {
  return ipChecksumErrors(buf, parseFrame(buf).ip, 'frame');
}

export function checksumsValid(buf: Buffer): boolean {
  return checksumErrors(buf).length === 0;
}

/** xlb's IPv4 DSR option (bpf/include/dsr.h): type 0x9A, length 8, {service port, service address}. */
export function dsrOption4(service: string, port: number): Buffer {
  const option = Buffer.alloc(8);
  option[0] = 0x9a;
  option[1] = 8;
  option.writeUInt16BE(port, 2);
  ipv4ToBytes(service).copy(option, 4);
  return option;
}

/** The options of xlb's IPv6 DSR destination options header: 0x1B, length 18, address, port, two Pad1. */
export function dsrOptions6(service: string, port: number, length = 18): Buffer {
  const options = Buffer.alloc(22);
  options[0] = 0x1b;
  options[1] = length;
  ipv6ToBytes(service).copy(options, 2);
  options.writeUInt16BE(port, 18);
  return options;
}
