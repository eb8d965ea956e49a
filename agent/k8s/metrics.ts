/**
 * Kubernetes mode's metrics, registered into the registry the agent gives (its /metrics): kube-proxy's
 * network programming latency under xlb's name, how long syncs take, what the watches deliver,
 * whether the apiserver is reachable, and how many malformed objects and fields there are now.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { EventType, ResourceKind } from './informers.js';

/** kube-proxy's NetworkProgrammingLatency buckets: 0, 0.25 s, 0.5 s, 1..59 s, 60..115 s, 2..5 min. */
function networkProgrammingBuckets(): number[] {
  const linear = (start: number, step: number, count: number): number[] => Array.from({ length: count }, (_, i) => start + i * step);
  return [0, ...linear(0.25, 0.25, 2), ...linear(1, 1, 59), ...linear(60, 5, 12), ...linear(120, 30, 7)];
}

/** 1 ms doubling to 16 s, as kube-proxy's sync_proxy_rules_duration_seconds. */
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);

export class KubernetesMetrics {
  private readonly networkProgramming: Histogram;
  private readonly syncDuration: Histogram;
  private readonly events: Counter<'kind' | 'type'>;
  private readonly apiserverUp: Gauge;
  private readonly problemCount: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.networkProgramming = new Histogram({
      name: 'xlb_network_programming_duration_seconds',
      help: 'From an EndpointSlice change (its endpoints.kubernetes.io/last-change-trigger-time) to its service being served by the datapath',
      buckets: networkProgrammingBuckets(),
      registers,
    });
    this.syncDuration = new Histogram({
      name: 'xlb_kubernetes_sync_duration_seconds',
      help: 'One Kubernetes sync: recomputing the changed services and applying them to the datapath',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.events = new Counter({
      name: 'xlb_kubernetes_events_total',
      help: 'Kubernetes object changes received (watch events, and differences found by relists)',
      labelNames: ['kind', 'type'],
      registers,
    });
    this.apiserverUp = new Gauge({ name: 'xlb_kubernetes_apiserver_up', help: '1 when every watch is connected to the apiserver, else 0', registers });
    this.problemCount = new Gauge({ name: 'xlb_kubernetes_problems', help: 'Malformed Kubernetes objects and fields reported now', registers });
    this.apiserverUp.set(0);
    this.problemCount.set(0);
  }

  event(kind: ResourceKind, type: EventType, count = 1): void {
    if (count > 0) this.events.inc({ kind, type }, count);
  }

  sync(seconds: number): void {
    this.syncDuration.observe(seconds);
  }

  programmed(seconds: number): void {
    this.networkProgramming.observe(Math.max(0, seconds));
  }

  connected(up: boolean): void {
    this.apiserverUp.set(up ? 1 : 0);
  }

  problems(count: number): void {
    this.problemCount.set(count);
  }
}

/** Network policy's metrics (agent/k8s/policy.ts), in the same registry. */
export class PolicyMetrics {
  private readonly endpoints: Gauge;
  private readonly identities: Gauge;
  private readonly syncDuration: Histogram;
  private readonly problemCount: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.endpoints = new Gauge({ name: 'xlb_policy_endpoints', help: "Pods of this node whose policy is written to the datapath (their device's ifindex known)", registers });
    this.identities = new Gauge({ name: 'xlb_policy_identities', help: 'Security identities allocated (reserved, label and CIDR ones)', registers });
    this.syncDuration = new Histogram({
      name: 'xlb_policy_sync_duration_seconds',
      help: 'One network policy sync: recomputing what changed and writing it to the ipcache and the endpoints\' policy maps',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.problemCount = new Gauge({ name: 'xlb_policy_problems', help: 'Malformed NetworkPolicies now (each logged and reported as an event; not applied)', registers });
    for (const gauge of [this.endpoints, this.identities, this.problemCount]) gauge.set(0);
  }

  sync(seconds: number, endpoints: number, identities: number, problems: number): void {
    this.syncDuration.observe(seconds);
    this.endpoints.set(endpoints);
    this.identities.set(identities);
    this.problemCount.set(problems);
  }
}
