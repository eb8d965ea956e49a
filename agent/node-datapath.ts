/**
 * The real ServiceDatapath of a node: xdp_lb on the devices (north-south load balancing) and the tc
 * DSR programs (the backend side), maps pinned under --bpffs so a restarted agent finds its services,
 * conntrack and SNAT state where it left them. Services flow one way: services → desired map contents
 * (pure) → diff against what was applied → LbMapWriter (the only writer).
 */
import { CONNTRACK_MAPS } from '../lb/datapath/conntrack.js';
import { LbDatapath } from '../lb/datapath/lb-datapath.js';
import { LbMapWriter, type ApplyStats } from '../lb/datapath/lb-writer.js';
import type { LbChanges } from '../lb/lbmap/diff.js';
import { MapType, type BpfMap } from '../lb/datapath/map.js';
import { BpfObject } from '../lb/datapath/object.js';
import { bpfObjectPath } from '../lb/datapath/objects.js';
import { RingBufferReader } from '../lb/datapath/ringbuf.js';
import { writeDsrTrust } from '../lb/datapath/dsr-trust.js';
import { enforceSysctls, readSysctl, type NodeSettingReport } from '../lb/datapath/sysctl.js';
import { attachTc } from '../lb/datapath/tc.js';
import { XlbEvent } from '../lb/layouts.js';
import type { LbNodeConfig } from '../lb/lbmap/desired.js';
import { IdAllocator } from '../lb/lbmap/ids.js';
import { FrontendConflictsError, LbReconciler, type ReconcilePlan } from '../lb/lbmap/reconciler.js';
import { MaglevTableCache } from '../lb/maglev/index.js';
import { datapathSysctls } from '../lb/node-settings.js';
import type { ApplyResult, ServiceChanges, DatapathEvent, DatapathStatus, IdSpaceUse, MapPressure, ServiceDatapath } from './datapath.js';
import { DEFAULT_BACKEND_MAP_MAX, DEFAULT_SERVICE_MAP_MAX, type NodeDatapathOptions } from './flags.js';

/** From this many new or changed Maglev tables in one apply, they are built on worker threads. */
const PARALLEL_TABLES_FROM = 16;
const DEFAULT_CAPACITY = { services: DEFAULT_SERVICE_MAP_MAX, backends: DEFAULT_BACKEND_MAP_MAX };
import { FrontendConflictError } from './store.js';

const EVENT_TYPES: Record<number, DatapathEvent['type']> = { 1: 'drop', 2: 'new-flow', 3: 'reject' };
const COUNTED_MAP_TYPES = new Set<number>([MapType.Hash, MapType.LruHash, MapType.LruPercpuHash, MapType.PercpuHash, MapType.LpmTrie]);

class NodeDatapath implements ServiceDatapath {
  private readonly ids: IdAllocator;
  private readonly reconciler: LbReconciler;
  private readonly maglevCache = new MaglevTableCache();
  private pendingPurge: LbChanges['purge'] = { pairs: [], backendIds: [] };
  private purgeScheduled = false;
  private readonly subscribers = new Set<(event: DatapathEvent) => void>();
  private reader: RingBufferReader | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly devices: { name: string; mode: string }[] = [];

  constructor(
    private readonly options: NodeDatapathOptions,
    private readonly lb: LbDatapath,
    private readonly dsr: BpfObject,
    private readonly writer: LbMapWriter,
    private readonly nodeSettings: NodeSettingReport[],
  ) {
    const capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.ids = new IdAllocator({ maxServices: capacity.services, maxBackends: capacity.backends });
    // What the pinned maps hold: services claim their ids back as they come (lb/lbmap/reconciler.ts).
    this.reconciler = new LbReconciler(this.nodeConfig(), this.ids, this.maglevCache, writer.read());
  }

  attach(): void {
    const { log } = this.options;
    for (const device of this.options.devices) {
      let mode = 'off';
      if (this.options.xdp !== 'off') mode = this.lb.attach(device, this.options.xdp === 'native' ? 'auto' : 'generic', log);
      attachTc(device, 'ingress', this.dsr.program('tc_dsr_ingress'));
      attachTc(device, 'egress', this.dsr.program('tc_dsr_egress'));
      this.devices.push({ name: device, mode });
      log(`datapath on ${device}: XDP ${mode === 'off' ? 'off' : `xdp_lb (${mode})`}, tc tc_dsr_ingress/tc_dsr_egress`);
    }
  }

