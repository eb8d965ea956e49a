/**
 * GET /v1/monitor: the datapath's events as they happen, one JSON object per line (NDJSON), until the
 * client disconnects. Each line is the DatapathEvent with `timestamp` (ns, bigint) as a decimal
 * string, plus `reasonLabel` ("source_range"), `service` (its id, when the datapath knows it) and,
 * for policy drops, `srcLabels` / `dstLabels` (the labels of the source's and destination's security
 * identities, when Kubernetes mode's policy knows them).
 *
 * Bounds, so that clients cannot make the agent hold much memory:
 * - at most MAX_MONITOR_STREAMS streams are open at once (MonitorStreams); one more is answered 503;
 * - a stream holds at most MAX_BUFFERED_BYTES its client has not taken (the response's writableLength:
 *   the agent's buffer and its socket's). A client too slow to keep up, or one that stopped reading,
 *   LOSES the events that would go beyond, counted in xlb_monitor_events_dropped_total; its stream
 *   stays open and, once it reads again, a line {"type": "lost", "count": N} says how many it missed.
 *   Dropping rather than closing keeps a briefly slow `xlb monitor` running, and costs a stalled client
 *   nothing beyond its cap: 32 stalled streams hold at most 8 MiB.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { reasonLabel } from '../../lb/reasons.js';
import type { DatapathEvent, ServiceDatapath } from '../datapath.js';
import { errorBody, errorResponses } from './openapi.js';

export const MONITOR_EVENT_TYPES = ['drop', 'new-flow', 'reject'] as const;

export const monitorEventSchema = {
  title: 'MonitorEvent',
  type: 'object',
  required: ['type'],
  properties: {
    type: { type: 'string', enum: [...MONITOR_EVENT_TYPES, 'lost'] },
    count: { type: 'integer', description: 'type "lost" only: events this client missed' },
    reason: { type: 'integer', description: 'enum xlb_reason (lb/reasons.ts)' },
    reasonLabel: { type: 'string', description: 'e.g. "source_range"' },
    direction: { type: 'integer', description: '0 ingress, 1 egress' },
    timestamp: { type: 'string', description: 'kernel monotonic time in ns (decimal)' },
    family: { type: 'integer', enum: [4, 6] },
    proto: { type: 'integer', description: 'IP protocol number' },
    saddr: { type: 'string' },
    daddr: { type: 'string' },
    sport: { type: 'integer' },
    dport: { type: 'integer' },
    ifindex: { type: 'integer' },
    serviceId: { type: 'integer' },
    service: { type: 'string', description: 'the service id, when known' },
    backendId: { type: 'integer' },
    srcIdentity: { type: 'integer', description: 'policy drops: the source\'s security identity (xlb identity list)' },
    dstIdentity: { type: 'integer', description: 'policy drops: the destination\'s security identity' },
    srcLabels: { type: 'object', additionalProperties: { type: 'string' }, description: 'the labels of srcIdentity, when known' },
    dstLabels: { type: 'object', additionalProperties: { type: 'string' }, description: 'the labels of dstIdentity, when known' },
  },
} as const;

/** Monitor streams open at once (each is a datapath subscriber with its own buffer). */
export const MAX_MONITOR_STREAMS = 32;
/** Output a stream may hold that its client has not taken; events beyond are dropped. */
export const MAX_BUFFERED_BYTES = 256 * 1024;

/**
 * The open monitor streams: the limit applies to all the listeners given the same MonitorStreams
 * (each API server makes its own unless one is passed in).
 */
export class MonitorStreams {
  private readonly open = new Set<ServerResponse>();

