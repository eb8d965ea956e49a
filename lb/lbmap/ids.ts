/**
 * Numeric ids for the datapath: service ids (key of slots, Maglev tables, affinity, source ranges;
 * recorded in every conntrack entry) and backend ids (key of xlb_lb_be; recorded in conntrack and
 * affinity entries). Ids must be stable: the same service name keeps its id across updates and the
 * same backend (address:port/protocol) keeps its id while any service lists it, or established flows
 * would be sent elsewhere.
 *
 * - 0 is never an id: the datapath reads 0 as "no backend". Service ids go up to MAX_SERVICE_ID (they
 *   index an array in the datapath), backend ids up to maxId.
 * - Backend ids are refcounted across services: a backend listed by two services has one id, released
 *   when the last service stops listing it. The counts come from each snapshot (assign()).
 * - Allocation is round-robin through 1..maxId: a released id is handed out again only after every
 *   other id has been handed out since (like PIDs), so a stale conntrack or affinity entry that
 *   escaped the purge cannot be mistaken for a new backend, and an apply that failed and rolled back
 *   (the maps still hold an id the allocator already released) cannot collide in practice.
 */

/** Service ids index the datapath's array of Maglev tables (XLB_MAX_SERVICES slots, 0 unused). */
export const MAX_SERVICE_ID = 4095;

export interface IdAllocatorOptions {
  /** Largest id handed out (default 2^32 − 1, the u32 keys). Small values are for tests. */
  maxId?: number;
}

/** One id space: name → id, with a round-robin cursor over free ids. */
class IdPool {
  private readonly byName = new Map<string, number>();
  private readonly inUse = new Set<number>();
  private cursor = 1;

  constructor(
    private readonly what: string,
    private readonly maxId: number,
  ) {}

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
    if (this.inUse.size >= this.maxId) throw new Error(`no free ${this.what} id: all ${this.maxId} are in use`);
    while (this.inUse.has(this.cursor)) this.advance();
    const id = this.cursor;
    this.advance();
    this.byName.set(name, id);
    this.inUse.add(id);
    return id;
  }

  /** Take a known id for a name (restoring state from pinned maps). */
  claim(name: string, id: number): boolean {
    if (!Number.isInteger(id) || id < 1 || id > this.maxId || this.inUse.has(id) || this.byName.has(name)) return false;
    this.byName.set(name, id);
    this.inUse.add(id);
    if (id >= this.cursor) {
      this.cursor = id;
      this.advance();
    }
    return true;
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
    this.services = new IdPool('service', Math.min(maxId, MAX_SERVICE_ID));
    this.backends = new IdPool('backend', maxId);
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

  /** Current assignments (for status output and tests). */
  snapshot(): { services: Map<string, number>; backends: Map<string, number> } {
    return { services: new Map(this.services.entries()), backends: new Map(this.backends.entries()) };
  }
}
