/**
 * /v1/services: list, get, put (create or replace) and delete services. The body of PUT and the
 * answer of GET /v1/services/{id} are the service object (lb/service.ts); the JSON schemas below
 * check its structure, validateService() the rest (addresses, CIDRs, families, duplicates).
 *
 * PUT on a service from the config file is allowed: it becomes an API service, kept in the state
 * file (until the next restart, when the config file wins again for that id). DELETE of a config
 * service removes it until the next restart.
 *
 * Ids. The API's and the config file's ids are DNS labels. A Kubernetes service's id is
 * `namespace/name:port@address` (lb/k8s/model.ts): clients percent-encode it in the path
 * (encodeURIComponent: default%2Fweb%3Ahttp%40198.18.128.10), the router decodes it. Such a service is
 * read-only here: GET answers it, PUT and DELETE answer 409 (ReadOnlyServiceError), since the
 * apiserver owns it.
 */
import type { FastifyPluginAsync } from 'fastify';
import { isIP } from 'node:net';
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
import { ReadOnlyServiceError, type ServiceStore, type StoreChange, type StoredService } from '../store.js';
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

const externalTrafficPolicySchema = {
  type: 'string',
  enum: [...TRAFFIC_POLICIES],
  description: 'default Cluster; Local: new flows only to backends on this node (none: dropped). Not for a ClusterIP service',
} as const;

/** What the API and the config file take: every type, but not internalTrafficPolicy (only Kubernetes sets it, for now). */
function serviceProperties(frontend: object, backend: object) {
  return {
    frontend,
    type: { type: 'string', enum: [...SERVICE_TYPES], description: 'default LoadBalancer; ClusterIP: a cluster address, for pods and the node\'s processes' },
    mode: { type: 'string', enum: [...MODES], description: "absent: the agent's --mode applies" },
    algorithm: { type: 'string', enum: [...ALGORITHMS], description: 'default maglev' },
    sessionAffinity: sessionAffinitySchema,
    externalTrafficPolicy: externalTrafficPolicySchema,
    sourceRanges: { type: 'array', items: { type: 'string', description: 'CIDR' }, description: 'empty: every client' },
    backends: { type: 'array', maxItems: MAX_BACKENDS, items: backend },
  } as const;
}

/**
 * What the agent serves, Kubernetes' services included: internalTrafficPolicy too. Every member
 * serviceToJSON (lb/service.ts) can write must be here, in its order: the serializer drops members its
 * schema does not name.
 */
