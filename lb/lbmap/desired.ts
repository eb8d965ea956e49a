/**
 * Services → the exact contents of the load-balancing maps (xlb_lb_svc, xlb_lb_be, xlb_lb_slot,
 * xlb_lb_maglev, xlb_lb_srcrng), as encoded keys and values. Pure apart from the IdAllocator it is
 * handed (ids must outlive one snapshot); the same services, node and ids give byte-identical maps.
 *
 * Semantics (kube-proxy's, as Cilium implements them):
 * - Maglev is for traffic from outside the cluster (north-south), where several LB nodes must pick the
 *   same backend for a flow: a ClusterIP (east-west, reached from this node's own pods and sockets) has
 *   no table and picks at random, as Cilium does — its connections are pinned by conntrack or the
 *   socket from their first packet. At cluster scale that is most services, and 32 KiB each.
 * - LoadBalancer / ExternalIP / ClusterIP: one frontend, the service's address (a ClusterIP's entries
 *   are a LoadBalancer's; the east-west datapath reads them too). NodePort: one frontend per node
 *   address of the service's family, all on frontend.port (kube-proxy listens on every node IP);
 *   frontend.address only names the family ("0.0.0.0" / "::").
 * - Usable backends (the ones that get new flows): state active with weight > 0. When no backend is
 *   usable that way, the terminating ones with weight > 0 are used instead (kube-proxy's
 *   terminating-endpoint fallback, KEP-1669; Cilium does the same), so a service that is being
 *   rolled keeps answering. Maintenance backends never get new flows. Traffic policy Local
 *   (externalTrafficPolicy, or internalTrafficPolicy for a ClusterIP; kube-proxy's and Cilium's
 *   meaning): only backends on this node (`node` = the node's name) get new flows; without one the
 *   datapath drops the service's new flows (no ICMP reject), as kube-proxy does.
 * - Slots 0..n−1 hold the usable backends sorted by their Maglev key string (Cilium's
 *   "[addr:port/PROTO,State:active]"), so one set of backends always gives the same slots, and the
 *   Maglev table (whose entries are slot numbers) is the one Cilium computes for those backends.
 * - Every backend a service lists, usable or not, has an xlb_lb_be entry: flows already tracked to a
 *   terminating or maintenance backend keep going there until they end. Conntrack and affinity entries
 *   are purged only when a backend stops being listed (see diff.ts).
 * - Two services claiming one frontend (address, port, protocol): the service whose name sorts first
 *   keeps it; the other is reported in `conflicts` and gets no entry for that frontend.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { canonicalIpAddress, maglevBackendKey } from '../maglev/backend-key.js';
import { MaglevTableCache } from '../maglev/cache.js';
import type { MaglevSeed } from '../maglev/seed.js';
import type { MaglevTable } from '../maglev/table.js';
import {
  AF_INET,
  AF_INET6,
  ForwardingMode,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LbBackend,
  LbService,
  LbServiceKey,
  LbSlot,
  LbSlotKey,
  LbSourceRangeKey,
  ServiceFlag,
  decodeU32,
  encodeU32,
} from '../layouts.js';
import { trafficPolicyOf, type Backend, type L4Protocol, type Mode, type Service } from '../service.js';
import { IdAllocator } from './ids.js';
import { endpointText } from '../codec.js';

/** One map entry as the kernel stores it. */
export interface MapEntry {
  key: Buffer;
  value: Buffer;
  /**
   * Maglev tables only: what identifies the table without its 2·M bytes, so applied states need not
   * keep 32 KiB per service: "in:<sha1 of its inputs>" (computed or kept in xlb_lb_mgdig), or for
   * pins written without one "sha1:<sha1 of its bytes>". An entry with a digest may have an empty value.
   */
  digest?: string;
  /** Maglev tables only: what the table is built from (a caller may build them ahead, in parallel). */
  maglev?: MaglevInput;
}

export interface MaglevInput {
  backends: readonly { key: string; weight: number }[];
  size: number;
  seed: MaglevSeed;
}

/** Entries keyed by their key's hex, so equal keys meet in a Map. */
export type EntryMap = Map<string, MapEntry>;

