/** GET /metrics: the Prometheus text exposition of the agent's registry (agent/metrics.ts). */
import type { FastifyPluginAsync } from 'fastify';
import type { AgentMetrics } from '../metrics.js';
import { errorResponses } from './openapi.js';

export interface MetricsRoutesOptions {
  metrics: AgentMetrics;
}

export const metricsRoutes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, { metrics }) => {
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        tags: ['metrics'],
        response: {
          200: {
            description: 'Prometheus text format 0.0.4',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ...errorResponses(500),
        },
      },
    },
    async (_request, reply) => {
      const text = await metrics.metrics();
      return reply.type(metrics.contentType).send(text);
    },
  );
};
