/**
 * Memo of Maglev tables: the reconciler asks for a service's table on every sync, and most syncs do
 * not change its backends. The same backends (keys, weights, order), size and seed give back the very
 * same table object, so callers can also skip the map write when the table is identical (===).
 * Returned tables are shared: treat them as read-only.
 *
 * warm() builds many tables at once on worker threads (pool.ts) so that a big sync — 10,000 services
 * after a restart or a relist — does not spend seconds of the main thread in populate: the caller
 * awaits warm(requests) for what it is about to ask, then its synchronous pass calls table() as
 * before and finds every table there.
 *
 *   await cache.warm(services.map((s) => ({ backends: maglevBackendsOf(s), size, seed })));
 *   for (const s of services) write(cache.table(maglevBackendsOf(s), size, seed)); // all hits
 * The requests must carry the backends exactly as table() will get them (keys, weights and order
 * make the memo key): build both from one function.
 *
 * Warmed tables are pinned: kept apart from the LRU (maxEntries does not evict them) until the next
 * table() of each moves it into the LRU. So warming more than maxEntries tables at once is safe, but
 * warm only what you will ask for: a pinned table nobody asks for stays until clear().
 */
import { buildMaglevTable, type MaglevBackend, type MaglevTable } from './table.js';
import { type MaglevSeed } from './seed.js';
import { MaglevTablePool, type MaglevTableRequest } from './pool.js';

export interface MaglevTableCacheOptions {
  /** Most tables kept; the least recently used goes first. Default 1024. Pinned tables are apart. */
  maxEntries?: number;
  /**
   * The pool warm() builds on. Default: one of the cache's own, started at the first warm() with one
   * thread per CPU and terminated by close(). A pool given here is shared: close() leaves it running.
   */
  pool?: MaglevTablePool;
}

export class MaglevTableCache {
  readonly maxEntries: number;
  /** Tables computed here (misses), requests answered from the memo (hits), tables built by warm(). */
  builds = 0;
  hits = 0;
  warmed = 0;
  // A Map iterates in insertion order; re-inserting on a hit makes it an LRU.
  private readonly tables = new Map<string, MaglevTable>();
  // Warmed tables waiting for their table(): never evicted.
  private readonly pinned = new Map<string, MaglevTable>();
  private pool: MaglevTablePool | undefined;
  private readonly ownsPool: boolean;
  // Bumped by clear(): a warm() that started before does not insert what it built.
  private generation = 0;

  constructor(options: MaglevTableCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? 1024;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new Error(`MaglevTableCache maxEntries ${maxEntries} must be a positive integer`);
    }
    this.maxEntries = maxEntries;
    this.pool = options.pool;
    this.ownsPool = options.pool === undefined;
  }

  /** Tables held: in the LRU and pinned. */
  get size(): number {
    return this.tables.size + this.pinned.size;
  }

  /** Warmed tables not yet asked for by table(). */
  get pinnedCount(): number {
    return this.pinned.size;
  }

  table(backends: readonly MaglevBackend[], size: number, seed: MaglevSeed): MaglevTable {
    const key = cacheKey(backends, size, seed);
    const warmed = this.pinned.get(key);
    if (warmed !== undefined) {
      this.hits++;
      this.pinned.delete(key);
      this.remember(key, warmed);
      return warmed;
    }
    const cached = this.tables.get(key);
    if (cached !== undefined) {
      this.hits++;
      this.tables.delete(key);
      this.tables.set(key, cached);
      return cached;
    }
    const table = buildMaglevTable(backends, size, seed);
    this.builds++;
    this.remember(key, table);
    return table;
  }

  /**
   * Builds on the pool's threads the tables of `requests` that the cache does not hold, and pins every
   * requested table until its next table() (see the file comment). Resolves once all are in; rejects
   * with an Error naming the first request that failed (then nothing it built is inserted).
   * Requests already held, or repeated in `requests`, are built once or not at all.
   */
  async warm(requests: readonly MaglevTableRequest[]): Promise<void> {
    const missing = new Map<string, MaglevTableRequest>();
    for (const request of requests) {
      const key = cacheKey(request.backends, request.size, request.seed);
      if (this.pinned.has(key) || missing.has(key)) continue;
      const cached = this.tables.get(key);
      if (cached !== undefined) {
        this.tables.delete(key);
        this.pinned.set(key, cached);
      } else {
        missing.set(key, request);
      }
    }
    if (missing.size === 0) return;
    const generation = this.generation;
    this.pool ??= new MaglevTablePool();
    const built = await this.pool.build([...missing.values()]);
    if (generation !== this.generation) return;
    let i = 0;
    for (const key of missing.keys()) {
      const table = built[i++];
      if (table === undefined) continue;
      // table() may have built it meanwhile: keep that object, so equal tables stay ===.
      const existing = this.tables.get(key);
      if (existing !== undefined) this.tables.delete(key);
      if (!this.pinned.has(key)) this.pinned.set(key, existing ?? table);
      if (existing === undefined) this.warmed++;
    }
  }

  clear(): void {
    this.generation++;
    this.tables.clear();
    this.pinned.clear();
  }

  /** Terminates the cache's own pool (a given pool is left running); the next warm() starts another. */
  async close(): Promise<void> {
    const pool = this.pool;
    if (pool === undefined || !this.ownsPool) return;
    this.pool = undefined;
    await pool.close();
  }

  private remember(key: string, table: MaglevTable): void {
    this.tables.set(key, table);
    if (this.tables.size > this.maxEntries) {
      const oldest = this.tables.keys().next();
      if (oldest.done !== true) this.tables.delete(oldest.value);
    }
  }
}

// JSON, so no backend key can make two different inputs print the same.
function cacheKey(backends: readonly MaglevBackend[], size: number, seed: MaglevSeed): string {
  return JSON.stringify([size, seed.base64, backends.map(({ key, weight }) => [key, weight])]);
}
