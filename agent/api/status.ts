/** GET /v1/status, GET /v1/backends and GET /healthz. */
import type { FastifyPluginAsync } from 'fastify';
import { encodeXlbAddr } from '../../lb/layouts.js';
import { BACKEND_STATES, MODES, type BackendState } from '../../lb/service.js';
import { L4_PROTOCOLS, type L4Protocol } from '../../lb/maglev/index.js';
import type { ServiceDatapath } from '../datapath.js';
import type { KubernetesStatusSource } from '../kubernetes-status.js';
import type { ServiceOrigin, ServiceStore } from '../store.js';
import type { EdtStatus } from '../edt-datapath.js';
import { errorResponses } from './openapi.js';

const fullSchema = {
  type: 'boolean',
  description: 'no room for more: at capacity, or the last change was refused (507) for want of room in this table, until a change is applied',
} as const;

export const mapPressureSchema = {
  title: 'MapPressure',
  type: 'object',
  additionalProperties: false,
  required: ['map', 'entries', 'maxEntries', 'full'],
  properties: { map: { type: 'string' }, entries: { type: 'integer' }, maxEntries: { type: 'integer' }, full: fullSchema },
} as const;

export const idSpaceSchema = {
  title: 'IdSpace',
  type: 'object',
  additionalProperties: false,
  required: ['table', 'used', 'capacity', 'full'],
  properties: {
    table: { type: 'string', description: '"service ids" (one per service) or "backend ids" (one per distinct backend address, port and protocol)' },
    used: { type: 'integer' },
    capacity: { type: 'integer' },
    full: fullSchema,
  },
} as const;

/** KubernetesStatus (agent/kubernetes-status.ts): every member it has must be named here, or the serializer drops it. */
export const kubernetesStatusSchema = {
  title: 'KubernetesStatus',
  type: 'object',
  additionalProperties: false,
  required: ['apiServer', 'connection', 'since', 'nodeName', 'services', 'problems'],
  properties: {
    apiServer: { type: 'string', description: "the apiserver's URL" },
    connection: { type: 'string', enum: ['connecting', 'connected', 'disconnected'] },
    since: { type: 'string', format: 'date-time', description: 'when `connection` last changed' },
    lastError: { type: 'string', description: 'why the connection is not up (the last list or watch error), when it is not' },
    endpointSliceVersion: { type: 'string', enum: ['v1', 'v1beta1'], description: 'the discovery.k8s.io version EndpointSlices are watched with' },
    nodeName: { type: 'string' },
    services: { type: 'integer', description: 'xlb services from Kubernetes now served' },
    lastSync: {
      type: 'object',
      additionalProperties: false,
      required: ['at', 'durationMs', 'changed', 'failed'],
      properties: {
        at: { type: 'string', format: 'date-time', description: 'when the sync finished' },
        durationMs: { type: 'number' },
        changed: { type: 'integer', description: 'xlb services created, updated or removed' },
        failed: { type: 'integer', description: 'xlb services the datapath refused (each logged, retried later)' },
      },
    },
    problems: { type: 'integer', description: 'malformed objects and fields now reported (each also logged and an event)' },
  },
} as const;

/** EdtStatus (agent/edt-datapath.ts): the EDT bandwidth manager, when loaded. */
export const bandwidthStatusSchema = {
  title: 'BandwidthStatus',
  type: 'object',
  additionalProperties: false,
  required: ['devices', 'warnings', 'horizonNs', 'rates'],
  properties: {
    devices: {
      type: 'array',
      description: 'the devices tc_edt_egress is on',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'fq'],
        properties: { name: { type: 'string' }, fq: { type: 'boolean', description: 'fq is the root qdisc: without it departure times are set but not enforced' } },
      },
    },
    warnings: { type: 'array', items: { type: 'string' }, description: 'one per device without fq, naming it and why' },
    horizonNs: { type: 'integer', description: 'packets that would depart this far past now or later are dropped (edt_horizon)' },
    rates: {
      type: 'array',
      description: 'the egress rates in force, by pod device',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['ifindex', 'bytesPerSecond'],
        properties: { ifindex: { type: 'integer' }, device: { type: 'string', description: 'absent when the device is gone' }, bytesPerSecond: { type: 'integer' } },
      },
    },
  },
} as const;

