/**
 * The TypeScript mirror of every struct in bpf/include/maps.h (one codec per C struct, named after it;
 * fields are the C members in camelCase). test/datapath/layout.test.ts checks each codec in
 * `structCodecs` against the BTF of the compiled objects, so a codec cannot drift from its struct.
 *
 * union xlb_addr is carried as address text: IPv4 text is stored in the first 4 bytes (the rest zero),
 * IPv6 text in all 16. A field kind cannot see the struct's family member, so decoding guesses by the
 * bytes: bytes 4..15 all zero → IPv4. That misreads exactly the IPv6 addresses whose low 96 bits are
 * zero ("2001:db8::" decodes as "32.1.13.184"); service validation rejects those addresses (they are
 * /32 subnet-router anycast addresses, never hosts). Codecs of structs that carry a family
 * (lb_service_key, lb_backend, frag_key) decode by the family instead, so they have no ambiguity.
 */
import { isIPv4, isIPv6 } from 'node:net';
import {
  be16,
  be32,
  bytes,
  bytesToIpv4,
  bytesToIpv6,
  defineStruct,
  ipv4ToBytes,
  ipv6ToBytes,
  pad,
  u16,
  u32,
  u64,
  u8,
  type StructCodec,
  type StructValue,
} from './codec.js';
import type { CodecLayout } from './layout-check.js';

export const AF_INET = 2;
export const AF_INET6 = 10;
export type AddressFamily = typeof AF_INET | typeof AF_INET6;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;

/** enum xlb_service_flags */
export const ServiceFlag = { Maglev: 1, SourceRanges: 2, NodePort: 4, Local: 8 } as const;
/** enum xlb_forwarding_mode */
export const ForwardingMode = { snat: 0, dsr: 1, hybrid: 2 } as const;
/** enum xlb_ct_flags */
export const CtFlag = { Dsr: 1, Snat: 2, Closing: 4, Opening: 8, Handshake: 16 } as const;

/** The shape lb/codec.ts's defineStruct accepts for a field (codec.ts keeps its own interface private). */
interface AddrKind {
  size: number;
  align: number;
  write(buf: Buffer, offset: number, value: string): void;
  read(buf: Buffer, offset: number): string;
}

const XLB_ADDR_SIZE = 16;

/** union xlb_addr as text: IPv4 in the first 4 bytes, IPv6 in all 16 (see the file comment). */
export const xlbAddr: AddrKind = {
  size: XLB_ADDR_SIZE,
  align: 4,
  write: (buf, offset, value) => void encodeXlbAddr(value).copy(buf, offset),
  read: (buf, offset) => decodeXlbAddr(buf, offset),
};

export function encodeXlbAddr(address: string): Buffer {
  const out = Buffer.alloc(XLB_ADDR_SIZE);
  if (isIPv4(address)) ipv4ToBytes(address).copy(out);
  else if (isIPv6(address) && !address.includes('%')) ipv6ToBytes(expandEmbeddedIpv4(address)).copy(out);
  else throw new Error(`union xlb_addr: ${JSON.stringify(address)} is not an IPv4 or IPv6 address`);
  return out;
}

/** Address text of a union xlb_addr; with `family` given, no guessing. */
export function decodeXlbAddr(buf: Buffer, offset = 0, family?: number): string {
  if (family === AF_INET6) return bytesToIpv6(buf, offset);
  if (family === AF_INET) return bytesToIpv4(buf, offset);
  for (let i = offset + 4; i < offset + XLB_ADDR_SIZE; i++) {
    if (buf[i] !== 0) return bytesToIpv6(buf, offset);
  }
  return bytesToIpv4(buf, offset);
}

/** True for an IPv6 address that decodeXlbAddr (without a family) would read back as IPv4. */
export function isAmbiguousIpv6(address: string): boolean {
  if (!isIPv6(address)) return false;
  return encodeXlbAddr(address).subarray(4).every((b) => b === 0);
}

