/**
 * The service model: one shape for the REST API (PUT body, GET answers), the standalone config file
 * (`services:` list) and the CLI's --json output (DESIGN.md, "The service object").
 *
 * validateService() is the single gate: it reports every problem at once, each naming its field
 * ("backends[1].port"), and returns the normalised service (defaults filled in, canonical address
 * text), so two spellings of the same service compare equal and yield the same map entries.
 *
 * Addresses: IPv4 or IPv6 text only (no zones, no IPv4-mapped IPv6). Frontends and backends are host
 * addresses another host sends to, so the ranges that never are one are refused, as Kubernetes
 * refuses them for endpoints: unspecified (0.0.0.0, ::; except as a NodePort's family selector),
 * loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4,
 * ff00::/8) and broadcast (255.255.255.255), in their IPv4-mapped IPv6 spellings too. A backend at
 * its own frontend's address is refused as well: the datapath would send the flow back to itself.
 * IPv6 addresses whose low 96 bits are zero ("2001:db8::") are rejected: union xlb_addr keeps IPv4 in
 * its first 4 bytes, so such an address is indistinguishable from an IPv4 one in family-less
 * datapath structs (see lb/layouts.ts).
 *
 * NodePort: the service listens on frontend.port on every node address of its family (as kube-proxy
 * does), so frontend.address only selects the family: it is "0.0.0.0" or "::", and when omitted it
 * is the unspecified address of the backends' family (IPv4 without backends).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalIpAddress, L4_PROTOCOLS, type L4Protocol } from './maglev/backend-key.js';
import { MAX_MAGLEV_WEIGHT } from './maglev/table.js';
import { AF_INET, AF_INET6, decodeXlbAddr, encodeXlbAddr, isAmbiguousIpv6 } from './layouts.js';

export type { L4Protocol } from './maglev/backend-key.js';

/**
 * The types a user writes: the API, the config file and the CLI accept these. ClusterIP is a cluster
 * address: it gets map entries like a LoadBalancer frontend, and pods (tc_pod on --pod-devices) and the
 * node's processes (socket-LB) reach it. Its traffic policy is internalTrafficPolicy, where the other
 * types have externalTrafficPolicy; only Kubernetes sets internalTrafficPolicy for now (not in PUT bodies).
 */
