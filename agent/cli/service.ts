/**
 * `xlb service list|get|add|delete`: the agent's services, through its REST API. Kubernetes services
 * (origin kubernetes, id namespace/name:port@address) are listed and shown; the agent refuses to
 * change them (409: the apiserver owns them).
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import {
  BACKEND_STATES,
  ServiceValidationError,
  trafficPolicyOf,
  validateService,
  validateServiceId,
  type Service,
  type ValidationIssue,
} from '../../lb/service.js';
import { frontendText } from '../store.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { API_SOCKET_USAGE, ApiError, apiCall, apiSocketPath } from './api-client.js';
import { isKubernetesServiceId, isKubernetesServicePort, servicePath } from '../api/services.js';
import { formatTable } from './table.js';
import { hostPort } from '../../lb/codec.js';

const ORIGINS = ['config', 'api', 'kubernetes'] as const;

const USAGE = `xlb service list [--origin config|api|kubernetes] [--json]
xlb service get ID [--json]
xlb service add ID --frontend ADDR:PORT/PROTO [--type T] [--mode M] [--algorithm A]
                   [--affinity-timeout S] [--external-traffic-policy P] [--source-range CIDR]...
                   [--backend ADDR:PORT[@WEIGHT][:STATE][,node=NAME]]... [--json]
xlb service add ID --file FILE [--json]
xlb service delete ID [--json]

  list                     every service: id, origin, frontend, type, mode, algorithm, backends;
                           --origin: only those from the config file, the API or Kubernetes
  get ID                   one service (--json: the service object, as PUT takes it)
  add ID                   create the service, or replace it (an identical one is left as it is);
                           a service from the agent's config file becomes an API service
  delete ID                remove the service (one from the config file returns at the agent's restart)

  ID is a DNS label (web, dns-1); a Kubernetes service's is namespace/name:port@address
  (default/web:http@198.18.128.10), for get only: Kubernetes services change through the apiserver.

  --frontend ADDR:PORT/PROTO   198.18.0.10:80/TCP, [2001:db8::10]:53/UDP; PROTO TCP, UDP or SCTP;
                               NodePort: :30080/TCP (or 0.0.0.0 / [::])
  --type T                     LoadBalancer (default), ExternalIP, NodePort or ClusterIP (for pods
                               and the node's processes: --pod-devices, socket-LB)
  --mode M                     snat, dsr or hybrid (default: the agent's --mode)
  --algorithm A                maglev (default) or random
  --affinity-timeout S         ClientIP session affinity for S seconds (default: none)
  --external-traffic-policy P  Cluster (default) or Local: new flows only to backends on the node
                               that receives them (none there: dropped)
  --source-range CIDR          allowed clients (loadBalancerSourceRanges); repeatable; default everyone
  --backend SPEC               198.18.1.2:8080, [2001:db8::2]:8080, with @WEIGHT (default 100),
                               :STATE (${BACKEND_STATES.join(', ')}; default active) and
                               ,node=NAME (the node it runs on); repeatable
  --file FILE                  the service object in JSON or YAML ("-": standard input)
  --json                       print JSON instead of text
${API_SOCKET_USAGE}

Exit codes: 0 done, 1 the agent failed or is unreachable (or no such service), 2 bad arguments.`;

function parseCommandLine(args: string[]) {
  return parseCliArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      'api-socket': { type: 'string' },
      origin: { type: 'string' },
      frontend: { type: 'string' },
      type: { type: 'string' },
      mode: { type: 'string' },
      algorithm: { type: 'string' },
      'affinity-timeout': { type: 'string' },
      'external-traffic-policy': { type: 'string' },
      'source-range': { type: 'string', multiple: true },
      backend: { type: 'string', multiple: true },
      file: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type Options = ReturnType<typeof parseCommandLine>['values'];

const SERVICE_FLAGS = ['frontend', 'type', 'mode', 'algorithm', 'affinity-timeout', 'external-traffic-policy', 'source-range', 'backend'] as const;


/** The ID argument: a DNS label; for get and delete a Kubernetes service's id too (`kubernetes`). */
function serviceId(sub: string, positionals: string[], kubernetes = false): string {
  const [id, ...extra] = positionals;
  if (id === undefined) throw new UsageError(`xlb service ${sub}: the service ID is required`);
  if (extra.length > 0) throw new UsageError(`xlb service ${sub}: unexpected argument ${JSON.stringify(extra[0])}`);
  if (kubernetes && isKubernetesServiceId(id)) return id;
  try {
    return validateServiceId(id);
  } catch (error) {
    const rule = error instanceof Error ? error.message.replace(/^id: /, '') : String(error);
    throw new UsageError(`ID: ${rule}${kubernetes ? ', nor a Kubernetes service id (namespace/name:port@address)' : ''}`);
  }
}

