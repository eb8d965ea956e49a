/**
 * kube-proxy's service health checks (pkg/proxy/healthcheck): a LoadBalancer service with
 * externalTrafficPolicy Local has spec.healthCheckNodePort, where every node answers HTTP so the
 * cloud load balancer sends only to nodes with local endpoints. This file computes what to answer;
 * the HTTP server is the agent's.
 */
import { familyOf } from './addresses.js';
import { endpointsFor, type EndpointSliceSpec } from './endpoints.js';
import type { ObjectReader } from './objects.js';
import type { ServiceSpec } from './service.js';

export interface HealthCheck {
  /** spec.healthCheckNodePort */
  nodePort: number;
  namespace: string;
  name: string;
  /**
   * Ready endpoints on this node, summed over the service's ports as kube-proxy's LocalReadyEndpoints
   * counts them (a pod serving two ports counts twice), in the service's primary family.
   */
  localEndpoints: number;
}

/** spec.healthCheckNodePort of a service that needs one (type LoadBalancer, externalTrafficPolicy Local). */
export function healthCheckNodePort(reader: ObjectReader, spec: Record<string, unknown>, type: ServiceSpec['type'], externalTrafficPolicy: string): number | undefined {
  if (type !== 'LoadBalancer' || externalTrafficPolicy !== 'Local') return undefined;
  const port = reader.integer(spec.healthCheckNodePort, 'spec.healthCheckNodePort', 1, 65535);
  if (spec.healthCheckNodePort == null) reader.problem('spec.healthCheckNodePort', 'absent on a LoadBalancer service with externalTrafficPolicy Local');
  return port;
}

/** The health check of a service on this node, if it has one. */
export function healthCheckOf(service: ServiceSpec, slices: readonly EndpointSliceSpec[], nodeName: string | undefined): HealthCheck | undefined {
  const [primary] = service.clusterIPs;
  if (service.healthCheckNodePort === undefined || primary === undefined) return undefined;
  let localEndpoints = 0;
  for (const port of service.ports) {
    localEndpoints += endpointsFor(port, familyOf(primary), slices, nodeName).filter((e) => e.local && e.ready).length;
  }
  return { nodePort: service.healthCheckNodePort, namespace: service.namespace, name: service.name, localEndpoints };
}

/** kube-proxy's answer: 200 when there are local endpoints and the proxy is healthy, else 503; its JSON body and headers. */
export function healthCheckResponse(
  check: HealthCheck,
  proxyHealthy = true,
): { status: 200 | 503; headers: Record<string, string>; body: { service: { namespace: string; name: string }; localEndpoints: number; serviceProxyHealthy: boolean } } {
  return {
    status: check.localEndpoints > 0 && proxyHealthy ? 200 : 503,
    headers: {
      'Content-Type': 'application/json',
      'X-Content-Type-Options': 'nosniff',
      'X-Load-Balancing-Endpoint-Weight': String(check.localEndpoints),
    },
    body: { service: { namespace: check.namespace, name: check.name }, localEndpoints: check.localEndpoints, serviceProxyHealthy: proxyHealthy },
  };
}
