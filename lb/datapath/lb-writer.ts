/**
 * The one impure step of the service pipeline: applies LbChanges (lb/lbmap/diff.ts) to the kernel's
 * LB maps in an order that never lets the datapath see a service pointing at entries that are not
 * there yet, and undoes everything on failure.
 *
 * Order of one apply:
 *   1. new backends (xlb_lb_be): nothing points at them yet;
 *   2. frontends that go away (xlb_lb_svc deletes), removed services' ones first of all: traffic to
 *      them stops before anything they point at changes, and a frontend moving from one service to
 *      another is free before its new owner writes it;
 *   3. the rest of each removed service (slots, Maglev table, source ranges);
 *   4. per added or changed service: slots → Maglev table → source ranges → service entries (the
 *      entry point last, so a new service appears complete, and a shrinking one has its new
 *      backend_count before) → stale slots, table and ranges deleted;
 *   5. backends nothing lists any more;
 *   6. conntrack and affinity entries of removed (service, backend) pairs, so UDP flows move at once.
 * The port bitmap (xlb_lb_ports, the datapath's pre-filter) gains the ports of new frontends before
 * step 1 and loses ports no frontend uses after step 5, so it never hides a frontend that exists.
 * Step 4 rewrites a changed service's slots in place; between its slot and table writes a new flow
 * may pick a slot that already names the new backend (established flows are pinned by conntrack).
 * The datapath caches service and slot lookups per generation (xlb_lb_gen, lookup_cache.h): the
 * writer bumps it after step 2, after each service of step 4 and at the end (after a rollback too),
 * so a cached answer outlives the entry it was read from by one step at most.
 *
 * Every write of steps 1–5 first records the entry's previous value. If the kernel refuses one
 * (E2BIG: map full, ENOMEM, …) the record is replayed backwards, so after the throw the maps hold
 * byte for byte what they held before, and the LbWriteError names the service, the map and the
 * errno. The purge (step 6) runs only after that and is not undone: it deletes state the datapath
 * re-creates, and its failures are returned in the stats.
 */
import { Conntrack, CONNTRACK_MAPS, type FlowPurger } from './conntrack.js';
import { BpfError } from './errors.js';
import { MaglevTables } from './maglev-tables.js';
import { MapType, type BpfMap } from './map.js';
import type { BpfObject } from './object.js';
import { LbAffinity, LbAffinityKey, LbBackend, LbMaglevDigest, LbPortBitmap, LbService, LbServiceKey, LbSlot, LbSlotKey, LbSourceRangeKey, encodeU32 } from '../layouts.js';
import { INPUT_DIGEST, lbStateFromMaps, type LbState, type MapEntry } from '../lbmap/desired.js';
import { diffLbState, type LbChanges, type ServiceChanges } from '../lbmap/diff.js';

export const LB_MAPS = {
  service: 'xlb_lb_svc',
  backend: 'xlb_lb_be',
  slot: 'xlb_lb_slot',
  maglev: 'xlb_lb_maglev',
  sourceRange: 'xlb_lb_srcrng',
  affinity: 'xlb_lb_affin',
  ports: 'xlb_lb_ports',
  generation: 'xlb_lb_gen',
  maglevDigest: 'xlb_lb_mgdig',
} as const;

/** What the writer needs of a map (BpfMap has it; a test may pass anything shaped so). */
export type LbMapHandle = Pick<
  BpfMap,
  'name' | 'type' | 'keySize' | 'valueSize' | 'perCpu' | 'lookup' | 'update' | 'delete' | 'updateBatch' | 'deleteBatch' | 'keys' | 'entries'
>;

export interface ApplyStats {
  /** Entries created or overwritten, and deleted, in the LB maps. */
  written: number;
  deleted: number;
  /** Conntrack and affinity entries purged. */
  purgedConntrack: number;
  purgedAffinity: number;
  /** Purge failures (the LB maps are consistent regardless). */
  purgeErrors: string[];
  durationMs: number;
}

