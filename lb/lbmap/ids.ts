/**
 * Numeric ids for the datapath: service ids (key of slots, Maglev tables, affinity, source ranges;
 * recorded in every conntrack entry) and backend ids (key of xlb_lb_be; recorded in conntrack and
 * affinity entries). Ids must be stable: the same service name keeps its id across updates and the
 * same backend (address:port/protocol) keeps its id while any service lists it, or established flows
 * would be sent elsewhere.
 *
 * - 0 is never an id: the datapath reads 0 as "no backend". Service ids go up to MAX_SERVICE_ID (they
 *   index an array in the datapath), backend ids up to maxId; at most MAX_BACKEND_IDS backend ids are
 *   in use at once (xlb_lb_be has one entry per id).
 * - A snapshot that needs more ids than a space holds is refused whole with a TableFullError naming
 *   the space, before any id changes hands: the allocator stays as the last good snapshot left it.
 * - Backend ids are refcounted across services: a backend listed by two services has one id, released
 *   when the last service stops listing it. The counts come from each snapshot (assign()).
 * - Allocation is round-robin through 1..maxId: a released id is handed out again only after every
 *   other id has been handed out since (like PIDs), so a stale conntrack or affinity entry that
 *   escaped the purge cannot be mistaken for a new backend.
 * - A snapshot the datapath then failed to apply is undone with rollback(checkpoint()): every name
 *   gets back the id the maps still hold (a backend the failed snapshot dropped would otherwise come
 *   back under a new id, and its flows be purged). The cursor stays where the failed snapshot left
 *   it, so the ids it handed out, which the datapath may have seen for a moment, are not reused soon.
 */

/** Service ids index the datapath's array of Maglev tables (XLB_MAX_SERVICES slots, 0 unused). */
export const MAX_SERVICE_ID = 4095;
/** Backend ids key xlb_lb_be, XLB_MAX_BACKENDS entries: no more can be in use at once. */
export const MAX_BACKEND_IDS = 65536;

/**
 * A table (an id space, a datapath map) has no room for what a change needs. The change is refused
 * whole; `needed` is what it would have taken, when known (the kernel's E2BIG does not say).
 */
export class TableFullError extends Error {
  override name = 'TableFullError';

