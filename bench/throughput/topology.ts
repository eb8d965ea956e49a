/**
 * The throughput bench's wire, in three network namespaces of its own (xlb-tput-{gen,node,sink}-<id>):
 *
 *   gen  eth0 198.19.152.1 ─── eth0 198.19.152.2  node  eth1 198.19.153.1 ─── eth0 198.19.153.2  sink
 *
 * The services and their endpoints are bench/control-plane's (objects.ts): services from 198.19.192.0,
 * endpoints counted up from 198.18.0.1 (10,000 services × 10 reach 198.19.134.161). The generator
 * sends from clients in 198.19.160.0/19 — outside the cluster CIDR 198.18.0.0/17, so kube-proxy
 * masquerades them — to the services; the node reaches the endpoints through the sink, whose programs
 * count and drop every frame. Nothing on the node is prepared for xlb (its agent sets what it needs);
 * the peers get what kube-proxy's nodes have (forwarding on). A fresh wire for every system and
 * service count: no state carries over.
 */
import { Topology } from '../../lb/datapath/topology.js';

export const ADDRESSES = {
  gen: '198.19.152.1',
  nodeFront: '198.19.152.2',
  nodeBack: '198.19.153.1',
  sink: '198.19.153.2',
  clients: '198.19.160.0/19',
  clientBase: '198.19.160.0',
  /** the endpoints' addresses, routed through the sink: 198.18.0.0 – 198.19.143.255 */
  endpointRoutes: ['198.18.0.0/16', '198.19.0.0/17', '198.19.128.0/20'],
  endpointsFirst: '198.18.0.0',
  endpointsLast: '198.19.143.255',
  services: '198.19.192.0/18',
} as const;

export interface Host {
  ns: string;
  dev: string;
  mac: string;
}

export class BenchWire {
  readonly gen: Host;
  /** the node's device toward the generator (eth0) and toward the endpoints (eth1) */
  readonly nodeFront: Host;
  readonly nodeBack: Host;
  readonly sink: Host;

  private constructor(readonly topology: Topology) {
    const [gen, node, sink] = topology.namespaces;
    if (gen === undefined || node === undefined || sink === undefined) throw new Error('bench wire: namespaces missing');
    const mac = (ns: string, dev: string): string => topology.exec(ns, 'cat', [`/sys/class/net/${dev}/address`]).trim();
    this.gen = { ns: gen, dev: 'eth0', mac: mac(gen, 'eth0') };
    this.nodeFront = { ns: node, dev: 'eth0', mac: mac(node, 'eth0') };
    this.nodeBack = { ns: node, dev: 'eth1', mac: mac(node, 'eth1') };
    this.sink = { ns: sink, dev: 'eth0', mac: mac(sink, 'eth0') };
  }

  /** Builds the wire; on failure removes what it made. */
  static create(): BenchWire {
    const t = new Topology('tput');
    try {
      const gen = t.namespace('gen');
      const node = t.namespace('node');
      const sink = t.namespace('sink');
      t.veth({ ns: gen, name: 'eth0' }, { ns: node, name: 'eth0' });
      t.veth({ ns: node, name: 'eth1' }, { ns: sink, name: 'eth0' });
      t.address(gen, 'eth0', `${ADDRESSES.gen}/24`);
      t.address(node, 'eth0', `${ADDRESSES.nodeFront}/24`);
      t.address(node, 'eth1', `${ADDRESSES.nodeBack}/24`);
      t.address(sink, 'eth0', `${ADDRESSES.sink}/24`);
      // What the network around a node would give it: the clients behind one router, the endpoints
      // (pods on other nodes) behind another.
      t.exec(node, 'ip', ['route', 'add', ADDRESSES.clients, 'via', ADDRESSES.gen]);
      for (const route of ADDRESSES.endpointRoutes) t.exec(node, 'ip', ['route', 'add', route, 'via', ADDRESSES.sink]);
      t.exec(gen, 'ip', ['route', 'add', ADDRESSES.services, 'via', ADDRESSES.nodeFront]);
      return new BenchWire(t);
    } catch (error) {
      t.destroy();
      throw error;
    }
  }

  get node(): string {
    return this.nodeFront.ns;
  }

  /** A command in one of the wire's namespaces; `input` goes to its stdin. */
  exec(ns: string, command: string, args: string[], input?: string): string {
    return this.topology.exec(ns, command, args, input === undefined ? {} : { input });
  }

  /** IPv4 forwarding on the node, as kube-proxy's nodes have it (never for xlb: its agent sets it). */
  enableForwarding(): void {
    this.exec(this.node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  }

  destroy(): void {
    this.topology.destroy();
  }
}
