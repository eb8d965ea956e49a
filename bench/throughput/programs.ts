/**
 * The throughput bench's own XDP programs (bpf/bench/), loaded by the bench process:
 * - Generator (xdp_gen): BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the generator's veth,
 *   writing the whole 64-byte frame every time (DESIGN.md's second trap) and sending it with XDP_TX;
 * - Sink (sink.c: xdp_sink or tc_sink): on the backends' side, counts and drops what the node forwarded;
 * - MinimalForwarder (xdp_fwd_min): one hash lookup, rewrite, redirect — the ceiling for an XDP LB.
 * Each codec is checked against the object's BTF when it is loaded, so a layout cannot drift.
 */
import { be16, bytes, defineStruct, ipv4, pad, u32, u64, type StructCodec } from '../../lb/codec.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { ifindexOf } from '../../lb/datapath/netif.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { BPF_F_TEST_XDP_LIVE_FRAMES } from '../../lb/datapath/program.js';
import { attachTc } from '../../lb/datapath/tc.js';
import { attachXdp } from '../../lb/datapath/xdp.js';
import { layoutDifferences } from '../../lb/layout-check.js';
import { buildFrame, TCP_FLAGS } from '../../test/support/packet.js';

/** bpf/bench/xdp_gen.c: XLB_GEN_FRAME_LEN, and how a flow number becomes a client address and port. */
export const FRAME_LEN = 64;
export const GEN_CLIENT_BITS = 13;
export const GEN_PORT_BASE = 1024;
/** Frames per XDP_TX batch (the kernel's default and maximum is 64). */
const BATCH = 64;

const GenConfig = defineStruct('xlb_gen_config', {
  frame: bytes(FRAME_LEN),
  seq: u64,
  flowMask: u32,
  flowBase: u32,
  services: u32,
  fanout: u32,
  daddrStride: u32,
  pad: pad(4),
});

const SinkConfig = defineStruct('xlb_sink_config', { endpointsFirst: u32, endpointsLast: u32, nodeAddr: ipv4 });

export const FWD_MAX_ENDPOINTS = 16;
const FwdKey = defineStruct('xlb_fwd_key', { addr: ipv4, port: be16, pad: pad(2) });
const FwdService = defineStruct('xlb_fwd_service', { count: u32, port: be16, pad: pad(2), endpoints: bytes(4 * FWD_MAX_ENDPOINTS, 4) });
const FwdNexthop = defineStruct('xlb_fwd_nexthop', { ifindex: u32, smac: bytes(6), dmac: bytes(6) });

/** bpf/bench/sink.c: enum xlb_sink_counter. */
const SinkCounter = { packets: 0, toEndpoints: 1, fromNode: 2, ipOptions: 3 } as const;

function load(name: string, codecs: StructCodec<never>[]): BpfObject {
  const object = BpfObject.load(bpfObjectPath(`bench/${name}.o`));
  try {
    const btf = object.btf();
    const problems = codecs.flatMap((codec) => {
      const struct = btf.struct(codec.cName);
      return struct ? layoutDifferences(codec, struct) : [`${codec.cName}: not in ${name}.o`];
    });
    if (problems.length > 0) throw new Error(`bench/${name}.o does not match the bench's layouts: ${problems.join('; ')}`);
    return object;
  } catch (error) {
    object.close();
    throw error;
  }
}

const key0 = (): Buffer => Buffer.alloc(4);

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function ipv4Number(text: string): number {
  return text.split('.').reduce((n, octet) => n * 256 + Number(octet), 0) >>> 0;
}

