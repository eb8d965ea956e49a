/**
 * The Maglev tables map (xlb_lb_maglev, bpf/include/lb.h) as the map writer sees every map: service id
 * → the table's bytes. In the kernel it is an array of maps — the datapath's two lookups are then
 * inlined, where a hash map's is a function call — so a table is an inner map of one element.
 *
 * Cost shapes the writes: every change to a map-in-map slot (set or delete) waits for an RCU grace
 * period in the kernel (maybe_wait_bpf_programs: ~9 ms here), once per syscall. So a new table is a
 * new inner map set into its slot — all new tables of one apply in one batch, one wait — and a
 * changed table is rewritten in place in its inner map (~15 µs, no wait). A reader racing an in-place
 * write may see old entries beside new ones; each names a slot that exists (the writer adds slots
 * before the table and removes stale ones after), and conntrack keeps established flows where they are.
 */
import { BpfError } from './errors.js';
import { BpfMap, MapType } from './map.js';
import type { LbMapHandle } from './lb-writer.js';

const ZERO = Buffer.alloc(4);
const ENOENT = 2;

export class MaglevTables implements LbMapHandle {
  readonly type = MapType.ArrayOfMaps;
  readonly keySize = 4;
  readonly perCpu = false;

  /** `outer`: the array of maps; `valueSize`: its inner maps' value size (2·M). */
  constructor(
    private readonly outer: BpfMap,
    readonly valueSize: number,
  ) {
    if (outer.type !== MapType.ArrayOfMaps) throw new Error(`map ${outer.name} is not an array of maps (type ${outer.type})`);
  }

  get name(): string {
    return this.outer.name;
  }

  lookup(key: Buffer): Buffer | undefined {
    return innerTable(this.outer, key);
  }

  update(key: Buffer, value: Buffer): void {
    this.updateBatch([key], [value]);
  }

  delete(key: Buffer): boolean {
    return this.outer.delete(key);
  }

  /** Tables of slots that have one are rewritten in place; the others get new inner maps, set in one batch. */
  updateBatch(keys: Buffer[], values: Buffer[]): void {
    const fresh: { key: Buffer; inner: BpfMap }[] = [];
    try {
      keys.forEach((key, i) => {
        const value = values[i];
        if (value?.length !== this.valueSize) throw new Error(`map ${this.name}: a table is ${this.valueSize} bytes, got ${value?.length ?? 0}`);
        const existing = openInner(this.outer, key);
        if (existing) {
          try {
            existing.update(ZERO, value);
          } finally {
            existing.close();
          }
          return;
        }
        const inner = BpfMap.create(MapType.Array, 'xlb_maglev_tbl', 4, this.valueSize, 1);
        fresh.push({ key, inner });
        inner.update(ZERO, value);
      });
      if (fresh.length === 1 && fresh[0]) this.outer.setInner(fresh[0].key, fresh[0].inner);
      else if (fresh.length > 1) this.outer.updateBatch(fresh.map((f) => f.key), fresh.map((f) => fdValue(f.inner)));
    } finally {
      for (const { inner } of fresh) inner.close(); // the slots hold their own references
    }
  }

  deleteBatch(keys: Buffer[]): void {
    this.outer.deleteBatch(keys);
  }

  *keys(): Generator<Buffer> {
    for (const [key] of innerTables(this.outer)) yield key;
  }

  entries(): Generator<[Buffer, Buffer]> {
    return innerTables(this.outer);
  }
}

function fdValue(map: BpfMap): Buffer {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(map.fd);
  return value;
}

/** The inner map in slot `key`, opened (the caller closes it), or undefined when the slot is empty. */
function openInner(outer: BpfMap, key: Buffer): BpfMap | undefined {
  const id = outer.lookup(key)?.readUInt32LE(0);
  if (id === undefined) return undefined;
  try {
    return BpfMap.openById(id);
  } catch (error) {
    if (error instanceof BpfError && error.errno === ENOENT) return undefined; // swapped out meanwhile
    throw error;
  }
}

/** The table in slot `key` of an array of Maglev tables, or undefined when the slot is empty. */
function innerTable(outer: BpfMap, key: Buffer): Buffer | undefined {
  const inner = openInner(outer, key);
  if (!inner) return undefined;
  try {
    return inner.lookup(ZERO);
  } finally {
    inner.close();
  }
}

/** Every [service id, table] of an array of Maglev tables (e.g. opened from its pin by `xlb bpf lb list`). */
export function* innerTables(outer: BpfMap): Generator<[Buffer, Buffer]> {
  for (const key of outer.keys()) {
    const table = innerTable(outer, key);
    if (table) yield [key, table];
  }
}
