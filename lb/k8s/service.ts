/**
 * A Kubernetes Service → what xlb serves for it, as kube-proxy's pkg/proxy/service.go reads it:
 * which services are ours, their ports, and the frontends of each port.
 *
 * Not ours (no xlb service, no problem): ExternalName and headless (clusterIP None) services, a
 * service without a cluster address yet, and a service whose label service.kubernetes.io/service-proxy-name
 * names a proxy (kube-proxy ignores every such service; with `serviceProxyName` set, xlb serves exactly
 * the services whose label has that value, as Cilium's k8s-service-proxy-name does). Services labelled
 * service.kubernetes.io/headless are skipped too, as kube-proxy's informers select them away.
 *
 * Families: a service has the families of its clusterIPs (spec.clusterIPs, dual stack; else
 * spec.clusterIP). Every other frontend of a family it lacks is left out with a problem, as kube-proxy
 * drops an address of the other family.
 *
 * Frontends of one port, for each family in the order of clusterIPs (kube-proxy's rules):
 * - ClusterIP: the cluster address at port.port; its policy is internalTrafficPolicy.
 * - NodePort (type NodePort or LoadBalancer, when the port has a nodePort): every node address of the
 *   family at nodePort (frontend address "0.0.0.0" / "::"; which node addresses is the node's
 *   --nodeport-addresses, see node.ts); policy externalTrafficPolicy.
 * - LoadBalancer (type LoadBalancer): each status.loadBalancer.ingress[].ip (hostname-only entries and
 *   ipMode Proxy entries are not VIPs this node serves) at port.port; loadBalancerSourceRanges (or the
 *   annotation service.beta.kubernetes.io/load-balancer-source-ranges when the field is empty) apply to
 *   these only, as kube-proxy's firewall chain does; policy externalTrafficPolicy.
 * - ExternalIP: each spec.externalIPs at port.port; policy externalTrafficPolicy.
 * An address that is already a frontend of the port (an ingress IP also listed in externalIPs) is
 * served once, by the first kind in this order.
 *
 * Per-service choices: sessionAffinity ClientIP with sessionAffinityConfig.clientIP.timeoutSeconds
 * (default 10800, 1..86400); the forwarding mode (snat|dsr|hybrid) from the annotation
 * xlb.io/forwarding-mode, else service.cilium.io/forwarding-mode (absent: the agent's --mode); the
 * algorithm (maglev|random) from xlb.io/lb-algorithm, else service.cilium.io/lb-algorithm (absent:
 * maglev). When both names are given, xlb's decides. A malformed value is a problem and the default.
 */
import { L4_PROTOCOLS, type L4Protocol } from '../maglev/backend-key.js';
import {
  ALGORITHMS,
  DEFAULT_AFFINITY_TIMEOUT_SECONDS,
  MAX_AFFINITY_TIMEOUT_SECONDS,
  MODES,
  parseHostAddress,
  TRAFFIC_POLICIES,
  type Algorithm,
  type Family,
  type Mode,
  type ServiceType,
  type SessionAffinity,
  type TrafficPolicy,
} from '../service.js';
import { FAMILY_NAMES, familyOf, parseCidrMasked } from './addresses.js';
import { healthCheckNodePort } from './health.js';
import {
  ANNOTATION_CILIUM_FORWARDING_MODE,
  ANNOTATION_CILIUM_LB_ALGORITHM,
  ANNOTATION_FORWARDING_MODE,
  ANNOTATION_LB_ALGORITHM,
  ANNOTATION_SOURCE_RANGES,
  LABEL_HEADLESS,
  LABEL_SERVICE_PROXY_NAME,
  member,
  objectMeta,
  type Json,
  type ObjectReader,
  type ObjectRef,
  type Problem,
} from './objects.js';

