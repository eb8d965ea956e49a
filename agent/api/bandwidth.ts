/**
 * /v1/bandwidth (standalone mode): pods' egress bandwidth, enforced by the EDT bandwidth manager.
 * `PUT /v1/bandwidth/{device}` {"egress": "10M"} limits the pod behind that device (a --pod-devices
 * device) to 10 Mbit/s, `DELETE` lifts the limit, `GET /v1/bandwidth` lists the limits. Quantities are
 * Kubernetes' (the annotation kubernetes.io/egress-bandwidth's): bits per second, 10M, 1G, 500k, 100Mi.
 */
import type { FastifyPluginAsync } from 'fastify';
import { BandwidthValueError, NoPodDeviceError, type BandwidthSettings } from '../bandwidth.js';
import { errorBody, errorResponses } from './openapi.js';

export const bandwidthEntrySchema = {
  title: 'Bandwidth',
  type: 'object',
  additionalProperties: false,
  required: ['device', 'ifindex', 'egress', 'bytesPerSecond'],
  properties: {
    device: { type: 'string', description: "the pod's host-side device" },
    ifindex: { type: 'integer', description: 'its ifindex, which the datapath knows the pod by' },
    egress: { type: 'string', description: 'the limit as given: bits per second as a Kubernetes quantity (10M, 1G, 500k, 100Mi)' },
    bytesPerSecond: { type: 'integer', description: 'the rate the datapath paces the pod\'s packets to (rounded down)' },
  },
} as const;

const deviceParamsSchema = {
  type: 'object',
  required: ['device'],
  properties: {
    device: { type: 'string', minLength: 1, maxLength: 15, pattern: '^[^/:\\s]+$', description: 'a pod device, as --pod-devices matches it (e.g. lxc1a2b)' },
  },
} as const;

const bandwidthBodySchema = {
  title: 'BandwidthLimit',
  type: 'object',
  additionalProperties: false,
  required: ['egress'],
  properties: {
    egress: {
      type: 'string',
      description: 'egress bandwidth in bits per second, Kubernetes units as kubernetes.io/egress-bandwidth: 10M, 1G, 500k, 100Mi, 1.5M; from 1k to 1P',
    },
  },
} as const;

const changeSchema = {
  ...bandwidthEntrySchema,
  title: 'BandwidthChange',
  required: [...bandwidthEntrySchema.required, 'result'],
  properties: { ...bandwidthEntrySchema.properties, result: { type: 'string', enum: ['created', 'updated', 'deleted'] } },
} as const;

export interface BandwidthRoutesOptions {
  bandwidth: BandwidthSettings;
}

export const bandwidthRoutes: FastifyPluginAsync<BandwidthRoutesOptions> = async (app, { bandwidth }) => {
  app.get(
    '/v1/bandwidth',
    {
      schema: {
        summary: "List the pods' egress bandwidth limits",
        tags: ['bandwidth'],
        response: {
          200: {
            description: 'every limited pod device',
            type: 'object',
            additionalProperties: false,
            required: ['bandwidth'],
            properties: { bandwidth: { type: 'array', items: bandwidthEntrySchema } },
          },
          ...errorResponses(),
        },
      },
    },
    async () => ({ bandwidth: bandwidth.list() }),
  );

  app.put<{ Params: { device: string }; Body: { egress: string } }>(
    '/v1/bandwidth/:device',
    {
      schema: {
        summary: "Limit a pod's egress bandwidth",
        description:
          'The pod behind the device (a --pod-devices device of this node) sends at most `egress` bits per second out of the node ' +
          "(the EDT bandwidth manager on the agent's --device devices; pacing needs fq there, see /v1/status bandwidth). Kept across restarts.",
        tags: ['bandwidth'],
        params: deviceParamsSchema,
        body: bandwidthBodySchema,
        response: {
          200: { ...changeSchema, description: 'the limit replaced' },
          201: { ...changeSchema, description: 'the limit set' },
          ...errorResponses(400, 404, 500),
        },
      },
    },
    async (request, reply) => {
      try {
        const { entry, created } = await bandwidth.set(request.params.device, request.body.egress);
        return reply.code(created ? 201 : 200).send({ ...entry, result: created ? 'created' : 'updated' });
      } catch (error) {
        if (error instanceof BandwidthValueError) return reply.code(400).send(errorBody(`invalid body: ${error.message}`, error.issues));
        if (error instanceof NoPodDeviceError) return reply.code(404).send(errorBody(error.message));
        throw error;
      }
    },
  );

  app.delete<{ Params: { device: string } }>(
    '/v1/bandwidth/:device',
    {
      schema: {
        summary: "Lift a pod's egress bandwidth limit",
        tags: ['bandwidth'],
        params: deviceParamsSchema,
        response: { 200: { ...changeSchema, description: 'the limit lifted; the answer holds what it was' }, ...errorResponses(400, 404, 500) },
      },
    },
    async (request, reply) => {
      const removed = await bandwidth.delete(request.params.device);
      if (!removed) return reply.code(404).send(errorBody(`device ${JSON.stringify(request.params.device)} has no bandwidth limit`));
      return { ...removed, result: 'deleted' };
    },
  );
};
