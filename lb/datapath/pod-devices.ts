/**
 * Which of the node's devices are pods' (the host side of their veths), and keeping tc_pod on exactly
 * those as they come and go.
 *
 * Pods' devices are named by `--pod-devices` patterns, iptables-style: `lxc+` is every device whose name
 * starts with "lxc", a name without `+` that device alone; several are comma-separated (`lxc+,veth+`).
 * In Kubernetes mode the agent also names them from the Pods on this node (PodDevices.setNamed).
 *
 * Devices come and go with their pods: the kernel says so on its rtnetlink link group (RTMGRP_LINK),
 * which LinkMonitor listens to, so a new pod's device has the programs within milliseconds — before
 * its first connections, which a poll of /sys/class/net every second would miss. Node has no netlink
 * sockets of its own: the socket is opened through koffi (libc), and waited on with poll() on a worker
 * thread (koffi's async calls), one second at a time so close() is noticed; what it brings is read on
 * the main thread without blocking. Every message (or a lost one: ENOBUFS) triggers one resync of the
 * whole picture — list the devices, compare with what has the programs — rather than acting on the
 * message itself: a resync is cheap, and nothing can be missed between two. Devices are listed with
 * if_nameindex(), which asks the kernel over netlink in the calling thread's network namespace
 * (/sys/class/net shows the namespace sysfs was mounted in, not the caller's).
 */
import koffi from 'koffi';
import { BpfError, check } from './errors.js';
import { inNetns } from './netns.js';
import type { BpfProgram } from './program.js';
import { programNameById } from './cleanup.js';
import { attachTc, detachTc, queryTc, type TcFilter } from './tc.js';

const libc = koffi.load('libc.so.6');
const IfNameIndex = koffi.struct('xlb_if_nameindex', { if_index: 'unsigned int', if_name: 'char *' });
const c = {
  if_nameindex: libc.func('void *if_nameindex(void)'),
  if_freenameindex: libc.func('void if_freenameindex(void *ptr)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  recv: libc.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)'),
  poll: libc.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)'),
  close: libc.func('int close(int fd)'),
};

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const NETLINK_ROUTE = 0;
const RTMGRP_LINK = 1;
const POLLIN = 1;
const EAGAIN = 11;
const ENOBUFS = 105;
const EINTR = 4;
const POLL_MS = 1000;

/** The tc slot tc_pod takes on a pod's device: not tc_dsr's (DEFAULT_TC_FILTER), so a pattern that also
 * matches a node device never replaces the DSR receive side there. */
export const POD_TC_FILTER: TcFilter = { handle: 1, priority: 2 };
export const POD_PROGRAMS = { ingress: 'tc_pod_ingress', egress: 'tc_pod_egress' } as const;

export interface DevicePattern {
  /** The name, or for a prefix pattern (`lxc+`) what names must start with. */
  name: string;
  prefix: boolean;
}

/** `--pod-devices` (each a comma-separated list): `lxc+` a prefix, `eth1` one device. */
export function parsePodDevicePatterns(texts: readonly string[]): DevicePattern[] {
  const patterns: DevicePattern[] = [];
  for (const text of texts) {
    for (const raw of text.split(',')) {
      const item = raw.trim();
      if (item === '') continue;
      const prefix = item.endsWith('+');
      const name = prefix ? item.slice(0, -1) : item;
      if (name === '' || name.includes('+') || /[\s/]/.test(name) || name.length > 15) {
        throw new Error(`--pod-devices: "${item}" is not a device name or a prefix ending in + (e.g. lxc+)`);
      }
      patterns.push({ name, prefix });
    }
  }
  return patterns;
}

export function matchesPodDevice(patterns: readonly DevicePattern[], device: string): boolean {
  return patterns.some((p) => (p.prefix ? device.startsWith(p.name) : device === p.name));
}

export interface NetDevice {
  index: number;
  name: string;
}

export interface PodDevicePlan {
  /** Pods' devices without the programs yet. */
  attach: NetDevice[];
  /** Devices with the programs that are no longer pods' (still there: the filters come off). */
  detach: NetDevice[];
  /** Devices that had the programs and are gone (their filters went with them). */
  forget: NetDevice[];
}

/**
 * What to do to make the programs sit on exactly the pods' devices. Devices are told apart by ifindex,
 * so a device renamed or deleted and created again under the same name is seen for what it is. Pure.
 */
export function planPodDevices(present: readonly NetDevice[], attached: ReadonlyMap<number, string>, isPods: (name: string) => boolean): PodDevicePlan {
  const here = new Set(present.map((d) => d.index));
  return {
    attach: present.filter((d) => isPods(d.name) && !attached.has(d.index)),
    detach: present.filter((d) => !isPods(d.name) && attached.has(d.index)),
    forget: [...attached].filter(([index]) => !here.has(index)).map(([index, name]) => ({ index, name })),
  };
}

