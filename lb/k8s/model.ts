/**
 * Kubernetes objects → xlb's service model: the one pure function of Kubernetes mode (kube-proxy's
 * pkg/proxy/{service,endpoint,topology}.go in one pass). No watching, no kernel: the agent feeds it
 * what its informers hold and hands the result to the reconciler beside the API's services.
 *
 * Ids. A Kubernetes service port is `namespace/name:port` (port: its name, or its number when it has
 * none; see ServicePortSpec.id). The model has one frontend per service, so each frontend of the port
 * is one xlb service, with the id `namespace/name:port@address`, address being the frontend's as the
 * model writes it: the cluster address, a load-balancer ingress IP, an external IP, or for the NodePort
 * "0.0.0.0" / "::" (every node address of that family). Ids depend only on the service, the port's name
 * and the address, so they stay the same while endpoints come and go, and read as what they serve:
 *   default/web:http@10.96.0.10     default/web:http@0.0.0.0     default/web:http@198.18.0.10
 * The part before '@' groups an xlb service under its Kubernetes service port (no '@' can occur in a
 * namespace, name or port name). Every entry has origin `kubernetes`.
 *
 * Problems: a malformed object, field or annotation is a Problem naming the object and the field,
 * returned beside the services; the malformed part is left out (or takes its default), the rest of
 * the object and every other object are still served. Nothing here throws on input.
 */
import { MAX_BACKENDS, ServiceValidationError, validateService, type Service } from '../service.js';
import { endpointsFor, parseEndpointSlice, type Endpoint, type EndpointSliceSpec } from './endpoints.js';
import { healthCheckOf, type HealthCheck } from './health.js';
import { nodeInfo } from './node.js';
import type { Problem } from './objects.js';
import { frontendsOf, parseService, type FrontendSpec, type ServiceOptions, type ServicePortSpec, type ServiceSpec } from './service.js';
import { backendsFor, type NodeTopology } from './topology.js';

export const KUBERNETES_ORIGIN = 'kubernetes';

export interface KubernetesServiceEntry {
  /** `namespace/name:port@address` (see the file comment). */
  id: string;
  origin: typeof KUBERNETES_ORIGIN;
  /** `namespace/name:port`: the Kubernetes service port it serves. */
  servicePort: string;
  service: Service;
}

export interface KubernetesModel {
  /** Sorted by id. */
  entries: KubernetesServiceEntry[];
  /** The same services by id, as desiredLbState takes them. */
  services: Map<string, Service>;
  /** The healthCheckNodePort servers this node runs, sorted by nodePort (see health.ts). */
  healthChecks: HealthCheck[];
  problems: Problem[];
}

export interface KubernetesObjects {
  services: readonly unknown[];
  /** discovery.k8s.io/v1 or v1beta1 EndpointSlices, of every service (each finds its own by label). */
  endpointSlices: readonly unknown[];
  /** This node's Node object: its zone label steers topology hints. Absent: no topology. */
  node?: unknown;
}

export interface KubernetesOptions extends ServiceOptions {
  /** This node's name (--node-name): endpoints there are local. Default: the Node object's name. */
  nodeName?: string;
}

/** `namespace/name:port` */
export function servicePortId(service: Pick<ServiceSpec, 'namespace' | 'name'>, port: Pick<ServicePortSpec, 'id'>): string {
  return `${service.namespace}/${service.name}:${port.id}`;
}

/** `namespace/name:port@address` */
export function kubernetesServiceId(servicePort: string, frontend: Pick<FrontendSpec, 'address'>): string {
  return `${servicePort}@${frontend.address}`;
}

