/**
 * The systems the throughput bench compares, each on a wire of its own (topology.ts) with the same
 * services: N ClusterIP-like services of one TCP port, 10 endpoints each, as bench/control-plane
 * builds them (bench/control-plane/objects.ts) — the same addresses for every system.
 *
 * - xlb-snat, xlb-dsr: the real xlb-agent in the node's namespace (agent/demo/agent-process.ts), XDP
 *   native on eth0, the services of a config file, --mode snat or dsr; nothing prepared for it.
 * - iptables: kube-proxy's iptables-mode rules (bench/control-plane/kube-proxy-rules.ts) loaded with
 *   iptables-restore; legacy backend by default (restoring 10,000 services with this host's nf_tables
 *   backend takes more than 9 minutes), `--iptables nft` for the other.
 * - nftables: kube-proxy's nftables-mode table, loaded with nft -f (in groups of services: one
 *   transaction of 10,000 takes minutes in nft 1.0.6; the rules are the same).
 * - routing: the node forwards the frames, sent to the endpoints themselves, with no rule at all.
 * - xdp-forwarder: bpf/bench/xdp_fwd_min.c, the ceiling of an XDP load balancer.
 * - generator (reference, always measured): the node's eth0 drops every frame at once (xdp_sink): what
 *   the generator and a sink cost alone, subtracted to estimate the node's own CPU time.
 * The peers' eth0 carries xdp_pass: a veth receives XDP_TX frames only with an XDP program (NAPI).
 * The sink counts at XDP behind xlb and the forwarder (they redirect frames), at tc ingress behind the
 * stack's systems (an XDP program there would make the veth copy each skb into a page first).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentProcess } from '../../agent/demo/agent-process.js';
import { IPTABLES_JUMPS, iptablesFullSync, nftablesFullSync } from '../control-plane/kube-proxy-rules.js';
import { SERVICE_PORT, TARGET_PORT, type BenchService } from '../control-plane/objects.js';
import type { SystemId } from './catalog.js';
import { MinimalForwarder, PassThrough, Sink, type SinkCounts } from './programs.js';
import { ADDRESSES, BenchWire } from './topology.js';

export interface SystemContext {
  services: readonly BenchService[];
  /** the run's temp dir (agents' sockets, logs, config files) and its bpffs */
  dir: string;
  bpffs: string;
  iptables: 'legacy' | 'nft';
  log: (line: string) => void;
  /** deadline for an agent to load its services and answer */
  agentReadyMs: number;
  /** registers an agent (its stop, its pid) so an interrupted run can still stop it */
  onProcess: (stop: () => Promise<void>, pid: number | undefined) => void;
}

/** One system, set up on its wire and ready for traffic. */
export interface RunningSystem {
  id: SystemId;
  wire: BenchWire;
  /** the generator sends to the services (VIPs) or straight to their endpoints (routing) */
  destination: 'services' | 'endpoints';
  /** what arrived past the node (for the reference: what the node's eth0 dropped) */
  counts(): SinkCounts;
  /** the command a user would type for it, for the report */
  describe: string;
  stop(): Promise<void>;
}

/** The systems that forward through the node's stack (their sink counts at tc ingress). */
const STACK_SYSTEMS: readonly SystemId[] = ['iptables', 'nftables', 'routing'];

/** Services of nft -f per transaction (see the header). */
const NFT_GROUP = 1_000;

const sinkConfig = { endpointsFirst: ADDRESSES.endpointsFirst, endpointsLast: ADDRESSES.endpointsLast, nodeAddr: ADDRESSES.nodeBack };

/**
 * Builds the wire, the sink and the system; everything made is undone if a step fails. The wire is
 * registered through `track` as soon as it exists, so an interrupt removes it even mid-setup.
 */