/** Everything that belongs to one service id. */
export interface ServiceState {
  id: number;
  /** The service's name; undefined for state read back from the maps (names are not stored). */
  name: string | undefined;
  /** xlb_lb_svc: one entry per frontend. */
  frontends: EntryMap;
  /** xlb_lb_slot (values: the backend id first, then a copy of the backend) */
  slots: EntryMap;
  /** xlb_lb_maglev: the table, when the service uses Maglev and has a usable backend. */
  maglev: MapEntry | undefined;
  /** xlb_lb_srcrng */
  sourceRanges: EntryMap;
  /** Ids of every backend the service lists (usable or not): conntrack purge is per (service, backend). */
  members: Set<number>;
}

export interface LbState {
  services: Map<number, ServiceState>;
  /** xlb_lb_be */
  backends: EntryMap;
}

export interface FrontendConflict {
  service: string;
  frontend: string;
  heldBy: string;
}

export interface DesiredLbState extends LbState {
  conflicts: FrontendConflict[];
}

export interface LbNodeConfig {
  /** This node's addresses: NodePort services listen on each of their family. */
  addresses: readonly string[];
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  /** The agent's --mode, for services that do not name one. */
  defaultMode: Mode;
  /** This node's name: backends with this `node` are local (traffic policy Local). */
  nodeName?: string;
}

export interface DesiredOptions {
  /** Keep one across syncs: unchanged services then reuse their table (and its encoding). */
  maglevCache?: MaglevTableCache;
}

export const PROTOCOL_NUMBERS: Record<L4Protocol, number> = { TCP: IPPROTO_TCP, UDP: IPPROTO_UDP, SCTP: IPPROTO_SCTP };

export const hex = (key: Buffer): string => key.toString('hex');

/** The id key of a backend: "198.18.1.2:8080/TCP", "[2001:db8::2]:53/UDP". */
export function backendKey(address: string, port: number, protocol: L4Protocol): string {
  const ip = canonicalIpAddress(address);
  return endpointText(ip, port, protocol);
}

/**
 * The backends that get new flows on node `nodeName`, in slot order (see the file comment). With
 * traffic policy Local only the node's own backends are candidates.
 */
export function usableBackends(service: Service, nodeName?: string): Backend[] {
  const local = trafficPolicyOf(service) === 'Local';
  const eligible = (b: Backend): boolean => b.weight > 0 && (!local || (nodeName !== undefined && b.node === nodeName));
  let usable = service.backends.filter((b) => b.state === 'active' && eligible(b));
  if (usable.length === 0) usable = service.backends.filter((b) => b.state === 'terminating' && eligible(b));
  const keyed = usable.map((b) => ({ b, key: maglevBackendKey({ address: b.address, port: b.port, protocol: service.frontend.protocol }) }));
  keyed.sort((x, y) => Buffer.compare(Buffer.from(x.key), Buffer.from(y.key)));
  return keyed.map(({ b }) => b);
}

const familyOf = (address: string): number => (address.includes(':') ? AF_INET6 : AF_INET);