export function ipv4Text(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

/** What the generator sends: flow numbers → clients, services → destination addresses. */
export interface TrafficSpec {
  srcMac: string;
  dstMac: string;
  /** flow f comes from clientBase + (f & 0x1fff), port 1024 + ((f >> 13) & 0x7fff) */
  clientBase: string;
  /** service s is at destinationBase + s × stride (+ (f / services) % fanout) */
  destinationBase: string;
  stride: number;
  services: number;
  fanout: number;
  dport: number;
  /** established: `flows` (a power of two) cycling, ACK+PSH with 10 bytes; new: a SYN of a new flow each frame */
  flows: { kind: 'established'; count: number } | { kind: 'new'; first: number };
}

export class Generator {
  private readonly object: BpfObject;

  constructor() {
    this.object = load('xdp_gen', [GenConfig as StructCodec<never>]);
  }

  configure(spec: TrafficSpec): void {
    const { flows } = spec;
    const established = flows.kind === 'established';
    if (flows.kind === 'established' && (flows.count & (flows.count - 1)) !== 0) throw new Error(`established flows: ${flows.count} is not a power of two`);
    const payload = established ? Buffer.alloc(10) : Buffer.alloc(0);
    const frame = buildFrame({
      eth: { src: spec.srcMac, dst: spec.dstMac },
      ip: { src: spec.clientBase, dst: spec.destinationBase, ttl: 64, id: 0 },
      l4: { proto: 'tcp', sport: GEN_PORT_BASE, dport: spec.dport, flags: established ? TCP_FLAGS.ACK | TCP_FLAGS.PSH : TCP_FLAGS.SYN, seq: 1, ack: established ? 1 : 0, window: 502, payload },
    });
    const padded = Buffer.alloc(FRAME_LEN);
    frame.copy(padded);
    this.object.map('xlb_gen_config').update(
      key0(),
      GenConfig.encode({
        frame: padded,
        seq: 0n,
        flowMask: flows.kind === 'established' ? flows.count - 1 : 0xffffffff,
        flowBase: flows.kind === 'established' ? 0 : flows.first,
        services: spec.services,
        fanout: spec.fanout,
        daddrStride: spec.stride,
      }),
    );
  }

  /** Frames sent since configure(). */
  sent(): number {
    const value = this.object.map('xlb_gen_config').lookup(key0());
    return value ? Number(GenConfig.decode(value).seq) : 0;
  }

  /**
   * Sends `count` frames out of `dev` in network namespace `ns` (one syscall: the calling thread is
   * busy until they are all sent); returns the kernel's ns per frame.
   */
  send(ns: string, dev: string, count: number): number {
    return inNetns(ns, () => {
      const ctx = Buffer.alloc(24);
      ctx.writeUInt32LE(FRAME_LEN, 4);
      ctx.writeUInt32LE(ifindexOf(dev), 12);
      const program = this.object.program('xdp_gen');
      return program.testRun({ data: Buffer.alloc(FRAME_LEN), ctx, repeat: count, flags: BPF_F_TEST_XDP_LIVE_FRAMES, batchSize: BATCH }).duration;
    });
  }

  close(): void {
    this.object.close();
  }
}

export interface SinkCounts {
  packets: number;
  toEndpoints: number;
  fromNode: number;
  ipOptions: number;
}

/**
 * bpf/bench/sink.c on a device, and its counters: XDP where frames come with XDP_REDIRECT, tc ingress
 * where they come from the node's stack (see sink.c).
 */
export class Sink {
  private readonly object: BpfObject;

  constructor() {
    this.object = load('sink', [SinkConfig as StructCodec<never>]);
  }

  attach(ns: string, dev: string, hook: 'xdp' | 'tc', config: { endpointsFirst: string; endpointsLast: string; nodeAddr: string }): void {
    const { endpointsFirst, endpointsLast, nodeAddr } = config;
    this.object.map('xlb_sink_config').update(key0(), SinkConfig.encode({ endpointsFirst: ipv4Number(endpointsFirst), endpointsLast: ipv4Number(endpointsLast), nodeAddr }));
    inNetns(ns, () => {
      if (hook === 'xdp') attachXdp(dev, this.object.program('xdp_sink'), { mode: 'native' });
      else attachTc(dev, 'ingress', this.object.program('tc_sink'));
    });
  }

  counts(): SinkCounts {
    const map = this.object.map('xlb_sink_counts');
    const read = (index: number): number => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(index);
      return Number(map.sumPerCpuU64(key)[0] ?? 0n);
    };
    return { packets: read(SinkCounter.packets), toEndpoints: read(SinkCounter.toEndpoints), fromNode: read(SinkCounter.fromNode), ipOptions: read(SinkCounter.ipOptions) };
  }

  close(): void {
    this.object.close();
  }
}

export interface ForwarderService {
  address: string;
  port: number;
  endpoints: string[];
  endpointPort: number;
}

/** xdp_fwd_min: its services and its one next hop, then attached. */
export class MinimalForwarder {
  private readonly object: BpfObject;

  constructor() {
    this.object = load('xdp_fwd_min', [FwdKey, FwdService, FwdNexthop] as StructCodec<never>[]);
  }

  install(services: readonly ForwarderService[], nexthop: { ns: string; dev: string; smac: string; dmac: string }): void {
    const map = this.object.map('xlb_fwd_svcs');
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const s of services) {
      if (s.endpoints.length === 0 || s.endpoints.length > FWD_MAX_ENDPOINTS) throw new Error(`minimal forwarder: ${s.endpoints.length} endpoints (1..${FWD_MAX_ENDPOINTS})`);
      const endpoints = Buffer.alloc(4 * FWD_MAX_ENDPOINTS);
      s.endpoints.forEach((e, i) => endpoints.writeUInt32BE(ipv4Number(e), 4 * i));
      keys.push(FwdKey.encode({ addr: s.address, port: s.port }));
      values.push(FwdService.encode({ count: s.endpoints.length, port: s.endpointPort, endpoints }));
    }
    for (let i = 0; i < keys.length; i += 4096) map.updateBatch(keys.slice(i, i + 4096), values.slice(i, i + 4096));
    const ifindex = inNetns(nexthop.ns, () => ifindexOf(nexthop.dev));
    this.object.map('xlb_fwd_nexthop').update(key0(), FwdNexthop.encode({ ifindex, smac: macBytes(nexthop.smac), dmac: macBytes(nexthop.dmac) }));
  }

  attach(ns: string, dev: string): void {
    inNetns(ns, () => attachXdp(dev, this.object.program('xdp_fwd_min'), { mode: 'native' }));
  }

  close(): void {
    this.object.close();
  }
}

/** xdp_pass from bpf/xdp: gives a veth NAPI, so frames sent into it with XDP_TX are received (lab plumbing). */
export class PassThrough {
  private readonly object = BpfObject.load(bpfObjectPath('xdp/xdp_pass.o'));

  attach(ns: string, dev: string): void {
    inNetns(ns, () => attachXdp(dev, this.object.program('xdp_pass'), { mode: 'native' }));
  }

  close(): void {
    this.object.close();
  }
}

