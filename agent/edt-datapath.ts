/**
 * The EDT bandwidth manager (bpf/tc/tc_edt.c): tc_edt_egress on the node's devices (--device) gives
 * every packet of a rate-limited pod the time it may leave, and fq on those devices holds it until
 * then. Pods are keyed by the ifindex of their host-side device (the one their packets come in by).
 * The rates live in pinned maps, so they survive an agent restart, as the programs do: xlb_edt, an
 * array indexed by ifindex for the devices below its size (no hashing per packet; a zero rate is no
 * limit), and the hash xlb_edt_far for larger indexes.
 *
 * Wiring (agent/main.ts, after createNodeDatapath: tc_edt_egress must be attached after tc_dsr_egress,
 * see EDT_TC_FILTER; same --bpffs, so xlb_metrics is shared and horizon drops are the agent's counters):
 *
 *   const edt = EdtDatapath.load({ pinDir: bpffs, devices: flags.devices, horizonNs, nodeSetup, log, warn });
 *   edt.setRate(ifindex, parseBandwidth('10M'));   // bytes per second; undefined removes the limit
 *   edt.rates(); edt.status();                     // the rates as written (the pinned ones read once, at load)
 *   edt.close();                                    // agent exit: the programs stay attached
 *   EdtDatapath.cleanup();                          // xlb-agent --cleanup: tc_edt_egress off every device
 *
 * Pacing needs the fq qdisc on the egress device: without it the departure times are set but nothing
 * holds packets until then (only the horizon drops act). At load, unless told not to change the node,
 * fq is installed as the root qdisc of each device (`tc qdisc replace dev DEV root fq`, as Cilium's
 * bandwidth manager does); where that fails, or is not allowed, the device is named in a warning,
 * logged and kept in status().
 */
import { execFileSync } from 'node:child_process';
import { BpfError } from '../lb/datapath/errors.js';
import type { BpfMap } from '../lb/datapath/map.js';
import { BpfObject } from '../lb/datapath/object.js';
import { bpfObjectPath } from '../lb/datapath/objects.js';
import { listDevices } from '../lb/datapath/pod-devices.js';
import { programNameById } from '../lb/datapath/cleanup.js';
import { attachTc, detachTc, queryTc, type TcFilter } from '../lb/datapath/tc.js';
import { EdtConfig, EdtRate, edtKey } from '../lb/layouts-edt.js';

export const EDT_PROGRAM = 'tc_edt_egress';
/**
 * tc_dsr_egress's priority, a handle of its own. cls_bpf runs the filters of one priority newest first,
 * and tc_edt_egress answers no verdict (TC_ACT_UNSPEC) unless it drops: attached after tc_dsr_egress,
 * it sees every packet and tc_dsr_egress still sees the packets it passes. (In a later priority it
 * would never run: tc_dsr_egress's TC_ACT_OK ends the chain.) A restarted agent replaces both in place.
 */
export const EDT_TC_FILTER: TcFilter = { handle: 2, priority: 1 };
const ENODEV = 19;
/** bpf/include/edt.h's maps: the array of the devices below its size, and the hash of the others. */
const EDT_DIRECT_MAP = 'xlb_edt';
const EDT_FAR_MAP = 'xlb_edt_far';

export interface EdtDatapathOptions {
  /** --bpffs: xlb_edt is pinned there, beside (and sharing) the node datapath's maps. */
  pinDir: string;
  /** --device: the node's devices, whose egress the pods' packets leave by. */
  devices: readonly string[];
  /** --edt-horizon: a packet that would depart this far past now or later is dropped. */
  horizonNs: number;
  /** Install fq where it is missing (false: --no-node-setup, only warn). */
  nodeSetup: boolean;
  log: (message: string) => void;
  /** What keeps pacing from working (default: log). */
  warn?: (message: string) => void;
}

export interface EdtDeviceStatus {
  name: string;
  /** Whether fq is the device's root qdisc: without it departure times are set but not enforced. */
  fq: boolean;
}

export interface EdtStatus {
  devices: EdtDeviceStatus[];
  /** One per device without fq, naming it and why. */
  warnings: string[];
  horizonNs: number;
  /** The rates in force, by the pod's host-side device (its name when it is still there). */
  rates: { ifindex: number; device?: string; bytesPerSecond: number }[];
}

/** The root qdisc of `device` (its kind, e.g. "noqueue", "fq"), as `tc -j qdisc show` tells. */
function rootQdisc(device: string): string | undefined {
  const qdiscs = JSON.parse(execFileSync('tc', ['-j', 'qdisc', 'show', 'dev', device], { encoding: 'utf8' }) || '[]') as { kind?: string; root?: boolean }[];
  return qdiscs.find((q) => q.root === true)?.kind;
}

