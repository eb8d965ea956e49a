/**
 * Standalone mode's pod egress bandwidth (PUT /v1/bandwidth/{device}): the rate of each pod device,
 * as given ("10M"), applied through EdtDatapath.setRate and kept in a file beside the state file, so
 * a restarted agent serves the same rates under the same words. (In Kubernetes mode the rates come
 * from the Pods' kubernetes.io/egress-bandwidth annotation instead, and nothing here is used.)
 *
 * Devices are named as --pod-devices matches them; a device's ifindex is looked up when its rate is
 * set, and again at start-up (a device created anew has a new one). At start-up the pinned rates are
 * made to be exactly the file's: a device gone meanwhile loses its rate (logged), and rates of ifindexes
 * nobody named (an agent stopped before it saved) are removed.
 *
 * Changes run one at a time: map first, then the file; a failed file write puts the map back.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseBandwidth } from '../lb/bandwidth.js';
import { ifindexOf } from '../lb/datapath/netif.js';
import { matchesPodDevice, parsePodDevicePatterns, type DevicePattern } from '../lb/datapath/pod-devices.js';
import type { ValidationIssue } from '../lb/service.js';
import type { EdtDatapath } from './edt-datapath.js';
import type { Logger } from './log.js';
import { writeFileAtomic } from './store.js';

export const BANDWIDTH_FILE_VERSION = 1;

/** One pod device's egress limit, as the API answers it. */
export interface BandwidthEntry {
  device: string;
  ifindex: number;
  /** As given, e.g. "10M" (bits per second). */
  egress: string;
  bytesPerSecond: number;
}

/** A quantity that is no bandwidth; 400 naming the field. */
export class BandwidthValueError extends Error {
  override name = 'BandwidthValueError';
  readonly issues: ValidationIssue[];

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.issues = [{ field, message }];
  }
}

/** No pod device of that name (none at all, or not one --pod-devices matches); 404. */
export class NoPodDeviceError extends Error {
  override name = 'NoPodDeviceError';
}

/** The file beside --state-file: state.json → state.bandwidth.json. */
export function bandwidthFileOf(stateFile: string): string {
  return join(dirname(stateFile), `${basename(stateFile).replace(/\.json$/, '')}.bandwidth.json`);
}

export interface BandwidthSettingsOptions {
  edt: EdtDatapath;
  /** --pod-devices: the devices a rate may be set for. */
  podDevices: readonly string[];
  file: string;
  log: Logger;
}

