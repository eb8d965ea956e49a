/**
 * The incremental reconciler: changed services → the map writes for those services only, as
 * kube-proxy's change tracker feeds its proxier. It remembers what it last applied per service (its
 * entries, frontends and backends), so a change costs the changed services' entries — one endpoint of
 * one service rewrites that service's slots and Maglev table and nothing else — and never a walk over
 * every service. No kernel here: plan() returns LbChanges for the writer and a commit/abort pair.
 *
 * Ids (lb/lbmap/ids.ts) are taken and given back per service, journaled, so a plan the datapath
 * refused is undone exactly. At start-up the (pinned) maps' contents are `pinned`: their ids are
 * reserved, a service whose frontend the maps already hold takes that service's id, and a backend the
 * maps hold takes that backend's id, so the first sync after a restart rewrites nothing and established
 * flows keep their backends. What no service claims is removed by prune(), once every source of
 * services has delivered its first full set.
 */
import type { Service } from '../service.js';
import { LbServiceKey, decodeU32, encodeU32, LbBackend } from '../layouts.js';
import { MaglevTableCache } from '../maglev/cache.js';
import {
  PROTOCOL_NUMBERS,
  backendKey,
  backendValue,
  frontendAddresses,
  hex,
  serviceBackendKeys,
  serviceEntries,
  type EntryMap,
  type FrontendConflict,
  type LbNodeConfig,
  type LbState,
  type ServiceState,
} from './desired.js';
import { diffLbState, type LbChanges } from './diff.js';
import type { IdAllocator } from './ids.js';

/** Two services claimed one frontend; nothing of the plan was kept. */
export class FrontendConflictsError extends Error {
  override name = 'FrontendConflictsError';

  constructor(readonly conflicts: FrontendConflict[]) {
    super(conflicts.map((c) => `service ${c.service}: ${c.frontend} is already the frontend of service ${c.heldBy}`).join('; '));
  }
}

export interface ReconcilePlan {
  changes: LbChanges;
  /** The writes were applied: remember them. */
  commit(): void;
  /** The writes were refused (and rolled back): forget the plan, ids included. */
  abort(): void;
}

/** What the reconciler remembers of one applied service. */
interface AppliedService {
  /** Entries as written; the Maglev table's bytes are dropped (its digest stays). */
  state: ServiceState;
  frontends: string[];
  backendKeys: string[];
}

const EMPTY = Buffer.alloc(0);
const familyOf = (address: string): number => (address.includes(':') ? 10 : 2);

/** The maps' contents at start-up, indexed for claiming. */
class PinnedState {
  readonly services: Map<number, ServiceState>;
  readonly backends: EntryMap;
  /** xlb_lb_svc key (hex) → service id */
  private readonly frontendIds = new Map<string, number>();
  /** "address|port" → backend ids with that address and port, and the protocols their services use */
  private readonly backendIds = new Map<string, { id: number; protocols: Set<number> }[]>();

  constructor(state: LbState) {
    this.services = new Map(state.services);
    this.backends = new Map(state.backends);
    const protocolOf = new Map<number, number>();
    for (const service of state.services.values()) {
      for (const { key } of service.frontends.values()) {
        this.frontendIds.set(hex(key), service.id);
        protocolOf.set(service.id, LbServiceKey.decode(key).proto);
      }
    }
    const protocols = new Map<number, Set<number>>();
    for (const service of state.services.values()) {
      const proto = protocolOf.get(service.id);
      if (proto === undefined) continue;
      for (const backendId of service.members) protocols.set(backendId, (protocols.get(backendId) ?? new Set()).add(proto));
    }
    for (const { key, value } of state.backends.values()) {
      const id = decodeU32(key);
      const b = LbBackend.decode(value);
      const at = `${b.addr}|${b.port}`;
      this.backendIds.set(at, [...(this.backendIds.get(at) ?? []), { id, protocols: protocols.get(id) ?? new Set() }]);
    }
  }

  serviceIdAt(frontendKey: Buffer): number | undefined {
    return this.frontendIds.get(hex(frontendKey));
  }

  /** Pinned backend ids for this address and port, those used with `proto` first. */
  backendCandidates(address: string, port: number, proto: number): number[] {
    const list = this.backendIds.get(`${address}|${port}`) ?? [];
    return [...list.filter((c) => c.protocols.has(proto)), ...list.filter((c) => c.protocols.size === 0)].map((c) => c.id);
  }
}

