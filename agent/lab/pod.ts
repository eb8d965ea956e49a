/**
 * A pod plugged into its node the way a point-to-point CNI plugin (CNI's ptp) does it: a namespace
 * of its own, a veth whose host side is on the node, the pod's address alone on its end (/32, /128),
 * the node's end holding the pod's gateway address, a default route to that gateway, and a host route
 * on the node to the pod through the veth. Forwarding on the host side is the CNI's too (pod-to-pod
 * traffic needs it without xlb): xlb's agent leaves the pods' devices to the CNI (bpf/tc/tc_pod.c), so
 * a lab that made the agent's work easier here would hide a missing setting from it.
 *
 *   pod ns  eth0 v4/32, v6/128            node ns  HOST-DEVICE gateway v4/32, v6/128
 *           default via gateway                    pod v4/32, v6/128 dev HOST-DEVICE
 */
import type { Topology } from '../../lb/datapath/topology.js';

export interface PodPlan {
  /** the namespace's role in its name: xlb-TAG-ROLE-ID */
  role: string;
  /** the host side of the pod's veth, in the node's namespace (what --pod-devices matches) */
  hostDevice: string;
  v4: string;
  v6: string;
  /** the pod's gateway: the node's end of the veth */
  gateway: { v4: string; v6: string };
}

export interface LabPod {
  ns: string;
  /** the pod's end of its veth */
  dev: string;
  v4: string;
  v6: string;
  hostDevice: string;
}

const POD_DEVICE = 'eth0';

/** Creates the pod's namespace and plugs it into `nodeNs`; the topology removes both. */
export function attachPod(topology: Topology, nodeNs: string, plan: PodPlan): LabPod {
  const ns = topology.namespace(plan.role);
  const host = plan.hostDevice;
  topology.veth({ ns, name: POD_DEVICE }, { ns: nodeNs, name: host });
  for (const family of ['v4', 'v6'] as const) {
    const ip = family === 'v4' ? [] : ['-6'];
    const hostPrefix = family === 'v4' ? '/32' : '/128';
    topology.address(ns, POD_DEVICE, `${plan[family]}${hostPrefix}`);
    topology.address(nodeNs, host, `${plan.gateway[family]}${hostPrefix}`);
    topology.exec(ns, 'ip', [...ip, 'route', 'add', plan.gateway[family], 'dev', POD_DEVICE, 'scope', 'link']);
    topology.exec(ns, 'ip', [...ip, 'route', 'add', 'default', 'via', plan.gateway[family], 'dev', POD_DEVICE]);
    topology.exec(nodeNs, 'ip', [...ip, 'route', 'add', `${plan[family]}${hostPrefix}`, 'dev', host, 'scope', 'link']);
  }
  // Forwarding what comes in by the pod's device is the agent's to set (tc_pod's node settings), not the lab's.
  return { ns, dev: POD_DEVICE, v4: plan.v4, v6: plan.v6, hostDevice: host };
}
