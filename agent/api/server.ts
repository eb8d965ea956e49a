/**
 * The REST API server: one fastify app per listener (the unix socket needs no token, the TCP one
 * always does), each with the same routes, registered as plugins. Errors take one shape,
 * {error, issues?}: 400 names every offending field (schema and validateService issues alike),
 * 404 a missing service, 409 a frontend another service has, 500 a refused apply or state-file
 * write, 507 a full datapath map.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { ServiceValidationError, type ValidationIssue } from '../../lb/service.js';
import type { ServiceDatapath } from '../datapath.js';
import type { HostPort } from '../flags.js';
import type { Logger } from '../log.js';
import type { AgentMetrics } from '../metrics.js';
import { DatapathApplyError, FrontendConflictError, type ServiceStore } from '../store.js';
import { metricsRoutes } from './metrics.js';
import { monitorRoutes } from './monitor.js';
import { collectRoutes, openApiRoutes } from './openapi.js';
import { servicesRoutes } from './services.js';
import { statusRoutes } from './status.js';

/** A service with 65535 backends is about 5 MB of JSON. */
const BODY_LIMIT = 16 * 1024 * 1024;

export interface ApiServerOptions {
  store: ServiceStore;
  datapath: ServiceDatapath;
  metrics: AgentMetrics;
  log: Logger;
  version: string;
  /** When the agent started (ms since the epoch), for the uptime in /v1/status. */
  startedAt: number;
  /** Bearer token every request must carry (the TCP listener); absent for the unix socket. */
  token?: string;
}

type SchemaError = NonNullable<FastifyError['validation']>[number];

/** "/backends/1/port" → "backends[1].port". */
function pointerToField(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((field, part) => (/^\d+$/.test(part) ? `${field}[${part}]` : field === '' ? part : `${field}.${part}`), '');
}

/** An ajv error as {field, message}, the field named like validateService() names it. */
export function schemaIssue(error: SchemaError): ValidationIssue {
  const base = pointerToField(error.instancePath);
  const join = (name: string): string => (base === '' ? name : `${base}.${name}`);
  const params = error.params;
  switch (error.keyword) {
    case 'required':
      return { field: join(String(params.missingProperty)), message: 'required' };
    case 'additionalProperties':
      return { field: join(String(params.additionalProperty)), message: 'unknown field' };
    case 'enum': {
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues.map(String).join(', ') : '';
      return { field: base, message: `must be one of ${allowed}` };
    }
    default:
      return { field: base, message: error.message ?? error.keyword };
  }
}

function validationBody(issues: ValidationIssue[], what: string): { error: string; issues: ValidationIssue[] } {
  return {
    error: `${what}: ${issues.map((i) => (i.field ? `${i.field}: ${i.message}` : i.message)).join('; ')}`,
    issues,
  };
}

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Constant-time comparison of an Authorization header with the expected bearer token. */
export function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const given = tokenDigest(match?.[1] ?? '');
  return timingSafeEqual(given, expected) && match !== null;
}

export async function buildApiServer(options: ApiServerOptions): Promise<FastifyInstance> {
  const { store, datapath, metrics, log } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    exposeHeadRoutes: false,
    // Report every schema problem at once, and never coerce or strip input: a typo'd field or a
    // port given as a string is an error, as validateService() treats it.
    ajv: { customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: false } },
  });

  const expected = options.token === undefined ? undefined : tokenDigest(options.token);
  if (expected) {
    app.addHook('onRequest', async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, expected)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer realm="xlb"')
          .send({ error: 'missing or wrong bearer token: send "Authorization: Bearer <token>" (the --api-token-file content)' });
      }
    });
  }

  app.addHook('onResponse', async (request, reply) => {
    metrics.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  app.setErrorHandler<FastifyError | Error>(async (error, request, reply) => {
    if ('validation' in error && error.validation) {
      const context = error.validationContext;
      const issues = error.validation.map(schemaIssue);
      return reply.code(400).send(validationBody(issues, `invalid ${context ?? 'request'}`));
    }
    if (error instanceof ServiceValidationError) {
      return reply.code(400).send(validationBody(error.issues, 'invalid service'));
    }
    if (error instanceof FrontendConflictError) {
      return reply.code(409).send({ error: error.message, issues: error.issues });
    }
    if (error instanceof DatapathApplyError) {
      return reply.code(error.mapFull ? 507 : 500).send({ error: error.message });
    }
    const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500;
    if (status >= 400 && status < 500) {
      // fastify's own: malformed JSON, wrong content type, body too large...
      return reply.code(status).send(status === 400 ? validationBody([{ field: '', message: error.message }], 'invalid body') : { error: error.message });
    }
    log.error(`${request.method} ${request.url}: ${error.stack ?? error.message}`);
    return reply.code(500).send({ error: error.message });
  });

  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0] ?? ''} (see GET /v1/openapi.json)` }),
  );

  const routes = collectRoutes(app);
  await app.register(servicesRoutes, { store });
  await app.register(statusRoutes, { store, datapath, version: options.version, startedAt: options.startedAt });
  await app.register(metricsRoutes, { metrics });
  await app.register(monitorRoutes, {
    datapath,
    onStreamEnd: (seconds) => metrics.observeRequest('GET', '/v1/monitor', 200, seconds),
  });
  await app.register(openApiRoutes, { routes, version: options.version });
  return app;
}

/** A plain listener serving only GET /metrics (--metrics-addr). */
export async function buildMetricsServer(metrics: AgentMetrics): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, exposeHeadRoutes: false });
  await app.register(metricsRoutes, { metrics });
  return app;
}

/**
 * Removes a socket file left by an agent that is gone; refuses when something still listens on it,
 * or when the path is not a socket at all.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!isSocket) throw new Error(`--api-socket ${path} exists and is not a socket; not removing it`);
  const alive = await new Promise<boolean>((resolve, reject) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') resolve(false);
      else reject(new Error(`--api-socket ${path}: cannot check whether it is in use: ${error.message}`));
    });
  });
  if (alive) throw new Error(`--api-socket ${path} is in use: another xlb-agent is running`);
  await rm(path, { force: true });
}

/** Listens on a unix socket created with mode 0600 (no window where it is more open), its directory created. */
export async function listenUnix(app: FastifyInstance, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await removeStaleSocket(path);
  const umask = process.umask(0o177);
  try {
    await app.listen({ path });
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);
}

/** Listens on TCP; returns the bound address (the port is the real one when 0 was asked for). */
export async function listenTcp(app: FastifyInstance, address: HostPort): Promise<HostPort> {
  await app.listen({ host: address.host, port: address.port });
  const bound = app.server.address();
  if (bound === null || typeof bound === 'string') return address;
  return { host: bound.address, port: bound.port };
}
