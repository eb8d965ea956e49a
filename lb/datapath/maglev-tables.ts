/**
 * The Maglev tables map (xlb_lb_maglev, bpf/include/lb.h) as the map writer sees every map: service id
 * → the table's bytes. In the kernel it is an array of maps — the datapath's two lookups are then
 * inlined, where a hash map's is a function call — so a table is an inner map of one element: writing
 * one creates a new inner map and swaps it into the service's slot (the datapath sees the old table or
 * the new one, never a mix); reading one follows the slot's map id.
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
    if (value.length !== this.valueSize) {
      throw new Error(`map ${this.name}: a table is ${this.valueSize} bytes, got ${value.length}`);
    }
    const inner = BpfMap.create(MapType.Array, 'xlb_maglev_tbl', 4, this.valueSize, 1);
    try {
      inner.update(ZERO, value);
      this.outer.setInner(key, inner);
    } finally {
      inner.close(); // the slot holds its own reference
    }
  }

  delete(key: Buffer): boolean {
    return this.outer.delete(key);
  }

  updateBatch(keys: Buffer[], values: Buffer[]): void {
    keys.forEach((key, i) => {
      const value = values[i];
      if (value) this.update(key, value);
    });
  }

  deleteBatch(keys: Buffer[]): void {
    for (const key of keys) this.delete(key);
  }

  *keys(): Generator<Buffer> {
    for (const [key] of innerTables(this.outer)) yield key;
  }

  entries(): Generator<[Buffer, Buffer]> {
    return innerTables(this.outer);
  }
}

/** The table in slot `key` of an array of Maglev tables, or undefined when the slot is empty. */
function innerTable(outer: BpfMap, key: Buffer): Buffer | undefined {
  const id = outer.lookup(key)?.readUInt32LE(0);
  if (id === undefined) return undefined;
  let inner: BpfMap;
  try {
    inner = BpfMap.openById(id);
  } catch (error) {
    if (error instanceof BpfError && error.errno === ENOENT) return undefined; // swapped out meanwhile
    throw error;
  }
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