function originFilter(value: string | undefined): string | undefined {
  if (value === undefined || (ORIGINS as readonly string[]).includes(value)) return value;
  throw new UsageError(`--origin ${JSON.stringify(value)}: must be one of ${ORIGINS.join(', ')}`);
}

function noFlags(sub: string, values: Options, allowed: readonly (keyof Options)[]): void {
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && !(allowed as readonly string[]).includes(name)) {
      throw new UsageError(`xlb service ${sub}: --${name} is not an option of ${sub}`);
    }
  }
}

/** ADDR:PORT/PROTO; ADDR may be empty (a NodePort). */
export function parseFrontendSpec(spec: string): Record<string, unknown> {
  const match = /^(\[[^\]]*\]|[^:[\]/]*):([^/]*)\/(.*)$/.exec(spec);
  if (match === null || !/^\d+$/.test(match[2] ?? '')) {
    throw new UsageError(`--frontend ${JSON.stringify(spec)}: expected ADDR:PORT/PROTO, e.g. 198.18.0.10:80/TCP or [2001:db8::10]:53/UDP`);
  }
  const [, host = '', port = '', protocol = ''] = match;
  const address = host.startsWith('[') ? host.slice(1, -1) : host;
  const frontend: Record<string, unknown> = { port: Number(port), protocol: protocol.toUpperCase() };
  if (address !== '') frontend.address = address;
  return frontend;
}

/** ADDR:PORT[@WEIGHT][:STATE][,node=NAME]. */
export function parseBackendSpec(spec: string): Record<string, unknown> {
  const match = /^(\[[^\]]*\]|[^:[\]@,]+):(\d+)(?:@(\d+))?(?::([A-Za-z]+))?(?:,node=([^,]*))?$/.exec(spec);
  if (match === null) {
    const unbracketed = !spec.startsWith('[') && (spec.match(/:/g) ?? []).length > 2;
    throw new UsageError(
      `--backend ${JSON.stringify(spec)}: expected ADDR:PORT[@WEIGHT][:STATE][,node=NAME], e.g. 198.18.1.2:8080@50:maintenance,node=worker-1` +
        (unbracketed ? ' (an IPv6 address goes in brackets: [2001:db8::2]:8080)' : ''),
    );
  }
  const [, host = '', port = '', weight, state, node] = match;
  const backend: Record<string, unknown> = { address: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(port) };
  if (weight !== undefined) backend.weight = Number(weight);
  if (state !== undefined) backend.state = state.toLowerCase();
  if (node !== undefined) backend.node = node;
  return backend;
}

/** The service object the flags describe (unvalidated: the caller runs validateService). */
function serviceFromFlags(values: Options): Record<string, unknown> {
  if (values.frontend === undefined) throw new UsageError('--frontend: required (or --file FILE)');
  const service: Record<string, unknown> = { frontend: parseFrontendSpec(values.frontend) };
  if (values.type !== undefined) service.type = values.type;
  if (values.mode !== undefined) service.mode = values.mode;
  if (values.algorithm !== undefined) service.algorithm = values.algorithm;
  const timeout = values['affinity-timeout'];
  if (timeout !== undefined) {
    if (!/^\d+$/.test(timeout)) throw new UsageError(`--affinity-timeout ${JSON.stringify(timeout)}: not a number of seconds`);
    service.sessionAffinity = { type: 'ClientIP', timeoutSeconds: Number(timeout) };
  }
  const policy = values['external-traffic-policy'];
  if (policy !== undefined) service.externalTrafficPolicy = policy;
  if (values['source-range'] !== undefined) service.sourceRanges = [...values['source-range']];
  service.backends = (values.backend ?? []).map(parseBackendSpec);
  return service;
}

