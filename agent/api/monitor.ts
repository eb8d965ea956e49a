/**
 * GET /v1/monitor: the datapath's events as they happen, one JSON object per line (NDJSON), until the
 * client disconnects. Each line is the DatapathEvent with `timestamp` (ns, bigint) as a decimal
 * string, plus `reasonLabel` ("source_range") and `service` (its id, when the datapath knows it).
 * A client too slow to keep up loses events; a line {"type": "lost", "count": N} says how many.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { reasonLabel } from '../../lb/reasons.js';
import type { DatapathEvent, ServiceDatapath } from '../datapath.js';
import { errorResponses } from './openapi.js';

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
  },
} as const;

/** Pending output beyond which a client is considered too slow and loses events. */
const MAX_BUFFERED_BYTES = 1 << 20;

export function monitorLine(event: DatapathEvent, datapath: Pick<ServiceDatapath, 'serviceName'>): string {
  const service = datapath.serviceName(event.serviceId);
  const line: Record<string, unknown> = { ...event, timestamp: event.timestamp.toString(), reasonLabel: reasonLabel(event.reason) };
  if (service !== undefined) line.service = service;
  return `${JSON.stringify(line)}\n`;
}

export interface MonitorRoutesOptions {
  datapath: ServiceDatapath;
  /** Called when a stream ends (the stream bypasses fastify's reply hooks). */
  onStreamEnd?: (seconds: number) => void;
}

export const monitorRoutes: FastifyPluginAsync<MonitorRoutesOptions> = async (app, { datapath, onStreamEnd }) => {
  const streams = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const stream of streams) stream.end();
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
          ...errorResponses(400),
        },
      },
    },
    (request, reply) => {
      const wanted = request.query.type;
      const started = process.hrtime.bigint();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', connection: 'close' });
      res.flushHeaders();
      streams.add(res);
      let lost = 0;
      const unsubscribe = datapath.subscribe((event) => {
        if (wanted !== undefined && event.type !== wanted) return;
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          lost += 1;
          return;
        }
        if (lost > 0) {
          res.write(`${JSON.stringify({ type: 'lost', count: lost })}\n`);
          lost = 0;
        }
        res.write(monitorLine(event, datapath));
      });
      res.once('close', () => {
        unsubscribe();
        streams.delete(res);
        onStreamEnd?.(Number(process.hrtime.bigint() - started) / 1e9);
      });
    },
  );
};
