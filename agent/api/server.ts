/**
 * The REST API server: one fastify app per listener (the unix socket needs no token, the TCP one
 * always does), each with the same routes, registered as plugins. Every error answer has one shape,
 * {error, issues} (errorBody in openapi.ts), fastify's own included (its router, body parsers and
 * HTTP client errors are routed through the handlers below): 400 names every offending field (schema
 * and validateService issues alike; the body as a whole is field ""), 404 a missing service or
 * route, 405 a route that has other methods, 409 a frontend another service has or a Kubernetes
 * service (read-only here: ReadOnlyServiceError), 413 a body too
 * large, 415 a body that is not JSON, 500 a refused apply or state-file write, 507 a full table
 * (TableFullError: service ids, backend ids or a datapath map, named with its capacity).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { TableFullError } from '../../lb/lbmap/ids.js';
import { ServiceValidationError, validateServiceId, type ValidationIssue } from '../../lb/service.js';
import type { ServiceDatapath } from '../datapath.js';
import type { HostPort } from '../flags.js';
import type { Logger } from '../log.js';
import type { AgentMetrics } from '../metrics.js';
import type { KubernetesStatusSource } from '../kubernetes-status.js';
import { DatapathApplyError, FrontendConflictError, ReadOnlyServiceError, type ServiceStore } from '../store.js';
import { metricsRoutes } from './metrics.js';
import { MonitorStreams, monitorRoutes } from './monitor.js';
import { policyRoutes, type PolicySource } from './policy.js';
import { collectRoutes, errorBody, openApiRoutes, type CollectedRoute, type ErrorBody } from './openapi.js';
import { MAX_SERVICE_ID_PATH_LENGTH, servicesRoutes } from './services.js';
import { statusRoutes } from './status.js';
import { bandwidthRoutes } from './bandwidth.js';
import type { BandwidthSettings } from '../bandwidth.js';
import type { EdtStatus } from '../edt-datapath.js';

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
  /** The monitor streams to count against their limit; give the same one to every listener of an agent. */
  monitor?: MonitorStreams;
  /** Kubernetes mode: the watcher's status, shown as /v1/status `kubernetes`. */
  kubernetes?: KubernetesStatusSource;
  /** Kubernetes mode: network policy (/v1/identities, /v1/policy, labels in monitor events); absent: 409. */
  policy?: PolicySource;
  /** The EDT bandwidth manager's status, shown as /v1/status `bandwidth`. */
  edt?: { status(): EdtStatus };
  /** Standalone mode's pod bandwidth limits: /v1/bandwidth. */
  bandwidth?: BandwidthSettings;
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

function validationBody(issues: ValidationIssue[], what: string): ErrorBody {
  return errorBody(`${what}: ${issues.map((i) => (i.field ? `${i.field}: ${i.message}` : i.message)).join('; ')}`, issues);
}

/** A problem with the body as a whole (field ""), as fastify's parsers report them. */
function bodyError(message: string): ErrorBody {
  return errorBody(message, [{ field: '', message }]);
}

/** The path of a request without its query string. */
function pathOf(url: string): string {
  return url.split('?')[0] ?? '';
}

/** The methods other routes have for this path ("/v1/services/web" matches "/v1/services/:id"). */
function allowedMethods(routes: readonly CollectedRoute[], path: string): string[] {
  const matches = (url: string): boolean =>
    new RegExp(`^${url.split(/:[A-Za-z0-9_]+/).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+')}$`).test(path);
  return [...new Set(routes.filter((r) => matches(r.url)).map((r) => r.method))];
}

/**
 * fastify's errors before a route is found: a path parameter longer than its router allows (only the
 * service id is one: reported by the id's own rule, a DNS label of at most 63 characters) or a path
 * that is not valid percent-encoding.
 */
function frameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    const id = decodeURIComponentSafe(pathOf(request.url).split('/').pop() ?? '');
    try {
      validateServiceId(id);
    } catch (invalid) {
      if (invalid instanceof ServiceValidationError) {
        void reply.code(400).send(validationBody(invalid.issues, 'invalid service'));
        return;
      }
    }
  }
  const message = error.code === 'FST_ERR_BAD_URL' ? `the path ${pathOf(request.url)} is not valid percent-encoded UTF-8` : error.message;
  void reply.code(400).send(errorBody(message));
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Errors of the HTTP parser, before fastify sees a request (a request line or headers too large,
 * a malformed request): answered in the same shape, then the connection is closed.
 */
function clientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const message =
    status === 431 ? 'the request line and headers are larger than the agent accepts (16 KiB)' : status === 408 ? 'the request was not received in time' : `malformed HTTP request (${error.code ?? error.message})`;
  const body = JSON.stringify(errorBody(message));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
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
  const { store, datapath, metrics, log, policy } = options;
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    exposeHeadRoutes: false,
    // Report every schema problem at once, and never coerce or strip input: a typo'd field or a
    // port given as a string is an error, as validateService() treats it.
    ajv: { customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: false } },
    frameworkErrors: frameworkError,
    // A Kubernetes service's id (namespace/name:port@address, percent-encoded) is longer than the
    // router's default 100 characters; longer ones are no id at all (frameworkError says why).
    routerOptions: { maxParamLength: MAX_SERVICE_ID_PATH_LENGTH },
    clientErrorHandler: clientError,
  });
  // Bodies are JSON only: fastify's text/plain parser would hand a string to the schema (400);
  // without it text/plain is a wrong content type (415) like any other.
  app.removeContentTypeParser('text/plain');

  const expected = options.token === undefined ? undefined : tokenDigest(options.token);
  if (expected) {
    app.addHook('onRequest', async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, expected)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer realm="xlb"')
          .send(errorBody('missing or wrong bearer token: send "Authorization: Bearer <token>" (the --api-token-file content)'));
      }
    });
  }

  app.addHook('onResponse', async (request, reply) => {
    metrics.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  app.setErrorHandler<FastifyError | Error>(async (error, request, reply) => {
    if ('validation' in error && error.validation) {
      const context = error.validationContext;
      if (context === 'body' && request.body === undefined) {
        return reply.code(400).send(validationBody([{ field: '', message: 'required: the service object as JSON (content-type application/json)' }], 'no body'));
      }
      const issues = error.validation.map(schemaIssue);
      return reply.code(400).send(validationBody(issues, `invalid ${context ?? 'request'}`));
    }
    if (error instanceof ServiceValidationError) {
      return reply.code(400).send(validationBody(error.issues, 'invalid service'));
    }
    if (error instanceof FrontendConflictError || error instanceof ReadOnlyServiceError) {
      return reply.code(409).send(errorBody(error.message, error.issues));
    }
    if (error instanceof TableFullError) {
      return reply.code(507).send(errorBody(error.message));
    }
    if (error instanceof DatapathApplyError) {
      return reply.code(500).send(errorBody(error.message));
    }
    const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500;
    if (status >= 400 && status < 500) {
      // fastify's own: malformed JSON, an empty body, a wrong content type, a body too large...
      const code = 'code' in error ? error.code : undefined;
      if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        const type = request.headers['content-type'];
        return reply.code(415).send(bodyError(`${type === undefined ? 'no content type' : `content type ${JSON.stringify(type)}`}: the body must be application/json`));
      }
      if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return reply.code(413).send(bodyError(`the body is larger than ${BODY_LIMIT} bytes, the most the agent accepts`));
      }
      return reply.code(status).send(status === 400 ? validationBody([{ field: '', message: error.message }], 'invalid body') : bodyError(error.message));
    }
    log.error(`${request.method} ${request.url}: ${error.stack ?? error.message}`);
    return reply.code(500).send(errorBody(error.message));
  });

  const routes = collectRoutes(app);
  app.setNotFoundHandler(async (request, reply) => {
    const path = pathOf(request.url);
    const allowed = allowedMethods(routes, path);
    if (allowed.length > 0) {
      return reply.code(405).header('allow', allowed.join(', ')).send(errorBody(`${request.method} is not a method of ${path} (it has ${allowed.join(', ')})`));
    }
    return reply.code(404).send(errorBody(`no route ${request.method} ${path} (see GET /v1/openapi.json)`));
  });
  await app.register(servicesRoutes, { store });
  await app.register(statusRoutes, { store, datapath, version: options.version, startedAt: options.startedAt, kubernetes: options.kubernetes, bandwidth: options.edt });
  if (options.bandwidth) await app.register(bandwidthRoutes, { bandwidth: options.bandwidth });
  await app.register(metricsRoutes, { metrics });
  const monitor = options.monitor ?? new MonitorStreams();
  const untrack = metrics.trackMonitor(monitor);
  app.addHook('onClose', async () => untrack());
  await app.register(monitorRoutes, {
    datapath,
    streams: monitor,
    onStreamEnd: (seconds) => metrics.observeRequest('GET', '/v1/monitor', 200, seconds),
    onDropped: (count) => metrics.monitorDropped(count),
    ...(policy ? { identityLabels: (id: number) => policy.identityLabels(id) } : {}),
  });
  await app.register(policyRoutes, policy ? { policy } : {});
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
