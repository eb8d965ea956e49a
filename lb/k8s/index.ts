/**
 * Kubernetes mode's pure part: Kubernetes objects → xlb's service model (kube-proxy's semantics).
 * kubernetesServices() does everything at once; the agent's change tracker can recompute one service
 * with parseService + parseEndpointSlice + servicesOf.
 */
export { kubernetesServices, kubernetesServiceId, servicePortId, servicesOf, KUBERNETES_ORIGIN } from './model.js';
export type { KubernetesModel, KubernetesObjects, KubernetesOptions, KubernetesServiceEntry } from './model.js';
export { parseService, servicePorts, frontendsOf, type FrontendSpec, type ServiceOptions, type ServicePortSpec, type ServiceSpec } from './service.js';
export { parseEndpointSlice, endpointsFor, type Endpoint, type EndpointSliceSpec, type EndpointSpec } from './endpoints.js';
export { backendsFor, topologyMode, type NodeTopology, type TopologyMode } from './topology.js';
export { healthCheckOf, healthCheckResponse, type HealthCheck } from './health.js';
export { nodeInfo, nodePortAddresses, parseNodePortAddresses, type NodeInfo, type NodePortAddressSpec } from './node.js';
export {
  problemText,
  LABEL_SERVICE_NAME,
  LABEL_SERVICE_PROXY_NAME,
  ANNOTATION_FORWARDING_MODE,
  ANNOTATION_LB_ALGORITHM,
  ANNOTATION_CILIUM_FORWARDING_MODE,
  ANNOTATION_CILIUM_LB_ALGORITHM,
  type ObjectRef,
  type Problem,
} from './objects.js';
