/**
 * The load-balancing node's datapath: xdp_lb.o loaded with this node's Maglev parameters, its maps
 * pinned (so an agent restart keeps services, conntrack and SNAT state), attached to the devices.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { assertMaglevTableSize, type MaglevSeed } from '../maglev/index.js';
import { counterIndex, Direction, REASON_MAX } from '../reasons.js';
import type { BpfMap } from './map.js';
import { CT_WAYS, XlbConfig } from '../layouts.js';
import { Conntrack } from './conntrack.js';
import { prepareBpffs } from './bpffs.js';
import { BpfObject, type LoadOptions } from './object.js';
import { bpfObjectPath } from './objects.js';
import { attachXdp, type XdpMode } from './xdp.js';

export interface LbDatapathOptions {
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  /** Pin the maps here (e.g. /sys/fs/bpf/xlb); omit for a throwaway datapath (tests, benchmarks). */
  pinDir?: string;
  /** Entries conntrack holds (flows, and a reply entry per SNAT flow): CT_WAYS × a power of two (default 262144). */
  conntrackEntries?: number;
  /** The compiled object, relative to build/bpf (default xdp/xdp_lb.o; benchmarks load a harness around it). */
  object?: string;
  /** Room in the LB maps (default: the object's own, bpf/include/lb.h): frontends and service ids, backends and slots. */
  capacity?: { services: number; backends: number };
}

export interface LbNodeConfig {
  nodeV4?: string;
  nodeV6?: string;
  natPortMin: number;
  natPortMax: number;
  /** 1 in N new flows reaches the event ring; 0 = none. Drops are always reported. */
  eventSample: number;
}

export interface CounterSample {
  reason: number;
  direction: number;
  packets: bigint;
  bytes: bigint;
}

export const DEFAULT_CONNTRACK_ENTRIES = 262144;

export class LbDatapath {
  readonly conntrack: Conntrack;
  private config: LbNodeConfig | undefined;

  private constructor(
    readonly object: BpfObject,
    readonly options: LbDatapathOptions,
  ) {
    this.conntrack = Conntrack.fromObject(object);
  }

  static load(options: LbDatapathOptions): LbDatapath {
    assertMaglevTableSize(options.maglevTableSize);
    if (options.pinDir) prepareBpffs(options.pinDir, { mount: false });
    const object = BpfObject.load(bpfObjectPath(options.object ?? 'xdp/xdp_lb.o'), {
      pinDir: options.pinDir,
      ...lbSharedLoadOptions(options),
    });
    return new LbDatapath(object, options);
  }

  map(name: string): BpfMap {
    return this.object.map(name);
  }

  /** Attach (or atomically replace) xdp_lb on a device; 'auto' tries native and falls back to generic. */
  attach(ifname: string, mode: XdpMode | 'auto', log: (message: string) => void = () => undefined): XdpMode {
    return attachXdp(ifname, this.object.program('xdp_lb'), {
      mode,
      onFallback: (error) => log(`XDP native mode refused on ${ifname} (${error.code}); using generic mode`),
    });
  }

  /** Write the node's config; the conntrack hash seed is drawn once and kept (entries hash by it). */
  configure(config: LbNodeConfig): void {
    const map = this.map('xlb_config');
    const key = Buffer.alloc(4);
    const current = map.lookup(key);
    const kept = current ? XlbConfig.decode(current).ctSeed : 0;
    map.update(key, encodeConfig(config, kept || randomBytes(4).readUInt32LE(0) || 1));
    this.config = config;
  }

  /** Change only how many new flows reach the event ring (1 in N; 0 = none), e.g. while someone watches. */
  sampleNewFlows(eventSample: number): void {
    if (!this.config) throw new Error('LbDatapath.sampleNewFlows before configure');
    if (this.config.eventSample !== eventSample) this.configure({ ...this.config, eventSample });
  }