export const statusSchema = {
  title: 'Status',
  type: 'object',
  additionalProperties: false,
  required: ['version', 'uptimeSeconds', 'revision', 'services', 'datapath', 'ids', 'maps'],
  properties: {
    version: { type: 'string', description: 'xlb-agent version' },
    uptimeSeconds: { type: 'number' },
    revision: { type: 'integer', description: 'store revision: each applied service state counts one' },
    services: {
      type: 'object',
      additionalProperties: false,
      required: ['total', 'config', 'api', 'kubernetes'],
      properties: { total: { type: 'integer' }, config: { type: 'integer' }, api: { type: 'integer' }, kubernetes: { type: 'integer' } },
      description: 'services served, by origin',
    },
    kubernetes: { ...kubernetesStatusSchema, description: 'Kubernetes mode only: the connection to the apiserver and the last sync' },
    bandwidth: { ...bandwidthStatusSchema, description: 'the EDT bandwidth manager (absent with --no-bandwidth-manager)' },
    datapath: {
      type: 'object',
      additionalProperties: false,
      required: ['devices', 'maglevTableSize', 'defaultMode'],
      properties: {
        devices: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'mode'],
            properties: { name: { type: 'string' }, mode: { type: 'string', description: 'how the datapath is attached (e.g. XDP native)' } },
          },
        },
        maglevTableSize: { type: 'integer' },
        defaultMode: { type: 'string', enum: [...MODES] },
        nodeSettings: {
          type: 'array',
          description: 'kernel settings the datapath needs that were unmet at start-up: set by the agent (changedFrom) or only warned about',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['sysctl', 'value', 'wanted', 'effect'],
            properties: {
              sysctl: { type: 'string' },
              value: { type: 'string', description: 'the value now' },
              wanted: { type: 'string' },
              changedFrom: { type: 'string', description: 'the value the agent replaced' },
              effect: { type: 'string', description: 'what goes wrong while the setting is unmet' },
            },
          },
        },
      },
    },
    ids: { type: 'array', items: idSpaceSchema, description: 'the id spaces: a change needing more ids than one holds is refused (507)' },
    maps: { type: 'array', items: mapPressureSchema },
  },
} as const;

export const backendUseSchema = {
  title: 'BackendUse',
  type: 'object',
  additionalProperties: false,
  required: ['address', 'port', 'protocol', 'services'],
  properties: {
    address: { type: 'string' },
    port: { type: 'integer' },
    protocol: { type: 'string', enum: [...L4_PROTOCOLS] },
    services: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'weight', 'state'],
        properties: { id: { type: 'string' }, weight: { type: 'integer' }, state: { type: 'string', enum: [...BACKEND_STATES] } },
      },
    },
  },
} as const;

export interface BackendUse {
  address: string;
  port: number;
  protocol: L4Protocol;
  services: { id: string; weight: number; state: BackendState }[];
}

/** Every backend (address, port and the service's protocol) with the services that use it. */
export function backendUses(store: ServiceStore): BackendUse[] {
  const byKey = new Map<string, BackendUse>();
  for (const { id, service } of store.list()) {
    const protocol = service.frontend.protocol;
    for (const backend of service.backends) {
      const key = `${backend.address} ${backend.port} ${protocol}`;
      let use = byKey.get(key);
      if (!use) {
        use = { address: backend.address, port: backend.port, protocol, services: [] };
        byKey.set(key, use);
      }
      use.services.push({ id, weight: backend.weight, state: backend.state });
    }
  }
  const addressOrder = (a: string, b: string): number =>
    Number(a.includes(':')) - Number(b.includes(':')) || Buffer.compare(encodeXlbAddr(a), encodeXlbAddr(b));
  return [...byKey.values()].sort(
    (a, b) => addressOrder(a.address, b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol),
  );
}

export interface StatusRoutesOptions {
  store: ServiceStore;
  datapath: ServiceDatapath;
  version: string;
  /** When the agent started (ms since the epoch). */
  startedAt: number;
  /** Kubernetes mode: its status is /v1/status `kubernetes`. */
  kubernetes?: KubernetesStatusSource;
  /** The EDT bandwidth manager: its status is /v1/status `bandwidth`. */
  bandwidth?: { status(): EdtStatus };
}

export const statusRoutes: FastifyPluginAsync<StatusRoutesOptions> = async (app, { store, datapath, version, startedAt, kubernetes, bandwidth }) => {
  app.get(
    '/v1/status',
    {
      schema: {
        summary: 'Agent and datapath status',
        tags: ['status'],
        response: { 200: { ...statusSchema, description: 'the status' }, ...errorResponses(500) },
      },
    },
    async () => {
      const entries = store.list();
      const services: Record<ServiceOrigin, number> & { total: number } = { total: entries.length, config: 0, api: 0, kubernetes: 0 };
      for (const entry of entries) services[entry.origin] += 1;
      const refused = store.fullTable;
      return {
        version,
        uptimeSeconds: Math.max(0, (Date.now() - startedAt) / 1000),
        revision: store.revision,
        services,
        ...(kubernetes ? { kubernetes: kubernetes.status() } : {}),
        ...(bandwidth ? { bandwidth: bandwidth.status() } : {}),
        datapath: datapath.status(),
        ids: datapath.idSpaces().map((s) => ({ ...s, full: s.used >= s.capacity || s.table === refused })),
        maps: datapath.mapPressure().map((m) => ({ ...m, full: (m.maxEntries > 0 && m.entries >= m.maxEntries) || m.map === refused })),
      };
    },
  );

  app.get(
    '/v1/backends',
    {
      schema: {
        summary: 'Every backend with the services using it',
        tags: ['services'],
        response: {
          200: {
            description: 'backends by address, port and protocol',
            type: 'object',
            additionalProperties: false,
            required: ['backends'],
            properties: { backends: { type: 'array', items: backendUseSchema } },
          },
          ...errorResponses(),
        },
      },
    },
    async () => ({ backends: backendUses(store) }),
  );

  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: the agent answers',
        tags: ['status'],
        response: {
          200: {
            description: 'alive',
            type: 'object',
            additionalProperties: false,
            required: ['status'],
            properties: { status: { type: 'string', enum: ['ok'] } },
          },
          ...errorResponses(),
        },
      },
    },
    async () => ({ status: 'ok' }),
  );
};
