/**
 * What the agent's Kubernetes side reports about itself (GET /v1/status `kubernetes`, `xlb status`):
 * the watcher (agent/k8s/) produces it, the API and CLI only show it.
 */
export type ApiServerConnection = 'connecting' | 'connected' | 'disconnected';

export interface KubernetesSyncSummary {
  /** ISO 8601 time the sync finished. */
  at: string;
  durationMs: number;
  /** xlb services created, updated or removed by the sync. */
  changed: number;
  /** xlb services the datapath refused (each logged and reported as an event, retried later). */
  failed: number;
}

export interface KubernetesStatus {
  /** The apiserver's URL. */
  apiServer: string;
  connection: ApiServerConnection;
  /** ISO 8601 time of the last change of `connection`. */
  since: string;
  /** Why the connection is not up (the last watch or list error), when it is not. */
  lastError?: string;
  /** discovery.k8s.io version the EndpointSlices are watched with. */
  endpointSliceVersion?: 'v1' | 'v1beta1';
  nodeName: string;
  /** xlb services from Kubernetes now served. */
  services: number;
  lastSync?: KubernetesSyncSummary;
  /** Malformed objects and fields currently reported (each also an event and a log line). */
  problems: number;
}

export interface KubernetesStatusSource {
  status(): KubernetesStatus;
}
