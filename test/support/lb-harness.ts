/**
 * xdp_lb under BPF_PROG_TEST_RUN, inside a network namespace of its own so FIB lookups see a known
 * routing table: device v0 (the LB node, 198.18.0.2 / 2001:db8::2) with permanent neighbours for the
 * backends and the client. Services are installed the way the agent installs them: validate →
 * desired state → LbMapWriter.
 */
import { CONNTRACK_MAPS, ctWays } from '../../lb/datapath/conntrack.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { ifindexOf } from '../../lb/datapath/netif.js';
import { LbDatapath } from '../../lb/datapath/lb-datapath.js';
import type { BpfProgram } from '../../lb/datapath/program.js';
import { LbMapWriter } from '../../lb/datapath/lb-writer.js';
import { Topology } from '../../lb/datapath/topology.js';
import { desiredLbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { CtEntry, NatReverse, TupleKind, XlbConfig, XlbTuple } from '../../lb/layouts.js';
import { counterIndex, Direction } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { parseFrame, type ParsedFrame } from './packet.js';

export const NODE = { v4: '198.18.0.2', v6: '2001:db8::2', name: 'lb-node' };
export const CLIENT = { v4: '198.18.0.100', v6: '2001:db8::64', mac: '02:00:00:00:00:64' };
export const BACKENDS = [11, 12, 13].map((n) => ({
  v4: `198.18.0.${n}`,
  v6: `2001:db8::${n.toString(16)}`,
  mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
}));
/** A next hop for the benchmark's self-referential service (see bench/datapath.ts). */
export const SELF_ROUTED = { v4: '198.18.0.50', v6: '2001:db8::50', mac: '02:00:00:00:00:50' };
/** The SNAT port range: wide, so the benchmark's floods of new SNAT flows do not run out of ports. */
export const NAT_PORTS = { min: 1024, max: 65535 };
export const MAGLEV_SIZE = 251;
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;

export interface RunResult {
  retval: number;
  out: Buffer;
  /** The output frame, parsed on first use (a dropped malformed frame need not parse). */
  readonly parsed: ParsedFrame;
}

/** One BPF_PROG_TEST_RUN of `program` on `frame` (with `ctx`, an xdp_md or __sk_buff, when given). */
export function runFrame(program: BpfProgram, frame: Buffer, ctx?: Buffer): RunResult {
  const result = program.testRun({ data: frame, ...(ctx ? { ctx } : {}) });
  let parsed: ParsedFrame | undefined;
  return {
    retval: result.retval,
    out: result.data,
    get parsed(): ParsedFrame {
      parsed ??= parseFrame(result.data);
      return parsed;
    },
  };
}

export class LbHarness {
  readonly lb: LbDatapath;
  readonly writer: LbMapWriter;
  readonly deviceMac: string;
  private readonly ids = new IdAllocator();
  private readonly ifindex: number;
  private services = new Map<string, Service>();

  private constructor(
    private readonly topology: Topology,
    readonly ns: string,
    object: string | undefined,
    conntrackEntries: number | undefined,
  ) {
    this.lb = LbDatapath.load({ maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), object, conntrackEntries });
    this.writer = LbMapWriter.fromObject(this.lb.object);
    this.lb.configure({ nodeV4: NODE.v4, nodeV6: NODE.v6, natPortMin: NAT_PORTS.min, natPortMax: NAT_PORTS.max, eventSample: 0 }); // as the agent runs while nobody watches events
    this.ifindex = inNetns(ns, () => ifindexOf('v0'));
    this.deviceMac = topology.exec(ns, 'cat', ['/sys/class/net/v0/address']).trim();
  }

  /** `object`: another compiled object holding xdp_lb (the benchmark's harness), default xdp_lb.o itself; `conntrackEntries`: the table's size. */
  static create(tag: string, object?: string, conntrackEntries?: number): LbHarness {
    const topology = new Topology(tag);
    try {
      const ns = topology.namespace('pkt');
      topology.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      topology.veth({ ns, name: 'v0' }, { ns, name: 'v1' });
      topology.address(ns, 'v0', `${NODE.v4}/24`);
      topology.address(ns, 'v0', `${NODE.v6}/64`);
      for (const host of [...BACKENDS, CLIENT, SELF_ROUTED]) {
        topology.exec(ns, 'ip', ['neigh', 'replace', host.v4, 'lladdr', host.mac, 'dev', 'v0', 'nud', 'permanent']);
        topology.exec(ns, 'ip', ['-6', 'neigh', 'replace', host.v6, 'lladdr', host.mac, 'dev', 'v0', 'nud', 'permanent']);
      }
      return new LbHarness(topology, ns, object, conntrackEntries);
    } catch (error) {
      topology.destroy();
      throw error;
    }
  }

  /** Make the datapath serve exactly these services (raw service objects, validated as the API does). */
  install(services: Record<string, unknown>): void {
    this.services = new Map(Object.entries(services).map(([id, raw]) => [id, validateService(raw, id, { defaultMode: 'snat' })]));
    const desired = desiredLbState(this.services, { addresses: [NODE.v4, NODE.v6], maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), defaultMode: 'snat', nodeName: NODE.name }, this.ids);
    this.writer.reconcile(desired);
  }

  /** xdp_md for a frame arriving on v0. */
  context(frame: Buffer): Buffer {
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(frame.length, 4);
    ctx.writeUInt32LE(this.ifindex, 12);
    return ctx;
  }

  /** Mean ns per run of `program` over `repeat` runs of one frame, as the kernel timed it. */
  time(program: BpfProgram, frame: Buffer, repeat: number): number {
    return inNetns(this.ns, () => program.testRun({ data: frame, ctx: this.context(frame), repeat }).duration);
  }

  run(frame: Buffer): RunResult {
    const ctx = this.context(frame);
    return inNetns(this.ns, () => runFrame(this.lb.object.program('xdp_lb'), frame, ctx));
  }

  counter(reason: number, direction: number = Direction.INGRESS): bigint {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(counterIndex(reason, direction));
    return this.lb.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
  }

  /** Every occupied way of conntrack: its bucket's index, key and value. */
  private ways(): { bucket: number; key: Buffer; value: Buffer }[] {
    return [...this.lb.map(CONNTRACK_MAPS.table).entries()].flatMap(([index, bucket]) =>
      [...ctWays([bucket])].map(([key, value]) => ({ bucket: index.readUInt32LE(0), key, value })));
  }

  /** Every flow conntrack holds, decoded, with the bucket it is in. */
  flows(): { tuple: ReturnType<typeof XlbTuple.decode>; entry: ReturnType<typeof CtEntry.decode>; bucket: number }[] {
    return this.ways()
      .map(({ bucket, key, value }) => ({ bucket, tuple: XlbTuple.decode(key), value }))
      .filter(({ tuple }) => tuple.kind === TupleKind.Flow)
      .map(({ bucket, tuple, value }) => ({ tuple, entry: CtEntry.decode(value), bucket }));
  }

  /** Every SNAT reply entry conntrack holds (reply tuple → reverse translation), decoded, with its bucket. */
  snatReplies(): { tuple: ReturnType<typeof XlbTuple.decode>; reverse: ReturnType<typeof NatReverse.decode>; bucket: number }[] {
    return this.ways()
      .map(({ bucket, key, value }) => ({ bucket, tuple: XlbTuple.decode(key), value }))
      .filter(({ tuple }) => tuple.kind === TupleKind.SnatReply)
      .map(({ bucket, tuple, value }) => ({ tuple, reverse: NatReverse.decode(value), bucket }));
  }

  /** The datapath's runtime config as the agent wrote it, changed by `change` in place (xlb_config). */
  private changeConfig(change: (config: ReturnType<typeof XlbConfig.decode>) => ReturnType<typeof XlbConfig.decode>): void {
    const map = this.lb.map('xlb_config');
    const key = Buffer.alloc(4);
    const current = map.lookup(key);
    if (!current) throw new Error('xlb_config is not written yet');
    map.update(key, XlbConfig.encode(change(XlbConfig.decode(current))));
  }

  /**
   * Move the datapath's clock `seconds` forward (xlb_config.clock_offset, added to its every reading of
   * time): entries age as if that much time had passed, without waiting.
   */
  advanceClock(seconds: number): void {
    this.changeConfig((config) => ({ ...config, clockOffset: config.clockOffset + seconds }));
  }

  /** Run `ip ARGS` in the harness's namespace (routes a test needs, e.g. a blackhole). */
  ip(...args: string[]): void {
    this.topology.exec(this.ns, 'ip', args);
  }

  /** The SNAT port range, changed in place (the clock offset and the hash seed kept); default NAT_PORTS. */
  setNatPorts(min: number = NAT_PORTS.min, max: number = NAT_PORTS.max): void {
    this.changeConfig((config) => ({ ...config, natPortMin: min, natPortMax: max }));
  }

  /** Forget every tracked flow (conntrack, SNAT ports and exhausted ranges, affinity), as if the node had just started. */
  flushFlows(): void {
    this.lb.conntrack.flush();
    for (const name of ['xlb_lb_affin', 'xlb_frag']) {
      const map = this.lb.map(name);
      map.deleteBatch([...map.keys()]);
    }
    const full = this.lb.map('xlb_nat_full');
    const slots = Array.from({ length: full.maxEntries }, (_, i) => Buffer.from(new Uint32Array([i]).buffer));
    full.updateBatch(slots, slots.map(() => Buffer.alloc(full.valueSize)));
  }

  destroy(): void {
    this.lb.close();
    this.topology.destroy();
  }
}