export async function startSystem(id: SystemId, ctx: SystemContext, track: (wire: BenchWire) => void): Promise<RunningSystem> {
  const wire = BenchWire.create();
  track(wire);
  const closers: (() => void | Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const close of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        ctx.log(`stopping ${id}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    wire.destroy();
  };
  try {
    const sink = new Sink();
    closers.push(() => sink.close());
    // XDP where the node redirects frames (a veth takes them only then), tc where its stack sends skbs.
    sink.attach(wire.sink.ns, wire.sink.dev, STACK_SYSTEMS.includes(id) ? 'tc' : 'xdp', sinkConfig);
    const base = { id, wire, destination: 'services' as const, counts: () => sink.counts(), stop: stopAll };
    switch (id) {
      case 'generator': {
        const drop = new Sink();
        closers.push(() => drop.close());
        drop.attach(wire.node, wire.nodeFront.dev, 'xdp', sinkConfig);
        return { ...base, counts: () => drop.counts(), describe: 'xdp_sink on the node eth0: every frame dropped on arrival' };
      }
      case 'routing':
        plumbPeer(wire, closers);
        return { ...base, destination: 'endpoints', describe: 'sysctl net.ipv4.ip_forward=1, no rules' };
      case 'xdp-forwarder': {
        const forwarder = new MinimalForwarder();
        closers.push(() => forwarder.close());
        forwarder.install(
          ctx.services.map((s) => ({ address: s.clusterIP, port: SERVICE_PORT, endpoints: s.endpoints, endpointPort: TARGET_PORT })),
          { ns: wire.node, dev: wire.nodeBack.dev, smac: wire.nodeBack.mac, dmac: wire.sink.mac },
        );
        forwarder.attach(wire.node, wire.nodeFront.dev);
        return { ...base, describe: 'bpf/bench/xdp_fwd_min.c on eth0: hash lookup, rewrite, redirect to eth1' };
      }
      case 'iptables': {
        plumbPeer(wire, closers);
        const restore = ctx.iptables === 'legacy' ? 'iptables-legacy-restore' : 'iptables-nft-restore';
        wire.exec(wire.node, restore, ['--noflush'], IPTABLES_JUMPS);
        const rules = iptablesFullSync(ctx.services);
        wire.exec(wire.node, restore, ['--noflush'], rules.text);
        return { ...base, describe: `${restore} --noflush: kube-proxy's iptables-mode rules (${rules.rules.toLocaleString('en-US')} nat rules, ${rules.chains.toLocaleString('en-US')} chains)` };
      }
      case 'nftables': {
        plumbPeer(wire, closers);
        let chains = 0;
        for (let i = 0; i < ctx.services.length; i += NFT_GROUP) {
          const text = nftablesFullSync(ctx.services.slice(i, i + NFT_GROUP), { table: i === 0 });
          wire.exec(wire.node, 'nft', ['-f', '-'], text.text);
          chains += text.chains;
        }
        return { ...base, describe: `nft -f: kube-proxy's nftables-mode table (${chains.toLocaleString('en-US')} chains)` };
      }
      case 'xlb-snat':
      case 'xlb-dsr': {
        const mode = id === 'xlb-snat' ? 'snat' : 'dsr';
        const node = `${id}-${ctx.services.length}`;
        const config = join(ctx.dir, `${node}.json`);
        writeFileSync(config, `${JSON.stringify({ services: xlbServices(ctx.services) })}\n`);
        const agent = AgentProcess.start({
          node,
          ns: wire.node,
          xdp: 'native',
          mode,
          nodeAddresses: [ADDRESSES.nodeBack],
          dir: ctx.dir,
          bpffs: ctx.bpffs,
          dsrServiceRanges: [ADDRESSES.services],
          extraArgs: ['--config', config],
        });
        const stop = (): Promise<void> => agent.stop();
        ctx.onProcess(stop, agent.pid);
        closers.push(stop);
        await agent.ready(ctx.agentReadyMs);
        return { ...base, describe: agent.commandLine.replaceAll(ctx.dir, '$RUN') };
      }
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The peers' lab plumbing and what kube-proxy's nodes have: NAPI on eth0, forwarding on. */
function plumbPeer(wire: BenchWire, closers: (() => void)[]): void {
  const pass = new PassThrough();
  closers.push(() => pass.close());
  pass.attach(wire.node, wire.nodeFront.dev);
  wire.enableForwarding();
}

/** The services as xlb's config file takes them: a LoadBalancer address per service, the same endpoints. */
function xlbServices(services: readonly BenchService[]): Record<string, unknown>[] {
  return services.map((s) => ({
    id: s.name,
    type: 'LoadBalancer',
    frontend: { address: s.clusterIP, port: SERVICE_PORT, protocol: 'TCP' },
    backends: s.endpoints.map((address) => ({ address, port: TARGET_PORT })),
  }));
}