  private nodeConfig(): LbNodeConfig {
    const { nodeAddresses, nodePortAddresses, maglevTableSize, maglevSeed, mode: defaultMode, nodeName } = this.options;
    return { addresses: nodePortAddresses ?? nodeAddresses, maglevTableSize, maglevSeed, defaultMode, nodeName };
  }

  apply(changes: ServiceChanges): Promise<ApplyResult> {
    return this.serialized(async () => {
      let plan: ReconcilePlan;
      try {
        plan = this.reconciler.plan(changes);
      } catch (error) {
        if (!(error instanceof FrontendConflictsError)) throw error;
        const [first] = error.conflicts;
        throw first ? new FrontendConflictError(first.service, first.frontend, first.heldBy) : error;
      }
      try {
        await this.buildTables(plan);
      } catch (error) {
        plan.abort();
        throw error;
      }
      return this.write(plan);
    });
  }

  pruneStale(): Promise<ApplyResult> {
    return this.serialized(async () => this.write(this.reconciler.prune()));
  }

  /**
   * The Maglev tables a plan writes, built ahead on worker threads when there are many (a full sync:
   * thousands): the writer's pass then finds them in the cache. A few are quicker built in place.
   */
  private async buildTables(plan: ReconcilePlan): Promise<void> {
    const requests = plan.changes.services.flatMap((s) => s.maglev.upserts.flatMap((e) => (e.maglev ? [e.maglev] : [])));
    if (requests.length >= PARALLEL_TABLES_FROM) await this.maglevCache.warm(requests);
  }

  private serialized(task: () => Promise<ApplyResult>): Promise<ApplyResult> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private write(plan: ReconcilePlan): ApplyResult {
    let stats: ApplyStats;
    try {
      stats = this.writer.apply(plan.changes, { purge: false });
    } catch (error) {
      plan.abort();
      throw error;
    }
    plan.commit();
    this.schedulePurge(plan.changes.purge);
    return { written: stats.written, deleted: stats.deleted, durationMs: stats.durationMs };
  }

  /**
   * Conntrack and affinity entries of removed backends go right after the apply that removed them, in
   * the queue, but not inside it: the purge sweeps the whole conntrack table (milliseconds), and a
   * burst of changes shares one sweep. Ids are handed out round-robin (lb/lbmap/ids.ts), so no new
   * backend takes a removed one's id before its entries are gone.
   */
  private schedulePurge(purge: LbChanges['purge']): void {
    if (purge.pairs.length === 0 && purge.backendIds.length === 0) return;
    this.pendingPurge.pairs.push(...purge.pairs);
    this.pendingPurge.backendIds.push(...purge.backendIds);
    if (this.purgeScheduled) return;
    this.purgeScheduled = true;
    setImmediate(() => {
      if (!this.purgeScheduled) return; // close() ran it
      const run = this.queue.then(() => this.purgeNow());
      this.queue = run.catch(() => undefined);
    });
  }