/** The frontend addresses of a service on this node. */
export function frontendAddresses(service: Service, nodeAddresses: readonly string[]): string[] {
  if (service.type !== 'NodePort') return [service.frontend.address];
  const family = familyOf(service.frontend.address);
  const own = nodeAddresses.map((a) => canonicalIpAddress(a)).filter((a) => familyOf(a) === family);
  return [...new Set(own)].sort();
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** The Maglev map value: M little-endian u16 slot numbers. Memoised per (shared, read-only) table. */
const encodedTables = new WeakMap<MaglevTable, Buffer>();
export function encodeMaglevTable(table: MaglevTable): Buffer {
  const known = encodedTables.get(table);
  if (known) return known;
  let out: Buffer;
  if (table instanceof Uint16Array && LITTLE_ENDIAN) {
    // The table's own memory already is the map's value (tables are read-only once built).
    out = Buffer.from(table.buffer, table.byteOffset, table.byteLength);
  } else {
    out = Buffer.alloc(table.length * 2);
    for (let i = 0; i < table.length; i++) out.writeUInt16LE(table[i] ?? 0, i * 2);
  }
  encodedTables.set(table, out);
  return out;
}

export function newServiceState(id: number, name: string | undefined): ServiceState {
  return { id, name, frontends: new Map(), slots: new Map(), maglev: undefined, sourceRanges: new Map(), members: new Set() };
}

export function put(map: EntryMap, key: Buffer, value: Buffer): void {
  map.set(hex(key), { key, value });
}

/** A service's entries, and the frontends it claims (text → map key), before conflicts are settled. */
export interface ServiceEntries {
  state: ServiceState;
  /** Frontend text ("198.18.0.10:80/TCP") → its xlb_lb_svc entry. */
  frontends: Map<string, MapEntry>;
  /** Backend id keys (backendKey()) of every backend the service lists. */
  backendKeys: string[];
}

/** The backend keys a service lists (each once). */
export function serviceBackendKeys(service: Service): string[] {
  return [...new Set(service.backends.map((b) => backendKey(b.address, b.port, service.frontend.protocol)))];
}

/**
 * Every entry of one service, given its id and its backends' ids. Pure: the same service, id, backend
 * ids and node give byte-identical entries. Frontends are returned apart from the state: the caller
 * decides which it may hold (two services cannot share one).
 */
export function serviceEntries(
  name: string,
  service: Service,
  id: number,
  backendIdOf: (key: string) => number,
  node: LbNodeConfig,
  cache: MaglevTableCache,
): ServiceEntries {
  const entries = newServiceState(id, name);
  const { protocol, port } = service.frontend;
  const proto = PROTOCOL_NUMBERS[protocol];
  const backendKeys = serviceBackendKeys(service);
  for (const key of backendKeys) entries.members.add(backendIdOf(key));

  const usable = usableBackends(service, node.nodeName);
  usable.forEach((b, slot) => {
    const backendId = backendIdOf(backendKey(b.address, b.port, protocol));
    const backend = { addr: b.address, port: b.port, family: familyOf(b.address) };
    put(entries.slots, LbSlotKey.encode({ serviceId: id, slot }), LbSlot.encode({ backendId, backend }));
  });

  const maglev = service.algorithm === 'maglev' && service.type !== 'ClusterIP';
  if (maglev && usable.length > 0) {
    const backends = usable.map((b) => ({ key: maglevBackendKey({ address: b.address, port: b.port, protocol }), weight: b.weight }));
    // Built only when someone reads the bytes: a diff compares digests, and a table the maps already
    // hold (an unchanged service, a restart) is never computed.
    let table: Buffer | undefined;
    entries.maglev = {
      key: encodeU32(id),
      digest: maglevInputDigest(backends, node),
      maglev: { backends, size: node.maglevTableSize, seed: node.maglevSeed },
      get value(): Buffer {
        table ??= encodeMaglevTable(cache.table(backends, node.maglevTableSize, node.maglevSeed));
        return table;
      },
    };
  }

  for (const range of service.sourceRanges) {
    const [network = '', length = '0'] = range.split('/');
    put(entries.sourceRanges, LbSourceRangeKey.encode({ prefixlen: 32 + Number(length), serviceId: id, addr: network }), Buffer.from([1]));
  }

  let flags = 0;
  if (maglev) flags |= ServiceFlag.Maglev;
  if (service.sourceRanges.length > 0) flags |= ServiceFlag.SourceRanges;
  if (service.type === 'NodePort') flags |= ServiceFlag.NodePort;
  if (trafficPolicyOf(service) === 'Local') flags |= ServiceFlag.Local;
  const value = LbService.encode({
    id,
    backendCount: usable.length,
    flags,
    mode: ForwardingMode[service.mode ?? node.defaultMode],
    affinityTimeout: service.sessionAffinity.type === 'ClientIP' ? service.sessionAffinity.timeoutSeconds : 0,
  });
  const frontends = new Map<string, MapEntry>();
  for (const address of frontendAddresses(service, node.addresses)) {
    const key = LbServiceKey.encode({ addr: address, port, proto, family: familyOf(address) });
    frontends.set(endpointText(address, port, protocol), { key, value });
  }
  return { state: entries, frontends, backendKeys };
}

/**
 * What a Maglev table is a function of: size, seed and the usable backends' keys and weights. Two
 * equal digests mean byte-identical tables, so diffs compare digests instead of 2·M bytes.
 */
function maglevInputDigest(backends: readonly { key: string; weight: number }[], node: LbNodeConfig): string {
  const text = JSON.stringify([node.maglevTableSize, node.maglevSeed.base64, backends.map((b) => [b.key, b.weight])]);
  return `${INPUT_DIGEST}${createHash('sha1').update(text).digest('hex')}`;
}

/** The prefix of a digest of a table's inputs (what xlb_lb_mgdig keeps, as 20 bytes). */
export const INPUT_DIGEST = 'in:';

/** The digest of a table's bytes as read from the maps (compared with a desired table by tableBytesDigest). */
export function tableBytesDigest(value: Buffer): string {
  return `sha1:${createHash('sha1').update(value).digest('hex')}`;
}

export function desiredLbState(
  services: ReadonlyMap<string, Service>,
  node: LbNodeConfig,
  ids: IdAllocator,
  options: DesiredOptions = {},
): DesiredLbState {
  const cache = options.maglevCache ?? new MaglevTableCache();
  const names = [...services.keys()].sort();

  const refs = new Map<string, number>();
  for (const name of names) {
    const service = services.get(name);
    if (!service) continue;
    for (const key of serviceBackendKeys(service)) refs.set(key, (refs.get(key) ?? 0) + 1);
  }
  const assigned = ids.assign(names, refs);
  const idOf = (map: ReadonlyMap<string, number>, name: string): number => {
    const id = map.get(name);
    if (id === undefined) throw new Error(`no id assigned to ${name}`);
    return id;
  };

  const state: DesiredLbState = { services: new Map(), backends: new Map(), conflicts: [] };
  const frontendOwners = new Map<string, string>();
  for (const name of names) {
    const service = services.get(name);
    if (!service) continue;
    const built = serviceEntries(name, service, idOf(assigned.services, name), (key) => idOf(assigned.backends, key), node, cache);
    state.services.set(built.state.id, built.state);
    for (const b of service.backends) {
      const backendId = idOf(assigned.backends, backendKey(b.address, b.port, service.frontend.protocol));
      put(state.backends, encodeU32(backendId), backendValue(b.address, b.port));
    }
    for (const [text, entry] of built.frontends) {
      const holder = frontendOwners.get(text);
      if (holder !== undefined) {
        state.conflicts.push({ service: name, frontend: text, heldBy: holder });
        continue;
      }
      frontendOwners.set(text, name);
      built.state.frontends.set(hex(entry.key), entry);
    }
  }
  return state;
}

/** The xlb_lb_be value of a backend. */
export function backendValue(address: string, port: number): Buffer {
  return LbBackend.encode({ addr: address, port, family: familyOf(address) });
}

/** Raw map contents, as LbMapWriter.read() dumps them. */
export interface LbMapDump {
  svc: Iterable<[Buffer, Buffer]>;
  be: Iterable<[Buffer, Buffer]>;
  slot: Iterable<[Buffer, Buffer]>;
  maglev: Iterable<[Buffer, Buffer]>;
  srcrng: Iterable<[Buffer, Buffer]>;
}

/**
 * The state the maps hold, grouped by service id like a desired state, so the two can be diffed.
 * Entries of an id without a service entry (left over from a crash) form a service of their own,
 * which the diff then removes. `members` are the backends in the slots (the maps do not record the
 * unusable ones a service listed).
 */
export function lbStateFromMaps(
  dump: LbMapDump,
  options: { digestTables?: boolean; maglevDigests?: ReadonlyMap<number, string> } = {},
): LbState {
  const state: LbState = { services: new Map(), backends: new Map() };
  const service = (id: number): ServiceState => {
    let entries = state.services.get(id);
    if (!entries) {
      entries = newServiceState(id, undefined);
      state.services.set(id, entries);
    }
    return entries;
  };
  for (const [key, value] of dump.svc) put(service(LbService.decode(value).id).frontends, key, value);
  for (const [key, value] of dump.slot) {
    const entries = service(LbSlotKey.decode(key).serviceId);
    put(entries.slots, key, value);
    entries.members.add(decodeU32(value));
  }
  // A large node holds thousands of 2·M-byte tables: keep only their digests when asked.
  for (const [key, value] of dump.maglev) {
    const id = decodeU32(key);
    const kept = options.maglevDigests?.get(id);
    if (kept !== undefined) service(id).maglev = { key, value: Buffer.alloc(0), digest: kept };
    else service(id).maglev = options.digestTables ? { key, value: Buffer.alloc(0), digest: tableBytesDigest(value) } : { key, value };
  }
  for (const [key, value] of dump.srcrng) put(service(LbSourceRangeKey.decode(key).serviceId).sourceRanges, key, value);
  for (const [key, value] of dump.be) put(state.backends, key, value);
  return state;
}
