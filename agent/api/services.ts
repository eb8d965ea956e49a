/**
 * /v1/services: list, get, put (create or replace) and delete services. The body of PUT and the
 * answer of GET /v1/services/{id} are the service object (lb/service.ts); the JSON schemas below
 * check its structure, validateService() the rest (addresses, CIDRs, families, duplicates).
 *
 * PUT on a service from the config file is allowed: it becomes an API service, kept in the state
 * file (until the next restart, when the config file wins again for that id). DELETE of a config
 * service removes it until the next restart.
 */
import type { FastifyPluginAsync } from 'fastify';
import {
  ALGORITHMS,
  BACKEND_STATES,
  MAX_AFFINITY_TIMEOUT_SECONDS,
  MAX_BACKENDS,
  MODES,
  SERVICE_TYPES,
  TRAFFIC_POLICIES,
  validateService,
  validateServiceId,
} from '../../lb/service.js';
import { L4_PROTOCOLS, MAX_MAGLEV_WEIGHT } from '../../lb/maglev/index.js';
import type { ServiceStore, StoreChange, StoredService } from '../store.js';
import { errorBody, errorResponses, type ErrorBody } from './openapi.js';

const frontendProperties = {
  address: {
    type: 'string',
    description:
      'IPv4 or IPv6 host address (not loopback, link-local, multicast, broadcast or unspecified); a NodePort gives "0.0.0.0" or "::" ' +
      '(or nothing) as it listens on every node address',
  },
  port: { type: 'integer', minimum: 1, maximum: 65535 },
  protocol: { type: 'string', enum: [...L4_PROTOCOLS] },
} as const;

const backendProperties = {
  address: {
    type: 'string',
    description: "IPv4 or IPv6 host address of the frontend's family, not the frontend's own (nor loopback, link-local, multicast, broadcast, unspecified)",
  },
  port: { type: 'integer', minimum: 1, maximum: 65535 },
  weight: { type: 'integer', minimum: 0, maximum: MAX_MAGLEV_WEIGHT, description: 'default 100; 0 gets no new flows' },
  state: { type: 'string', enum: [...BACKEND_STATES], description: 'default active; terminating and maintenance get no new flows' },
  node: { type: 'string', maxLength: 253, description: 'the node the backend runs on; with externalTrafficPolicy Local only backends on the receiving node get new flows' },
} as const;

const sessionAffinitySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: { type: 'string', enum: ['None', 'ClientIP'] },
    timeoutSeconds: { type: 'integer', minimum: 1, maximum: MAX_AFFINITY_TIMEOUT_SECONDS, description: 'ClientIP only; default 10800' },
  },
} as const;

function serviceProperties(frontend: object, backend: object) {
  return {
    frontend,
    type: { type: 'string', enum: [...SERVICE_TYPES], description: 'default LoadBalancer' },
    mode: { type: 'string', enum: [...MODES], description: "absent: the agent's --mode applies" },
    algorithm: { type: 'string', enum: [...ALGORITHMS], description: 'default maglev' },
    sessionAffinity: sessionAffinitySchema,
    externalTrafficPolicy: { type: 'string', enum: [...TRAFFIC_POLICIES], description: 'default Cluster; Local: new flows only to backends on this node (none: dropped)' },
    sourceRanges: { type: 'array', items: { type: 'string', description: 'CIDR' }, description: 'empty: every client' },
    backends: { type: 'array', maxItems: MAX_BACKENDS, items: backend },
  } as const;
}

/** The service object as PUT takes it (and the config file holds it): only frontend and backends are required. */
export const serviceSchema = {
  title: 'Service',
  type: 'object',
  additionalProperties: false,
  required: ['frontend', 'backends'],
  properties: serviceProperties(
    { type: 'object', additionalProperties: false, required: ['port', 'protocol'], properties: frontendProperties },
    { type: 'object', additionalProperties: false, required: ['address', 'port'], properties: backendProperties },
  ),
} as const;

/**
 * The service as the agent answers it: validated, defaults filled in, addresses canonical; every
 * member is present except `mode`, absent when the agent's --mode applies. The serializer writes
 * required members first, so `required` lists only the members before `mode`: that keeps the
 * documented member order (serviceToJSON in lb/service.ts).
 */
