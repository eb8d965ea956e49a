/**
 * Pods and Namespaces as network policy sees them (lb/policy/types.ts): labels, addresses, the node,
 * named ports; and the annotations of a pod the agent enforces (egress bandwidth). Read defensively,
 * as every object from a watch: a field of the wrong type counts as absent. The apiserver validates
 * Pods and Namespaces, so unlike Services nothing here is reported as a problem to fix.
 */
import { isIP } from 'node:net';
import type { NamespaceInfo, PodInfo } from '../policy/types.js';
import { isObject, type Json } from './objects.js';

/** The pod annotation with its egress rate (bits per second as a Kubernetes quantity: 10M, 1G). */
export const ANNOTATION_EGRESS_BANDWIDTH = 'kubernetes.io/egress-bandwidth';

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(value)) return out;
  for (const [key, v] of Object.entries(value)) if (typeof v === 'string') out[key] = v;
  return out;
}

function metadataOf(object: unknown): Json | undefined {
  return isObject(object) && isObject(object.metadata) ? object.metadata : undefined;
}

function memberObject(object: unknown, key: string): Json | undefined {
  const value = isObject(object) ? object[key] : undefined;
  return isObject(value) ? value : undefined;
}

/** "namespace/name" of a namespaced object, or undefined when it has none. */
export function namespacedName(object: unknown): { namespace: string; name: string } | undefined {
  const metadata = metadataOf(object);
  const namespace = stringOf(metadata?.namespace);
  const name = stringOf(metadata?.name);
  return namespace !== undefined && name !== undefined ? { namespace, name } : undefined;
}

/** status.podIPs (or the older status.podIP): the addresses the pod was given, hostNetwork or not. */
export function podIPs(pod: unknown): string[] {
  const status = memberObject(pod, 'status');
  const listed = Array.isArray(status?.podIPs) ? status.podIPs.map((p) => (isObject(p) ? stringOf(p.ip) : undefined)) : [];
  const valid = listed.filter((ip): ip is string => ip !== undefined && isIP(ip) !== 0);
  if (valid.length > 0) return [...new Set(valid)];
  const single = stringOf(status?.podIP);
  return single !== undefined && isIP(single) !== 0 ? [single] : [];
}

export function isHostNetwork(pod: unknown): boolean {
  return memberObject(pod, 'spec')?.hostNetwork === true;
}

/** A Pod's part in network policy, or undefined for an object without namespace and name. */
export function podInfo(pod: unknown): PodInfo | undefined {
  const id = namespacedName(pod);
  if (id === undefined) return undefined;
  const spec = memberObject(pod, 'spec');
  const namedPorts: PodInfo['namedPorts'] = [];
  for (const container of Array.isArray(spec?.containers) ? spec.containers : []) {
    for (const port of isObject(container) && Array.isArray(container.ports) ? container.ports : []) {
      if (!isObject(port)) continue;
      const name = stringOf(port.name);
      const number = port.containerPort;
      const protocol = port.protocol ?? 'TCP';
      if (name === undefined || typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > 65535) continue;
      if (!(PROTOCOLS as readonly unknown[]).includes(protocol)) continue;
      namedPorts.push({ name, port: number, protocol: protocol as PodInfo['namedPorts'][number]['protocol'] });
    }
  }
  return {
    ...id,
    labels: stringMap(metadataOf(pod)?.labels),
    ips: podIPs(pod),
    nodeName: stringOf(spec?.nodeName) ?? '',
    hostNetwork: isHostNetwork(pod),
    namedPorts,
  };
}

/** The pod's kubernetes.io/egress-bandwidth annotation as written, if it has one. */
export function podEgressBandwidth(pod: unknown): string | undefined {
  const value = stringMap(metadataOf(pod)?.annotations)[ANNOTATION_EGRESS_BANDWIDTH];
  return value === undefined ? undefined : value.trim();
}

/** A Namespace's part in network policy (its labels), or undefined for an object without a name. */
export function namespaceInfo(namespace: unknown): NamespaceInfo | undefined {
  const metadata = metadataOf(namespace);
  const name = stringOf(metadata?.name);
  return name === undefined ? undefined : { name, labels: stringMap(metadata?.labels) };
}