/** fq as the root qdisc of `device`: undefined when it is there, else why it is not. */
function ensureFq(device: string, install: boolean): string | undefined {
  const kind = rootQdisc(device);
  if (kind === 'fq') return undefined;
  if (!install) return `its root qdisc is ${kind ?? 'none'}; --no-node-setup: not installed`;
  try {
    execFileSync('tc', ['qdisc', 'replace', 'dev', device, 'root', 'fq'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    return `tc qdisc replace dev ${device} root fq: ${stderr || (error as Error).message}`;
  }
  return rootQdisc(device) === 'fq' ? undefined : `tc qdisc replace dev ${device} root fq left ${rootQdisc(device) ?? 'no'} root qdisc`;
}

export class EdtDatapath {
  /** The rates in force (ifindex → bytes per second): read from the pinned maps once, then kept as written. */
  private readonly rateMirror: Map<number, number>;

  private constructor(
    readonly object: BpfObject,
    private readonly deviceStatus: EdtDeviceStatus[],
    private readonly warnings: string[],
    private readonly horizonNs: number,
  ) {
    this.rateMirror = this.pinnedRates();
  }

  /** Load tc_edt.o over the pins, set the horizon, put fq and tc_edt_egress on the devices. */
  static load(options: EdtDatapathOptions): EdtDatapath {
    const warn = options.warn ?? options.log;
    if (!Number.isSafeInteger(options.horizonNs) || options.horizonNs <= 0) throw new Error(`EDT horizon ${options.horizonNs} ns: must be a positive whole number of nanoseconds`);
    const object = BpfObject.load(bpfObjectPath('tc/tc_edt.o'), { pinDir: options.pinDir });
    try {
      for (const replaced of object.replacedPins) options.log(`pinned map replaced, its state lost (the layout changed since it was pinned): ${replaced}`);
      object.map('xlb_edt_config').update(Buffer.alloc(4), EdtConfig.encode({ horizonNs: BigInt(options.horizonNs) }));
      const devices: EdtDeviceStatus[] = [];
      const warnings: string[] = [];
      for (const device of options.devices) {
        const missing = ensureFq(device, options.nodeSetup);
        if (missing !== undefined) {
          const warning = `EDT timestamps are set but not enforced: no fq qdisc on ${device} (${missing})`;
          warnings.push(warning);
          warn(warning);
        }
        attachTc(device, 'egress', object.program(EDT_PROGRAM), EDT_TC_FILTER);
        devices.push({ name: device, fq: missing === undefined });
      }
      options.log(`bandwidth manager: ${EDT_PROGRAM} on ${options.devices.join(', ') || 'no device'}, horizon ${options.horizonNs / 1e6} ms`);
      return new EdtDatapath(object, devices, warnings, options.horizonNs);
    } catch (error) {
      object.close();
      throw error;
    }
  }

  /** The egress rate of the pod whose host-side device is `ifindex`, in bytes per second; undefined: no limit. */
  setRate(ifindex: number, bytesPerSecond: number | undefined): void {
    if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0xffffffff) throw new Error(`EDT rate: ${ifindex} is not an ifindex`);
    const { map, direct } = this.mapOf(ifindex);
    if (bytesPerSecond === undefined) {
      if (direct) map.update(edtKey(ifindex), EdtRate.encode({ rate: 0n, tLast: 0n }));
      else map.delete(edtKey(ifindex));
      this.rateMirror.delete(ifindex);
      return;
    }
    if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond <= 0) {
      throw new Error(`EDT rate of ifindex ${ifindex}: ${bytesPerSecond} is not a positive whole number of bytes per second`);
    }
    // A new schedule: the pod's next packet leaves at once, the ones after at the new rate.
    map.update(edtKey(ifindex), EdtRate.encode({ rate: BigInt(bytesPerSecond), tLast: 0n }));
    this.rateMirror.set(ifindex, bytesPerSecond);
  }

  /** The rates in force: ifindex → bytes per second. */
  rates(): Map<number, number> {
    return new Map(this.rateMirror);
  }

  /** The rates the pinned maps hold (an earlier agent's too): a walk over the whole array (16,384 entries, ~70 ms), done once at load. */
  private pinnedRates(): Map<number, number> {
    const rates = new Map<number, number>();
    for (const name of [EDT_DIRECT_MAP, EDT_FAR_MAP]) {
      for (const [key, value] of this.object.map(name).entries()) {
        const { rate } = EdtRate.decode(value);
        if (rate !== 0n) rates.set(key.readUInt32LE(0), Number(rate));
      }
    }
    return rates;
  }

  /** Where the rate of device `ifindex` lives: at its index of the array, or in the hash past its end. */
  private mapOf(ifindex: number): { map: BpfMap; direct: boolean } {
    const array = this.object.map(EDT_DIRECT_MAP);
    const direct = ifindex < array.maxEntries;
    return { map: direct ? array : this.object.map(EDT_FAR_MAP), direct };
  }

  status(): EdtStatus {
    const names = new Map(listDevices().map((d) => [d.index, d.name]));
    const rates = [...this.rates()].sort(([a], [b]) => a - b).map(([ifindex, bytesPerSecond]) => {
      const device = names.get(ifindex);
      return device === undefined ? { ifindex, bytesPerSecond } : { ifindex, device, bytesPerSecond };
    });
    return { devices: this.deviceStatus.map((d) => ({ ...d })), warnings: [...this.warnings], horizonNs: this.horizonNs, rates };
  }

  /** Close our handles: the program stays attached and the rates pinned, enforced while the agent restarts. */
  close(): void {
    this.object.close();
  }

  /**
   * xlb-agent --cleanup: tc_edt_egress off every device of the calling thread's namespace, recognised
   * by name in its own slot (nobody else's filter is touched); one line per program removed.
   */
  static cleanup(): string[] {
    const removed: string[] = [];
    for (const { name } of listDevices()) {
      let id: number;
      try {
        id = queryTc(name, 'egress', EDT_TC_FILTER);
      } catch (error) {
        if (error instanceof BpfError && error.errno === ENODEV) continue; // the device went meanwhile
        throw error;
      }
      if (id === 0 || programNameById(id) !== EDT_PROGRAM) continue;
      detachTc(name, 'egress', EDT_TC_FILTER);
      removed.push(`${name}: tc egress ${EDT_PROGRAM}`);
    }
    return removed;
  }
}
