/**
 * The agent's Prometheus metrics, in a registry of its own (never prom-client's global one).
 *
 * Datapath counters and map fill levels are read at scrape time; names follow Cilium where Cilium
 * has the same metric (cilium_drop_count_total → xlb_drop_count_total, cilium_bpf_map_pressure →
 * xlb_bpf_map_pressure), otherwise xlb_<subsystem>_<what>_<unit|total>. Labels use the datapath's
 * reason names (lb/reasons.ts reasonLabel: "source_range", "new_flow") and directions in lower case.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CounterSample } from '../lb/datapath/lb-datapath.js';
import { Direction, Reason, reasonLabel, reasonName } from '../lb/reasons.js';
import type { ServiceDatapath } from './datapath.js';
import type { ApplyObservation } from './store.js';

export type Verdict = 'forward' | 'drop' | 'pass' | 'reject';

/** What happened to a packet counted under `reason`: FWD_* and DSR_REPLY forward, PASS_* and DSR_RECEIVED pass. */
export function reasonVerdict(reason: number): Verdict {
  const name = reasonName(reason);
  if (name === undefined) return reason >= 16 ? 'drop' : 'pass';
  if (name.startsWith('DROP_')) return 'drop';
  if (name.startsWith('REJECT_')) return 'reject';
  if (name.startsWith('FWD_') || name === 'DSR_REPLY') return 'forward';
  return 'pass';
}

const directionNames = new Map<number, string>(Object.entries(Direction).map(([name, value]) => [value, name.toLowerCase()]));

export function directionLabel(direction: number): string {
  return directionNames.get(direction) ?? `direction_${direction}`;
}

/** Open monitor streams as the metrics see them (agent/api/monitor.ts MonitorStreams). */
export interface MonitorSource {
  readonly size: number;
  bufferedBytes(): number;
}

/** The store as the metrics see it. */
export interface ServiceSource {
  readonly size: number;
  onApply(listener: (observation: ApplyObservation) => void): () => void;
}

export interface AgentMetricsOptions {
  datapath: ServiceDatapath;
  store: ServiceSource;
  /** Default process metrics (CPU, memory, event loop, GC); default true. */
  processMetrics?: boolean;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly datapath: ServiceDatapath;
  private scrapeSamples: CounterSample[] | undefined;
  private readonly requests: Counter<'method' | 'route' | 'code'>;
  private readonly requestDuration: Histogram<'method' | 'route'>;
  private readonly applyDuration: Histogram<'result'>;
  private readonly monitorDrops: Counter;
  /** Monitor stream sets, each counted once however many listeners share it. */
  private readonly monitorSources = new Map<MonitorSource, number>();
  private readonly unsubscribe: () => void;

