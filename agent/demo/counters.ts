/**
 * The datapath counters a step needs, read the way an operator reads them: GET /metrics on an
 * agent's API socket (xlb_datapath_packets_total and xlb_drop_count_total, labelled with the reason
 * names of lb/reasons.ts), as snapshots that subtract.
 */
import { apiRequest } from '../cli/api-client.js';
import { Direction, Reason, reasonLabel, type DirectionName, type ReasonName } from '../../lb/reasons.js';
import { directionLabel } from '../metrics.js';

const PACKETS = 'xlb_datapath_packets_total';
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (comments skipped). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = SAMPLE.exec(line);
    if (!match || line.startsWith('#')) continue;
    const labels: Record<string, string> = {};
    for (const [, name = '', value = ''] of (match[2] ?? '').matchAll(LABEL)) labels[name] = value;
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

/** Packets counted under each (reason, direction) on one node. */
export class Counters {
  private constructor(private readonly packets: ReadonlyMap<string, number>) {}

  static fromMetrics(text: string): Counters {
    const packets = new Map<string, number>();
    for (const s of parseSamples(text)) {
      if (s.name !== PACKETS) continue;
      const key = `${s.labels.reason ?? ''}/${s.labels.direction ?? ''}`;
      packets.set(key, (packets.get(key) ?? 0) + s.value);
    }
    return new Counters(packets);
  }

  /** Packets the datapath counted under `reason` in `direction`. */
  get(reason: ReasonName, direction: DirectionName): number {
    return this.packets.get(`${reasonLabel(Reason[reason])}/${directionLabel(Direction[direction])}`) ?? 0;
  }

  /** What was counted since `before`. */
  since(before: Counters): Counters {
    const delta = new Map<string, number>();
    for (const [key, value] of this.packets) delta.set(key, value - (before.packets.get(key) ?? 0));
    return new Counters(delta);
  }
}

/** GET /metrics over an agent's unix socket. */
export async function fetchMetrics(socket: string): Promise<string> {
  const response = await apiRequest(socket, 'GET', '/metrics');
  if (response.status !== 200 || typeof response.body !== 'string') throw new Error(`GET /metrics on ${socket} answered ${response.status}`);
  return response.body;
}

export async function readCounters(socket: string): Promise<Counters> {
  return Counters.fromMetrics(await fetchMetrics(socket));
}