/** "backends[1].port" → `--backend "spec"`: the flag a validation issue comes from. */
function flagOf(issue: ValidationIssue, values: Options): string {
  const indexed = /^(backends|sourceRanges)\[(\d+)\]/.exec(issue.field);
  if (indexed) {
    const list = indexed[1] === 'backends' ? values.backend : values['source-range'];
    const flag = indexed[1] === 'backends' ? '--backend' : '--source-range';
    return `${flag} ${JSON.stringify(list?.[Number(indexed[2])] ?? '')}`;
  }
  const top = issue.field.split(/[.[]/)[0] ?? '';
  const flags: Record<string, string> = {
    frontend: `--frontend ${JSON.stringify(values.frontend ?? '')}`,
    type: '--type',
    mode: '--mode',
    algorithm: '--algorithm',
    sessionAffinity: '--affinity-timeout',
    externalTrafficPolicy: '--external-traffic-policy',
    sourceRanges: '--source-range',
    backends: '--backend',
  };
  return flags[top] ?? issue.field;
}

async function readServiceFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--file ${file}: cannot read: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    throw new UsageError(`--file ${file}: not valid JSON or YAML: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function readStdin(): Promise<string> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return text;
}

async function serviceToAdd(values: Options): Promise<Service> {
  if (values.file !== undefined) {
    const mixed = SERVICE_FLAGS.find((flag) => values[flag] !== undefined);
    if (mixed) throw new UsageError(`--file: cannot be combined with --${mixed} (the file holds the whole service)`);
    const file = values.file;
    const input = await readServiceFile(file);
    try {
      return validateService(input);
    } catch (error) {
      if (!(error instanceof ServiceValidationError)) throw error;
      throw new UsageError(`--file ${file}: ${error.issues.map((i) => `${i.field || '(service)'}: ${i.message}`).join('; ')}`);
    }
  }
  const input = serviceFromFlags(values);
  try {
    return validateService(input);
  } catch (error) {
    if (!(error instanceof ServiceValidationError)) throw error;
    throw new UsageError(error.issues.map((i) => `${flagOf(i, values)}: ${i.field}: ${i.message}`).join('\n'));
  }
}

function backendLabel(backend: { address: string; port: number }): string {
  return hostPort(backend.address, backend.port);
}

interface Entry {
  id: string;
  origin: string;
  service: Service;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The agent's answers are checked where the CLI relies on their shape. */
function entriesOf(body: unknown): Entry[] {
  if (!isObject(body) || !Array.isArray(body.services)) throw new Error('unexpected answer from xlb-agent to GET /v1/services');
  return body.services.filter(isObject).map((e) => ({ id: String(e.id), origin: String(e.origin), service: e.service as Service }));
}

function listTable(entries: Entry[]): string {
  if (entries.length === 0) return 'no services\n';
  return formatTable(
    ['id', 'origin', 'frontend', 'type', 'mode', 'algorithm', 'backends', 'active'],
    entries.map(({ id, origin, service }) => [
      id,
      origin,
      frontendText(service),
      service.type,
      service.mode ?? 'default',
      service.algorithm,
      service.backends.length,
      service.backends.filter((b) => b.state === 'active' && b.weight > 0).length,
    ]),
  );
}

function serviceText(id: string, service: Service): string {
  const affinity =
    service.sessionAffinity.type === 'ClientIP' ? `ClientIP, ${service.sessionAffinity.timeoutSeconds} s` : 'None';
  const lines = [
    `service ${id}`,
    `  frontend          ${frontendText(service)}`,
    `  type              ${service.type}`,
    `  mode              ${service.mode ?? "default (the agent's --mode)"}`,
    `  algorithm         ${service.algorithm}`,
    `  session affinity  ${affinity}`,
    `  traffic policy    ${trafficPolicyOf(service)} (${service.type === 'ClusterIP' ? 'internal' : 'external'})`,
    `  source ranges     ${service.sourceRanges.length > 0 ? service.sourceRanges.join(', ') : 'everyone'}`,
    '',
  ];
  const backends =
    service.backends.length === 0
      ? 'no backends (new flows are rejected)\n'
      : formatTable(['backend', 'weight', 'state', 'node'], service.backends.map((b) => [backendLabel(b), b.weight, b.state, b.node ?? '-']));
  return `${lines.join('\n')}\n${backends}`;
}

/**
 * Runs a request; a missing service (404) or a Kubernetes service the agent will not change (409
 * naming the id) is a one-line message and exit code 1.
 */
/** `xlb service get namespace/name:port`: every xlb service (one per frontend) of that Kubernetes service port. */
async function getServicePort(io: CliIO, socket: string, servicePort: string, json: boolean): Promise<number> {
  const entries = entriesOf(await apiCall(socket, 'GET', '/v1/services')).filter((e) => e.origin === 'kubernetes' && e.id.startsWith(`${servicePort}@`));
  if (entries.length === 0) {
    io.err(`xlb service: Kubernetes service port ${JSON.stringify(servicePort)} is not served\n`);
    return EXIT_FAILURE;
  }
  if (json) io.out(`${JSON.stringify(entries.map((e) => ({ id: e.id, service: e.service })), null, 2)}\n`);
  else io.out(entries.map((e) => serviceText(e.id, e.service)).join('\n'));
  return EXIT_OK;
}

async function notFoundAware<T>(io: CliIO, run: () => Promise<T>): Promise<T | number> {
  try {
    return await run();
  } catch (error) {
    const readOnly = error instanceof ApiError && error.status === 409 && error.issues.some((i) => i.field === 'id');
    if (error instanceof ApiError && (error.status === 404 || readOnly)) {
      io.err(`xlb service: ${error.message.replace(/^xlb-agent answered \d+: /, '')}\n`);
      return EXIT_FAILURE;
    }
    if (error instanceof ApiError && error.issues.length > 0) {
      throw new Error(`${error.message}\n${error.issues.map((i) => `  ${i.field || '(body)'}: ${i.message}`).join('\n')}`);
    }
    throw error;
  }
}

export const serviceCommand: CliCommand = {
  name: 'service',
  summary: "list, show, add (create or replace) and delete the agent's services",
  usage: USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const [sub, ...rest] = args;
    const { values, positionals } = parseCommandLine(rest);
    if (values.help === true) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const socket = apiSocketPath(values['api-socket']);
    const json = values.json === true;
    switch (sub) {
      case 'list': {
        noFlags(sub, values, ['json', 'api-socket', 'origin']);
        if (positionals.length > 0) throw new UsageError(`xlb service list: unexpected argument ${JSON.stringify(positionals[0])}`);
        const origin = originFilter(values.origin);
        const entries = entriesOf(await apiCall(socket, 'GET', '/v1/services')).filter((e) => origin === undefined || e.origin === origin);
        io.out(json ? `${JSON.stringify(entries, null, 2)}\n` : listTable(entries));
        return EXIT_OK;
      }
      case 'get': {
        noFlags(sub, values, ['json', 'api-socket']);
        if (positionals.length === 1 && positionals[0] !== undefined && isKubernetesServicePort(positionals[0])) {
          return getServicePort(io, socket, positionals[0], json);
        }
        const id = serviceId(sub, positionals, true);
        const result = await notFoundAware(io, () => apiCall(socket, 'GET', servicePath(id)));
        if (typeof result === 'number') return result;
        io.out(json ? `${JSON.stringify(result, null, 2)}\n` : serviceText(id, result as Service));
        return EXIT_OK;
      }
      case 'add': {
        const id = serviceId(sub, positionals);
        const service = await serviceToAdd(values);
        const result = await notFoundAware(io, () => apiCall(socket, 'PUT', servicePath(id), service));
        if (typeof result === 'number') return result;
        if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
        else if (isObject(result)) io.out(`service ${id} ${String(result.result)} (revision ${String(result.revision)})\n`);
        return EXIT_OK;
      }
      case 'delete': {
        noFlags(sub, values, ['json', 'api-socket']);
        const id = serviceId(sub, positionals, true);
        const result = await notFoundAware(io, () => apiCall(socket, 'DELETE', servicePath(id)));
        if (typeof result === 'number') return result;
        if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
        else if (isObject(result)) io.out(`service ${id} deleted (revision ${String(result.revision)})\n`);
        return EXIT_OK;
      }
      default:
        throw new UsageError(`xlb service: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand ${JSON.stringify(sub)}`}; expected list, get, add or delete`);
    }
  },
};
