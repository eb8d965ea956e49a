/**
 * The lab: a client, a load-balancer node and three backend nodes on one L2 segment (a bridge in its
 * own namespace), every address from 198.18.0.0/15 and 2001:db8::/32. The client reaches the VIP ranges
 * through the LB node; backends answer the client directly, which is what DSR needs. With `pod`, a pod
 * on the LB node too (agent/lab/pod.ts), its pod range routed to the LB node as a CNI routes every
 * node's pod range.
 *
 *   client 198.18.0.100 ─┐
 *   lb     198.18.0.2   ─┤ br0 (namespace "sw")     pod 198.18.20.2 ── xlbpod0 (on lb)
 *   b1..b3 198.18.0.11.. ─┘
 */
import { inNetns } from '../../lb/datapath/netns.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { Topology } from '../../lb/datapath/topology.js';
import { attachXdp } from '../../lb/datapath/xdp.js';
import { attachPod, type LabPod } from './pod.js';

export interface LabHost {
  ns: string;
  dev: string;
  v4: string;
  v6: string;
  mac: string;
}

export const LAB_VIP_V4_RANGE = '198.18.10.0/24';
export const LAB_VIP_V6_RANGE = '2001:db8:10::/64';
/** The LB node's pods' range; the host side of each pod's veth is named LAB_POD_DEVICE_PATTERN. */
export const LAB_POD_V4_RANGE = '198.18.20.0/24';
export const LAB_POD_V6_RANGE = '2001:db8:20::/64';
export const LAB_POD_DEVICE_PATTERN = 'xlbpod+';

export interface LabOptions {
  backendCount?: number;
  /** a pod on the LB node */
  pod?: boolean;
  progress?: (step: string) => void;
}

export class Lab {
  readonly client: LabHost;
  readonly lb: LabHost;
  readonly backends: LabHost[];
  /** the LB node's pod, when the lab has one */
  pod: LabPod | undefined;
  private readonly switchNs: string;

  private constructor(
    readonly topology: Topology,
    hosts: Record<string, LabHost>,
    switchNs: string,
  ) {
    const { client, lb, ...rest } = hosts;
    if (!client || !lb) throw new Error('lab topology is missing its client or LB node');
    this.client = client;
    this.lb = lb;
    this.backends = Object.values(rest);
    this.switchNs = switchNs;
  }

  /** Build the lab; on any failure everything created so far is removed before the error propagates. */
  static create(tag: string, options: LabOptions = {}): Lab {
    const { backendCount = 3, progress = () => undefined } = options;
    const topology = new Topology(tag);
    try {
      progress('creating network namespaces and the switch');
      const sw = topology.namespace('sw');
      topology.exec(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
      topology.exec(sw, 'ip', ['link', 'set', 'br0', 'up']);
      const plan: [string, number][] = [['client', 100], ['lb', 2], ...Array.from({ length: backendCount }, (_, i): [string, number] => [`b${i + 1}`, 11 + i])];
      const hosts: Record<string, LabHost> = {};
      for (const [role, n] of plan) {
        const ns = topology.namespace(role);
        const port = `p-${role}`;
        topology.veth({ ns, name: 'eth0' }, { ns: sw, name: port });
        topology.exec(sw, 'ip', ['link', 'set', port, 'master', 'br0']);
        const v4 = `198.18.0.${n}`;
        const v6 = `2001:db8::${n.toString(16)}`;
        topology.address(ns, 'eth0', `${v4}/24`);
        topology.address(ns, 'eth0', `${v6}/64`);
        // A veth hands packets over with checksums still to be filled in (offload); a real wire never
        // does, and native XDP sees the bytes only. Compute them in software, as a NIC would have.
        topology.exec(ns, 'ethtool', ['-K', 'eth0', 'tx', 'off']);
        const mac = topology.exec(ns, 'cat', ['/sys/class/net/eth0/address']).trim();
        hosts[role] = { ns, dev: 'eth0', v4, v6, mac };
      }
      progress('routing the VIP ranges to the LB node');
      const lab = new Lab(topology, hosts, sw);
      lab.configure();
      if (options.pod === true) {
        progress('plugging a pod into the LB node, as a CNI would');
        lab.addPod();
      }
      return lab;
    } catch (error) {
      topology.destroy();
      throw error;
    }
  }

  /**
   * What a wire and its routers would give: the client reaches the VIP ranges through the LB node.
   * Nothing on the LB or backend nodes is configured here (no sysctls, no neighbours): their agents
   * must do what their datapath needs, as on a node nobody prepared.
   */
  private configure(): void {
    const t = this.topology;
    t.exec(this.client.ns, 'ip', ['route', 'add', LAB_VIP_V4_RANGE, 'via', this.lb.v4]);
    t.exec(this.client.ns, 'ip', ['-6', 'route', 'add', LAB_VIP_V6_RANGE, 'via', this.lb.v6]);
    // XDP_TX on the LB's device sends into its bridge-side peer, which drops such frames unless it has
    // NAPI; enabling GRO did not give it NAPI on this kernel, an XDP program does. Lab plumbing (a real
    // switch port needs nothing); it stays attached until the namespace goes.
    const pass = BpfObject.load(bpfObjectPath('xdp/xdp_pass.o'));
    try {
      inNetns(this.switchNs, () => attachXdp('p-lb', pass.program('xdp_pass'), { mode: 'native' }));
    } finally {
      pass.close();
    }
  }

  /** The LB node's pod, and the routes to its range a CNI gives the other nodes. */
  private addPod(): void {
    this.pod = attachPod(this.topology, this.lb.ns, {
      role: 'pod',
      hostDevice: LAB_POD_DEVICE_PATTERN.replace('+', '0'),
      v4: '198.18.20.2',
      v6: '2001:db8:20::2',
      gateway: { v4: '198.18.20.1', v6: '2001:db8:20::1' },
    });
    for (const b of this.backends) {
      this.topology.exec(b.ns, 'ip', ['route', 'add', LAB_POD_V4_RANGE, 'via', this.lb.v4]);
      this.topology.exec(b.ns, 'ip', ['-6', 'route', 'add', LAB_POD_V6_RANGE, 'via', this.lb.v6]);
    }
  }

  /** What DSR options in this lab may name (--dsr-service-ranges): the VIP ranges and the LB node's addresses. */
  get dsrServiceRanges(): string[] {
    return [LAB_VIP_V4_RANGE, LAB_VIP_V6_RANGE, `${this.lb.v4}/32`, `${this.lb.v6}/128`];
  }

  /** Packets the LB node's device received and sent (kernel counters, XDP_TX included). */
  lbDeviceStats(): { rxPackets: number; txPackets: number } {
    const read = (what: string): number => Number(this.topology.exec(this.lb.ns, 'cat', [`/sys/class/net/${this.lb.dev}/statistics/${what}`]).trim());
    return { rxPackets: read('rx_packets'), txPackets: read('tx_packets') };
  }

  destroy(): void {
    this.topology.destroy();
  }
}
