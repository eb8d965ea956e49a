/**
 * The kernel settings xlb's datapath relies on, as a pure function of the devices it runs on and the
 * node's current values: what must change and why. lb/datapath/sysctl.ts reads and writes them.
 */

/** One sysctl the datapath needs, e.g. net.ipv4.conf.eth0.forwarding. */
export interface SysctlSetting {
  /** Path components under /proc/sys (a device name may hold dots, so not split on them). */
  path: string[];
  /** What it is now; undefined when the node has no such setting (no IPv6 on the device). */
  current: string | undefined;
  wanted: string;
  /** What goes wrong while it is not `wanted`. */
  effect: string;
}

/** net.ipv4.conf.eth0.forwarding, as sysctl(8) names it. */
export function sysctlName(path: readonly string[]): string {
  return path.join('.');
}

export type SysctlReader = (path: string[]) => string | undefined;

const STRICT_RP_FILTER = 1;
const LOOSE_RP_FILTER = '2';
/** accept_ra 2: keep taking router advertisements on a device that forwards. */
const ACCEPT_RA_WHILE_FORWARDING = '2';

/**
 * Every sysctl the datapath needs on `devices`, with its current value; the ones whose current value
 * differs from the wanted one are what the agent sets (or warns about).
 */
export function datapathSysctls(devices: readonly string[], read: SysctlReader): SysctlSetting[] {
  const settings: SysctlSetting[] = [];
  const want = (path: string[], wanted: string, effect: string): void => {
    settings.push({ path, current: read(path), wanted, effect });
  };
  want(['net', 'ipv4', 'conf', 'all', 'send_redirects'], '0',
    'the kernel may answer one-arm load-balanced packets with ICMP redirects, telling clients to bypass the load balancer');
  for (const dev of devices) {
    const v4 = ['net', 'ipv4', 'conf', dev];
    want([...v4, 'forwarding'], '1',
      `the FIB refuses to forward for xdp_lb on ${dev}: every new IPv4 flow is dropped (reason fib_fwd_disabled)`);
    want([...v4, 'send_redirects'], '0',
      `the kernel may answer load-balanced packets on ${dev} with ICMP redirects, telling clients to bypass the load balancer`);
    const rpFilter = Math.max(Number(read(['net', 'ipv4', 'conf', 'all', 'rp_filter']) ?? 0), Number(read([...v4, 'rp_filter']) ?? 0));
    if (rpFilter === STRICT_RP_FILTER) {
      want([...v4, 'rp_filter'], LOOSE_RP_FILTER,
        `strict reverse-path filtering on ${dev} drops DSR packets from clients routed through another device`);
    }
    const v6 = ['net', 'ipv6', 'conf', dev];
    if (read([...v6, 'forwarding']) === undefined) continue; // no IPv6 on this device
    want([...v6, 'forwarding'], '1',
      `the FIB refuses to forward for xdp_lb on ${dev}: every new IPv6 flow is dropped (reason fib_fwd_disabled)`);
    if (read([...v6, 'accept_ra']) === '1') {
      want([...v6, 'accept_ra'], ACCEPT_RA_WHILE_FORWARDING,
        `with forwarding on, ${dev} would stop accepting router advertisements (its SLAAC addresses and default route would age out)`);
    }
  }
  return settings;
}

/**
 * What tc_pod needs on a pod's host-side device: the stack forwards what the pod sends (tc_pod
 * translates a pod's packets to services, then the node routes them on). IPv4 asks the device the
 * packet came in by; IPv6 forwards only with all.forwarding on, unless that device has force_forwarding
 * (Linux 6.17 and later) — set where the kernel has it, as turning all.forwarding on would change every
 * device of the node.
 */
export function podDeviceSysctls(device: string, read: SysctlReader): SysctlSetting[] {
  const v4 = ['net', 'ipv4', 'conf', device, 'forwarding'];
  const settings: SysctlSetting[] = [
    { path: v4, current: read(v4), wanted: '1', effect: `the node does not forward what the pod behind ${device} sends: its IPv4 packets to services and other nodes are dropped` },
  ];
  const v6 = ['net', 'ipv6', 'conf', device, 'force_forwarding'];
  if (read(['net', 'ipv6', 'conf', 'all', 'forwarding']) !== '1') {
    settings.push({ path: v6, current: read(v6), wanted: '1', effect: `the node does not forward what the pod behind ${device} sends: its IPv6 packets to services and other nodes are dropped` });
  }
  return settings;
}

/** The settings not yet as the datapath needs them (a setting the node lacks is not missing). */
export function unmetSysctls(settings: readonly SysctlSetting[]): SysctlSetting[] {
  return settings.filter((s) => s.current !== undefined && s.current !== s.wanted);
}