  constructor(
    readonly limit = MAX_MONITOR_STREAMS,
    readonly maxBufferedBytes = MAX_BUFFERED_BYTES,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /** Takes a place for `stream`; false when every place is taken. */
  add(stream: ServerResponse): boolean {
    if (this.open.size >= this.limit) return false;
    this.open.add(stream);
    return true;
  }

  delete(stream: ServerResponse): void {
    this.open.delete(stream);
  }

  /** Output written to the streams that their clients have not taken yet (bytes held by the agent). */
  bufferedBytes(): number {
    let bytes = 0;
    for (const stream of this.open) bytes += stream.writableLength;
    return bytes;
  }
}

/** The labels of a security identity (Kubernetes mode's policy), undefined when not known. */
export type IdentityLabels = (identity: number) => Record<string, string> | undefined;

export function monitorLine(event: DatapathEvent, datapath: Pick<ServiceDatapath, 'serviceName'>, identityLabels?: IdentityLabels): string {
  const service = datapath.serviceName(event.serviceId);
  const line: Record<string, unknown> = { ...event, timestamp: event.timestamp.toString(), reasonLabel: reasonLabel(event.reason) };
  if (service !== undefined) line.service = service;
  const srcLabels = event.srcIdentity ? identityLabels?.(event.srcIdentity) : undefined;
  const dstLabels = event.dstIdentity ? identityLabels?.(event.dstIdentity) : undefined;
  if (srcLabels) line.srcLabels = srcLabels;
  if (dstLabels) line.dstLabels = dstLabels;
  return `${JSON.stringify(line)}\n`;
}

export interface MonitorRoutesOptions {
  datapath: ServiceDatapath;
  /** The streams this route counts against its limit (shared by the listeners given the same one). */
  streams: MonitorStreams;
  /** Called when a stream ends (the stream bypasses fastify's reply hooks). */
  onStreamEnd?: (seconds: number) => void;
  /** Called with the events a stream dropped because its client was not taking them. */
  onDropped?: (count: number) => void;
  /** Kubernetes mode: the labels of policy drops' identities. */
  identityLabels?: IdentityLabels;
}

export const monitorRoutes: FastifyPluginAsync<MonitorRoutesOptions> = async (app, { datapath, streams, onStreamEnd, onDropped, identityLabels }) => {
  const mine = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const stream of mine) stream.end();
  });

  app.get<{ Querystring: { type?: (typeof MONITOR_EVENT_TYPES)[number] } }>(
    '/v1/monitor',
    {
      schema: {
        summary: 'Stream datapath events (NDJSON) until the client disconnects',
        tags: ['monitor'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { type: { type: 'string', enum: [...MONITOR_EVENT_TYPES], description: 'only events of this type' } },
        },
        response: {
          200: {
            description: 'one MonitorEvent per line',
            content: { 'application/x-ndjson': { schema: monitorEventSchema } },
          },
          ...errorResponses(400, 503),
        },
      },
    },
    async (request, reply) => {
      const wanted = request.query.type;
      const started = process.hrtime.bigint();
      const res = reply.raw;
      if (!streams.add(res)) {
        return reply
          .code(503)
          .header('retry-after', '10')
          .send(errorBody(`${streams.limit} monitor streams are open, the most the agent serves at once: close one, or retry later`));
      }
      mine.add(res);
      reply.hijack();
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', connection: 'close' });
      res.flushHeaders();
      let lost = 0;
      const drop = (): void => {
        lost += 1;
        onDropped?.(1);
      };
      const unsubscribe = datapath.subscribe((event) => {
        if (wanted !== undefined && event.type !== wanted) return;
        if (res.writableLength >= streams.maxBufferedBytes) return drop();
        const text = `${lost > 0 ? `${JSON.stringify({ type: 'lost', count: lost })}\n` : ''}${monitorLine(event, datapath, identityLabels)}`;
        if (res.writableLength + Buffer.byteLength(text) > streams.maxBufferedBytes) return drop();
        lost = 0;
        res.write(text);
      });
      res.once('close', () => {
        unsubscribe();
        streams.delete(res);
        mine.delete(res);
        onStreamEnd?.(Number(process.hrtime.bigint() - started) / 1e9);
      });
    },
  );
};
