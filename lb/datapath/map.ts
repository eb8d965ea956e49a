import { BpfError, check } from './errors.js';
import { libbpf, libcCalls } from './libbpf.js';

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_NO_PREALLOC = 1;
const ENOENT = 2;

/** Kernel map type numbers (enum bpf_map_type) that the binding treats specially. */
export const MapType = {
  Hash: 1,
  Array: 2,
  PercpuHash: 5,
  PercpuArray: 6,
  LruHash: 9,
  LruPercpuHash: 10,
  LpmTrie: 11,
  ArrayOfMaps: 12,
  HashOfMaps: 13,
  Ringbuf: 27,
} as const;

const PER_CPU_TYPES = new Set<number>([MapType.PercpuHash, MapType.PercpuArray, MapType.LruPercpuHash, 21]);

export interface MapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

let possibleCpus = 0;
export function numPossibleCpus(): number {
  if (possibleCpus === 0) possibleCpus = check(libbpf.libbpf_num_possible_cpus() as number, 'libbpf_num_possible_cpus', 'this host');
  return possibleCpus;
}

/**
 * One BPF map by fd. Keys and values are raw bytes here; the struct codecs in lb/ give them meaning.
 * A map from a loaded object is owned by the object; one opened from a pin or created here is
 * owned by this handle and closed by close().
 */
export class BpfMap implements MapInfo {
  readonly perCpu: boolean;

  constructor(
    readonly fd: number,
    readonly name: string,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    private readonly ownsFd: boolean,
  ) {
    this.perCpu = PER_CPU_TYPES.has(type);
  }

  /** Open a pinned map (e.g. /sys/fs/bpf/xlb/xlb_lb4_svc) to read or write it from another process. */
  static openPinned(path: string): BpfMap {
    return BpfMap.adopt(check(libbpf.bpf_obj_get(path) as number, 'bpf_obj_get', `pinned map ${path}`), `pinned map ${path}`);
  }

  /** Open the map with this kernel id (e.g. a map-in-map slot's inner map, as lookup answers it). */
  static openById(id: number): BpfMap {
    return BpfMap.adopt(check(libbpf.bpf_map_get_fd_by_id(id) as number, 'bpf_map_get_fd_by_id', `map id ${id}`), `map id ${id}`);
  }

  /** A BpfMap owning `fd`, described by the kernel (the fd is closed if it cannot be). */
  private static adopt(fd: number, what: string): BpfMap {
    try {
      const info = mapInfo(fd, what);
      return new BpfMap(fd, info.name, info.type, info.keySize, info.valueSize, info.maxEntries, true);
    } catch (error) {
      libcCalls.close(fd);
      throw error;
    }
  }

  /** What the kernel says of a pinned map: its layout and flags. */
  static pinnedInfo(path: string): MapInfo & { flags: number } {
    const fd = check(libbpf.bpf_obj_get(path) as number, 'bpf_obj_get', `pinned map ${path}`);
    try {
      return mapInfo(fd, `pinned map ${path}`);
    } finally {
      libcCalls.close(fd);
    }
  }

  /**
   * Create a map outside any object, e.g. an inner map for a map-in-map slot; flags as
   * BPF_F_NO_PREALLOC; a map-in-map needs `inner`, a map of the layout its slots will hold.
   */
  static create(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags = 0, inner?: BpfMap): BpfMap {
    // struct bpf_map_create_opts: sz at 0, inner_map_fd at 24, map_flags at 28; 48 bytes.
    const opts = Buffer.alloc(48);
    opts.writeBigUInt64LE(48n, 0);
    if (inner) opts.writeUInt32LE(inner.fd, 24);
    opts.writeUInt32LE(flags, 28);
    const fd = check(libbpf.bpf_map_create(type, name, keySize, valueSize, maxEntries, opts) as number, 'bpf_map_create', `map ${name}`);
    return new BpfMap(fd, name, type, keySize, valueSize, maxEntries, true);
  }

  /** Bytes of one value as the syscall sees it: per-CPU maps hold one 8-byte-aligned slot per possible CPU. */
  get valueBytes(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * numPossibleCpus() : this.valueSize;
  }

  private checkKey(key: Buffer, operation: string): void {
    if (key.length !== this.keySize) {
      throw new Error(`${operation} on map ${this.name}: key is ${key.length} bytes, the map's key is ${this.keySize}`);
    }
  }

  private fail(operation: string, result: number): never {
    throw new BpfError(operation, `map ${this.name}`, -result);
  }

  lookup(key: Buffer): Buffer | undefined {
    this.checkKey(key, 'bpf_map_lookup_elem');
    const value = Buffer.alloc(this.valueBytes);
    const result = libbpf.bpf_map_lookup_elem(this.fd, key, value) as number;
    if (result === -ENOENT) return undefined;
    if (result < 0) this.fail('bpf_map_lookup_elem', result);
    return value;
  }