export class BandwidthSettings {
  private readonly entries = new Map<string, BandwidthEntry>();
  private readonly patterns: DevicePattern[];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: BandwidthSettingsOptions) {
    this.patterns = parsePodDevicePatterns(options.podDevices);
  }

  /** Read the file and make the pinned rates exactly its (devices gone are dropped, and said so). */
  async start(): Promise<void> {
    const saved = await readBandwidthFile(this.options.file);
    let dropped = false;
    for (const [device, egress] of saved) {
      try {
        this.entries.set(device, this.entry(device, egress));
      } catch (error) {
        dropped = true;
        this.options.log.warn(`bandwidth of ${device} from ${this.options.file} dropped: ${(error as Error).message}`);
      }
    }
    const wanted = new Map([...this.entries.values()].map((e) => [e.ifindex, e.bytesPerSecond]));
    for (const ifindex of this.options.edt.rates().keys()) if (!wanted.has(ifindex)) this.options.edt.setRate(ifindex, undefined);
    for (const [ifindex, rate] of wanted) this.options.edt.setRate(ifindex, rate);
    if (dropped) await this.save();
    if (this.entries.size > 0) this.options.log.info(`bandwidth: ${this.list().map((e) => `${e.device} ${e.egress}`).join(', ')}`);
  }

  list(): BandwidthEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : 0)).map((e) => ({ ...e }));
  }

  /** Limit the pod device's egress to `egress` (a bits/s quantity); created: no rate was set before. */
  set(device: string, egress: string): Promise<{ entry: BandwidthEntry; created: boolean }> {
    return this.serialized(async () => {
      const entry = this.entry(device, egress);
      const previous = this.entries.get(device);
      this.options.edt.setRate(entry.ifindex, entry.bytesPerSecond);
      this.entries.set(device, entry);
      await this.saveOrUndo(device, previous);
      this.options.log.info(`bandwidth: ${device} (ifindex ${entry.ifindex}) egress ${egress} = ${entry.bytesPerSecond} bytes/s`);
      return { entry: { ...entry }, created: previous === undefined };
    });
  }

  /** Lift the device's limit: what it was, or undefined when it had none. */
  delete(device: string): Promise<BandwidthEntry | undefined> {
    return this.serialized(async () => {
      const previous = this.entries.get(device);
      if (!previous) return undefined;
      this.options.edt.setRate(previous.ifindex, undefined);
      this.entries.delete(device);
      await this.saveOrUndo(device, previous);
      this.options.log.info(`bandwidth: ${device} no longer limited`);
      return { ...previous };
    });
  }

  /** Wait for the changes under way. */
  async idle(): Promise<void> {
    await this.queue.catch(() => undefined);
  }

  private entry(device: string, egress: string): BandwidthEntry {
    let bytesPerSecond: number;
    try {
      bytesPerSecond = parseBandwidth(egress);
    } catch (error) {
      throw new BandwidthValueError('egress', (error as Error).message);
    }
    if (!matchesPodDevice(this.patterns, device)) {
      const patterns = this.options.podDevices.join(',');
      throw new NoPodDeviceError(`${JSON.stringify(device)} is not a pod device (--pod-devices ${patterns === '' ? 'names none' : patterns})`);
    }
    let ifindex: number;
    try {
      ifindex = ifindexOf(device);
    } catch {
      throw new NoPodDeviceError(`no pod device ${JSON.stringify(device)} on this node`);
    }
    return { device, ifindex, egress, bytesPerSecond };
  }

  private async saveOrUndo(device: string, previous: BandwidthEntry | undefined): Promise<void> {
    try {
      await this.save();
    } catch (error) {
      const current = this.entries.get(device);
      if (current && current.ifindex !== previous?.ifindex) this.options.edt.setRate(current.ifindex, undefined);
      if (previous) {
        this.options.edt.setRate(previous.ifindex, previous.bytesPerSecond);
        this.entries.set(device, previous);
      } else {
        this.entries.delete(device);
      }
      throw new Error(`bandwidth of ${device}: cannot write ${this.options.file}: ${(error as Error).message}; nothing changed`);
    }
  }

  private async save(): Promise<void> {
    const egress: Record<string, string> = {};
    for (const entry of this.list()) egress[entry.device] = entry.egress;
    await writeFileAtomic(this.options.file, `${JSON.stringify({ version: BANDWIDTH_FILE_VERSION, egress }, null, 2)}\n`);
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** {"version": 1, "egress": {device: quantity}}; a missing file: none. */
export async function readBandwidthFile(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new Error(`bandwidth file ${file}: cannot read: ${(error as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new Error(`bandwidth file ${file}: not valid JSON: ${(error as Error).message}`);
  }
  const egress = (document as { version?: unknown; egress?: unknown } | null)?.egress;
  if ((document as { version?: unknown } | null)?.version !== BANDWIDTH_FILE_VERSION || typeof egress !== 'object' || egress === null || Array.isArray(egress)) {
    throw new Error(`bandwidth file ${file}: expected {"version": ${BANDWIDTH_FILE_VERSION}, "egress": {device: quantity}}`);
  }
  const entries = new Map<string, string>();
  for (const [device, quantity] of Object.entries(egress)) {
    if (typeof quantity !== 'string') throw new Error(`bandwidth file ${file}: egress.${device}: must be a quantity such as "10M"`);
    entries.set(device, quantity);
  }
  return entries;
}