export class LbReconciler {
  private readonly applied = new Map<string, AppliedService>();
  /** Service id → name of every applied service: events name their service without a walk over all. */
  private readonly nameById = new Map<number, string>();
  /** Frontend text → the service holding it. */
  private readonly frontendOwner = new Map<string, string>();
  /** xlb_lb_be entries of the backends some service lists, by key hex. */
  private readonly backendEntries: EntryMap = new Map();
  private readonly pinned: PinnedState;

  constructor(
    private readonly node: LbNodeConfig,
    private readonly ids: IdAllocator,
    private readonly cache: MaglevTableCache = new MaglevTableCache(),
    pinned: LbState = { services: new Map(), backends: new Map() },
  ) {
    this.pinned = new PinnedState(pinned);
    ids.reserve(pinned.services.keys(), [...pinned.backends.values()].map((e) => decodeU32(e.key)));
  }

  get size(): number {
    return this.applied.size;
  }

  /** The name of the service with this numeric id (events, monitor). */
  nameOf(serviceId: number): string | undefined {
    return this.nameById.get(serviceId);
  }

  /** Whether the maps still hold entries found at start-up that no service claimed. */
  get hasStale(): boolean {
    return this.pinned.services.size > 0 || this.pinned.backends.size > 0;
  }

  /**
   * The writes that make the changed services (name → service, undefined: removed) what they say.
   * Throws FrontendConflictsError or TableFullError before anything is decided (ids are back).
   */
  plan(changes: ReadonlyMap<string, Service | undefined>): ReconcilePlan {
    this.ids.begin();
    try {
      return this.planChanges(changes);
    } catch (error) {
      this.ids.undo();
      throw error;
    }
  }

  private planChanges(changes: ReadonlyMap<string, Service | undefined>): ReconcilePlan {
    // Services already served first: a frontend two services claim stays with the one holding it.
    const names = [...changes.keys()].sort((a, b) => Number(!this.applied.has(a)) - Number(!this.applied.has(b)) || (a < b ? -1 : a > b ? 1 : 0));
    const current: LbState = { services: new Map(), backends: new Map() };
    const desired: LbState = { services: new Map(), backends: new Map() };
    const next = new Map<string, AppliedService | undefined>();
    const claimedPinned: number[] = [];
    const claimedPinnedBackends: string[] = [];

    // Frontends the changed services hold now are free for the plan to hand out.
    const freed = new Set<string>();
    for (const name of names) for (const text of this.applied.get(name)?.frontends ?? []) freed.add(text);
    const claimedNow = new Map<string, string>();
    const conflicts: FrontendConflict[] = [];

    // References first, releases after: a backend moving between two changed services keeps its id.
    const released: string[] = [];
    for (const name of names) {
      const before = this.applied.get(name);
      if (before) current.services.set(before.state.id, before.state);
      const service = changes.get(name);
      if (service === undefined) {
        if (before) {
          this.ids.releaseService(name);
          released.push(...before.backendKeys);
          next.set(name, undefined);
        }
        continue;
      }
      const proto = PROTOCOL_NUMBERS[service.frontend.protocol];
      let id = before?.state.id;
      if (id === undefined) {
        const pinnedId = this.claimPinnedService(name, service);
        if (pinnedId !== undefined) {
          claimedPinned.push(pinnedId);
          const state = this.pinned.services.get(pinnedId);
          if (state) current.services.set(pinnedId, state);
          id = pinnedId;
        } else {
          id = this.ids.acquireService(name);
        }
      }
      const keys = serviceBackendKeys(service);
      const old = new Set(before?.backendKeys ?? []);
      const seen = new Set<string>();
      for (const b of service.backends) {
        const key = backendKey(b.address, b.port, service.frontend.protocol);
        if (seen.has(key)) continue;
        seen.add(key);
        if (old.has(key) || this.ids.backendId(key) !== undefined) {
          if (!old.has(key)) this.ids.refBackend(key);
          continue;
        }
        // First reference: the pinned entry with this address and port, if the maps hold one.
        for (const candidate of this.pinned.backendCandidates(b.address, b.port, proto)) {
          if (!this.ids.claimBackend(key, candidate)) continue;
          const entry = this.pinned.backends.get(hex(encodeU32(candidate)));
          if (entry) current.backends.set(hex(entry.key), entry);
          claimedPinnedBackends.push(hex(encodeU32(candidate)));
          break;
        }
        const backendId = this.ids.refBackend(key);
        const value = backendValue(b.address, b.port);
        desired.backends.set(hex(encodeU32(backendId)), { key: encodeU32(backendId), value });
      }
      const kept = new Set(keys);
      for (const key of old) if (!kept.has(key)) released.push(key);

      const built = serviceEntries(name, service, id, (key) => this.backendIdOf(key), this.node, this.cache);
      const frontends: string[] = [];
      for (const [text, entry] of built.frontends) {
        const holder = claimedNow.get(text) ?? (freed.has(text) ? undefined : this.frontendOwner.get(text));
        if (holder !== undefined && holder !== name) {
          conflicts.push({ service: name, frontend: text, heldBy: holder });
          continue;
        }
        claimedNow.set(text, name);
        frontends.push(text);
        built.state.frontends.set(hex(entry.key), entry);
      }
      desired.services.set(id, built.state);
      next.set(name, { state: built.state, frontends, backendKeys: keys });
    }
    if (conflicts.length > 0) throw new FrontendConflictsError(conflicts);
    for (const key of released) {
      const backendId = this.ids.unrefBackend(key);
      if (backendId === undefined) continue;
      const k = hex(encodeU32(backendId));
      const entry = this.backendEntries.get(k) ?? desired.backends.get(k);
      if (entry) current.backends.set(k, entry);
      desired.backends.delete(k);
    }

    const changesToWrite = diffLbState(current, desired);
    return {
      changes: changesToWrite,
      commit: () => {
        for (const id of claimedPinned) this.pinned.services.delete(id);
        for (const k of claimedPinnedBackends) {
          const entry = this.pinned.backends.get(k);
          this.pinned.backends.delete(k);
          if (entry) this.backendEntries.set(k, entry);
        }
        for (const [name, applied] of next) this.remember(name, applied);
        for (const entry of changesToWrite.backends.upserts) this.backendEntries.set(hex(entry.key), entry);
        for (const key of changesToWrite.backends.deletes) this.backendEntries.delete(hex(key));
        this.ids.begin();
      },
      abort: () => this.ids.undo(),
    };
  }