  constructor(options: AgentMetricsOptions) {
    this.datapath = options.datapath;
    const registers = [this.registry];
    const allSamples = (): CounterSample[] => this.scrapeSamples ?? this.datapath.counters();
    // CT_EVICTED counts events, not packets: it has a metric of its own.
    const samples = (): CounterSample[] => allSamples().filter((s) => s.reason !== Reason.CT_EVICTED);

    const datapathCounter = (name: string, help: string, value: (s: CounterSample) => bigint): void => {
      const counter: Counter<'reason' | 'direction' | 'verdict'> = new Counter({
        name,
        help,
        labelNames: ['reason', 'direction', 'verdict'],
        registers,
        collect: () => {
          counter.reset();
          for (const sample of samples()) {
            counter.inc(
              { reason: reasonLabel(sample.reason), direction: directionLabel(sample.direction), verdict: reasonVerdict(sample.reason) },
              Number(value(sample)),
            );
          }
        },
      });
    };
    datapathCounter('xlb_datapath_packets_total', 'Packets handled by the datapath, by reason, direction and verdict', (s) => s.packets);
    datapathCounter('xlb_datapath_bytes_total', 'Bytes handled by the datapath, by reason, direction and verdict', (s) => s.bytes);

    const dropCounter = (name: string, help: string, value: (s: CounterSample) => bigint): void => {
      const counter: Counter<'reason' | 'direction'> = new Counter({
        name,
        help,
        labelNames: ['reason', 'direction'],
        registers,
        collect: () => {
          counter.reset();
          for (const sample of samples()) {
            if (reasonVerdict(sample.reason) !== 'drop') continue;
            counter.inc({ reason: reasonLabel(sample.reason), direction: directionLabel(sample.direction) }, Number(value(sample)));
          }
        },
      });
    };
    dropCounter('xlb_drop_count_total', 'Packets dropped by the datapath, by reason and direction (as cilium_drop_count_total)', (s) => s.packets);
    dropCounter('xlb_drop_bytes_total', 'Bytes dropped by the datapath, by reason and direction (as cilium_drop_bytes_total)', (s) => s.bytes);

    const forwardCounter = (name: string, help: string, value: (s: CounterSample) => bigint): void => {
      const counter: Counter<'direction'> = new Counter({
        name,
        help,
        labelNames: ['direction'],
        registers,
        collect: () => {
          counter.reset();
          for (const sample of samples()) {
            if (reasonVerdict(sample.reason) !== 'forward') continue;
            counter.inc({ direction: directionLabel(sample.direction) }, Number(value(sample)));
          }
        },
      });
    };
    forwardCounter('xlb_forward_count_total', 'Packets forwarded by the datapath, by direction (as cilium_forward_count_total)', (s) => s.packets);
    forwardCounter('xlb_forward_bytes_total', 'Bytes forwarded by the datapath, by direction (as cilium_forward_bytes_total)', (s) => s.bytes);

    const evictions: Counter = new Counter({
      name: 'xlb_conntrack_evictions_total',
      help: 'New flows that took the conntrack entry of a live flow because its bucket was full',
      registers,
      collect: () => {
        evictions.reset();
        const evicted = allSamples().filter((s) => s.reason === Reason.CT_EVICTED);
        evictions.inc(evicted.reduce((sum, s) => sum + Number(s.packets), 0));
      },
    });

    const mapGauge = (name: string, help: string, value: (entries: number, maxEntries: number) => number | undefined): void => {
      const gauge: Gauge<'map_name'> = new Gauge({
        name,
        help,
        labelNames: ['map_name'],
        registers,
        collect: () => {
          gauge.reset();
          for (const map of this.datapath.mapPressure()) {
            const v = value(map.entries, map.maxEntries);
            if (v !== undefined) gauge.set({ map_name: map.map }, v);
          }
        },
      });
    };
    mapGauge('xlb_bpf_map_pressure', 'Fill level of a BPF map: entries / max entries (as cilium_bpf_map_pressure)', (entries, max) =>
      max > 0 ? entries / max : undefined,
    );
    mapGauge('xlb_bpf_map_entries', 'Entries in a BPF map', (entries) => entries);
    mapGauge('xlb_bpf_map_max_entries', 'Capacity of a BPF map', (_, max) => max);

    const store = options.store;
    const services: Gauge = new Gauge({
      name: 'xlb_services',
      help: 'Services the datapath serves',
      registers,
      collect: () => services.set(store.size),
    });

    this.applyDuration = new Histogram({
      name: 'xlb_apply_duration_seconds',
      help: 'Time from a service change (API request, start-up) to the datapath having applied it, by result',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.unsubscribe = store.onApply((observation) =>
      this.applyDuration.observe({ result: observation.ok ? 'ok' : 'error' }, observation.seconds),
    );

    this.requests = new Counter({
      name: 'xlb_api_requests_total',
      help: 'REST API requests, by method, route (the template, e.g. /v1/services/:id) and status code',
      labelNames: ['method', 'route', 'code'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'xlb_api_request_duration_seconds',
      help: 'REST API request handling time, by method and route',
      labelNames: ['method', 'route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });

    const monitorStreams: Gauge = new Gauge({
      name: 'xlb_monitor_streams',
      help: 'Open GET /v1/monitor streams',
      registers,
      collect: () => monitorStreams.set([...this.monitorSources.keys()].reduce((sum, s) => sum + s.size, 0)),
    });
    const monitorBuffered: Gauge = new Gauge({
      name: 'xlb_monitor_buffered_bytes',
      help: 'Monitor output the agent holds that its clients have not taken yet (bounded per stream)',
      registers,
      collect: () => monitorBuffered.set([...this.monitorSources.keys()].reduce((sum, s) => sum + s.bufferedBytes(), 0)),
    });
    this.monitorDrops = new Counter({
      name: 'xlb_monitor_events_dropped_total',
      help: 'Datapath events a monitor stream dropped because its client was not taking them fast enough',
      registers,
    });

    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Counts `source`'s streams and buffered bytes until the returned function is called. */
  trackMonitor(source: MonitorSource): () => void {
    this.monitorSources.set(source, (this.monitorSources.get(source) ?? 0) + 1);
    let tracked = true;
    return () => {
      if (!tracked) return;
      tracked = false;
      const count = (this.monitorSources.get(source) ?? 1) - 1;
      if (count > 0) this.monitorSources.set(source, count);
      else this.monitorSources.delete(source);
    };
  }

  monitorDropped(count: number): void {
    this.monitorDrops.inc(count);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  observeRequest(method: string, route: string, code: number, seconds: number): void {
    this.requests.inc({ method, route, code: String(code) });
    this.requestDuration.observe({ method, route }, seconds);
  }

  /** The text exposition; datapath counters are read once per scrape. */
  async metrics(): Promise<string> {
    this.scrapeSamples = this.datapath.counters();
    try {
      return await this.registry.metrics();
    } finally {
      this.scrapeSamples = undefined;
    }
  }

  close(): void {
    this.unsubscribe();
    this.registry.clear();
  }
}