  constructor(
    /** "service ids", "backend ids", or a map's name ("xlb_lb_svc"). */
    readonly table: string,
    /** How many entries the table holds, when known. */
    readonly capacity: number | undefined,
    readonly needed?: number,
    options?: { cause?: unknown; detail?: string },
  ) {
    const room = capacity === undefined ? '' : needed === undefined ? ` (it holds ${capacity})` : `: ${needed} needed, it holds ${capacity}`;
    super(`the ${table} table is full${room}${options?.detail ? `: ${options.detail}` : ''}`, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** How full one id space is (GET /v1/status). */
export interface IdSpaceUse {
  table: string;
  used: number;
  capacity: number;
}

export interface IdAllocatorOptions {
  /** Largest id handed out (default 2^32 − 1, the u32 keys). Small values are for tests. */
  maxId?: number;
  /** Most service ids in use at once (default MAX_SERVICE_ID); service ids are 1..maxServices. */
  maxServices?: number;
  /** Most backend ids in use at once (default MAX_BACKEND_IDS). */
  maxBackends?: number;
}

/** One id space: name → id, with a round-robin cursor over free ids. */
class IdPool {
  private byName = new Map<string, number>();
  private inUse = new Set<number>();
  /** Ids in use without a name: held by pinned entries nothing has claimed yet (reserve()). */
  private readonly reserved = new Set<number>();
  private cursor = 1;

  /** `capacity` ids at most are in use at once, each in 1..maxId. */
  constructor(
    readonly table: string,
    private readonly maxId: number,
    readonly capacity: number,
  ) {}

  /** Refuses a snapshot of `names` before anything changes when they are more than the space holds. */
  checkRoom(names: ReadonlySet<string>): void {
    if (names.size > this.capacity) throw new TableFullError(this.table, this.capacity, names.size);
  }

  usage(): IdSpaceUse {
    return { table: this.table, used: this.byName.size, capacity: this.capacity };
  }

  /** A copy of the assignments (not of the cursor: see rollback in the file comment). */
  save(): ReadonlyMap<string, number> {
    return new Map(this.byName);
  }

  restore(saved: ReadonlyMap<string, number>): void {
    this.byName = new Map(saved);
    this.inUse = new Set(saved.values());
  }

  get(name: string): number | undefined {
    return this.byName.get(name);
  }

  entries(): IterableIterator<[string, number]> {
    return this.byName.entries();
  }

  get size(): number {
    return this.byName.size;
  }

  acquire(name: string): number {
    const known = this.byName.get(name);
    if (known !== undefined) return known;
    if (this.inUse.size >= this.capacity) throw new TableFullError(this.table, this.capacity, this.inUse.size + 1);
    while (this.inUse.has(this.cursor)) this.advance();
    const id = this.cursor;
    this.advance();
    this.byName.set(name, id);
    this.inUse.add(id);
    return id;
  }

  /** Marks ids as in use by nobody yet (pinned entries found at start-up): new names never get them. */
  reserve(id: number): void {
    if (!Number.isInteger(id) || id < 1 || id > this.maxId || this.inUse.has(id)) return;
    this.reserved.add(id);
    this.inUse.add(id);
  }

  isReserved(id: number): boolean {
    return this.reserved.has(id);
  }

  /** Frees the reserved ids nothing claimed; returns them. */
  releaseReserved(): number[] {
    const ids = [...this.reserved];
    for (const id of ids) this.inUse.delete(id);
    this.reserved.clear();
    return ids;
  }

  /** Gives a name up; returns its id (undefined: it had none). */
  release(name: string): number | undefined {
    const id = this.byName.get(name);
    if (id === undefined) return undefined;
    this.byName.delete(name);
    this.inUse.delete(id);
    return id;
  }

  /** Take a known id for a name (restoring state from pinned maps): a free id, or a reserved one. */
  claim(name: string, id: number): boolean {
    if (this.reserved.has(id) && !this.byName.has(name)) {
      this.reserved.delete(id);
      this.byName.set(name, id);
      return true;
    }
    if (!Number.isInteger(id) || id < 1 || id > this.maxId || this.inUse.has(id) || this.byName.has(name) || this.inUse.size >= this.capacity) return false;
    this.byName.set(name, id);
    this.inUse.add(id);
    if (id >= this.cursor) {
      this.cursor = id;
      this.advance();
    }
    return true;
  }

  /** Undo of claim() of a reserved id. */
  unclaim(name: string, id: number): void {
    if (this.byName.get(name) !== id) return;
    this.byName.delete(name);
    this.reserved.add(id);
  }

  /** Undo of release(). */
  put(name: string, id: number): void {
    this.byName.set(name, id);
    this.inUse.add(id);
  }

  /** Releases every name not in `keep`; returns the released names. */
  retain(keep: ReadonlySet<string>): string[] {
    const released: string[] = [];
    for (const [name, id] of this.byName) {
      if (keep.has(name)) continue;
      this.byName.delete(name);
      this.inUse.delete(id);
      released.push(name);
    }
    return released;
  }

  private advance(): void {
    this.cursor = this.cursor >= this.maxId ? 1 : this.cursor + 1;
  }
}

/** The allocator's assignments at one moment, to go back to (IdAllocator.checkpoint). */
export interface IdCheckpoint {
  readonly services: ReadonlyMap<string, number>;
  readonly backends: ReadonlyMap<string, number>;
  readonly backendRefs: ReadonlyMap<string, number>;
}

export interface IdAssignment {
  services: ReadonlyMap<string, number>;
  backends: ReadonlyMap<string, number>;
  /** Names and backend keys whose ids this assignment released. */
  releasedServices: string[];
  releasedBackends: string[];
}

export class IdAllocator {
  private readonly services: IdPool;
  private readonly backends: IdPool;
  private readonly backendRefs = new Map<string, number>();

  constructor(options: IdAllocatorOptions = {}) {
    const maxId = options.maxId ?? 0xffffffff;
    if (!Number.isInteger(maxId) || maxId < 1 || maxId > 0xffffffff) throw new Error(`IdAllocator maxId ${maxId} must be in 1..${0xffffffff}`);
    // Service ids index the datapath's array of Maglev tables: they stay below its size.
    const serviceMax = Math.min(maxId, options.maxServices ?? MAX_SERVICE_ID);
    this.services = new IdPool('service ids', serviceMax, serviceMax);
    this.backends = new IdPool('backend ids', maxId, Math.min(options.maxBackends ?? MAX_BACKEND_IDS, maxId));
  }

  serviceId(name: string): number | undefined {
    return this.services.get(name);
  }

  backendId(key: string): number | undefined {
    return this.backends.get(key);
  }

  /** How many services list this backend in the last assignment (0: it has no id). */
  backendRefCount(key: string): number {
    return this.backendRefs.get(key) ?? 0;
  }

  /**
   * Ids for one snapshot: every service name and every backend key listed keeps its id or gets a new
   * one; every other id is released. `backendRefs` maps each backend key to the number of services
   * listing it. New ids are given in the order given (callers pass sorted names for determinism).
   */
  assign(serviceNames: Iterable<string>, backendRefs: ReadonlyMap<string, number>): IdAssignment {
    const names = new Set(serviceNames);
    const listed = new Set([...backendRefs].filter(([, refs]) => refs > 0).map(([key]) => key));
    this.services.checkRoom(names);
    this.backends.checkRoom(listed);
    const releasedServices = this.services.retain(names);
    const releasedBackends = this.backends.retain(listed);
    const services = new Map<string, number>();
    for (const name of names) services.set(name, this.services.acquire(name));
    const backends = new Map<string, number>();
    for (const key of listed) backends.set(key, this.backends.acquire(key));
    this.backendRefs.clear();
    for (const key of listed) this.backendRefs.set(key, backendRefs.get(key) ?? 0);
    return { services, backends, releasedServices, releasedBackends };
  }

  /**
   * Seeds the allocator with ids found in the maps at start-up (see recoverIds in desired.ts), before
   * the first assign(). Conflicting claims (an id or name already taken) are ignored and reported.
   */
  restore(services: Iterable<[string, number]>, backends: Iterable<[string, number]>): string[] {
    const problems: string[] = [];
    for (const [name, id] of services) if (!this.services.claim(name, id)) problems.push(`service ${name} cannot take id ${id}`);
    for (const [key, id] of backends) if (!this.backends.claim(key, id)) problems.push(`backend ${key} cannot take id ${id}`);
    return problems;
  }

  /** The assignments now, before a snapshot whose apply may fail. */
  checkpoint(): IdCheckpoint {
    return { services: this.services.save(), backends: this.backends.save(), backendRefs: new Map(this.backendRefs) };
  }

  /** Back to `checkpoint`'s assignments: the snapshot assigned since was not applied. */
  rollback(checkpoint: IdCheckpoint): void {
    this.services.restore(checkpoint.services);
    this.backends.restore(checkpoint.backends);
    this.backendRefs.clear();
    for (const [key, refs] of checkpoint.backendRefs) this.backendRefs.set(key, refs);
  }

  // Incremental use (lb/lbmap/reconciler.ts): one service at a time, every step journaled so a
  // change the datapath refused is undone with undo() (the cursor stays, as with rollback()).
  private journal: (() => void)[] = [];

  /** Starts a change: undo() from here on goes back to this point. */
  begin(): void {
    this.journal = [];
  }

  /** Undoes every step since begin(). */
  undo(): void {
    for (let i = this.journal.length - 1; i >= 0; i--) this.journal[i]?.();
    this.journal = [];
  }

  /** The id of a service name, taken now if it has none. */
  acquireService(name: string): number {
    const known = this.services.get(name);
    if (known !== undefined) return known;
    const id = this.services.acquire(name);
    this.journal.push(() => void this.services.release(name));
    return id;
  }

  releaseService(name: string): void {
    const id = this.services.release(name);
    if (id !== undefined) this.journal.push(() => this.services.put(name, id));
  }

  /** One more service lists this backend; its id (taken when it is the first). */
  refBackend(key: string): number {
    const refs = this.backendRefs.get(key) ?? 0;
    const had = this.backends.get(key);
    const id = had ?? this.backends.acquire(key);
    this.backendRefs.set(key, refs + 1);
    this.journal.push(() => {
      if (refs === 0) this.backendRefs.delete(key);
      else this.backendRefs.set(key, refs);
      if (had === undefined) this.backends.release(key);
    });
    return id;
  }

  /** One service fewer lists this backend; returns its id when that was the last (the id is free now). */
  unrefBackend(key: string): number | undefined {
    const refs = this.backendRefs.get(key) ?? 0;
    if (refs === 0) return undefined;
    if (refs > 1) {
      this.backendRefs.set(key, refs - 1);
      this.journal.push(() => this.backendRefs.set(key, refs));
      return undefined;
    }
    this.backendRefs.delete(key);
    const id = this.backends.release(key);
    this.journal.push(() => {
      this.backendRefs.set(key, refs);
      if (id !== undefined) this.backends.put(key, id);
    });
    return id;
  }

  /** Ids held by pinned entries found at start-up: reserved until claimed or released. */
  reserve(serviceIds: Iterable<number>, backendIds: Iterable<number>): void {
    for (const id of serviceIds) this.services.reserve(id);
    for (const id of backendIds) this.backends.reserve(id);
  }

  /** A name takes a reserved (pinned) service id; false when it cannot. */
  claimService(name: string, id: number): boolean {
    if (!this.services.isReserved(id) || !this.services.claim(name, id)) return false;
    this.journal.push(() => this.services.unclaim(name, id));
    return true;
  }

  /** A backend key takes a reserved (pinned) backend id before its first reference; false when it cannot. */
  claimBackend(key: string, id: number): boolean {
    if (!this.backends.isReserved(id) || this.backends.get(key) !== undefined || !this.backends.claim(key, id)) return false;
    this.journal.push(() => this.backends.unclaim(key, id));
    return true;
  }

  /** Frees the reserved ids nobody claimed (pinned entries about to be removed). */
  releaseReserved(): { services: number[]; backends: number[] } {
    return { services: this.services.releaseReserved(), backends: this.backends.releaseReserved() };
  }

  /** How full each id space is. */
  usage(): IdSpaceUse[] {
    return [this.services.usage(), this.backends.usage()];
  }

  /** Current assignments (for status output and tests). */
  snapshot(): { services: Map<string, number>; backends: Map<string, number> } {
    return { services: new Map(this.services.entries()), backends: new Map(this.backends.entries()) };
  }
}
