/**
 * EndpointSlices → the endpoints of one service port, as kube-proxy's endpointslicecache.go and
 * endpoint.go read them.
 *
 * - A slice belongs to the service named by its label kubernetes.io/service-name, in its namespace
 *   (services without selectors have slices written by hand; they work the same). FQDN slices are not
 *   for a proxy and are skipped.
 * - discovery.k8s.io/v1 and v1beta1 shapes: the node of an endpoint is `nodeName` (v1; v1beta1 since
 *   1.20), else v1beta1's topology["kubernetes.io/hostname"]; its zone `zone` (v1), else v1beta1's
 *   topology["topology.kubernetes.io/zone"]. Conditions as the API defines their absence: ready and
 *   serving absent mean true, terminating absent means false (v1beta1 before 1.20 has only ready, so
 *   its endpoints are never terminating). Only an endpoint's first address is used, as kube-proxy does.
 * - Ports match a service port by name and protocol; each slice carries its own port number for that
 *   name, so a named targetPort resolves per endpoint (pods of one service may listen on different
 *   numbers for "http": the EndpointSlice controller puts them in different slices).
 * - Several slices of one service are merged; an endpoint in more than one (address and port, as the
 *   controller briefly writes while it moves endpoints between slices) counts once: the first by slice
 *   name, or a copy on this node, as kube-proxy prefers it.
 */
import { L4_PROTOCOLS, type L4Protocol } from '../maglev/backend-key.js';
import { NODE_NAME, parseHostAddress, type Family } from '../service.js';
import { FAMILY_NAMES } from './addresses.js';
import { LABEL_HOSTNAME, LABEL_SERVICE_NAME, LABEL_ZONE, member, objectMeta, type Json, type ObjectReader, type ObjectRef, type Problem } from './objects.js';
import type { ServicePortSpec } from './service.js';

export interface EndpointSpec {
  /** Where it was read, for problems: the slice and `endpoints[i]`. */
  slice: ObjectRef;
  field: string;
  address: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The node it runs on (a valid node name), if the slice says. */
  node: string | undefined;
  zone: string | undefined;
  /** hints.forZones[].name; empty: no zone hint. */
  zoneHints: string[];
  /** hints.forNodes[].name; empty: no node hint. */
  nodeHints: string[];
}

export interface EndpointSliceSpec {
  ref: ObjectRef;
  namespace: string;
  name: string;
  /** The service it belongs to (label kubernetes.io/service-name). */
  serviceName: string;
  family: Family;
  ports: { name: string; protocol: L4Protocol; port: number }[];
  endpoints: EndpointSpec[];
}

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;

/**
 * The EndpointSliceSpec of an EndpointSlice object; undefined for slices that are no service's or
 * FQDN ones. A malformed port or endpoint is a problem and left out; the rest of the slice stays.
 */
export function parseEndpointSlice(object: unknown, problems: Problem[]): EndpointSliceSpec | undefined {
  const meta = objectMeta('EndpointSlice', object, problems, true);
  if (!meta) return undefined;
  const { reader, labels } = meta;
  const serviceName = labels.get(LABEL_SERVICE_NAME);
  if (serviceName === undefined || serviceName === '') return undefined;
  const top = object as Json;
  const addressType = reader.oneOf(top.addressType, 'addressType', ADDRESS_TYPES);
  if (top.addressType == null) reader.problem('addressType', `required: one of ${ADDRESS_TYPES.join(', ')}`);
  if (addressType === undefined || addressType === 'FQDN') return undefined;
  const family: Family = addressType === 'IPv4' ? 4 : 6;

  const ports: EndpointSliceSpec['ports'] = [];
  reader.list(top.ports, 'ports').forEach((raw, i) => {
    const at = `ports[${i}]`;
    const port = reader.object(raw, at);
    if (!port) return;
    const name = reader.string(port.name, `${at}.name`) ?? '';
    const protocol = reader.oneOf(port.protocol ?? 'TCP', `${at}.protocol`, L4_PROTOCOLS);
    // A port without a number means "all ports" to the API; a proxy cannot use it (kube-proxy skips it too).
    const number = reader.integer(port.port, `${at}.port`, 1, 65535);
    if (port.port == null) reader.problem(`${at}.port`, 'absent: a proxy needs the port number');
    if (protocol !== undefined && number !== undefined) ports.push({ name, protocol, port: number });
  });

  const endpoints: EndpointSpec[] = [];
  reader.list(top.endpoints, 'endpoints').forEach((raw, i) => {
    const endpoint = parseEndpoint(reader, raw, `endpoints[${i}]`, family);
    if (endpoint) endpoints.push(endpoint);
  });
  return { ref: reader.ref, namespace: reader.ref.namespace ?? '', name: reader.ref.name, serviceName, family, ports, endpoints };
}