export interface ServicePortSpec {
  /** spec.ports[i].name; "" when unnamed. */
  name: string;
  /**
   * The port's part of the id `namespace/name:port`: its name, or its number when it has none.
   * Kubernetes requires names as soon as a service has two ports, and a port name always holds a
   * letter, so a number never stands for a named port.
   */
  id: string;
  protocol: L4Protocol;
  port: number;
  /** Allocated for NodePort and LoadBalancer services (unless allocateLoadBalancerNodePorts is false). */
  nodePort: number | undefined;
}

export interface ServiceSpec {
  ref: ObjectRef;
  namespace: string;
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  /** Canonical, at most one per family, in the service's order (the first is its primary family). */
  clusterIPs: string[];
  ports: ServicePortSpec[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip of a LoadBalancer service (VIP mode only). */
  ingressIPs: string[];
  /** Canonical CIDRs, both families. */
  sourceRanges: string[];
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** spec.healthCheckNodePort, of a LoadBalancer service with externalTrafficPolicy Local (see health.ts). */
  healthCheckNodePort: number | undefined;
  sessionAffinity: SessionAffinity;
  /** Absent: the agent's --mode. */
  mode: Mode | undefined;
  algorithm: Algorithm;
}

export interface ServiceOptions {
  /** Serve only services labelled service.kubernetes.io/service-proxy-name=<this>; absent: only unlabelled ones. */
  serviceProxyName?: string;
}

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;

/**
 * The ServiceSpec of a Service object, or undefined when it is not ours or unusable (then the
 * reason is in `problems`, unless the service is simply not ours).
 */
export function parseService(object: unknown, problems: Problem[], options: ServiceOptions = {}): ServiceSpec | undefined {
  const meta = objectMeta('Service', object, problems, true);
  if (!meta) return undefined;
  const { reader, labels, annotations } = meta;
  const proxyName = labels.get(LABEL_SERVICE_PROXY_NAME);
  if (proxyName !== options.serviceProxyName || labels.has(LABEL_HEADLESS)) return undefined;

  const top = object as Json;
  const spec = reader.object(top.spec, 'spec');
  if (!spec) {
    reader.problem('spec', 'required');
    return undefined;
  }
  const type = reader.oneOf(spec.type ?? 'ClusterIP', 'spec.type', SERVICE_TYPES);
  if (type === undefined || type === 'ExternalName') return undefined;

  const clusterIPs = clusterAddresses(reader, spec);
  if (clusterIPs === undefined || clusterIPs.length === 0) return undefined;
  const families = new Set(clusterIPs.map(familyOf));

  const status = reader.object(top.status, 'status');
  const loadBalancer = reader.object(status?.loadBalancer, 'status.loadBalancer');
  const ingressIPs = type === 'LoadBalancer' ? ingressAddresses(reader, loadBalancer?.ingress, families) : [];
  const externalTrafficPolicy = reader.oneOf(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy', TRAFFIC_POLICIES) ?? 'Cluster';

  return {
    ref: reader.ref,
    namespace: reader.ref.namespace ?? '',
    name: reader.ref.name,
    type,
    clusterIPs,
    ports: servicePorts(reader, spec.ports),
    externalIPs: addressList(reader, spec.externalIPs, 'spec.externalIPs', families),
    ingressIPs,
    sourceRanges: sourceRanges(reader, spec.loadBalancerSourceRanges, annotations),
    externalTrafficPolicy,
    internalTrafficPolicy: reader.oneOf(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', TRAFFIC_POLICIES) ?? 'Cluster',
    healthCheckNodePort: healthCheckNodePort(reader, spec, type, externalTrafficPolicy),
    sessionAffinity: sessionAffinity(reader, spec),
    mode: annotated(reader, annotations, [ANNOTATION_FORWARDING_MODE, ANNOTATION_CILIUM_FORWARDING_MODE], MODES),
    algorithm: annotated(reader, annotations, [ANNOTATION_LB_ALGORITHM, ANNOTATION_CILIUM_LB_ALGORITHM], ALGORITHMS) ?? 'maglev',
  };
}

/** spec.clusterIPs (else spec.clusterIP): undefined for a headless service; [] when none is allocated yet. */
function clusterAddresses(reader: ObjectReader, spec: Json): string[] | undefined {
  const listed = reader.list(spec.clusterIPs, 'spec.clusterIPs');
  const [field, values] = listed.length > 0 ? ['spec.clusterIPs', listed] : ['spec.clusterIP', spec.clusterIP == null ? [] : [spec.clusterIP]];
  const out: string[] = [];
  for (const [i, value] of values.entries()) {
    const at = field === 'spec.clusterIPs' ? `${field}[${i}]` : field;
    if (value === 'None') return undefined;
    if (value === '') continue;
    const parsed = parseHostAddress(value);
    if (typeof parsed === 'string') {
      reader.problem(at, parsed);
    } else if (out.some((a) => familyOf(a) === parsed.family)) {
      reader.problem(at, `a second ${FAMILY_NAMES[parsed.family]} cluster address: a service has one per family`);
    } else {
      out.push(parsed.text);
    }
  }
  return out;
}

/** The ports of a Service: a malformed port is a problem and left out; the others stay. */
export function servicePorts(reader: ObjectReader, value: unknown): ServicePortSpec[] {
  const out: ServicePortSpec[] = [];
  const ids = new Set<string>();
  reader.list(value, 'spec.ports').forEach((raw, i) => {
    const at = `spec.ports[${i}]`;
    const port = reader.object(raw, at);
    if (!port) return;
    const name = reader.string(port.name, `${at}.name`) ?? '';
    const protocol = reader.oneOf(port.protocol ?? 'TCP', `${at}.protocol`, L4_PROTOCOLS);
    const number = reader.integer(port.port, `${at}.port`, 1, 65535);
    if (port.port == null) reader.problem(`${at}.port`, 'required');
    const nodePort = port.nodePort === 0 ? undefined : reader.integer(port.nodePort, `${at}.nodePort`, 1, 65535);
    if (protocol === undefined || number === undefined) return;
    const id = name === '' ? String(number) : name;
    if (ids.has(id)) {
      reader.problem(`${at}.name`, `a second port ${JSON.stringify(id)}: ports need unique names`);
      return;
    }
    ids.add(id);
    out.push({ name, id, protocol, port: number, nodePort });
  });
  return out;
}

/** A host address of one of the service's families, or a problem at `at` and undefined. */
function familyAddress(reader: ObjectReader, raw: unknown, at: string, families: ReadonlySet<Family>): string | undefined {
  const parsed = parseHostAddress(raw);
  if (typeof parsed === 'string') reader.problem(at, parsed);
  else if (!families.has(parsed.family)) reader.problem(at, `${parsed.text}: the service has no ${FAMILY_NAMES[parsed.family]} cluster address`);
  else return parsed.text;
  return undefined;
}

function addressList(reader: ObjectReader, value: unknown, field: string, families: ReadonlySet<Family>): string[] {
  const out = reader.list(value, field).map((raw, i) => familyAddress(reader, raw, `${field}[${i}]`, families));
  return [...new Set(out.filter((a): a is string => a !== undefined))];
}

function ingressAddresses(reader: ObjectReader, value: unknown, families: ReadonlySet<Family>): string[] {
  const out: string[] = [];
  reader.list(value, 'status.loadBalancer.ingress').forEach((raw, i) => {
    const at = `status.loadBalancer.ingress[${i}]`;
    const entry = reader.object(raw, at);
    const ip = reader.string(entry?.ip, `${at}.ip`);
    // ipMode Proxy: the load balancer proxies to the nodes' NodePorts; its IP is not a VIP here.
    if (ip === undefined || ip === '' || reader.string(entry?.ipMode, `${at}.ipMode`) === 'Proxy') return;
    const address = familyAddress(reader, ip, `${at}.ip`, families);
    if (address !== undefined) out.push(address);
  });
  return [...new Set(out)];
}

function sourceRanges(reader: ObjectReader, value: unknown, annotations: ReadonlyMap<string, string>): string[] {
  const field = 'spec.loadBalancerSourceRanges';
  let entries = reader.list(value, field).map((raw, i) => ({ raw, at: `${field}[${i}]` }));
  const annotation = annotations.get(ANNOTATION_SOURCE_RANGES);
  if (entries.length === 0 && annotation !== undefined && annotation.trim() !== '') {
    const at = member('metadata.annotations', ANNOTATION_SOURCE_RANGES);
    entries = annotation.split(',').map((raw) => ({ raw, at }));
  }
  const out: string[] = [];
  for (const { raw, at } of entries) {
    const text = reader.string(raw, at);
    if (text === undefined) continue;
    const parsed = parseCidrMasked(text);
    if (typeof parsed === 'string') reader.problem(at, parsed);
    else if (!out.includes(parsed.text)) out.push(parsed.text);
  }
  return out;
}

function sessionAffinity(reader: ObjectReader, spec: Json): SessionAffinity {
  const type = reader.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const);
  if (type !== 'ClientIP') return { type: 'None' };
  const config = reader.object(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  const clientIP = reader.object(config?.clientIP, 'spec.sessionAffinityConfig.clientIP');
  const timeout = reader.integer(clientIP?.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 1, MAX_AFFINITY_TIMEOUT_SECONDS);
  return { type: 'ClientIP', timeoutSeconds: timeout ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS };
}

/** The value of the first of `names` present among the annotations, if it is allowed (else a problem). */
function annotated<T extends string>(reader: ObjectReader, annotations: ReadonlyMap<string, string>, names: readonly string[], allowed: readonly T[]): T | undefined {
  const name = names.find((n) => annotations.has(n));
  if (name === undefined) return undefined;
  const value = annotations.get(name)?.trim() ?? '';
  if ((allowed as readonly string[]).includes(value)) return value as T;
  reader.problem(member('metadata.annotations', name), `${JSON.stringify(value)} is not one of ${allowed.join(', ')}; the default applies`);
  return undefined;
}

/** One frontend of a service port, as the model's service will carry it. */
export interface FrontendSpec {
  type: ServiceType;
  /** The address; for a NodePort the family's unspecified address ("0.0.0.0" / "::"). */
  address: string;
  port: number;
  family: Family;
  policy: TrafficPolicy;
  sourceRanges: string[];
}

/** The frontends of one port of a service, in the order of the file comment, each address once. */
export function frontendsOf(service: ServiceSpec, port: ServicePortSpec): FrontendSpec[] {
  const out: FrontendSpec[] = [];
  const add = (type: ServiceType, address: string, number: number, policy: TrafficPolicy, ranges: readonly string[] = []): void => {
    if (out.some((f) => f.address === address)) return;
    const family = familyOf(address);
    out.push({ type, address, port: number, family, policy, sourceRanges: ranges.filter((r) => familyOf(r.split('/')[0] ?? '') === family) });
  };
  for (const clusterIP of service.clusterIPs) {
    const family = familyOf(clusterIP);
    const ofFamily = (a: string): boolean => familyOf(a) === family;
    add('ClusterIP', clusterIP, port.port, service.internalTrafficPolicy);
    if (service.type !== 'ClusterIP' && port.nodePort !== undefined) {
      add('NodePort', family === 4 ? '0.0.0.0' : '::', port.nodePort, service.externalTrafficPolicy);
    }
    for (const ip of service.ingressIPs.filter(ofFamily)) add('LoadBalancer', ip, port.port, service.externalTrafficPolicy, service.sourceRanges);
    for (const ip of service.externalIPs.filter(ofFamily)) add('ExternalIP', ip, port.port, service.externalTrafficPolicy);
  }
  return out;
}
