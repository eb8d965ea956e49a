/**
 * This node's Pods → the host-side devices their addresses are routed through, for the pod
 * datapath (PodDatapath.setNamed): whatever the CNI names its veths, the route to a pod's IP says
 * which device is the pod's. Apart from the service change tracker: Pods never change services.
 *
 * - The Pod watch (informers.ts: spec.nodeName=<node>, or every Pod when network policy watches
 *   them all, then nodeName picks this node's) feeds list() and event(); a Pod counts when it is not
 *   hostNetwork and has status.podIPs (or status.podIP).
 * - A change schedules a recompute, coalesced as syncs are: one runs at a time, and the changes that
 *   arrive meanwhile make one more. Each looks up the route of every pod address (`ip -j route get`,
 *   routeDevice) and hands the sorted device list to onDevices when it differs from the last one,
 *   and each pod's device (namespace/name → device) to onPods when that differs: network policy and
 *   the bandwidth manager key a pod's state by its device, and must not look routes up again.
 * - A device found is kept per pod (its uid) and address, so a change of one Pod costs one lookup;
 *   lo, the node's own devices (--device) and failed lookups are not kept: a pod's route that is
 *   not there yet (the default route through the node's device) is asked again at the next change.
 */
import { execFile } from 'node:child_process';
import { isHostNetwork, podIPs } from '../../lb/k8s/pod.js';
import type { EventType } from './informers.js';

/** The device `address` is routed through on this node, or undefined when there is no route. */
export type RouteLookup = (address: string) => Promise<string | undefined>;

/** How long one `ip route get` may take. */
export const ROUTE_LOOKUP_TIMEOUT_MS = 2_000;

/** `ip -j route get ADDRESS` → its dev (child_process, with a timeout). */
export function routeDevice(address: string, timeoutMs = ROUTE_LOOKUP_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['-j', 'route', 'get', address], { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`ip route get ${address}: ${stderr.trim() || error.message}`));
      try {
        const routes = JSON.parse(stdout) as { dev?: unknown }[];
        const dev = Array.isArray(routes) ? routes[0]?.dev : undefined;
        resolve(typeof dev === 'string' && dev !== '' ? dev : undefined);
      } catch {
        reject(new Error(`ip route get ${address}: not JSON: ${stdout.slice(0, 200)}`));
      }
    });
  });
}

interface PodObject {
  metadata?: { namespace?: unknown; name?: unknown; uid?: unknown };
  spec?: { nodeName?: unknown };
}

/** namespace/name/uid: a Pod recreated under the same name is another pod. */
function podKey(pod: unknown): string | undefined {
  const meta = (pod as PodObject | undefined)?.metadata;
  if (typeof meta?.namespace !== 'string' || typeof meta.name !== 'string') return undefined;
  return `${meta.namespace}/${meta.name}/${typeof meta.uid === 'string' ? meta.uid : ''}`;
}

/** "namespace/name" of a pod key: how onPods names pods. */
function podName(key: string): string {
  return key.split('/').slice(0, 2).join('/');
}

/** The addresses of a Pod whose traffic goes through a device of its own: none for hostNetwork. */
export function podAddresses(pod: unknown): string[] {
  return isHostNetwork(pod) ? [] : podIPs(pod);
}

/** A device that is no pod's: loopback and the node's own (--device). */
export function isPodDevice(device: string, nodeDevices: ReadonlySet<string>): boolean {
  return device !== 'lo' && !nodeDevices.has(device);
}

export interface PodDeviceTrackerOptions {
  /** The whole list of pod devices, sorted, each time it changes. */
  onDevices: (devices: string[]) => void;
  /** Each pod's device ("namespace/name" → device; pods without one left out), each time it changes. */
  onPods?: (devices: ReadonlyMap<string, string>) => void;
  /** Only Pods with this spec.nodeName count (the watch may deliver every node's); absent: every Pod delivered. */
  nodeName?: string;
  /** The node's devices (--device): never a pod's. */
  nodeDevices?: readonly string[];
  /** Default routeDevice (tests inject their own). */
  lookup?: RouteLookup;
  log: { warn(message: string): void };
}

