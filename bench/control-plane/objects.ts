/**
 * The cluster the control-plane bench syncs: N ClusterIP services of one TCP port each, every one with
 * one EndpointSlice of E ready endpoints on other nodes, as the apiserver and the EndpointSlice
 * controller write them (discovery.k8s.io/v1). The same cluster feeds xlb (as objects) and the
 * kube-proxy rule generators (as BenchService), so both sides program exactly the same services.
 *
 * Addresses stay inside 198.18.0.0/15: cluster IPs from 198.19.192.0/18 (16,384), pod addresses
 * counted up from 198.18.0.1 (114,687 before they would reach the cluster IPs).
 */

export const NAMESPACE = 'bench';
export const SERVICE_PORT = 80;
export const TARGET_PORT = 8080;
export const PORT_NAME = 'http';
/** The node the agent runs on: no endpoint is local to it. */
export const NODE_NAME = 'bench-node';
/** The pod CIDR kube-proxy's local detector uses (traffic from elsewhere is masqueraded). */
export const CLUSTER_CIDR = '198.18.0.0/17';

const CLUSTER_IP_BASE = ipv4Number('198.19.192.0');
const CLUSTER_IP_COUNT = 16_384;
const POD_BASE = ipv4Number('198.18.0.1');
const POD_COUNT = CLUSTER_IP_BASE - POD_BASE;

export interface BenchService {
  namespace: string;
  name: string;
  clusterIP: string;
  /** Endpoint addresses, in slice order. */
  endpoints: string[];
  /** The slice's resourceVersion: bumped by every endpoint change. */
  resourceVersion: number;
}

function ipv4Number(text: string): number {
  return text.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

export function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

/** Hands out pod addresses, each once. */
export class PodAddresses {
  private next = 0;

  take(): string {
    if (this.next >= POD_COUNT) throw new Error(`the bench ran out of pod addresses (${POD_COUNT} in 198.18.0.0/15 below the cluster IPs)`);
    return ipv4(POD_BASE + this.next++);
  }
}

export function benchCluster(services: number, endpointsPerService: number, pods: PodAddresses): BenchService[] {
  if (services > CLUSTER_IP_COUNT) throw new Error(`at most ${CLUSTER_IP_COUNT} services (cluster IPs in 198.19.192.0/18)`);
  return Array.from({ length: services }, (_, i) => ({
    namespace: NAMESPACE,
    name: `svc-${i}`,
    clusterIP: ipv4(CLUSTER_IP_BASE + i),
    endpoints: Array.from({ length: endpointsPerService }, () => pods.take()),
    resourceVersion: 1,
  }));
}

let uidCounter = 0;
function uid(): string {
  uidCounter += 1;
  return `00000000-0000-4000-8000-${uidCounter.toString(16).padStart(12, '0')}`;
}

/** The Service as the apiserver returns it. */
export function serviceObject(s: BenchService): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace, uid: uid(), resourceVersion: '1', creationTimestamp: '2026-12-01T10:00:00Z' },
    spec: {
      clusterIP: s.clusterIP,
      clusterIPs: [s.clusterIP],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: [{ name: PORT_NAME, port: SERVICE_PORT, protocol: 'TCP', targetPort: TARGET_PORT }],
      selector: { app: s.name },
      sessionAffinity: 'None',
      type: 'ClusterIP',
    },
    status: { loadBalancer: {} },
  };
}

/** The service's one EndpointSlice as the EndpointSlice controller writes it. */
export function endpointSliceObject(s: BenchService): Record<string, unknown> {
  return {
    addressType: 'IPv4',
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${s.name}-abcde`,
      namespace: s.namespace,
      generateName: `${s.name}-`,
      uid: uid(),
      resourceVersion: String(s.resourceVersion),
      creationTimestamp: '2026-12-01T10:00:00Z',
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': s.name },
    },
    endpoints: s.endpoints.map((address, i) => ({
      addresses: [address],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: `node-${i % 50}`,
      targetRef: { kind: 'Pod', name: `${s.name}-${address.replace(/\./g, '-')}`, namespace: s.namespace, uid: uid() },
    })),
    ports: [{ name: PORT_NAME, port: TARGET_PORT, protocol: 'TCP' }],
  };
}

/**
 * Endpoint change number k: one endpoint of one service replaced by a new pod, as a rolling update
 * does. Services are visited in a stride, so consecutive changes touch different services.
 */
export function replaceEndpoint(cluster: readonly BenchService[], k: number, pods: PodAddresses): { index: number; service: BenchService; removed: string } {
  const index = (k * 7919) % cluster.length;
  const service = cluster[index];
  if (service === undefined) throw new Error(`replaceEndpoint: the cluster is empty`);
  const slot = k % service.endpoints.length;
  const removed = service.endpoints[slot] ?? '';
  service.endpoints[slot] = pods.take();
  service.resourceVersion += 1;
  return { index, service, removed };
}