export const SERVICE_TYPES = ['LoadBalancer', 'ExternalIP', 'NodePort', 'ClusterIP'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

export const MODES = ['snat', 'dsr', 'hybrid'] as const;
export type Mode = (typeof MODES)[number];

export const ALGORITHMS = ['maglev', 'random'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export const BACKEND_STATES = ['active', 'terminating', 'maintenance'] as const;

/**
 * Kubernetes' externalTrafficPolicy (LoadBalancer, ExternalIP, NodePort) and internalTrafficPolicy
 * (ClusterIP): Local sends new flows only to backends on the receiving node (none there: dropped).
 */
export const TRAFFIC_POLICIES = ['Cluster', 'Local'] as const;
export type TrafficPolicy = (typeof TRAFFIC_POLICIES)[number];
export type BackendState = (typeof BACKEND_STATES)[number];

export type SessionAffinity = { type: 'None' } | { type: 'ClientIP'; timeoutSeconds: number };

export interface Frontend {
  address: string;
  port: number;
  protocol: L4Protocol;
}

export interface Backend {
  address: string;
  port: number;
  weight: number;
  state: BackendState;
  /** The node the backend runs on (an EndpointSlice's nodeName), for externalTrafficPolicy Local. */
  node?: string;
}

export interface Service {
  frontend: Frontend;
  type: ServiceType;
  /** Absent: the agent's --mode applies (resolved when the maps are computed). */
  mode?: Mode;
  algorithm: Algorithm;
  sessionAffinity: SessionAffinity;
  /** Absent: Cluster. Not for type ClusterIP. */
  externalTrafficPolicy?: TrafficPolicy;
  /** Absent: Cluster. Only for type ClusterIP. */
  internalTrafficPolicy?: TrafficPolicy;
  sourceRanges: string[];
  backends: Backend[];
}

export const DEFAULT_WEIGHT = 100;
/** Kubernetes' default ClientIP affinity timeout (3 hours), and its maximum (1 day). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
export const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;
/** lb_service.backend_count is a u16, and Maglev tables hold u16 slot numbers. */
export const MAX_BACKENDS = 65535;

export interface ValidationIssue {
  /** Path of the offending field, e.g. "backends[1].port" (prefixed by the caller's path). */
  field: string;
  message: string;
}

export class ServiceValidationError extends Error {
  override name = 'ServiceValidationError';

  constructor(readonly issues: ValidationIssue[]) {
    super(issues.map((i) => `${i.field || '(service)'}: ${i.message}`).join('; '));
  }
}

export interface ValidateOptions {
  /** Fill in `mode` with this when the input has none (the agent's --mode); otherwise leave it absent. */
  defaultMode?: Mode;
  /** @deprecated No effect: every caller accepts type ClusterIP now that tc_pod and socket-LB serve it. */
  clusterIP?: boolean;
}

const MAX_ID_LENGTH = 63;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Service ids (the {id} of /v1/services/{id}) are DNS labels: 1-63 of [a-z0-9-], no '-' at either end. */
export function validateServiceId(id: unknown): string {
  if (typeof id !== 'string' || !DNS_LABEL.test(id)) {
    // A long id is named by its start and length, not echoed whole.
    const shown = typeof id === 'string' && id.length > MAX_ID_LENGTH ? `${JSON.stringify(`${id.slice(0, 16)}…`)} (${id.length} characters)` : JSON.stringify(id);
    throw new ServiceValidationError([
      {
        field: 'id',
        message:
          `${shown} is not a DNS label: 1 to ${MAX_ID_LENGTH} characters of a-z, 0-9 and '-', ` +
          `starting and ending with a letter or digit`,
      },
    ]);
  }
  return id;
}

export type Family = 4 | 6;

/** Collects issues while a service is walked; fields are reported relative to `base`. */
class Issues {
  readonly list: ValidationIssue[] = [];
  constructor(private readonly base: string) {}

  field(name: string): string {
    if (this.base === '') return name;
    return name === '' ? this.base : name.startsWith('[') ? `${this.base}${name}` : `${this.base}.${name}`;
  }

  add(name: string, message: string): void {
    this.list.push({ field: this.field(name), message });
  }
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** Unknown members are errors, so a typo ("weigth") surfaces instead of silently taking a default. */
function checkKnown(issues: Issues, at: string, value: Json, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      issues.add(at === '' ? key : `${at}.${key}`, `unknown field (allowed: ${known.join(', ')})`);
    }
  }
}

function oneOf<T extends string>(issues: Issues, at: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) {
    issues.add(at, `required: one of ${allowed.join(', ')}`);
    return undefined;
  }
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  issues.add(at, `${show(value)} is not one of ${allowed.join(', ')}`);
  return undefined;
}

function integer(issues: Issues, at: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) {
    issues.add(at, `required: an integer in ${min}..${max}`);
    return undefined;
  }
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  issues.add(at, `${show(value)} is not an integer in ${min}..${max}`);
  return undefined;
}

interface ParsedAddress {
  text: string;
  family: Family;
}

/** Address ranges that are never a host's address on the network, with what to call them. */
const RESERVED_IPV4: readonly { network: number; prefix: number; what: string }[] = [
  { network: 0x00000000, prefix: 32, what: 'the unspecified address (0.0.0.0)' },
  { network: 0xffffffff, prefix: 32, what: 'the broadcast address (255.255.255.255)' },
  { network: 0x7f000000, prefix: 8, what: 'a loopback address (127.0.0.0/8)' },
  { network: 0xa9fe0000, prefix: 16, what: 'a link-local address (169.254.0.0/16)' },
  { network: 0xe0000000, prefix: 4, what: 'a multicast address (224.0.0.0/4)' },
];
const RESERVED_IPV6: readonly { network: Buffer; prefix: number; what: string }[] = [
  { network: encodeXlbAddr('::'), prefix: 128, what: 'the unspecified address (::)' },
  { network: encodeXlbAddr('::1'), prefix: 128, what: 'the loopback address (::1)' },
  { network: encodeXlbAddr('fe80::'), prefix: 10, what: 'a link-local address (fe80::/10)' },
  { network: encodeXlbAddr('ff00::'), prefix: 8, what: 'a multicast address (ff00::/8)' },
];