  /** Per-CPU maps: one value per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    if (!this.perCpu) throw new Error(`map ${this.name} is not a per-CPU map`);
    const all = this.lookup(key);
    if (!all) return undefined;
    const stride = Math.ceil(this.valueSize / 8) * 8;
    return Array.from({ length: numPossibleCpus() }, (_, cpu) => all.subarray(cpu * stride, cpu * stride + this.valueSize));
  }

  /** Per-CPU counters: the value read as u64 fields, each summed across CPUs. */
  sumPerCpuU64(key: Buffer): bigint[] {
    const values = this.lookupPerCpu(key) ?? [];
    const sums = new Array<bigint>(Math.floor(this.valueSize / 8)).fill(0n);
    for (const value of values) {
      for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] ?? 0n) + value.readBigUInt64LE(i * 8);
    }
    return sums;
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    this.checkKey(key, 'bpf_map_update_elem');
    if (value.length !== this.valueBytes) {
      throw new Error(`bpf_map_update_elem on map ${this.name}: value is ${value.length} bytes, expected ${this.valueBytes}`);
    }
    const result = libbpf.bpf_map_update_elem(this.fd, key, value, flags) as number;
    if (result < 0) this.fail('bpf_map_update_elem', result);
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    this.checkKey(key, 'bpf_map_delete_elem');
    const result = libbpf.bpf_map_delete_elem(this.fd, key) as number;
    if (result === -ENOENT) return false;
    if (result < 0) this.fail('bpf_map_delete_elem', result);
    return true;
  }

  /** Set slot `key` of a map-in-map to `inner`. */
  setInner(key: Buffer, inner: BpfMap): void {
    const value = Buffer.alloc(4);
    value.writeUInt32LE(inner.fd);
    this.update(key, value);
  }

  *keys(): Generator<Buffer> {
    let previous: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const result = libbpf.bpf_map_get_next_key(this.fd, previous, next) as number;
      if (result === -ENOENT) return;
      if (result < 0) this.fail('bpf_map_get_next_key', result);
      yield next;
      previous = next;
    }
  }

  *entries(): Generator<[Buffer, Buffer]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) yield [key, value];
    }
  }

  /** One syscall for many keys; a partial failure reports how many were applied. */
  updateBatch(keys: Buffer[], values: Buffer[], flags = BPF_ANY): void {
    if (keys.length !== values.length) throw new Error(`updateBatch on map ${this.name}: ${keys.length} keys, ${values.length} values`);
    if (keys.length === 0) return;
    keys.forEach((k) => this.checkKey(k, 'bpf_map_update_batch'));
    const count = [keys.length];
    const opts = batchOpts(flags);
    const result = libbpf.bpf_map_update_batch(this.fd, Buffer.concat(keys), Buffer.concat(values), count, opts) as number;
    if (result < 0) {
      throw new BpfError('bpf_map_update_batch', `map ${this.name}`, -result, `${count[0]} of ${keys.length} entries were applied`);
    }
  }

  deleteBatch(keys: Buffer[]): void {
    if (keys.length === 0) return;
    keys.forEach((k) => this.checkKey(k, 'bpf_map_delete_batch'));
    const count = [keys.length];
    const result = libbpf.bpf_map_delete_batch(this.fd, Buffer.concat(keys), count, batchOpts(0)) as number;
    if (result < 0) {
      throw new BpfError('bpf_map_delete_batch', `map ${this.name}`, -result, `${count[0]} of ${keys.length} entries were deleted`);
    }
  }

  /** Pin an already loaded or created map (maps of an object are pinned by the loader). */
  pin(path: string): void {
    check(libbpf.bpf_obj_pin(this.fd, path) as number, 'bpf_obj_pin', `map ${this.name} at ${path}`);
  }

  close(): void {
    if (this.ownsFd) libcCalls.close(this.fd);
  }
}

function batchOpts(elemFlags: number): Buffer {
  const opts = Buffer.alloc(24);
  opts.writeBigUInt64LE(24n, 0);
  opts.writeBigUInt64LE(BigInt(elemFlags), 8);
  return opts;
}

/** struct bpf_map_info's first members: type, id, key_size, value_size, max_entries, map_flags, name. */
function mapInfo(fd: number, what: string): MapInfo & { flags: number } {
  const info = Buffer.alloc(96);
  const length = [info.length];
  check(libbpf.bpf_obj_get_info_by_fd(fd, info, length) as number, 'bpf_obj_get_info_by_fd', what);
  return {
    name: info.toString('utf8', 24, 40).replace(/\0.*$/s, ''),
    type: info.readUInt32LE(0),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
  };
}
