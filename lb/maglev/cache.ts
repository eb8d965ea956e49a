/**
 * Memo of Maglev tables: the reconciler asks for a service's table on every sync, and most syncs do
 * not change its backends. The same backends (keys, weights, order), size and seed give back the very
 * same table object, so callers can also skip the map write when the table is identical (===).
 * Returned tables are shared: treat them as read-only.
 */
import { buildMaglevTable, type MaglevBackend, type MaglevTable } from './table.js';
import { type MaglevSeed } from './seed.js';

export interface MaglevTableCacheOptions {
  /** Most tables kept; the least recently used goes first. Default 1024. */
  maxEntries?: number;
}

export class MaglevTableCache {
  readonly maxEntries: number;
  /** Tables computed (misses), and requests answered from the memo (hits). */
  builds = 0;
  hits = 0;
  // A Map iterates in insertion order; re-inserting on a hit makes it an LRU.
  private readonly tables = new Map<string, MaglevTable>();

  constructor(options: MaglevTableCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? 1024;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new Error(`MaglevTableCache maxEntries ${maxEntries} must be a positive integer`);
    }
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.tables.size;
  }

  table(backends: readonly MaglevBackend[], size: number, seed: MaglevSeed): MaglevTable {
    const key = cacheKey(backends, size, seed);
    const cached = this.tables.get(key);
    if (cached !== undefined) {
      this.hits++;
      this.tables.delete(key);
      this.tables.set(key, cached);
      return cached;
    }
    const table = buildMaglevTable(backends, size, seed);
    this.builds++;
    this.tables.set(key, table);
    if (this.tables.size > this.maxEntries) {
      const oldest = this.tables.keys().next();
      if (oldest.done !== true) this.tables.delete(oldest.value);
    }
    return table;
  }

  clear(): void {
    this.tables.clear();
  }
}

// JSON, so no backend key can make two different inputs print the same.
function cacheKey(backends: readonly MaglevBackend[], size: number, seed: MaglevSeed): string {
  return JSON.stringify([size, seed.base64, backends.map(({ key, weight }) => [key, weight])]);
}
