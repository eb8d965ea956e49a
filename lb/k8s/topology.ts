/**
 * Endpoints → the backends of one frontend, with kube-proxy's semantics (pkg/proxy/topology.go,
 * CategorizeEndpoints), expressed in the model's backend states so that lb/lbmap/desired.ts applies
 * the rest the way kube-proxy does:
 *
 * - ready → active. Not ready but serving and terminating → terminating: desired.ts gives those new
 *   flows only when no active backend is usable (kube-proxy's terminating fallback), separately for
 *   Cluster and for Local policy, as kube-proxy does. Anything else (starting, failing readiness,
 *   terminating and no longer serving) → maintenance: no new flows, and flows already tracked to it
 *   keep going, as kube-proxy's conntrack entries do; a backend leaves the service (and its tracked
 *   flows are purged) when its endpoint leaves the slices.
 * - Policy Local (externalTrafficPolicy for NodePort / LoadBalancer / ExternalIP frontends,
 *   internalTrafficPolicy for ClusterIP): every backend keeps its `node`, and the service carries the
 *   policy; desired.ts then gives new flows only to this node's backends, and with none the datapath
 *   drops new flows, as kube-proxy does. Topology does not apply to Local.
 * - Policy Cluster with topology: when every ready endpoint carries a zone hint (hints.forZones, which
 *   the EndpointSlice controller writes for trafficDistribution PreferClose / PreferSameZone and for
 *   topology-mode Auto) and at least one is hinted for this Node's zone (label
 *   topology.kubernetes.io/zone), only those get new flows; the other ready endpoints become
 *   maintenance. Node hints (hints.forNodes, PreferSameNode) likewise, before zones. When hints are
 *   incomplete, or none names this zone, or the Node has no zone label, every endpoint is used, as
 *   kube-proxy falls back. kube-proxy reads only the hints, never the service's fields, so does xlb.
 */
import { DEFAULT_WEIGHT, type Backend, type TrafficPolicy } from '../service.js';
import type { Endpoint } from './endpoints.js';

export type TopologyMode = '' | 'PreferSameNode' | 'PreferSameZone';

export interface NodeTopology {
  nodeName: string | undefined;
  zone: string | undefined;
}

/** Which hints to follow on this node: '' (none), or the node's or the zone's (kube-proxy's topologyModeFromHints). */
export function topologyMode(endpoints: readonly Endpoint[], here: NodeTopology): TopologyMode {
  const ready = endpoints.filter((e) => e.ready);
  if (ready.length === 0) return '';
  const { nodeName, zone } = here;
  if (ready.every((e) => e.nodeHints.length > 0) && nodeName !== undefined && ready.some((e) => e.nodeHints.includes(nodeName))) {
    return 'PreferSameNode';
  }
  if (ready.every((e) => e.zoneHints.length > 0) && zone !== undefined && ready.some((e) => e.zoneHints.includes(zone))) {
    return 'PreferSameZone';
  }
  return '';
}

function availableForTopology(endpoint: Endpoint, mode: TopologyMode, here: NodeTopology): boolean {
  if (mode === 'PreferSameNode') return here.nodeName !== undefined && endpoint.nodeHints.includes(here.nodeName);
  if (mode === 'PreferSameZone') return here.zone !== undefined && endpoint.zoneHints.includes(here.zone);
  return true;
}

/** The model's backends of a frontend with traffic policy `policy` on this node (see the file comment). */
export function backendsFor(endpoints: readonly Endpoint[], policy: TrafficPolicy, here: NodeTopology): Backend[] {
  const mode = policy === 'Cluster' ? topologyMode(endpoints, here) : '';
  return endpoints.map((e) => {
    const state = e.ready
      ? availableForTopology(e, mode, here)
        ? 'active'
        : 'maintenance'
      : e.serving && e.terminating
        ? 'terminating'
        : 'maintenance';
    const backend: Backend = { address: e.address, port: e.port, weight: DEFAULT_WEIGHT, state };
    if (e.node !== undefined) backend.node = e.node;
    return backend;
  });
}