/** Every xlb service the objects describe for this node, and the problems found on the way. */
export function kubernetesServices(objects: KubernetesObjects, options: KubernetesOptions = {}): KubernetesModel {
  const problems: Problem[] = [];
  const node = objects.node === undefined ? undefined : nodeInfo(objects.node, problems);
  const here: NodeTopology = { nodeName: options.nodeName ?? node?.name, zone: node?.zone };

  const slicesByService = new Map<string, EndpointSliceSpec[]>();
  for (const object of objects.endpointSlices) {
    const slice = parseEndpointSlice(object, problems);
    if (!slice) continue;
    const key = `${slice.namespace}/${slice.serviceName}`;
    const list = slicesByService.get(key) ?? [];
    list.push(slice);
    slicesByService.set(key, list);
  }

  const entries: KubernetesServiceEntry[] = [];
  const healthChecks: HealthCheck[] = [];
  for (const object of objects.services) {
    const spec = parseService(object, problems, options);
    if (!spec) continue;
    const slices = slicesByService.get(`${spec.namespace}/${spec.name}`) ?? [];
    entries.push(...servicesOf(spec, slices, here, problems));
    const check = healthCheckOf(spec, slices, here.nodeName);
    if (check) healthChecks.push(check);
  }
  entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  healthChecks.sort((a, b) => a.nodePort - b.nodePort);
  return { entries, services: new Map(entries.map((e) => [e.id, e.service])), healthChecks, problems };
}

/**
 * The xlb services of one Kubernetes service, from its slices: one per frontend of each port. The
 * unit a change tracker recomputes when that service or one of its slices changes.
 */
export function servicesOf(spec: ServiceSpec, slices: readonly EndpointSliceSpec[], here: NodeTopology, problems: Problem[]): KubernetesServiceEntry[] {
  const out: KubernetesServiceEntry[] = [];
  for (const port of spec.ports) {
    const servicePort = servicePortId(spec, port);
    const byFamily = new Map<number, Endpoint[]>();
    for (const frontend of frontendsOf(spec, port)) {
      const id = kubernetesServiceId(servicePort, frontend);
      const ofFamily = byFamily.get(frontend.family) ?? endpointsFor(port, frontend.family, slices, here.nodeName);
      byFamily.set(frontend.family, ofFamily);
      const endpoints = ofFamily.filter((e) => {
        if (e.address !== frontend.address) return true;
        // The model refuses a backend at its own frontend's address: the flow would come back to the VIP.
        const message = `${e.address} is the address of frontend ${id}: left out of it (it would loop)`;
        problems.push({ object: e.slice, field: `${e.field}.addresses[0]`, message });
        return false;
      });
      const raw = {
        frontend: { address: frontend.address, port: frontend.port, protocol: port.protocol },
        type: frontend.type,
        ...(spec.mode !== undefined ? { mode: spec.mode } : {}),
        algorithm: spec.algorithm,
        sessionAffinity: spec.sessionAffinity,
        ...(frontend.policy === 'Local' ? { [frontend.type === 'ClusterIP' ? 'internalTrafficPolicy' : 'externalTrafficPolicy']: 'Local' } : {}),
        sourceRanges: frontend.sourceRanges,
        backends: [],
      };
      const backends = backendsFor(endpoints, frontend.policy, here);
      if (backends.length > MAX_BACKENDS) {
        problems.push({ object: spec.ref, field: `spec.ports[${spec.ports.indexOf(port)}]`, message: `${backends.length} endpoints for ${id}: at most ${MAX_BACKENDS}` });
        continue;
      }
      try {
        // validateService checks the frontend's part. The backends are valid by construction (each
        // address checked once per slice by parseHostAddress, of the frontend's family, not its
        // address, each address and port once, node names checked), so they are not checked again
        // for every frontend: at 10,000 services that halves the time of a full sync.
        const service = { ...validateService(raw, '', { clusterIP: true }), backends };
        out.push({ id, origin: KUBERNETES_ORIGIN, servicePort, service });
      } catch (error) {
        if (!(error instanceof ServiceValidationError)) throw error;
        for (const issue of error.issues) {
          problems.push({ object: spec.ref, field: `(xlb service ${id}) ${issue.field}`, message: issue.message });
        }
      }
    }
  }
  return out;
}