function inPrefix(raw: Buffer, network: Buffer, prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    if (((raw[bit >> 3] ?? 0) & mask) !== ((network[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

/** What makes a canonical address unusable as a frontend or backend ("a loopback address (...)"), if anything. */
export function reservedAddress(text: string): string | undefined {
  if (isIPv4(text)) {
    const value = encodeXlbAddr(text).readUInt32BE(0);
    const hit = RESERVED_IPV4.find((r) => value >>> (32 - r.prefix) === r.network >>> (32 - r.prefix));
    return hit?.what;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (mapped !== undefined) {
    const what = reservedAddress(mapped);
    return what === undefined ? undefined : `${what.replace(/ \(.*\)$/, '')} (IPv4-mapped ${mapped})`;
  }
  const raw = encodeXlbAddr(text);
  return RESERVED_IPV6.find((r) => inPrefix(raw, r.network, r.prefix))?.what;
}

/**
 * Canonical text and family of a host address, or an issue and undefined. `allowUnspecified`: the
 * unspecified address is accepted (a NodePort's family selector).
 */
function address(issues: Issues, at: string, value: unknown, allowUnspecified = false): ParsedAddress | undefined {
  if (value === undefined) {
    issues.add(at, 'required: an IPv4 or IPv6 address');
    return undefined;
  }
  if (typeof value !== 'string' || !(isIPv4(value) || (isIPv6(value) && !value.includes('%')))) {
    issues.add(at, `${show(value)} is not an IPv4 or IPv6 address`);
    return undefined;
  }
  const text = canonicalIpAddress(value);
  const family: Family = isIPv4(text) ? 4 : 6;
  const unspecified = text === '0.0.0.0' || text === '::';
  if (unspecified && allowUnspecified) return { text, family };
  const reserved = reservedAddress(text);
  if (reserved !== undefined) {
    issues.add(at, `${text} is ${reserved}, not a host address a service can use`);
    return undefined;
  }
  if (text.startsWith('::ffff:') && text.includes('.')) {
    issues.add(at, `${text} is an IPv4-mapped IPv6 address: write the IPv4 address ${text.slice(7)}`);
    return undefined;
  }
  if (family === 6 && isAmbiguousIpv6(text)) {
    issues.add(at, `${text} has its low 96 bits zero, which the datapath cannot tell from an IPv4 address`);
    return undefined;
  }
  return { text, family };
}

/**
 * Canonical text and family of a host address a service can use as frontend or backend, by the rules
 * validateService applies; a string is the reason it is not one (the value is shown in it).
 */
export function parseHostAddress(value: unknown): { text: string; family: Family } | string {
  const issues = new Issues('');
  const parsed = address(issues, '', value);
  return parsed ?? issues.list[0]?.message ?? `${show(value)} is not an IPv4 or IPv6 address`;
}

/** A CIDR with host bits zero: its canonical text, family, network address and prefix length. */
export interface Cidr {
  text: string;
  family: Family;
  network: string;
  prefix: number;
}

/** Parses a CIDR; a string is the reason it is not one (the value is shown in it). */
export function parseCidr(value: unknown): Cidr | string {
  const parts = typeof value === 'string' ? value.split('/') : [];
  const [addr = '', length = ''] = parts;
  const family: Family | undefined = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : undefined;
  const bits = family === 4 ? 32 : 128;
  if (parts.length !== 2 || family === undefined || !/^\d{1,3}$/.test(length) || Number(length) > bits) {
    return `${show(value)} is not a CIDR (address/prefix-length, e.g. 198.18.0.0/24 or 2001:db8::/64)`;
  }
  const prefix = Number(length);
  const raw = addressBytes(addr);
  for (let bit = prefix; bit < bits; bit++) {
    if ((raw[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) {
      return `${value as string} has host bits set: the network is ${networkText(raw, prefix, family)}/${prefix}`;
    }
  }
  const network = canonicalIpAddress(addr);
  return { text: `${network}/${prefix}`, family, network, prefix };
}

function cidr(issues: Issues, at: string, value: unknown): ParsedAddress | undefined {
  const parsed = parseCidr(value);
  if (typeof parsed === 'string') {
    issues.add(at, parsed);
    return undefined;
  }
  return { text: parsed.text, family: parsed.family };
}

function addressBytes(addr: string): Buffer {
  return encodeXlbAddr(addr);
}

function networkText(raw: Buffer, prefix: number, family: Family): string {
  const masked = Buffer.from(raw.map((b, i) => b & ((0xff00 >> Math.max(0, Math.min(8, prefix - i * 8))) & 0xff)));
  return decodeXlbAddr(masked, 0, family === 4 ? AF_INET : AF_INET6);
}

const SERVICE_FIELDS = [
  'frontend',
  'type',
  'mode',
  'algorithm',
  'sessionAffinity',
  'externalTrafficPolicy',
  'internalTrafficPolicy',
  'sourceRanges',
  'backends',
] as const;
const FRONTEND_FIELDS = ['address', 'port', 'protocol'] as const;
const BACKEND_FIELDS = ['address', 'port', 'weight', 'state', 'node'] as const;
/** A Kubernetes node name: a DNS subdomain (RFC 1123). */
export const NODE_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const AFFINITY_FIELDS = ['type', 'timeoutSeconds'] as const;

/**
 * Validates and normalises one service object. `path` prefixes every reported field (e.g.
 * "services[3]" for a config file). Throws ServiceValidationError listing every problem.
 */
export function validateService(input: unknown, path = '', options: ValidateOptions = {}): Service {
  const issues = new Issues(path);
  if (!isObject(input)) {
    issues.add('', `a service must be an object, got ${show(input)}`);
    throw new ServiceValidationError(issues.list);
  }
  checkKnown(issues, '', input, SERVICE_FIELDS);

  const type = input.type === undefined ? 'LoadBalancer' : oneOf<ServiceType>(issues, 'type', input.type, SERVICE_TYPES);
  const mode = input.mode === undefined ? options.defaultMode : oneOf(issues, 'mode', input.mode, MODES);
  const algorithm = input.algorithm === undefined ? 'maglev' : oneOf(issues, 'algorithm', input.algorithm, ALGORITHMS);
  const sessionAffinity = validateAffinity(issues, input.sessionAffinity);
  const trafficPolicy =
    input.externalTrafficPolicy === undefined ? 'Cluster' : oneOf(issues, 'externalTrafficPolicy', input.externalTrafficPolicy, TRAFFIC_POLICIES);
  const internalPolicy =
    input.internalTrafficPolicy === undefined ? 'Cluster' : oneOf(issues, 'internalTrafficPolicy', input.internalTrafficPolicy, TRAFFIC_POLICIES);
  // Each frontend has one policy: a cluster address the internal one, every other type the external one.
  if (type === 'ClusterIP' && input.externalTrafficPolicy !== undefined) {
    issues.add('externalTrafficPolicy', 'not for a ClusterIP service: its policy is internalTrafficPolicy');
  }
  if (type !== undefined && type !== 'ClusterIP' && input.internalTrafficPolicy !== undefined) {
    issues.add('internalTrafficPolicy', `only for a ClusterIP service; a ${type} service has externalTrafficPolicy`);
  }

  // Backends first: a NodePort without frontend.address takes its family from them.
  const backends = validateBackends(issues, input.backends);
  const backendFamily = backends.find((b) => b.family !== undefined)?.family;
  const frontend = validateFrontend(issues, input.frontend, type, backendFamily);

  const family = frontend?.family;
  if (frontend !== undefined) {
    backends.forEach((b, i) => {
      if (b.family !== undefined && b.family !== frontend.family) {
        issues.add(`backends[${i}].address`, `IPv${b.family} backend for an IPv${frontend.family} frontend: a service has one address family`);
      } else if (b.value.address === frontend.value.address) {
        // Kubernetes refuses such endpoints too: the datapath would hand the flow back to the VIP.
        issues.add(`backends[${i}].address`, `${b.value.address} is the frontend's own address: a backend there would loop`);
      }
    });
  }
  const sourceRanges = validateSourceRanges(issues, input.sourceRanges, family);

  if (issues.list.length > 0 || !frontend || !type || !algorithm || !sessionAffinity || !trafficPolicy || !internalPolicy || !sourceRanges) {
    throw new ServiceValidationError(issues.list);
  }
  const service: Service = {
    frontend: frontend.value,
    type,
    algorithm,
    sessionAffinity,
    sourceRanges,
    backends: backends.map((b) => b.value),
  };
  if (mode !== undefined) service.mode = mode;
  if (trafficPolicy === 'Local') service.externalTrafficPolicy = 'Local';
  if (internalPolicy === 'Local') service.internalTrafficPolicy = 'Local';
  return serviceToJSON(service);
}

function validateAffinity(issues: Issues, value: unknown): SessionAffinity | undefined {
  if (value === undefined) return { type: 'None' };
  if (!isObject(value)) {
    issues.add('sessionAffinity', `${show(value)} is not an object like {"type": "ClientIP", "timeoutSeconds": 10800}`);
    return undefined;
  }
  checkKnown(issues, 'sessionAffinity', value, AFFINITY_FIELDS);
  const type = oneOf(issues, 'sessionAffinity.type', value.type, ['None', 'ClientIP'] as const);
  if (type === 'None') {
    if (value.timeoutSeconds !== undefined) {
      issues.add('sessionAffinity.timeoutSeconds', 'only allowed with type ClientIP');
      return undefined;
    }
    return { type: 'None' };
  }
  if (type === 'ClientIP') {
    const timeoutSeconds =
      value.timeoutSeconds === undefined
        ? DEFAULT_AFFINITY_TIMEOUT_SECONDS
        : integer(issues, 'sessionAffinity.timeoutSeconds', value.timeoutSeconds, 1, MAX_AFFINITY_TIMEOUT_SECONDS);
    return timeoutSeconds === undefined ? undefined : { type: 'ClientIP', timeoutSeconds };
  }
  return undefined;
}

interface CheckedFrontend {
  value: Frontend;
  family: Family;
}

function validateFrontend(
  issues: Issues,
  value: unknown,
  type: ServiceType | undefined,
  backendFamily: Family | undefined,
): CheckedFrontend | undefined {
  if (!isObject(value)) {
    issues.add('frontend', value === undefined ? 'required' : `${show(value)} is not an object like {"address", "port", "protocol"}`);
    return undefined;
  }
  checkKnown(issues, 'frontend', value, FRONTEND_FIELDS);
  let parsed: ParsedAddress | undefined;
  if (type === 'NodePort') {
    if (value.address === undefined) {
      parsed = backendFamily === 6 ? { text: '::', family: 6 } : { text: '0.0.0.0', family: 4 };
    } else {
      parsed = address(issues, 'frontend.address', value.address, true);
      if (parsed && parsed.text !== '0.0.0.0' && parsed.text !== '::') {
        issues.add(
          'frontend.address',
          `a NodePort listens on every node address: give "0.0.0.0" (IPv4) or "::" (IPv6), or leave it out, not ${parsed.text}`,
        );
        parsed = undefined;
      }
    }
  } else {
    parsed = address(issues, 'frontend.address', value.address);
  }
  const port = integer(issues, 'frontend.port', value.port, 1, 65535);
  const protocol = oneOf(issues, 'frontend.protocol', value.protocol, L4_PROTOCOLS);
  if (!parsed || port === undefined || protocol === undefined) return undefined;
  return { value: { address: parsed.text, port, protocol }, family: parsed.family };
}

interface CheckedBackend {
  value: Backend;
  family: Family | undefined;
}

function validateBackends(issues: Issues, value: unknown): CheckedBackend[] {
  if (!Array.isArray(value)) {
    issues.add('backends', value === undefined ? 'required (may be an empty list)' : `${show(value)} is not a list`);
    return [];
  }
  if (value.length > MAX_BACKENDS) {
    issues.add('backends', `${value.length} backends: at most ${MAX_BACKENDS} per service`);
    return [];
  }
  const seen = new Map<string, number>();
  const out: CheckedBackend[] = [];
  value.forEach((raw: unknown, i) => {
    const at = `backends[${i}]`;
    if (!isObject(raw)) {
      issues.add(at, `${show(raw)} is not an object like {"address", "port"}`);
      return;
    }
    checkKnown(issues, at, raw, BACKEND_FIELDS);
    const parsed = address(issues, `${at}.address`, raw.address);
    const port = integer(issues, `${at}.port`, raw.port, 1, 65535);
    const weight = raw.weight === undefined ? DEFAULT_WEIGHT : integer(issues, `${at}.weight`, raw.weight, 0, MAX_MAGLEV_WEIGHT);
    const state = raw.state === undefined ? 'active' : oneOf(issues, `${at}.state`, raw.state, BACKEND_STATES);
    const nodeOk = raw.node === undefined || (typeof raw.node === 'string' && NODE_NAME.test(raw.node));
    if (!nodeOk) issues.add(`${at}.node`, `${show(raw.node)} is not a node name (lower-case DNS name, e.g. worker-1)`);
    if (!parsed || port === undefined || weight === undefined || state === undefined || !nodeOk) {
      out.push({ value: { address: '', port: 0, weight: 0, state: 'active' }, family: parsed?.family });
      return;
    }
    const key = parsed.family === 6 ? `[${parsed.text}]:${port}` : `${parsed.text}:${port}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) issues.add(at, `duplicate of backends[${earlier}] (${key})`);
    else seen.set(key, i);
    const backend: Backend = { address: parsed.text, port, weight, state };
    if (typeof raw.node === 'string') backend.node = raw.node;
    out.push({ value: backend, family: parsed.family });
  });
  return out;
}

function validateSourceRanges(issues: Issues, value: unknown, family: Family | undefined): string[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    issues.add('sourceRanges', `${show(value)} is not a list of CIDRs`);
    return undefined;
  }
  const seen = new Map<string, number>();
  const out: string[] = [];
  value.forEach((raw: unknown, i) => {
    const at = `sourceRanges[${i}]`;
    const parsed = cidr(issues, at, raw);
    if (!parsed) return;
    if (family !== undefined && parsed.family !== family) {
      issues.add(at, `IPv${parsed.family} range for an IPv${family} service`);
      return;
    }
    const earlier = seen.get(parsed.text);
    if (earlier !== undefined) {
      issues.add(at, `duplicate of sourceRanges[${earlier}] (${parsed.text})`);
      return;
    }
    seen.set(parsed.text, i);
    out.push(parsed.text);
  });
  return out;
}

/**
 * The service as JSON with a fixed member order (what GET answers and `--json` print). Returns a
 * copy: callers may keep it while the model changes.
 */
export function serviceToJSON(service: Service): Service {
  const out: Service = {
    frontend: { address: service.frontend.address, port: service.frontend.port, protocol: service.frontend.protocol },
    type: service.type,
    algorithm: service.algorithm,
    sessionAffinity:
      service.sessionAffinity.type === 'ClientIP'
        ? { type: 'ClientIP', timeoutSeconds: service.sessionAffinity.timeoutSeconds }
        : { type: 'None' },
    sourceRanges: [...service.sourceRanges],
    backends: service.backends.map((b) => ({ address: b.address, port: b.port, weight: b.weight, state: b.state, ...(b.node !== undefined ? { node: b.node } : {}) })),
  };
  // Optional members in their documented places: mode right after type, the policies after affinity.
  const { frontend, type, algorithm, sessionAffinity, ...rest } = out;
  return {
    frontend,
    type,
    ...(service.mode !== undefined ? { mode: service.mode } : {}),
    algorithm,
    sessionAffinity,
    ...(service.externalTrafficPolicy === 'Local' ? { externalTrafficPolicy: 'Local' as const } : {}),
    ...(service.internalTrafficPolicy === 'Local' ? { internalTrafficPolicy: 'Local' as const } : {}),
    ...rest,
  };
}

/** The address family number (2 or 10) of a validated service. */
export function serviceFamily(service: Service): 4 | 6 {
  return isIPv6(service.frontend.address) ? 6 : 4;
}

/**
 * The traffic policy of a service's frontend: internalTrafficPolicy for a ClusterIP, externalTrafficPolicy
 * for every other type (Cluster when absent).
 */
export function trafficPolicyOf(service: Service): TrafficPolicy {
  const policy = service.type === 'ClusterIP' ? service.internalTrafficPolicy : service.externalTrafficPolicy;
  return policy ?? 'Cluster';
}