export const normalizedServiceSchema = {
  title: 'NormalizedService',
  type: 'object',
  additionalProperties: false,
  required: ['frontend', 'type'],
  properties: serviceProperties(
    { type: 'object', additionalProperties: false, required: ['address', 'port', 'protocol'], properties: frontendProperties },
    { type: 'object', additionalProperties: false, required: ['address', 'port', 'weight', 'state'], properties: backendProperties },
  ),
} as const;

/**
 * The id's rule is validateServiceId's (the config file's ids follow it too), checked first by each
 * handler, so that one message says what an id is, however it is wrong.
 */
export const idParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: {
    id: { type: 'string', description: "the service id: a DNS label, 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit" },
  },
} as const;

const originSchema = { type: 'string', enum: ['config', 'api'], description: 'config: the config file; api: this API (kept in the state file)' } as const;

export const serviceEntrySchema = {
  title: 'ServiceEntry',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'origin', 'service'],
  properties: { id: { type: 'string' }, origin: originSchema, service: normalizedServiceSchema },
} as const;

export const serviceChangeSchema = {
  title: 'ServiceChange',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'origin', 'result', 'revision', 'service'],
  properties: {
    id: { type: 'string' },
    origin: originSchema,
    result: { type: 'string', enum: ['created', 'updated', 'unchanged', 'deleted'] },
    revision: { type: 'integer', description: 'the store revision after the change (each applied state counts one)' },
    service: normalizedServiceSchema,
  },
} as const;

export interface ServicesRoutesOptions {
  store: ServiceStore;
}

function entryBody(entry: StoredService): StoredService {
  return { id: entry.id, origin: entry.origin, service: entry.service };
}

function changeBody(change: StoreChange): Record<string, unknown> {
  return { ...entryBody(change.entry), result: change.result, revision: change.revision };
}

function notFound(id: string): ErrorBody {
  return errorBody(`service ${JSON.stringify(id)} not found`);
}

export const servicesRoutes: FastifyPluginAsync<ServicesRoutesOptions> = async (app, { store }) => {
  app.get(
    '/v1/services',
    {
      schema: {
        summary: 'List the services',
        tags: ['services'],
        response: {
          200: {
            description: 'every service, by id',
            type: 'object',
            additionalProperties: false,
            required: ['revision', 'services'],
            properties: { revision: { type: 'integer' }, services: { type: 'array', items: serviceEntrySchema } },
          },
          ...errorResponses(),
        },
      },
    },
    async () => ({ revision: store.revision, services: store.list().map(entryBody) }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/services/:id',
    {
      schema: {
        summary: 'Get a service',
        tags: ['services'],
        params: idParamsSchema,
        response: { 200: { ...normalizedServiceSchema, description: 'the service object' }, ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      const id = validateServiceId(request.params.id);
      const entry = store.get(id);
      if (!entry) return reply.code(404).send(notFound(id));
      return entry.service;
    },
  );

  app.put<{ Params: { id: string } }>(
    '/v1/services/:id',
    {
      schema: {
        summary: 'Create or replace a service',
        description:
          'Applies the service to the datapath, then keeps it in the state file. An identical service is a no-op (200, ' +
          'result "unchanged"). A service from the config file may be replaced: it becomes an API service. ' +
          'Two services cannot share a frontend (409).',
        tags: ['services'],
        params: idParamsSchema,
        body: serviceSchema,
        response: {
          200: { ...serviceChangeSchema, description: 'replaced, or unchanged' },
          201: { ...serviceChangeSchema, description: 'created' },
          ...errorResponses(400, 409, 413, 415, 500, 507),
        },
      },
    },
    async (request, reply) => {
      const id = validateServiceId(request.params.id);
      const service = validateService(request.body);
      const change = await store.put(id, service);
      return reply.code(change.result === 'created' ? 201 : 200).send(changeBody(change));
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/services/:id',
    {
      schema: {
        summary: 'Delete a service',
        description: 'A service from the config file comes back at the next restart.',
        tags: ['services'],
        params: idParamsSchema,
        response: { 200: { ...serviceChangeSchema, description: 'deleted; the answer holds the removed service' }, ...errorResponses(400, 404, 500, 507) },
      },
    },
    async (request, reply) => {
      const id = validateServiceId(request.params.id);
      const change = await store.delete(id);
      if (!change) return reply.code(404).send(notFound(id));
      return changeBody(change);
    },
  );
};