  /** Every non-zero counter, summed over CPUs. */
  counters(): CounterSample[] {
    const metrics = this.map('xlb_metrics');
    const samples: CounterSample[] = [];
    for (const direction of [Direction.INGRESS, Direction.EGRESS]) {
      for (let reason = 0; reason < REASON_MAX; reason++) {
        const key = Buffer.alloc(4);
        key.writeUInt32LE(counterIndex(reason, direction));
        const [packets = 0n, bytes = 0n] = metrics.sumPerCpuU64(key);
        if (packets > 0n) samples.push({ reason, direction, packets, bytes });
      }
    }
    return samples;
  }

  close(): void {
    this.object.close();
  }
}

/**
 * How every object that shares xdp_lb's maps through their pins (lb.h, conntrack.h: tc_pod beside xdp_lb)
 * must be loaded: the same Maglev size and seeds, clock and conntrack mask (fixed at load), and the same
 * map sizes — a pinned map of another size or layout is replaced, and its entries lost.
 */
export function lbSharedLoadOptions(
  options: Pick<LbDatapathOptions, 'maglevTableSize' | 'maglevSeed' | 'conntrackEntries' | 'capacity'>,
): Required<Pick<LoadOptions, 'constants' | 'innerValueSize' | 'maxEntries'>> {
  const ctBuckets = conntrackBuckets(options.conntrackEntries ?? DEFAULT_CONNTRACK_ENTRIES);
  return {
    constants: {
      xlb_maglev_size: options.maglevTableSize,
      xlb_maglev_hash_seed0: options.maglevSeed.jhash0,
      xlb_maglev_hash_seed1: options.maglevSeed.jhash1,
      xlb_ns_per_jiffy: nsPerJiffy(),
      xlb_ct_bucket_mask: ctBuckets - 1,
    },
    innerValueSize: { xlb_lb_maglev: 2 * options.maglevTableSize },
    maxEntries: { xlb_ct: ctBuckets, ...lbMapSizes(options.capacity) },
  };
}

/**
 * max_entries of the LB maps for a capacity: a frontend per service at least (NodePorts take one per
 * node address), service ids 1..services index the Maglev tables, and slots are backends of services.
 * Every object sharing these maps through their pins (xdp_lb, sock_lb) must ask for these sizes: a
 * pinned map of another size is replaced, and its entries lost.
 */
export function lbMapSizes(capacity: LbDatapathOptions['capacity']): Record<string, number> {
  if (!capacity) return {};
  return {
    xlb_lb_svc: capacity.services,
    xlb_lb_maglev: capacity.services + 1,
    xlb_lb_mgdig: capacity.services + 1,
    xlb_lb_be: capacity.backends,
    xlb_lb_slot: capacity.backends,
  };
}

/** struct xlb_config (maps.h): unset node addresses are all-zero. */
function encodeConfig(config: LbNodeConfig, ctSeed: number): Buffer {
  return XlbConfig.encode({
    nodeV4: config.nodeV4 ?? '0.0.0.0',
    nodeV6: config.nodeV6 ?? '::',
    natPortMin: config.natPortMin,
    natPortMax: config.natPortMax,
    eventSample: config.eventSample,
    ctSeed,
    clockOffset: 0,
  });
}

/**
 * 1e9 / CONFIG_HZ from /proc/config.gz, so the datapath can tell time by jiffies; 0 (the datapath then
 * reads the coarse clock instead) when the kernel does not publish its configuration.
 */
export function nsPerJiffy(configPath = '/proc/config.gz'): number {
  if (!existsSync(configPath)) return 0;
  const match = /^CONFIG_HZ=(\d+)$/m.exec(gunzipSync(readFileSync(configPath)).toString());
  const hz = match ? Number(match[1]) : 0;
  return hz > 0 ? Math.round(1e9 / hz) : 0;
}

/** Buckets for `entries` flows (CT_WAYS per bucket); the datapath masks hashes with buckets − 1. */
export function conntrackBuckets(entries: number): number {
  const buckets = entries / CT_WAYS;
  if (!Number.isInteger(buckets) || buckets < 4 || (buckets & (buckets - 1)) !== 0) {
    throw new Error(`conntrack entries must be ${CT_WAYS} × a power of two ≥ 4, got ${entries}`);
  }
  return buckets;
}