/** The devices of the calling thread's network namespace, by index and name. */
export function listDevices(): NetDevice[] {
  const head = c.if_nameindex();
  if (head === null || koffi.address(head) === 0n) throw new BpfError('if_nameindex', 'network devices', koffi.errno());
  try {
    const devices: NetDevice[] = [];
    const size = koffi.sizeof(IfNameIndex);
    for (let at = 0; ; at += size) {
      const entry = koffi.decode(head, at, IfNameIndex) as { if_index: number; if_name: string | null };
      if (entry.if_index === 0 || entry.if_name === null) return devices;
      devices.push({ index: entry.if_index, name: entry.if_name });
    }
  } finally {
    c.if_freenameindex(head);
  }
}

/**
 * The kernel's link notifications (RTMGRP_LINK) for the calling thread's network namespace, as calls of
 * onChange() — one per batch of messages read, and one when messages were lost (the socket overflowed).
 */
export class LinkMonitor {
  private closing = false;
  private readonly closed: Promise<void>;
  private finish: () => void = () => undefined;
  private readonly pollfd = Buffer.alloc(8);
  private readonly buffer = Buffer.alloc(64 * 1024);

  private constructor(
    private readonly fd: number,
    private readonly onChange: () => void,
    private readonly onError: (error: Error) => void,
  ) {
    this.closed = new Promise((resolve) => (this.finish = resolve));
    this.pollfd.writeInt32LE(fd, 0);
    this.pollfd.writeInt16LE(POLLIN, 4);
    this.wait();
  }

  /** Open in the calling thread's network namespace (wrap in inNetns for another one). */
  static open(onChange: () => void, onError: (error: Error) => void): LinkMonitor {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE) as number;
    check(fd < 0 ? -koffi.errno() : fd, 'socket(AF_NETLINK, NETLINK_ROUTE)', 'link monitor');
    const address = Buffer.alloc(12); // struct sockaddr_nl: family, pad, pid 0 (the kernel picks), groups
    address.writeUInt16LE(AF_NETLINK, 0);
    address.writeUInt32LE(RTMGRP_LINK, 8);
    if ((c.bind(fd, address, address.length) as number) < 0) {
      const errno = koffi.errno();
      c.close(fd);
      throw new BpfError('bind(RTMGRP_LINK)', 'link monitor', errno);
    }
    return new LinkMonitor(fd, onChange, onError);
  }

  /** One poll() of up to POLL_MS on a worker thread, then (main thread) read what came and wait again. */
  private wait(): void {
    this.pollfd.writeInt16LE(0, 6);
    c.poll.async(this.pollfd, 1, POLL_MS, (error: unknown, ready: number) => {
      if (this.closing) {
        c.close(this.fd);
        this.finish();
        return;
      }
      try {
        if (error) throw error instanceof Error ? error : new Error(String(error));
        if (ready > 0 && this.drain()) this.onChange();
      } catch (failure) {
        this.onError(failure instanceof Error ? failure : new Error(String(failure)));
      }
      this.wait();
    });
  }

  /** Read every queued message without blocking: whether anything changed (or may have: lost messages). */
  private drain(): boolean {
    let changed = false;
    for (;;) {
      const length = Number(c.recv(this.fd, this.buffer, this.buffer.length, 0));
      if (length > 0) {
        changed = true;
        continue;
      }
      if (length === 0) return changed;
      const errno = koffi.errno();
      if (errno === EAGAIN) return changed;
      if (errno === ENOBUFS) changed = true; // the kernel dropped messages: a resync sees what they said
      else if (errno !== EINTR) throw new BpfError('recv', 'link monitor', errno);
    }
  }

  /** Stop listening; resolves once the socket is closed (within a second). */
  close(): Promise<void> {
    this.closing = true;
    return this.closed;
  }
}

export interface PodDevicesOptions {
  patterns: readonly DevicePattern[];
  programs: { ingress: BpfProgram; egress: BpfProgram };
  log: (message: string) => void;
  /** Run on each device before tc_pod goes on it, in the devices' namespace (the node settings it needs). */
  prepare?: (device: string) => void;
  /** Work in this network namespace (tests); default the calling thread's. */
  netns?: string;
}

export interface PodDeviceSync {
  attached: string[];
  detached: string[];
  gone: string[];
  /** Devices whose attach or detach failed (each logged), retried at the next resync. */
  failed: string[];
}