export class PodDeviceTracker {
  /** Pod key → its addresses. */
  private readonly pods = new Map<string, string[]>();
  /** Pod key → address → its device, for the lookups that found a pod device. */
  private readonly found = new Map<string, Map<string, string>>();
  private readonly nodeDevices: ReadonlySet<string>;
  private readonly lookup: RouteLookup;
  private last: string[] | undefined;
  private lastByKey = new Map<string, string>();
  private dirty = false;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: PodDeviceTrackerOptions) {
    this.nodeDevices = new Set(options.nodeDevices ?? []);
    this.lookup = options.lookup ?? ((address) => routeDevice(address));
  }

  /** Every Pod of the node there is now: those held but not listed are gone. Counts what changed. */
  list(items: readonly unknown[]): Record<EventType, number> {
    const counts: Record<EventType, number> = { add: 0, update: 0, delete: 0 };
    const listed = new Set<string>();
    for (const item of items) {
      const key = podKey(item);
      if (key === undefined || !this.onThisNode(item)) continue;
      listed.add(key);
      const change = this.set(key, item);
      if (change !== 'unchanged') counts[change] += 1;
    }
    for (const key of [...this.pods.keys()]) {
      if (listed.has(key)) continue;
      this.delete(key);
      counts.delete += 1;
    }
    // The first list is handed over even when empty: the pod datapath then knows where it stands.
    if (this.last === undefined) this.dirty = true;
    this.schedule();
    return counts;
  }

  event(type: EventType, object: unknown): void {
    const key = podKey(object);
    if (key === undefined) return;
    // A Pod bound to another node is not ours (nor is it one we hold: nodeName never changes once set).
    if (type === 'delete' || !this.onThisNode(object)) this.delete(key);
    else this.set(key, object);
    this.schedule();
  }

  /** The pod devices last handed to onDevices. */
  devices(): string[] {
    return [...(this.last ?? [])];
  }


  private onThisNode(pod: unknown): boolean {
    return this.options.nodeName === undefined || (pod as PodObject | undefined)?.spec?.nodeName === this.options.nodeName;
  }

  /** Waits for a recompute under way; none starts after. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private set(key: string, pod: unknown): 'add' | 'update' | 'unchanged' {
    const addresses = podAddresses(pod);
    const held = this.pods.get(key);
    if (held && held.join(',') === addresses.join(',')) return 'unchanged';
    this.pods.set(key, addresses);
    this.found.delete(key);
    this.dirty = true;
    return held ? 'update' : 'add';
  }

  private delete(key: string): void {
    if (!this.pods.delete(key)) return;
    this.found.delete(key);
    this.dirty = true;
  }

  private schedule(): void {
    if (!this.dirty || this.stopped || this.running) return;
    // After the current I/O callback: the other events of the same watch chunk join this recompute.
    this.running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.recomputeWhileDirty())
      .finally(() => (this.running = undefined));
  }

  private async recomputeWhileDirty(): Promise<void> {
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      const byKey = await this.recompute();
      if (this.stopped) return;
      const devices = [...new Set(byKey.values())].sort();
      if (this.last === undefined || devices.join(',') !== this.last.join(',')) {
        this.last = devices;
        this.hand('pod devices', devices.join(', ') || 'none', () => this.options.onDevices([...devices]));
      }
      // By pod key: a pod recreated under its name has a device of the same name but another ifindex.
      if (!sameEntries(byKey, this.lastByKey)) {
        this.lastByKey = byKey;
        const byPod = new Map([...byKey].map(([key, device]) => [podName(key), device]));
        const { onPods } = this.options;
        if (onPods) this.hand('pods\' devices', `${byPod.size} pod(s)`, () => onPods(byPod));
      }
    }
  }

  /** A callback's failure is logged: the tracker goes on. */
  private hand(what: string, detail: string, call: () => void): void {
    try {
      call();
    } catch (error) {
      this.options.log.warn(`kubernetes: ${what} ${detail}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Pod key → the device of its first address routed through one. */
  private async recompute(): Promise<Map<string, string>> {
    const pods = [...this.pods];
    const results = await Promise.all(
      pods.flatMap(([key, addresses]) =>
        addresses.map(async (address): Promise<[string, string] | undefined> => {
          const known = this.found.get(key)?.get(address);
          if (known !== undefined) return [key, known];
          let device: string | undefined;
          try {
            device = await this.lookup(address);
          } catch (error) {
            this.options.log.warn(`kubernetes: pod ${podName(key)}: ${error instanceof Error ? error.message : String(error)}`);
            return undefined;
          }
          if (device === undefined || !isPodDevice(device, this.nodeDevices)) return undefined;
          // Kept only while the pod is still held with this address (it may have gone meanwhile).
          if (this.pods.get(key)?.includes(address)) {
            let byAddress = this.found.get(key);
            if (!byAddress) this.found.set(key, (byAddress = new Map()));
            byAddress.set(address, device);
          }
          return [key, device];
        }),
      ),
    );
    const byKey = new Map<string, string>();
    for (const found of results) if (found && !byKey.has(found[0])) byKey.set(found[0], found[1]);
    return byKey;
  }
}

function sameEntries(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (b.get(key) !== value) return false;
  return true;
}