  /** The writes that remove what the maps held at start-up and no service claimed. */
  prune(): ReconcilePlan {
    const current: LbState = { services: new Map(this.pinned.services), backends: new Map(this.pinned.backends) };
    const changes = diffLbState(current, { services: new Map(), backends: new Map() });
    return {
      changes,
      commit: () => {
        this.pinned.services.clear();
        this.pinned.backends.clear();
        this.ids.releaseReserved();
      },
      abort: () => undefined,
    };
  }

  private backendIdOf(key: string): number {
    const id = this.ids.backendId(key);
    if (id === undefined) throw new Error(`backend ${key} has no id`);
    return id;
  }

  /** The pinned service id at one of this service's frontends, claimed for it; undefined when none. */
  private claimPinnedService(name: string, service: Service): number | undefined {
    const { port, protocol } = service.frontend;
    const proto = PROTOCOL_NUMBERS[protocol];
    for (const address of frontendAddresses(service, this.node.addresses)) {
      const key = LbServiceKey.encode({ addr: address, port, proto, family: familyOf(address) });
      const id = this.pinned.serviceIdAt(key);
      if (id !== undefined && this.pinned.services.has(id) && this.ids.claimService(name, id)) return id;
    }
    return undefined;
  }

  private remember(name: string, applied: AppliedService | undefined): void {
    const before = this.applied.get(name);
    for (const text of before?.frontends ?? []) if (this.frontendOwner.get(text) === name) this.frontendOwner.delete(text);
    if (before) this.nameById.delete(before.state.id);
    if (!applied) {
      this.applied.delete(name);
      return;
    }
    this.nameById.set(applied.state.id, name);
    const { maglev } = applied.state;
    // The table's bytes are the writer's; what identifies it is enough from now on.
    if (maglev) applied.state.maglev = { key: maglev.key, value: EMPTY, digest: maglev.digest ?? '' };
    this.applied.set(name, applied);
    for (const text of applied.frontends) this.frontendOwner.set(text, name);
  }
}