/**
 * tc_pod on exactly the pods' devices: those the patterns match, and those named (Kubernetes). sync()
 * makes it so once; watch() keeps it so as links come and go.
 */
export class PodDevices {
  private readonly attachedDevices = new Map<number, string>();
  private named = new Set<string>();
  private monitor: LinkMonitor | undefined;

  constructor(private readonly options: PodDevicesOptions) {}

  private inNs<T>(fn: () => T): T {
    return this.options.netns ? inNetns(this.options.netns, fn) : fn();
  }

  isPods(device: string): boolean {
    return matchesPodDevice(this.options.patterns, device) || this.named.has(device);
  }

  /**
   * The hook for Kubernetes mode: the host-side device names of the Pods on this node, as the agent
   * learns them (replacing the previous list). Devices not there yet get the programs when they appear.
   */
  setNamed(devices: readonly string[]): PodDeviceSync {
    this.named = new Set(devices);
    return this.sync();
  }

  /** Devices that have the programs now. */
  attached(): string[] {
    return [...this.attachedDevices.values()].sort();
  }

  /** Attach to the pods' devices that lack the programs, detach from devices no longer pods'. */
  sync(): PodDeviceSync {
    return this.inNs(() => {
      const plan = planPodDevices(listDevices(), this.attachedDevices, (name) => this.isPods(name));
      const result: PodDeviceSync = { attached: [], detached: [], gone: [], failed: [] };
      for (const device of plan.forget) {
        this.attachedDevices.delete(device.index);
        result.gone.push(device.name);
      }
      for (const device of plan.attach) {
        try {
          this.options.prepare?.(device.name);
          attachTc(device.name, 'ingress', this.options.programs.ingress, POD_TC_FILTER);
          attachTc(device.name, 'egress', this.options.programs.egress, POD_TC_FILTER);
          this.attachedDevices.set(device.index, device.name);
          result.attached.push(device.name);
        } catch (error) {
          // Gone again before we got to it, most likely; the next resync settles it either way.
          this.options.log(`pod device ${device.name}: attaching tc_pod failed: ${(error as Error).message}`);
          result.failed.push(device.name);
        }
      }
      for (const device of plan.detach) {
        try {
          detachPodPrograms([device.name]);
          this.attachedDevices.delete(device.index);
          result.detached.push(device.name);
        } catch (error) {
          this.options.log(`pod device ${device.name}: detaching tc_pod failed: ${(error as Error).message}`);
          result.failed.push(device.name);
        }
      }
      for (const [what, devices] of [['attached to', result.attached], ['detached from', result.detached], ['gone with', result.gone]] as const) {
        if (devices.length > 0) this.options.log(`tc_pod ${what} pod devices: ${devices.join(', ')}`);
      }
      return result;
    });
  }

  /** Resync now and whenever the kernel reports a link change, until close(). */
  watch(): PodDeviceSync {
    this.monitor ??= this.inNs(() =>
      LinkMonitor.open(
        () => this.resyncQuietly(),
        (error) => this.options.log(`pod devices: link monitor: ${error.message}`),
      ),
    );
    return this.sync();
  }

  private resyncQuietly(): void {
    try {
      this.sync();
    } catch (error) {
      this.options.log(`pod devices: resync failed: ${(error as Error).message}`);
    }
  }

  /** Stop watching; the programs stay where they are. */
  async close(): Promise<void> {
    const monitor = this.monitor;
    this.monitor = undefined;
    await monitor?.close();
  }

  /** Take the programs off every device that has them (ours or a previous agent's), and stop watching. */
  async detachAll(): Promise<string[]> {
    await this.close();
    const removed = this.inNs(() => detachPodPrograms(listDevices().map((d) => d.name)));
    this.attachedDevices.clear();
    return removed;
  }
}

/**
 * Take tc_pod off `devices` (for xlb-agent --cleanup: every device of the node), recognised by name in
 * its own tc slot, so nobody else's filters are touched; one line per program removed. In the calling
 * thread's network namespace.
 */
export function detachPodPrograms(devices: readonly string[]): string[] {
  const removed: string[] = [];
  for (const device of devices) {
    for (const direction of ['ingress', 'egress'] as const) {
      let id: number;
      try {
        id = queryTc(device, direction, POD_TC_FILTER);
      } catch (error) {
        if (error instanceof BpfError && error.errno === 19) break; // ENODEV: the device went meanwhile
        throw error;
      }
      if (id === 0 || programNameById(id) !== POD_PROGRAMS[direction]) continue;
      detachTc(device, direction, POD_TC_FILTER);
      removed.push(`${device}: tc ${direction} ${POD_PROGRAMS[direction]}`);
    }
  }
  return removed;
}