/** An apply the kernel refused; the maps were rolled back to their previous contents (unless rollbackErrors). */
export class LbWriteError extends Error {
  override name = 'LbWriteError';

  constructor(
    message: string,
    /** The service being written (numeric id and name), when the failure belongs to one. */
    readonly serviceId: number | undefined,
    readonly service: string | undefined,
    readonly map: string,
    /** The kernel's errno (e.g. 7 for E2BIG), when the failure came from the kernel. */
    readonly errno: number | undefined,
    readonly rollbackErrors: string[],
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

interface UndoRecord {
  map: LbMapHandle;
  key: Buffer;
  /** undefined: the key did not exist. */
  previous: Buffer | undefined;
}

/** Where an apply is, for the error message. */
interface Step {
  map: LbMapHandle;
  serviceId?: number;
  service?: string;
  what?: string;
}

/** Slots, backends: one batch syscall from this many entries (hash maps; LPM tries have no batch ops). */
const BATCH_MIN = 2;

export class LbMapWriter {
  private readonly svc: LbMapHandle;
  private readonly be: LbMapHandle;
  private readonly slot: LbMapHandle;
  private readonly maglev: LbMapHandle;
  private readonly srcrng: LbMapHandle;
  private readonly affinity: LbMapHandle | undefined;
  private readonly ports: LbMapHandle | undefined;
  private readonly portsInUse = new PortUse();
  private readonly generation: LbMapHandle | undefined;
  private readonly maglevDigests: LbMapHandle | undefined;

  /** Maps by kernel name (LB_MAPS; xlb_lb_affin optional) and the conntrack to purge (none: no purge). */
  constructor(
    maps: Readonly<Record<string, LbMapHandle | undefined>>,
    private readonly conntrack?: FlowPurger,
  ) {
    const need = (name: string, keySize: number, valueSize: number | undefined): LbMapHandle => {
      const map = maps[name];
      if (!map) throw new Error(`LbMapWriter: map ${name} is missing (given: ${Object.keys(maps).join(', ')})`);
      checkSizes(map, name, keySize, valueSize);
      return map;
    };
    this.svc = need(LB_MAPS.service, LbServiceKey.size, LbService.size);
    this.be = need(LB_MAPS.backend, 4, LbBackend.size);
    this.slot = need(LB_MAPS.slot, LbSlotKey.size, LbSlot.size);
    this.maglev = need(LB_MAPS.maglev, 4, undefined);
    this.srcrng = need(LB_MAPS.sourceRange, LbSourceRangeKey.size, 1);
    this.affinity = maps[LB_MAPS.affinity];
    if (this.affinity) checkSizes(this.affinity, LB_MAPS.affinity, LbAffinityKey.size, LbAffinity.size);
    this.ports = maps[LB_MAPS.ports];
    if (this.ports) checkSizes(this.ports, LB_MAPS.ports, 4, LbPortBitmap.size);
    this.generation = maps[LB_MAPS.generation];
    this.maglevDigests = maps[LB_MAPS.maglevDigest];
    if (this.maglevDigests) checkSizes(this.maglevDigests, LB_MAPS.maglevDigest, 4, LbMaglevDigest.size);
    if (this.generation) checkSizes(this.generation, LB_MAPS.generation, 4, 4);
  }

  static fromObject(object: BpfObject): LbMapWriter {
    const maps: Record<string, LbMapHandle> = {};
    for (const name of Object.values(LB_MAPS)) {
      const map = object.maps.get(name);
      if (map) maps[name] = map;
    }
    const tables = object.maps.get(LB_MAPS.maglev);
    const tableSize = object.innerValueSizes.get(LB_MAPS.maglev);
    if (tables && tableSize !== undefined) maps[LB_MAPS.maglev] = new MaglevTables(tables, tableSize);
    return new LbMapWriter(maps, object.maps.has(CONNTRACK_MAPS.table) ? Conntrack.fromObject(object) : undefined);
  }

  /** Maglev table size M the map was loaded for (value size 2·M). */
  get maglevTableSize(): number {
    return this.maglev.valueSize / 2;
  }

  /**
   * What the LB maps hold now, grouped by service id (for a diff after a restart). Maglev tables are
   * digests: the one kept in xlb_lb_mgdig, else (pins written without one) that of the table's bytes.
   * Only the tables of service ids the other maps name are looked at: an array of maps has a slot for
   * every possible id, and walking them all is two syscalls each.
   */
  read(): LbState {
    const svc = [...this.svc.entries()];
    const slot = [...this.slot.entries()];
    const ids = new Set([...svc.map(([, value]) => LbService.decode(value).id), ...slot.map(([key]) => LbSlotKey.decode(key).serviceId)]);
    const digests = new Map<number, string>();
    for (const [key, value] of this.maglevDigests?.entries() ?? []) digests.set(key.readUInt32LE(0), `${INPUT_DIGEST}${value.toString('hex')}`);
    const maglev = this.maglev;
    function* tables(): Generator<[Buffer, Buffer]> {
      for (const id of [...ids].sort((a, b) => a - b)) {
        const key = encodeU32(id);
        if (digests.has(id)) {
          yield [key, Buffer.alloc(0)];
          continue;
        }
        const table = maglev.lookup(key);
        if (table) yield [key, table];
      }
    }
    return lbStateFromMaps(
      { svc, be: this.be.entries(), slot, maglev: tables(), srcrng: this.srcrng.entries() },
      { digestTables: true, maglevDigests: digests },
    );
  }

  /** Diff against what the maps hold and apply. Reads every map: keep the last applied state instead when syncing often. */
  reconcile(desired: LbState): ApplyStats {
    return this.apply(diffLbState(this.read(), desired));
  }

  /**
   * `purge: false` leaves the conntrack and affinity purge (a sweep of the whole conntrack table, the
   * larger part of a small change) to the caller: purge(changes.purge) later, e.g. coalesced.
   */
  apply(changes: LbChanges, options: { purge?: boolean } = {}): ApplyStats {
    const started = performance.now();
    const undo: UndoRecord[] = [];
    const stats: ApplyStats = { written: 0, deleted: 0, purgedConntrack: 0, purgedAffinity: 0, purgeErrors: [], durationMs: 0 };
    let step: Step = { map: this.be };
    const exact = new ExactLookup();
    const upsert = (at: Step, entries: MapEntry[], batch: boolean): void => {
      step = at;
      if (entries.length === 0) return;
      for (const { key } of entries) {
        const previous = exact.lookup(at.map, key);
        undo.push({ map: at.map, key, previous });
        if (at.map === this.svc && previous === undefined) this.portsInUse.add(key, this.svc);
      }
      if (batch && entries.length >= BATCH_MIN) {
        at.map.updateBatch(entries.map((e) => e.key), entries.map((e) => e.value));
      } else {
        for (const { key, value } of entries) at.map.update(key, value);
      }
      stats.written += entries.length;
    };
    const remove = (at: Step, keys: Buffer[], batch: boolean): void => {
      step = at;
      const present: Buffer[] = [];
      for (const key of keys) {
        const previous = exact.lookup(at.map, key);
        if (previous === undefined) continue;
        undo.push({ map: at.map, key, previous });
        present.push(key);
        if (at.map === this.svc) this.portsInUse.remove(key, this.svc);
      }
      if (batch && present.length >= BATCH_MIN) at.map.deleteBatch(present);
      else for (const key of present) at.map.delete(key);
      stats.deleted += present.length;
    };
    const of = (s: ServiceChanges, map: LbMapHandle): Step => ({ map, serviceId: s.id, service: s.name });

    const ports = this.ports;
    const writePorts = (bitmap: Buffer): void => {
      if (!ports || bitmap.equals(ports.lookup(PORTS_KEY) ?? Buffer.alloc(0))) return;
      upsert({ map: ports, what: 'the port bitmap' }, [{ key: PORTS_KEY, value: bitmap }], false);
    };
    try {
      if (ports) writePorts(portBitmap(changes.services.flatMap((s) => s.frontends.upserts.map((e) => e.key)), ports.lookup(PORTS_KEY)));
      upsert({ map: this.be, what: 'new backends' }, changes.backends.upserts, true);
      const removed = changes.services.filter((s) => s.kind === 'remove');
      const kept = changes.services.filter((s) => s.kind !== 'remove');
      for (const s of [...removed, ...kept]) remove(of(s, this.svc), s.frontends.deletes, false);
      // The datapath caches service and slot lookups per generation: frontends just removed must
      // stop answering now, before their slots and tables go.
      if (changes.services.some((s) => s.frontends.deletes.length > 0)) this.nextGeneration();
      for (const s of removed) this.removeRest(s, (map, keys, batch) => remove(of(s, map), keys, batch));
      // New services are written together, a map at a time (one batch each; one RCU wait for all
      // their Maglev tables): none is reachable before its frontends, which go last.
      const added = kept.filter((s) => s.kind === 'add');
      if (added.length > 0) {
        const group = (map: LbMapHandle): Step => (added.length === 1 && added[0] ? of(added[0], map) : { map, what: `${added.length} new services` });
        upsert(group(this.slot), added.flatMap((s) => s.slots.upserts), true);
        upsert(group(this.maglev), added.flatMap((s) => s.maglev.upserts), true);
        if (this.maglevDigests) upsert(group(this.maglevDigests), digestEntries(added.flatMap((s) => s.maglev.upserts)), true);
        upsert(group(this.srcrng), added.flatMap((s) => s.sourceRanges.upserts), false);
        upsert(group(this.svc), added.flatMap((s) => s.frontends.upserts), true);
      }
      for (const s of kept) {
        if (s.kind === 'add') continue;
        upsert(of(s, this.slot), s.slots.upserts, true);
        upsert(of(s, this.maglev), s.maglev.upserts, false);
        if (this.maglevDigests) upsert(of(s, this.maglevDigests), digestEntries(s.maglev.upserts), false);
        upsert(of(s, this.srcrng), s.sourceRanges.upserts, false);
        upsert(of(s, this.svc), s.frontends.upserts, false);
        this.nextGeneration(); // cached answers of this service's old entries and slots are void now
        this.removeRest(s, (map, keys, batch) => remove(of(s, map), keys, batch));
      }
      remove({ map: this.be, what: 'unused backends' }, changes.backends.deletes, true);
      if (changes.services.some((s) => s.frontends.deletes.length > 0)) writePorts(this.portsInUse.bitmap(this.svc));
    } catch (error) {
      const rollbackErrors = rollback(undo);
      this.portsInUse.forget();
      this.nextGeneration();
      throw writeError(error, step, undo.length, rollbackErrors);
    }
    this.nextGeneration();

    const purged = options.purge === false ? { conntrack: 0, affinity: 0, errors: [] } : this.purge(changes.purge);
    stats.purgedConntrack = purged.conntrack;
    stats.purgedAffinity = purged.affinity;
    stats.purgeErrors = purged.errors;
    stats.durationMs = performance.now() - started;
    return stats;
  }

  /** Void the datapath's cached service lookups (xlb_lb_gen). Best effort: the agent is its only writer. */
  private nextGeneration(): void {
    if (!this.generation) return;
    const current = this.generation.lookup(GENERATION_KEY)?.readUInt32LE(0) ?? 0;
    this.generation.update(GENERATION_KEY, encodeU32((current + 1) >>> 0));
  }

  private removeRest(s: ServiceChanges, remove: (map: LbMapHandle, keys: Buffer[], batch: boolean) => void): void {
    remove(this.slot, s.slots.deletes, true);
    // The digest goes first: one left without its table would vouch for a table that is not there.
    if (this.maglevDigests) remove(this.maglevDigests, s.maglev.deletes, false);
    remove(this.maglev, s.maglev.deletes, false);
    remove(this.srcrng, s.sourceRanges.deletes, false);
  }

  /** Deletes the conntrack and affinity entries of removed (service, backend) pairs and backends. */
  purge(purge: LbChanges['purge']): { conntrack: number; affinity: number; errors: string[] } {
    const result = { conntrack: 0, affinity: 0, errors: [] as string[] };
    if (purge.pairs.length === 0 && purge.backendIds.length === 0) return result;
    const pairs = new Set(purge.pairs.map((p) => `${p.serviceId}/${p.backendId}`));
    const gone = new Set(purge.backendIds);
    const matches = (serviceId: number, backendId: number): boolean => gone.has(backendId) || pairs.has(`${serviceId}/${backendId}`);

    if (this.conntrack) {
      try {
        result.conntrack = this.conntrack.purge(purge);
      } catch (error) {
        result.errors.push(`purging conntrack: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (this.affinity) {
      const serviceAt = LbAffinityKey.offsetOf('serviceId');
      const backendAt = LbAffinity.offsetOf('backendId');
      result.affinity = purgeMatching(this.affinity, result.errors, (key, value) =>
        matches(key.readUInt32LE(serviceAt), value.readUInt32LE(backendAt)),
      );
    }
    return result;
  }
}

/** xlb_lb_mgdig entries for these Maglev table entries: the 20 bytes of their input digests. */
function digestEntries(tables: MapEntry[]): MapEntry[] {
  return tables.flatMap((e) => (e.digest?.startsWith(INPUT_DIGEST) ? [{ key: e.key, value: Buffer.from(e.digest.slice(INPUT_DIGEST.length), 'hex') }] : []));
}

const PORTS_KEY = Buffer.alloc(4);
const GENERATION_KEY = Buffer.alloc(4);

/**
 * How many frontends use each port, so a removed frontend clears its port from the bitmap without a
 * walk over every frontend (thousands of syscalls at cluster scale). Counted from the map once, then
 * kept by the writes; forgotten (counted again) after a rollback.
 */
class PortUse {
  private counts: Map<number, number> | undefined;

  private of(svc: LbMapHandle): Map<number, number> {
    if (!this.counts) {
      this.counts = new Map();
      for (const key of svc.keys()) this.bump(LbServiceKey.decode(key).port, 1);
    }
    return this.counts;
  }

  private bump(port: number, by: number): void {
    const counts = this.counts;
    if (!counts) return;
    const next = (counts.get(port) ?? 0) + by;
    if (next > 0) counts.set(port, next);
    else counts.delete(port);
  }

  /** A frontend key about to be written that the map does not hold yet. */
  add(key: Buffer, svc: LbMapHandle): void {
    this.of(svc);
    this.bump(LbServiceKey.decode(key).port, 1);
  }

  /** A frontend key about to be deleted. */
  remove(key: Buffer, svc: LbMapHandle): void {
    this.of(svc);
    this.bump(LbServiceKey.decode(key).port, -1);
  }

  forget(): void {
    this.counts = undefined;
  }

  bitmap(svc: LbMapHandle): Buffer {
    const out = Buffer.alloc(LbPortBitmap.size);
    for (const port of this.of(svc).keys()) out[port >> 3] = (out[port >> 3] ?? 0) | (1 << (port & 7));
    return out;
  }
}

/** The port bitmap (struct lb_port_bitmap) with the ports of these frontend keys set, over `base`. */
function portBitmap(frontendKeys: Buffer[], base?: Buffer): Buffer {
  const out = base ? Buffer.from(base) : Buffer.alloc(LbPortBitmap.size);
  for (const key of frontendKeys) {
    const port = LbServiceKey.decode(key).port;
    out[port >> 3] = (out[port >> 3] ?? 0) | (1 << (port & 7));
  }
  return out;
}

/**
 * The value stored under exactly this key. A lookup in an LPM trie returns the longest prefix that
 * matches, which may be another (shorter) entry: for tries, the keys present are listed once per apply
 * (source ranges are few) and only an exact key counts.
 */
class ExactLookup {
  private readonly trieKeys = new Map<LbMapHandle, Set<string>>();

  lookup(map: LbMapHandle, key: Buffer): Buffer | undefined {
    if (map.type !== MapType.LpmTrie) return map.lookup(key);
    let keys = this.trieKeys.get(map);
    if (!keys) {
      keys = new Set([...map.keys()].map((k) => k.toString('hex')));
      this.trieKeys.set(map, keys);
    }
    return keys.has(key.toString('hex')) ? map.lookup(key) : undefined;
  }
}

function checkSizes(map: LbMapHandle, name: string, keySize: number | undefined, valueSize: number | undefined): void {
  if ((keySize !== undefined && map.keySize !== keySize) || (valueSize !== undefined && map.valueSize !== valueSize)) {
    throw new Error(
      `LbMapWriter: map ${name} has key/value ${map.keySize}/${map.valueSize} bytes, ` +
        `the layouts say ${keySize ?? 'any'}/${valueSize ?? 'any'}`,
    );
  }
}


/** Replays the undo log backwards; returns what could not be restored. */
function rollback(undo: UndoRecord[]): string[] {
  const errors: string[] = [];
  for (let i = undo.length - 1; i >= 0; i--) {
    const record = undo[i];
    if (!record) continue;
    try {
      if (record.previous === undefined) record.map.delete(record.key);
      else record.map.update(record.key, record.previous);
    } catch (error) {
      errors.push(`${record.map.name} key ${record.key.toString('hex')}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return errors;
}

function writeError(error: unknown, step: Step, writes: number, rollbackErrors: string[]): LbWriteError {
  const errno = error instanceof BpfError ? error.errno : undefined;
  const subject =
    step.serviceId !== undefined ? `service ${step.service ?? '(unnamed)'} (id ${step.serviceId})` : (step.what ?? 'LB maps');
  const cause = error instanceof Error ? error.message : String(error);
  const outcome =
    rollbackErrors.length === 0
      ? `rolled back ${writes} change(s): the maps hold their previous contents`
      : `ROLLBACK INCOMPLETE (${rollbackErrors.length} of ${writes} entries not restored; resync needed): ${rollbackErrors.join('; ')}`;
  return new LbWriteError(
    `writing ${subject} to map ${step.map.name} failed${errno !== undefined ? ` (errno ${errno})` : ''}: ${cause}; ${outcome}`,
    step.serviceId,
    step.service,
    step.map.name,
    errno,
    rollbackErrors,
    { cause: error },
  );
}

/** Deletes every entry `match` selects (any CPU's value, for per-CPU maps); returns how many. */
function purgeMatching(map: LbMapHandle, errors: string[], match: (key: Buffer, value: Buffer) => boolean): number {
  const stride = Math.ceil(map.valueSize / 8) * 8;
  const doomed: Buffer[] = [];
  try {
    for (const [key, value] of map.entries()) {
      if (!map.perCpu) {
        if (match(key, value)) doomed.push(key);
        continue;
      }
      for (let at = 0; at + map.valueSize <= value.length; at += stride) {
        if (match(key, value.subarray(at, at + map.valueSize))) {
          doomed.push(key);
          break;
        }
      }
    }
  } catch (error) {
    errors.push(`scanning ${map.name}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (doomed.length === 0) return 0;
  try {
    map.deleteBatch(doomed);
    return doomed.length;
  } catch {
    // An entry may have expired or been evicted since the scan (ENOENT): fall back to one by one.
  }
  let deleted = 0;
  for (const key of doomed) {
    try {
      if (map.delete(key)) deleted++;
    } catch (error) {
      errors.push(`${map.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return deleted;
}