function parseEndpoint(reader: ObjectReader, raw: unknown, at: string, family: Family): EndpointSpec | undefined {
  const endpoint = reader.object(raw, at);
  if (!endpoint) return undefined;
  const [first] = reader.list(endpoint.addresses, `${at}.addresses`);
  if (first === undefined) {
    reader.problem(`${at}.addresses`, 'required: at least one address');
    return undefined;
  }
  const parsed = parseHostAddress(first);
  if (typeof parsed === 'string' || parsed.family !== family) {
    reader.problem(`${at}.addresses[0]`, typeof parsed === 'string' ? parsed : `${parsed.text} in an ${FAMILY_NAMES[family]} slice`);
    return undefined;
  }
  const conditions = reader.object(endpoint.conditions, `${at}.conditions`);
  const condition = (name: string): boolean | undefined => reader.boolean(conditions?.[name], `${at}.conditions.${name}`);
  const topology = reader.stringMap(endpoint.topology, `${at}.topology`);
  const nodeName = reader.string(endpoint.nodeName, `${at}.nodeName`) ?? topology.get(LABEL_HOSTNAME);
  const nodeField = endpoint.nodeName !== undefined ? `${at}.nodeName` : member(`${at}.topology`, LABEL_HOSTNAME);
  let node: string | undefined;
  if (nodeName !== undefined && NODE_NAME.test(nodeName)) node = nodeName;
  else if (nodeName !== undefined) reader.problem(nodeField, `${JSON.stringify(nodeName)} is not a node name; the endpoint counts as on another node`);
  const hints = reader.object(endpoint.hints, `${at}.hints`);
  return {
    slice: reader.ref,
    field: at,
    address: parsed.text,
    ready: condition('ready') ?? true,
    serving: condition('serving') ?? true,
    terminating: condition('terminating') ?? false,
    node,
    zone: reader.string(endpoint.zone, `${at}.zone`) ?? topology.get(LABEL_ZONE),
    zoneHints: hintNames(reader, hints?.forZones, `${at}.hints.forZones`),
    nodeHints: hintNames(reader, hints?.forNodes, `${at}.hints.forNodes`),
  };
}

function hintNames(reader: ObjectReader, value: unknown, field: string): string[] {
  const out: string[] = [];
  reader.list(value, field).forEach((raw, i) => {
    const name = reader.string(reader.object(raw, `${field}[${i}]`)?.name, `${field}[${i}].name`);
    if (name !== undefined && name !== '') out.push(name);
  });
  return out;
}

/** One endpoint of a service port: an EndpointSpec with the port number its slice gives it. */
export interface Endpoint extends EndpointSpec {
  port: number;
  /** On this node. */
  local: boolean;
}

/** An Endpoint, member by member (one object shape: a spread here costs more than the rest of the merge). */
function endpointAt(spec: EndpointSpec, port: number, local: boolean): Endpoint {
  return {
    slice: spec.slice,
    field: spec.field,
    address: spec.address,
    ready: spec.ready,
    serving: spec.serving,
    terminating: spec.terminating,
    node: spec.node,
    zone: spec.zone,
    zoneHints: spec.zoneHints,
    nodeHints: spec.nodeHints,
    port,
    local,
  };
}

/**
 * The endpoints of one service port of one family, merged from the service's slices (see the file
 * comment), in a stable order: by slice name, then as listed.
 */
export function endpointsFor(port: ServicePortSpec, family: Family, slices: readonly EndpointSliceSpec[], nodeName: string | undefined): Endpoint[] {
  const ordered = slices.filter((s) => s.family === family);
  if (ordered.length > 1) ordered.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const byKey = new Map<string, Endpoint>();
  for (const slice of ordered) {
    const match = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (!match) continue;
    for (const spec of slice.endpoints) {
      const local = nodeName !== undefined && spec.node === nodeName;
      const key = `${spec.address}|${match.port}`;
      if (local || !byKey.has(key)) byKey.set(key, endpointAt(spec, match.port, local));
    }
  }
  return [...byKey.values()];
}
