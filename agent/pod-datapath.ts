/**
 * The east-west datapath for pods: tc_pod (bpf/tc/tc_pod.c) on the host side of every pod's veth,
 * translating pods' packets to services (ClusterIP and every other frontend) and their replies back,
 * for traffic socket-level load balancing does not see. It shares xdp_lb's maps through their pins —
 * services, backends, Maglev tables, conntrack — so what the node's LbMapWriter writes serves it too,
 * and conntrack's sweeps and purges cover its flows; it writes nothing of its own.
 *
 * Wiring (agent/main.ts, after createNodeDatapath has loaded xdp_lb into the same --bpffs and written
 * the node's config, which holds the conntrack seed and the SNAT range hairpin flows take ports from):
 *
 *   const pods = PodDatapath.load({ pinDir: bpffs, capacity, maglevTableSize, maglevSeed, conntrackEntries,
 *                                   podDevices: flags.podDevices, log });   // --pod-devices lxc+,veth+
 *   pods.watch();               // attach to matching devices now and as they come and go
 *   pods.setNamed(devices);     // Kubernetes mode: host-side devices of this node's Pods (optional)
 *   ...
 *   await pods.close();         // agent exit: stop watching; programs stay attached, as xdp_lb's do
 *   PodDatapath.cleanup()       // xlb-agent --cleanup: tc_pod off every device (nothing loaded);
 *                               // pods.detachAll() does the same for a loaded one
 *
 * conntrackEntries and capacity default as the node datapath's do (the flags' defaults); pass exactly
 * what createNodeDatapath got.
 *
 * The sizes and constants must be the ones LbDatapath.load was given (lbSharedLoadOptions): a pinned
 * map of another size would be replaced, and the LB state in it lost.
 */
import { DEFAULT_CONNTRACK_ENTRIES, lbSharedLoadOptions, type LbDatapathOptions } from '../lb/datapath/lb-datapath.js';
import { BpfObject } from '../lb/datapath/object.js';
import { bpfObjectPath } from '../lb/datapath/objects.js';
import { detachPodPrograms, listDevices, parsePodDevicePatterns, POD_PROGRAMS, PodDevices, type PodDeviceSync } from '../lb/datapath/pod-devices.js';
import { enforceSysctls, readSysctl } from '../lb/datapath/sysctl.js';
import type { MaglevSeed } from '../lb/maglev/index.js';
import { POLICY_MAPS } from '../lb/layouts-policy.js';
import { podDeviceSysctls } from '../lb/node-settings.js';
import { DEFAULT_BACKEND_MAP_MAX, DEFAULT_SERVICE_MAP_MAX } from './flags.js';

export interface PodDatapathOptions {
  /** The pin directory xdp_lb's maps are in (--bpffs). */
  pinDir: string;
  /** As createNodeDatapath was given (--bpf-lb-service-map-max, --bpf-lb-backend-map-max); the same default. */
  capacity?: { services: number; backends: number };
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  conntrackEntries?: number;
  /** --pod-devices patterns: `lxc+` a prefix, `eth1` a name; each may be a comma-separated list. */
  podDevices: readonly string[];
  log: (message: string) => void;
  /** Set what each pod device needs (forwarding: podDeviceSysctls) and log it; false: only warn (--no-node-setup). */
  nodeSetup?: boolean;
  warn?: (message: string) => void;
  /** Attach in this network namespace (tests); default the calling thread's. */
  netns?: string;
}

export class PodDatapath {
  private constructor(
    readonly object: BpfObject,
    private readonly devices: PodDevices,
  ) {}

  /** Load tc_pod.o over the pinned maps; nothing is attached yet (attachMatching, watch). */
  static load(options: PodDatapathOptions): PodDatapath {
    const patterns = parsePodDevicePatterns(options.podDevices);
    const shared: Pick<LbDatapathOptions, 'maglevTableSize' | 'maglevSeed' | 'conntrackEntries' | 'capacity'> = {
      ...options,
      capacity: options.capacity ?? { services: DEFAULT_SERVICE_MAP_MAX, backends: DEFAULT_BACKEND_MAP_MAX },
    };
    const lbShared = lbSharedLoadOptions(shared);
    // The policy's connections are as many as the node's flows: its conntrack is sized as xdp_lb's.
    const maxEntries = { ...lbShared.maxEntries, [POLICY_MAPS.conntrack]: options.conntrackEntries ?? DEFAULT_CONNTRACK_ENTRIES };
    const object = BpfObject.load(bpfObjectPath('tc/tc_pod.o'), { pinDir: options.pinDir, ...lbShared, maxEntries });
    for (const replaced of object.replacedPins) {
      options.log(`pinned map replaced, its state lost (the layout changed since it was pinned): ${replaced}`);
    }
    const programs = { ingress: object.program(POD_PROGRAMS.ingress), egress: object.program(POD_PROGRAMS.egress) };
    const log = { info: options.log, warn: options.warn ?? options.log };
    const prepare = (device: string): void => void enforceSysctls(podDeviceSysctls(device, readSysctl), options.nodeSetup ?? true, log);
    const devices = new PodDevices({ patterns, programs, log: options.log, prepare, netns: options.netns });
    options.log(
      patterns.length === 0
        ? 'pod datapath: no --pod-devices patterns; only devices named from Kubernetes get tc_pod'
        : `pod datapath: tc_pod goes on devices matching ${options.podDevices.join(',')}`,
    );
    return new PodDatapath(object, devices);
  }

  /** Attach to the devices that match now (and detach from those that no longer do), once. */
  attachMatching(): PodDeviceSync {
    return this.devices.sync();
  }

  /** attachMatching now, and again whenever a link comes, goes or is renamed, until close(). */
  watch(): PodDeviceSync {
    return this.devices.watch();
  }

  /** Kubernetes mode: the host-side device names of this node's Pods (the whole list, each time). */
  setNamed(devices: readonly string[]): PodDeviceSync {
    return this.devices.setNamed(devices);
  }

  /** Devices tc_pod is on. */
  attached(): string[] {
    return this.devices.attached();
  }

  /** Stop watching and close our handles; the programs stay attached and keep translating. */
  async close(): Promise<void> {
    await this.devices.close();
    this.object.close();
  }

  /** Take tc_pod off every device of the namespace (xlb-agent --cleanup); one line per program removed. */
  async detachAll(): Promise<string[]> {
    return this.devices.detachAll();
  }

  /** --cleanup without loading anything: tc_pod off every device of the calling thread's namespace. */
  static cleanup(): string[] {
    return detachPodPrograms(listDevices().map((d) => d.name));
  }
}