/** codec.ts parses IPv6 groups only; "::ffff:1.2.3.4" style tails become two hex groups here. */
function expandEmbeddedIpv4(address: string): string {
  const match = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (!match) return address;
  const [, head = '', v4 = ''] = match;
  const b = ipv4ToBytes(v4);
  return `${head}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
}

/**
 * A codec whose address fields are decoded by the struct's own family member (2 or 10), so an IPv6
 * address is never misread as IPv4. Encoding is unchanged: the text says which family it is.
 */
function decodeByFamily<F extends Parameters<typeof defineStruct>[1]>(
  codec: StructCodec<F>,
  addressFields: string[],
): StructCodec<F> {
  const family = codec.fields.find((f) => f.name === 'family');
  if (!family) throw new Error(`${codec.cName}: no family field`);
  const offsets = addressFields.map((name) => {
    const field = codec.fields.find((f) => f.name === name);
    if (!field) throw new Error(`${codec.cName}: no field ${name}`);
    return [name, field.offset] as const;
  });
  return {
    ...codec,
    decode(buf: Buffer, at = 0): StructValue<F> {
      const value = codec.decode(buf, at) as Record<string, unknown>;
      const af = buf.readUInt8(at + family.offset);
      for (const [name, offset] of offsets) value[name] = decodeXlbAddr(buf, at + offset, af);
      return value as StructValue<F>;
    },
  };
}

/**
 * A nested struct as one field (struct xlb_tuple inside struct xlb_event). The alignment is the
 * largest of the nested struct's members, which for the structs nested here is 4.
 */
export function nested<F extends Parameters<typeof defineStruct>[1]>(
  codec: StructCodec<F>,
  align: number,
): { size: number; align: number; write(b: Buffer, o: number, v: StructValue<F>): void; read(b: Buffer, o: number): StructValue<F> } {
  return {
    size: codec.size,
    align,
    write: (b, o, v) => codec.encodeInto(v, b, o),
    read: (b, o) => codec.decode(b, o),
  };
}

// ---- services (lb.h) ----

export const LbServiceKey = decodeByFamily(
  defineStruct('lb_service_key', { addr: xlbAddr, port: be16, proto: u8, family: u8 }),
  ['addr'],
);
export const LbService = defineStruct('lb_service', {
  id: u32,
  backendCount: u16,
  flags: u8,
  mode: u8,
  affinityTimeout: u32,
});
export const LbBackend = decodeByFamily(
  defineStruct('lb_backend', { addr: xlbAddr, port: be16, family: u8, pad: pad(1) }),
  ['addr'],
);
/** struct lb_maglev_digest: SHA-1 of what a service's Maglev table was computed from. */
export const LbMaglevDigest = defineStruct('lb_maglev_digest', { sha1: bytes(20, 1) });
/** struct lb_port_bitmap: bit p of the 1024 little-endian u64 words = some frontend listens on port p. */
export const LbPortBitmap = defineStruct('lb_port_bitmap', { words: bytes(8192, 8) });

export const LbSlotKey = defineStruct('lb_slot_key', { serviceId: u32, slot: u32 });
/** struct lb_slot: the backend's id, then a copy of the backend (new flows need one lookup, not two). */
export const LbSlot = defineStruct('lb_slot', { backendId: u32, backend: nested(LbBackend, 4) });
export const LbAffinityKey = defineStruct('lb_affinity_key', { serviceId: u32, pad: pad(4), client: xlbAddr });
export const LbAffinity = defineStruct('lb_affinity', { lastUsed: u64, backendId: u32, pad: pad(4) });
/**
 * LPM key. prefixlen (host order) = 32 + the address prefix length. The trie compares the bytes after
 * prefixlen bit by bit from the first byte, and every entry's prefix covers all 32 bits of service_id,
 * so any byte order would match; the datapath (lb_source_allowed) writes bpf_htonl(id), so we store it
 * big-endian too. The two must agree.
 */
export const LbSourceRangeKey = defineStruct('lb_source_range_key', { prefixlen: u32, serviceId: be32, addr: xlbAddr });

// ---- forwarding (forward.h) ----

/** struct xlb_nexthop: a flow's cached FIB answer. */
export const XlbNexthop = defineStruct('xlb_nexthop', { ifindex: u32, updated: u32, dmac: bytes(6), smac: bytes(6), mtu: u16, pad: pad(2) });
/** struct xlb_nexthop_slot: one slot of the shared next-hop cache (a destination's FIB answer). */
export const XlbNexthopSlot = defineStruct('xlb_nexthop_slot', { seq: u32, family: u8, pad: pad(3), addr: xlbAddr, nexthop: nested(XlbNexthop, 4) });

// ---- conntrack (conntrack.h) ----

/** struct xlb_tuple (parse.h): a flow as seen on the wire; the conntrack and SNAT key, inside events. */
export const XlbTuple = defineStruct(
  'xlb_tuple',
  { saddr: xlbAddr, daddr: xlbAddr, sport: be16, dport: be16, proto: u8, family: u8, kind: u8, pad: pad(1) },
);

export const CtEntry = defineStruct('ct_entry', {
  lastSeen: u64,
  serviceId: u32,
  slot: nested(LbSlot, 4),
  natAddr: xlbAddr,
  natPort: be16,
  flags: u8,
  pad: pad(1),
  nexthop: nested(XlbNexthop, 4),
});

/** enum xlb_tuple_kind: what a conntrack key is of. */
export const TupleKind = { Flow: 0, SnatReply: 1 } as const;
/** union ct_value: a flow's ct_entry, or (key kind SnatReply) a nat_reverse. */
export const CT_VALUE_SIZE = CtEntry.size;
export const CtWay = defineStruct('ct_way', { key: nested(XlbTuple, 4), value: bytes(CT_VALUE_SIZE, 8), pad: pad(8) });
/** Ways per conntrack bucket (XLB_CT_WAYS). */
export const CT_WAYS = 4;
/**
 * struct ct_bucket: seq[i] odd while way i is written, tag[i] 0 when way i is empty, expires[i] in 2^30 ns units,
 * peer[i] the other half of way i's SNAT flow (bucket × CT_WAYS + way + 1; 0: none).
 */
export const CtBucket = defineStruct('ct_bucket', {
  seq: bytes(4 * CT_WAYS, 4),
  tag: bytes(4 * CT_WAYS, 4),
  expires: bytes(4 * CT_WAYS, 4),
  peer: bytes(4 * CT_WAYS, 4),
  way: bytes(CT_WAYS * CtWay.size, 8),
});
export const CtSweep = defineStruct('ct_sweep', { flags: u32, live: u32, cleared: u32, purged: u32, busy: u32, pad: pad(4) });
export const CtSweepFlag = { Flush: 1, Purge: 2 } as const;
export const CtPurgeKey = defineStruct('ct_purge_key', { serviceId: u32, backendId: u32 });

// ---- SNAT (nat.h) ----

export const NatReverse = defineStruct('nat_reverse', {
  client: xlbAddr,
  service: xlbAddr,
  clientPort: be16,
  servicePort: be16,
  nexthop: nested(XlbNexthop, 4),
  backendId: u32,
  serviceId: u32,
});

// ---- fragments (frag.h) ----

export const FragKey = decodeByFamily(
  defineStruct('frag_key', { saddr: xlbAddr, daddr: xlbAddr, id: be32, proto: u8, family: u8, pad: pad(2) }),
  ['saddr', 'daddr'],
);
export const FragPorts = defineStruct('frag_ports', { sport: be16, dport: be16 });

// ---- DSR, backend side (dsr_backend.h) ----

/** struct dsr_entry: the service a DSR flow was addressed to; value of xlb_dsr_ct. */
export const DsrEntry = defineStruct('dsr_entry', {
  service: xlbAddr,
  servicePort: be16,
  pad: pad(6),
  lastSeen: u64,
});

/** struct dsr_trust_key: LPM key of xlb_dsr_trust; prefixlen (host order) = 32 + the address prefix. */
export const DsrTrustKey = defineStruct('dsr_trust_key', { prefixlen: u32, family: u32, addr: xlbAddr });

// ---- socket-level load balancing (sock.h) ----

/** struct sock_revnat_key: a socket (its cookie) and the backend its connect()/sendmsg() was sent to. */
export const SockRevnatKey = decodeByFamily(
  defineStruct('sock_revnat_key', { cookie: u64, addr: xlbAddr, port: be16, family: u8, pad: pad(5) }),
  ['addr'],
);
/** struct sock_revnat: the service frontend the socket asked for, and that service's id. */
export const SockRevnat = decodeByFamily(
  defineStruct('sock_revnat', { addr: xlbAddr, port: be16, family: u8, pad: pad(1), serviceId: u32 }),
  ['addr'],
);

// ---- cached lookups (lookup_cache.h) ----

export const XlbCacheKey = defineStruct('xlb_cache_key', { kind: u8, pad: pad(3), bytes: bytes(20) });
export const XlbLookupCacheSlot = defineStruct('xlb_lookup_cache_slot', {
  seq: u32,
  generation: u32,
  key: nested(XlbCacheKey, 8),
  value: bytes(24),
  found: u8,
  pad: pad(7),
});

// ---- runtime config (config.h) ----

export const XlbConfig = defineStruct('xlb_config', {
  nodeV4: xlbAddr,
  nodeV6: xlbAddr,
  natPortMin: u16,
  natPortMax: u16,
  eventSample: u32,
  ctSeed: u32,
  /** Seconds added to the datapath's clock: 0, except in tests that age conntrack entries. */
  clockOffset: u32,
});

// ---- counters and events (metrics.h) ----

export const XlbCounter = defineStruct('xlb_counter', { packets: u64, bytes: u64 });
export const XlbEvent = defineStruct('xlb_event', {
  timestamp: u64,
  tuple: nested(XlbTuple, 4),
  ifindex: u32,
  serviceId: u32,
  backendId: u32,
  srcIdentity: u32,
  dstIdentity: u32,
  type: u8,
  reason: u8,
  direction: u8,
  pad: pad(1),
});

// ---- plain map keys and values ----

/** A __u32 key or value (backend ids, slot values, the Maglev map's key, array indexes). */
export function encodeU32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(value);
  return buf;
}

export function decodeU32(buf: Buffer, offset = 0): number {
  return buf.readUInt32LE(offset);
}

/** Every codec of a map key/value defined in bpf/include; the layout test checks each against BTF. */
export const structCodecs: CodecLayout[] = [
  LbServiceKey,
  LbService,
  LbBackend,
  LbSlotKey,
  LbSlot,
  LbAffinityKey,
  LbAffinity,
  LbSourceRangeKey,
  CtEntry,
  CtWay,
  CtBucket,
  CtSweep,
  CtPurgeKey,
  NatReverse,
  FragKey,
  FragPorts,
  XlbConfig,
  XlbCacheKey,
  XlbLookupCacheSlot,
  XlbCounter,
  XlbEvent,
  XlbTuple,
  XlbNexthop,
  XlbNexthopSlot,
  DsrEntry,
  DsrTrustKey,
  LbPortBitmap,
  LbMaglevDigest,
  SockRevnatKey,
  SockRevnat,
];
