/**
 * The boundary between the agent's control plane (store, API, metrics, monitor) and the datapath
 * that programs the BPF maps. The agent only ever talks to a ServiceDatapath; the real one wires the
 * XDP/tc objects (agent/node-datapath.ts), tests use an in-memory one.
 */
import type { Service } from '../lb/service.js';
import type { CounterSample } from '../lb/datapath/lb-datapath.js';
import type { IdSpaceUse } from '../lb/lbmap/ids.js';
import type { NodeSettingReport } from '../lb/datapath/sysctl.js';

export type { IdSpaceUse } from '../lb/lbmap/ids.js';

export interface ApplyResult { written: number; deleted: number; durationMs: number }
export interface MapPressure { map: string; entries: number; maxEntries: number }
export interface DatapathEvent {
  type: 'drop' | 'new-flow' | 'reject'; reason: number; direction: number; timestamp: bigint; family: 4 | 6; proto: number; saddr: string; daddr: string; sport: number; dport: number; ifindex: number; serviceId: number; backendId: number;
  /** Policy drops: the security identities of the source and destination (absent or 0 otherwise). */
  srcIdentity?: number; dstIdentity?: number;
}
export interface DatapathStatus {
  devices: { name: string; mode: string }[];
  maglevTableSize: number;
  defaultMode: 'snat' | 'dsr' | 'hybrid';
  /** Kernel settings the datapath needs that were unmet at start-up: set by the agent (changedFrom) or only warned about. */
  nodeSettings?: NodeSettingReport[];
}
/** id → the service it now is; undefined: the service is gone. Ids not named keep what they have. */
export type ServiceChanges = ReadonlyMap<string, Service | undefined>;

export interface ServiceDatapath {
  /**
   * Serve the changed services as given; every other service stays exactly as it is (its entries are
   * not even read). Atomic: on failure it throws an Error naming the service, map and errno, and
   * every service of `changes` keeps its previous state.
   */
  apply(changes: ServiceChanges): Promise<ApplyResult>;
  /**
   * Remove what the (pinned) maps held when the datapath started and no service has claimed since:
   * called once every source of services has delivered its first full set.
   */
  pruneStale(): Promise<ApplyResult>;
  status(): DatapathStatus;
  counters(): CounterSample[];
  mapPressure(): MapPressure[];
  /** How full each id space (service ids, backend ids) is: used and capacity, beside the maps. */
  idSpaces(): IdSpaceUse[];
  /** Datapath events (ring buffer); returns an unsubscribe function. */
  subscribe(onEvent: (event: DatapathEvent) => void): () => void;
  /** service id (the datapath's numeric id) for a service name, for events/monitor output */
  serviceName(serviceId: number): string | undefined;
  close(): Promise<void>;
}