function servedServiceProperties(frontend: object, backend: object) {
  const { frontend: _frontend, type, mode, algorithm, sessionAffinity, externalTrafficPolicy, ...rest } = serviceProperties(frontend, backend);
  return {
    frontend,
    type,
    mode,
    algorithm,
    sessionAffinity,
    externalTrafficPolicy,
    internalTrafficPolicy: {
      type: 'string',
      enum: [...TRAFFIC_POLICIES],
      description: 'ClusterIP only (where externalTrafficPolicy is absent); default Cluster; Local: new flows only to backends on this node',
    },
    ...rest,
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
  properties: servedServiceProperties(
    { type: 'object', additionalProperties: false, required: ['address', 'port', 'protocol'], properties: frontendProperties },
    { type: 'object', additionalProperties: false, required: ['address', 'port', 'weight', 'state'], properties: backendProperties },
  ),
} as const;

/** `namespace/name:port@address` (lb/k8s/model.ts): DNS labels, a port name or number, an IP address. */
const KUBERNETES_ID = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):([a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)@([0-9a-fA-F.:]{2,45})$/;

/** Whether `id` has the shape of a Kubernetes service's id (`namespace/name:port@address`), served or not. */
export function isKubernetesServiceId(id: string): boolean {
  const address = KUBERNETES_ID.exec(id)?.[7];
  return address !== undefined && isIP(address) !== 0;
}

/** `namespace/name:port`, a Kubernetes service port: served as one xlb service per frontend (`…@address`). */
const KUBERNETES_SERVICE_PORT = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?:[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

export function isKubernetesServicePort(id: string): boolean {
  return KUBERNETES_SERVICE_PORT.test(id);
}

/** The ids of the xlb services that serve a Kubernetes service port, sorted. */
export function idsOfServicePort(store: ServiceStore, servicePort: string): string[] {
  return store
    .list()
    .filter((e) => e.origin === 'kubernetes' && e.id.startsWith(`${servicePort}@`))
    .map((e) => e.id);
}

/** The longest id a path carries: a Kubernetes one (63 + 1 + 63 + 1 + 15 + 1 + 45), decoded. The router's limit. */
export const MAX_SERVICE_ID_PATH_LENGTH = 192;

/** The path of a service: its id percent-encoded (a Kubernetes id has '/', ':' and '@'). */
export function servicePath(id: string): string {
  return `/v1/services/${encodeURIComponent(id)}`;
}

/**
 * The id's rule is validateServiceId's (the config file's ids follow it too), checked first by each
 * handler, so that one message says what an id is, however it is wrong; a Kubernetes service's id is
 * the other kind a path may carry.
 */
export const idParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: {
    id: {
      type: 'string',
      description:
        "the service id: a DNS label, 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit; " +
        'or a Kubernetes service\'s id, namespace/name:port@address, percent-encoded (encodeURIComponent: ' +
        'default%2Fweb%3Ahttp%40198.18.128.10), read-only',
    },
  },
} as const;

const originSchema = {
  type: 'string',
  enum: ['config', 'api', 'kubernetes'],
  description: 'config: the config file; api: this API (kept in the state file); kubernetes: from the apiserver (read-only here: PUT and DELETE answer 409)',
} as const;

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

/**
 * The id a GET or DELETE names: any id the store holds, a Kubernetes-shaped one (404 when not
 * served), else it must be a DNS label (400 naming the rule).
 */
function existingId(store: ServiceStore, id: string): string {
  if (store.get(id) !== undefined || isKubernetesServiceId(id) || isKubernetesServicePort(id)) return id;
  return validateServiceId(id);
}

/** 404 for an id nothing has; a Kubernetes service port's answer names the ids that serve it. */
function notServed(store: ServiceStore, id: string): ErrorBody {
  if (!isKubernetesServicePort(id)) return notFound(id);
  const ids = idsOfServicePort(store, id);
  if (ids.length === 0) return errorBody(`Kubernetes service port ${JSON.stringify(id)} is not served`);
  return errorBody(`${id} is a Kubernetes service port, served as one service per frontend: ${ids.join(', ')}`);
}

export const servicesRoutes: FastifyPluginAsync<ServicesRoutesOptions> = async (app, { store }) => {
  app.get(
    '/v1/services',
    {
      schema: {
        summary: 'List the services',
        description: 'Kubernetes services (origin kubernetes) are listed beside the config file\'s and the API\'s.',
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
        description: 'A Kubernetes service\'s id is percent-encoded in the path: /v1/services/default%2Fweb%3Ahttp%40198.18.128.10.',
        tags: ['services'],
        params: idParamsSchema,
        response: { 200: { ...normalizedServiceSchema, description: 'the service object' }, ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      const id = existingId(store, request.params.id);
      const entry = store.get(id);
      if (!entry) return reply.code(404).send(notServed(store, id));
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
          'Two services cannot share a frontend (409). A Kubernetes service is read-only here (409, whatever the body): ' +
          'change it through the apiserver. The id of a new service is a DNS label.',
        tags: ['services'],
        params: idParamsSchema,
        body: serviceSchema,
        response: {
          200: { ...serviceChangeSchema, description: 'replaced, or unchanged' },
          201: { ...serviceChangeSchema, description: 'created; the Location header is its path' },
          ...errorResponses(400, 409, 413, 415, 500, 507),
        },
      },
      // Before the body is validated: a Kubernetes service's own GET answer (type ClusterIP) put
      // back is refused for what it is, not for its type.
      preValidation: async (request) => {
        const { id } = request.params;
        if (store.get(id)?.origin === 'kubernetes') throw new ReadOnlyServiceError(id);
      },
    },
    async (request, reply) => {
      const id = validateServiceId(request.params.id);
      const service = validateService(request.body);
      const change = await store.put(id, service);
      if (change.result === 'created') void reply.code(201).header('location', servicePath(id));
      return reply.send(changeBody(change));
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/services/:id',
    {
      schema: {
        summary: 'Delete a service',
        description: 'A service from the config file comes back at the next restart. A Kubernetes service is read-only here (409).',
        tags: ['services'],
        params: idParamsSchema,
        response: {
          200: { ...serviceChangeSchema, description: 'deleted; the answer holds the removed service' },
          ...errorResponses(400, 404, 409, 500, 507),
        },
      },
    },
    async (request, reply) => {
      const id = existingId(store, request.params.id);
      const change = await store.delete(id);
      if (!change) return reply.code(404).send(notFound(id));
      return changeBody(change);
    },
  );
};