  private purgeNow(): void {
    if (!this.purgeScheduled) return;
    const purge = this.pendingPurge;
    this.pendingPurge = { pairs: [], backendIds: [] };
    this.purgeScheduled = false;
    try {
      for (const error of this.writer.purge(purge).errors) this.options.log(`conntrack purge: ${error}`);
    } catch (error) {
      this.options.log(`conntrack purge: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  status(): DatapathStatus {
    return {
      devices: [...this.devices],
      maglevTableSize: this.options.maglevTableSize,
      defaultMode: this.options.mode,
      nodeSettings: this.nodeSettings.map((setting) => ({ ...setting })),
    };
  }

  counters(): ReturnType<LbDatapath['counters']> {
    return this.lb.counters();
  }

  mapPressure(): MapPressure[] {
    const maps = new Map<string, BpfMap>([...this.lb.object.maps, ...this.dsr.maps]);
    const pressure: MapPressure[] = [];
    for (const [name, map] of maps) {
      if (!COUNTED_MAP_TYPES.has(map.type)) continue;
      let entries = 0;
      for (const _ of map.keys()) entries += 1;
      pressure.push({ map: name, entries, maxEntries: map.maxEntries });
    }
    // Conntrack is an array of buckets: its sweep counts the live flows (and clears expired ones).
    pressure.push({ map: CONNTRACK_MAPS.table, entries: this.lb.conntrack.sweep().live, maxEntries: this.lb.conntrack.capacity });
    return pressure;
  }

  idSpaces(): IdSpaceUse[] {
    return this.ids.usage();
  }

  subscribe(onEvent: (event: DatapathEvent) => void): () => void {
    this.subscribers.add(onEvent);
    this.reader ??= new RingBufferReader(this.lb.map('xlb_events'), (record) => this.dispatch(record));
    // New-flow events cost the datapath a ring-buffer write per flow: only while someone watches.
    this.lb.sampleNewFlows(1);
    return () => {
      this.subscribers.delete(onEvent);
      if (this.subscribers.size === 0 && this.reader) {
        this.lb.sampleNewFlows(0);
        const reader = this.reader;
        this.reader = undefined;
        void reader.close();
      }
    };
  }

  private dispatch(record: Buffer): void {
    const e = XlbEvent.decode(record);
    const event: DatapathEvent = {
      type: EVENT_TYPES[e.type] ?? 'drop',
      reason: e.reason,
      direction: e.direction,
      timestamp: e.timestamp,
      family: e.tuple.family === 10 ? 6 : 4,
      proto: e.tuple.proto,
      saddr: e.tuple.saddr,
      daddr: e.tuple.daddr,
      sport: e.tuple.sport,
      dport: e.tuple.dport,
      ifindex: e.ifindex,
      serviceId: e.serviceId,
      backendId: e.backendId,
      ...(e.srcIdentity !== 0 || e.dstIdentity !== 0 ? { srcIdentity: e.srcIdentity, dstIdentity: e.dstIdentity } : {}),
    };
    for (const subscriber of this.subscribers) subscriber(event);
  }

  serviceName(serviceId: number): string | undefined {
    return this.reconciler.nameOf(serviceId);
  }

  /**
   * Stop reading events and close our handles. Programs stay attached and maps stay pinned, as
   * Cilium's agent leaves them: traffic keeps flowing while the agent restarts, and the next agent
   * replaces the programs atomically and picks the state up from the pins.
   */
  async close(): Promise<void> {
    await this.queue;
    if (this.purgeScheduled) this.purgeNow();
    await this.maglevCache.close();
    if (this.reader) await this.reader.close();
    this.reader = undefined;
    this.lb.close();
    this.dsr.close();
  }
}

/**
 * Load, configure and attach. Synchronous on purpose: the attach happens in the calling thread's
 * network namespace, so a caller may wrap it in inNetns(). options.bpffs must be on a bpffs already
 * (the agent mounts one first if allowed: prepareBpffs; the loader checks).
 */
export function createNodeDatapath(options: NodeDatapathOptions): ServiceDatapath {
  const pinDir = options.bpffs;
  const warn = options.warn ?? options.log;
  const nodeSettings = enforceSysctls(datapathSysctls(options.devices, readSysctl), options.nodeSetup, { info: options.log, warn });
  const lb = LbDatapath.load({
    maglevTableSize: options.maglevTableSize,
    maglevSeed: options.maglevSeed,
    pinDir,
    conntrackEntries: options.conntrackEntries,
    capacity: options.capacity ?? DEFAULT_CAPACITY,
  });
  let dsr: BpfObject | undefined;
  try {
    // Same pin directory: the tc programs share xlb_metrics and xlb_events with xdp_lb.
    dsr = BpfObject.load(bpfObjectPath('tc/tc_dsr.o'), { pinDir });
    for (const replaced of [...lb.object.replacedPins, ...dsr.replacedPins]) {
      options.log(`pinned map replaced, its state lost (the layout changed since it was pinned): ${replaced}`);
    }
    const v4 = options.nodeAddresses.find((a) => !a.includes(':'));
    const v6 = options.nodeAddresses.find((a) => a.includes(':'));
    lb.configure({ nodeV4: v4, nodeV6: v6, natPortMin: options.snatPorts.min, natPortMax: options.snatPorts.max, eventSample: 0 });
    writeDsrTrust(dsr.map('xlb_dsr_trust'), options.dsrServiceRanges);
    options.log(
      options.dsrServiceRanges.length === 0
        ? 'DSR receive side: every DSR option is refused (no --dsr-service-ranges)'
        : `DSR receive side: DSR options accepted for service addresses in ${options.dsrServiceRanges.join(', ')}`,
    );
    const datapath = new NodeDatapath(options, lb, dsr, LbMapWriter.fromObject(lb.object), nodeSettings);
    datapath.attach();
    return datapath;
  } catch (error) {
    dsr?.close();
    lb.close();
    throw error;
  }
}
