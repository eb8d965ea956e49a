/**
 * The minimal set of map writes that turns the current LB maps into the desired ones, grouped by
 * service so the writer can order them (lb/datapath/lb-writer.ts), plus the conntrack/affinity purge
 * that removed backends need. Pure.
 *
 * Purge rule: a (service id, backend id) pair is purged when the service stops listing the backend
 * (removed from its backends, or the service removed). A backend that is still listed but no longer
 * usable (terminating, maintenance, weight 0) keeps its established flows: "no new flows" is what
 * those states mean, and graceful termination depends on it. When a backend's xlb_lb_be entry goes
 * away, every entry pointing at it is purged whatever its service (this also covers state read back
 * after a restart, where the maps do not tell which unusable backends a service listed).
 */
import { decodeU32 } from '../layouts.js';
import { tableBytesDigest, type EntryMap, type LbState, type MapEntry, type ServiceState } from './desired.js';

export interface MapChanges {
  upserts: MapEntry[];
  /** Keys to delete. */
  deletes: Buffer[];
}

export interface ServiceChanges {
  id: number;
  /** The desired service's name (the current one's for a removal, when known). */
  name: string | undefined;
  kind: 'add' | 'update' | 'remove';
  frontends: MapChanges;
  slots: MapChanges;
  maglev: MapChanges;
  sourceRanges: MapChanges;
}

export interface PurgePair {
  serviceId: number;
  backendId: number;
}

export interface LbChanges {
  /** xlb_lb_be: upserts are written before any service, deletes after every service. */
  backends: MapChanges;
  /** Services with at least one change, by id. */
  services: ServiceChanges[];
  purge: {
    pairs: PurgePair[];
    /** Backends whose xlb_lb_be entry is deleted: every conntrack/affinity entry naming them goes. */
    backendIds: number[];
  };
}

const emptyChanges = (): MapChanges => ({ upserts: [], deletes: [] });

/**
 * Whether the map already holds `desired`. Maglev tables are compared by digest: a desired table's
 * digest names its inputs; one read back from the maps (a restart) has the digest of its bytes.
 */
export function sameEntry(now: MapEntry, desired: MapEntry): boolean {
  if (now.digest === undefined || desired.digest === undefined) return now.value.equals(desired.value);
  if (now.digest === desired.digest) return true;
  return now.digest.startsWith('sha1:') && desired.value.length > 0 && tableBytesDigest(desired.value) === now.digest;
}

function diffEntries(current: EntryMap | undefined, desired: EntryMap | undefined): MapChanges {
  const changes = emptyChanges();
  for (const [k, entry] of desired ?? []) {
    const now = current?.get(k);
    if (!now || !sameEntry(now, entry)) changes.upserts.push(entry);
  }
  for (const [k, entry] of current ?? []) if (!desired?.has(k)) changes.deletes.push(entry.key);
  return changes;
}

function single(entry: MapEntry | undefined): EntryMap | undefined {
  return entry ? new Map([[entry.key.toString('hex'), entry]]) : undefined;
}

export function countChanges(changes: MapChanges): number {
  return changes.upserts.length + changes.deletes.length;
}

function serviceChanges(id: number, current: ServiceState | undefined, desired: ServiceState | undefined): ServiceChanges {
  return {
    id,
    name: desired?.name ?? current?.name,
    kind: !current ? 'add' : !desired ? 'remove' : 'update',
    frontends: diffEntries(current?.frontends, desired?.frontends),
    slots: diffEntries(current?.slots, desired?.slots),
    maglev: diffEntries(single(current?.maglev), single(desired?.maglev)),
    sourceRanges: diffEntries(current?.sourceRanges, desired?.sourceRanges),
  };
}

export function diffLbState(current: LbState, desired: LbState): LbChanges {
  const ids = [...new Set([...current.services.keys(), ...desired.services.keys()])].sort((a, b) => a - b);
  const services: ServiceChanges[] = [];
  const pairs: PurgePair[] = [];
  for (const id of ids) {
    const now = current.services.get(id);
    const want = desired.services.get(id);
    const changes = serviceChanges(id, now, want);
    const total =
      countChanges(changes.frontends) + countChanges(changes.slots) + countChanges(changes.maglev) + countChanges(changes.sourceRanges);
    if (total > 0) services.push(changes);
    for (const backendId of [...(now?.members ?? [])].sort((a, b) => a - b)) {
      if (!want?.members.has(backendId)) pairs.push({ serviceId: id, backendId });
    }
  }
  const backends = diffEntries(current.backends, desired.backends);
  return {
    backends,
    services,
    purge: { pairs, backendIds: backends.deletes.map((key) => decodeU32(key)) },
  };
}

export function isEmptyChange(changes: LbChanges): boolean {
  return (
    countChanges(changes.backends) === 0 &&
    changes.services.length === 0 &&
    changes.purge.pairs.length === 0 &&
    changes.purge.backendIds.length === 0
  );
}
