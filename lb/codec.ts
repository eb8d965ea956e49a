/**
 * Struct codecs: the TypeScript side of each map key/value layout defined in bpf/include.
 * Offsets follow C's natural alignment; a test checks every codec against the compiled objects' BTF,
 * so a codec cannot drift from its C struct.
 */
import { isIPv4 } from 'node:net';

interface FieldKind<T> {
  size: number;
  align: number;
  write(buf: Buffer, offset: number, value: T): void;
  read(buf: Buffer, offset: number): T;
  padding?: true;
}

export const u8: FieldKind<number> = {
  size: 1, align: 1,
  write: (b, o, v) => void b.writeUInt8(v, o),
  read: (b, o) => b.readUInt8(o),
};
export const u16: FieldKind<number> = {
  size: 2, align: 2,
  write: (b, o, v) => void b.writeUInt16LE(v, o),
  read: (b, o) => b.readUInt16LE(o),
};
export const u32: FieldKind<number> = {
  size: 4, align: 4,
  write: (b, o, v) => void b.writeUInt32LE(v, o),
  read: (b, o) => b.readUInt32LE(o),
};
export const u64: FieldKind<bigint> = {
  size: 8, align: 8,
  write: (b, o, v) => void b.writeBigUInt64LE(v, o),
  read: (b, o) => b.readBigUInt64LE(o),
};
/** A port or other 16-bit value kept in network byte order (__be16). */
export const be16: FieldKind<number> = {
  size: 2, align: 2,
  write: (b, o, v) => void b.writeUInt16BE(v, o),
  read: (b, o) => b.readUInt16BE(o),
};
export const be32: FieldKind<number> = {
  size: 4, align: 4,
  write: (b, o, v) => void b.writeUInt32BE(v, o),
  read: (b, o) => b.readUInt32BE(o),
};

export function ipv4ToBytes(address: string): Buffer {
  if (!isIPv4(address)) throw new Error(`not an IPv4 address: ${address}`);
  return Buffer.from(address.split('.').map(Number));
}

export function bytesToIpv4(buf: Buffer, offset = 0): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

export function ipv6ToBytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) throw new Error(`not an IPv6 address: ${address}`);
    return parseInt(g, 16);
  }));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const missing = 8 - left.length - right.length;
  if ((tail === undefined && missing !== 0) || missing < 0 || address.split('::').length > 2) {
    throw new Error(`not an IPv6 address: ${address}`);
  }
  const groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Canonical RFC 5952 text: lowercase, longest zero run (≥ 2 groups) as "::". */
export function bytesToIpv6(buf: Buffer, offset = 0): string {
  const groups = Array.from({ length: 8 }, (_, i) => buf.readUInt16BE(offset + i * 2));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** "198.18.0.10:80", "[2001:db8::10]:80": an address with a port, IPv6 in brackets. */
export function hostPort(address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** "198.18.0.10:80/TCP", "[2001:db8::10]:53/UDP": a frontend or backend as users read and write it. */
export function endpointText(address: string, port: number, protocol: string): string {
  return `${hostPort(address, port)}/${protocol}`;
}

export const ipv4: FieldKind<string> = {
  size: 4, align: 4,
  write: (b, o, v) => void ipv4ToBytes(v).copy(b, o),
  read: (b, o) => bytesToIpv4(b, o),
};
export const ipv6: FieldKind<string> = {
  size: 16, align: 4,
  write: (b, o, v) => void ipv6ToBytes(v).copy(b, o),
  read: (b, o) => bytesToIpv6(b, o),
};

export function bytes(size: number, align = 1): FieldKind<Buffer> {
  return {
    size, align,
    write: (b, o, v) => {
      if (v.length > size) throw new Error(`${v.length} bytes do not fit a ${size}-byte field`);
      v.copy(b, o);
    },
    read: (b, o) => Buffer.from(b.subarray(o, o + size)),
  };
}

/** Explicit padding: always written as zero, so keys compare equal in hash maps. */
export function pad(size: number): FieldKind<undefined> {
  return { size, align: 1, padding: true, write: () => undefined, read: () => undefined };
}

type Fields = Record<string, FieldKind<unknown>>;
type ValueOf<K> = K extends FieldKind<infer T> ? T : never;
export type StructValue<F extends Fields> = {
  [N in keyof F as ValueOf<F[N]> extends undefined ? never : N]: ValueOf<F[N]>;
};

export interface StructField {
  name: string;
  offset: number;
  size: number;
  padding: boolean;
}

export interface StructCodec<F extends Fields> {
  /** The C struct name in bpf/include, as BTF knows it. */
  cName: string;
  size: number;
  fields: StructField[];
  encode(value: StructValue<F>): Buffer;
  encodeInto(value: StructValue<F>, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset?: number): StructValue<F>;
  /** Where a member starts, for reading one field out of raw map bytes. */
  offsetOf(name: keyof F & string): number;
}

export function defineStruct<F extends Fields>(cName: string, spec: F): StructCodec<F> {
  const fields: (StructField & { kind: FieldKind<unknown> })[] = [];
  let offset = 0;
  let maxAlign = 1;
  for (const [name, kind] of Object.entries(spec)) {
    offset = Math.ceil(offset / kind.align) * kind.align;
    maxAlign = Math.max(maxAlign, kind.align);
    fields.push({ name, offset, size: kind.size, padding: kind.padding === true, kind });
    offset += kind.size;
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign;
  const valueFields = fields.filter((f) => !f.padding);

  const encodeInto = (value: StructValue<F>, buf: Buffer, at: number): void => {
    buf.fill(0, at, at + size);
    const record = value as Record<string, unknown>;
    for (const f of valueFields) {
      const v = record[f.name];
      if (v === undefined) throw new Error(`${cName}: field ${f.name} is missing`);
      f.kind.write(buf, at + f.offset, v);
    }
  };
  return {
    cName,
    size,
    fields: fields.map(({ kind: _kind, ...field }) => field),
    encodeInto,
    offsetOf(name) {
      const field = fields.find((f) => f.name === name);
      if (!field) throw new Error(`${cName}: no field ${name}`);
      return field.offset;
    },
    encode(value) {
      const buf = Buffer.alloc(size);
      encodeInto(value, buf, 0);
      return buf;
    },
    decode(buf, at = 0) {
      if (buf.length - at < size) throw new Error(`${cName}: need ${size} bytes, got ${buf.length - at}`);
      const out: Record<string, unknown> = {};
      for (const f of valueFields) out[f.name] = f.kind.read(buf, at + f.offset);
      return out as StructValue<F>;
    },
  };
}
