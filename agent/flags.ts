/**
 * xlb-agent's command line (DESIGN.md, "Contracts"), parsed and validated by one pure function:
 * every error names its flag, and main() turns it into exit code 2.
 */
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { NetworkInterfaceInfo } from 'node:os';
import {
  DEFAULT_MAGLEV_SEED,
  DEFAULT_MAGLEV_TABLE_SIZE,
  MAGLEV_TABLE_SIZES,
  canonicalIpAddress,
  parseMaglevSeed,
  type MaglevSeed,
} from '../lb/maglev/index.js';
import { DEFAULT_CONNTRACK_ENTRIES, conntrackBuckets } from '../lb/datapath/lb-datapath.js';
import { MODES, NODE_NAME, parseCidr, type Mode } from '../lb/service.js';
import { parseNodePortAddresses, type NodePortAddressSpec } from '../lb/k8s/node.js';
import { hostPort } from '../lb/codec.js';

export const XDP_MODES = ['native', 'generic', 'off'] as const;
export type XdpFlag = (typeof XDP_MODES)[number];

export const DEFAULT_BPFFS = '/sys/fs/bpf/xlb';
export const DEFAULT_API_SOCKET = '/run/xlb/xlb.sock';
export const DEFAULT_STATE_FILE = '/var/lib/xlb/state.json';
export const DEFAULT_MODE: Mode = 'snat';
export const DEFAULT_XDP: XdpFlag = 'native';
/** kube-proxy's health server address (--healthz-bind-address). */
export const DEFAULT_HEALTHZ_ADDR = '0.0.0.0:10256';
/** Cilium's --bpf-lb-map-max: service frontends (and service ids) the maps hold. */
export const DEFAULT_SERVICE_MAP_MAX = 65536;
/** Backends (and backend slots of services) the maps hold. */
export const DEFAULT_BACKEND_MAP_MAX = 262144;
/** The kernel's service ids index an array of Maglev tables: at most this many. */
export const MAX_SERVICE_MAP_MAX = 1 << 20;
export const MAX_BACKEND_MAP_MAX = 1 << 24;
/**
 * SNAT source ports: 1024–29999, 28976 ports, so 28976 concurrent flows per backend address:port and
 * protocol (a flow holds its port until 10 s after its FIN/RST, or 60 s after an unanswered SYN; claims
 * start failing shortly before the range is full). A SNAT port is only ever part of a reply tuple
 * backend address:port → node address:port, so what it must not collide with is the node's own
 * connections to that same backend address:port: those take their ports from Linux's ephemeral range
 * (32768–60999 by default), which this range stays below, as it stays below the NodePort range
 * (30000–32767) and above the privileged ports. Listening sockets in the range do not matter (a
 * backend would have to connect to one from its service port). Cilium's 32768–65535 is wider by an
 * eighth, but shares 28232 ports with the ephemeral range: a node-local client of the same backends
 * (a hostNetwork pod, say) would collide with n/28232 of its connections, n being xlb's flows to that
 * backend; and every reply to the node's own connections would pay a conntrack lookup in XDP. The
 * former default, 61000–65535, had no such collision but only 4536 ports per backend.
 */
export const DEFAULT_SNAT_PORTS: PortRange = { min: 1024, max: 29999 };

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export interface HostPort {
  host: string;
  port: number;
}

export interface PortRange {
  min: number;
  max: number;
}

/** Kubernetes mode: where the apiserver is and how this node serves Kubernetes services. */
export interface KubernetesFlags {
  /** --kubeconfig; absent: in-cluster (service account), or --k8s-api-server alone. */
  kubeconfig?: string;
  /** --k8s-api-server: the apiserver's URL, overriding the kubeconfig's (or in-cluster's) server. */
  apiServer?: string;
  /** --nodeport-addresses (kube-proxy's): which node addresses NodePorts listen on. */
  nodePortAddresses: NodePortAddressSpec;
  /** --healthz-addr: the node health server (/healthz, /livez); absent with --healthz-addr "". */
  healthzAddr?: HostPort;
}

export interface AgentFlags {
  /** Kubernetes mode (absent: standalone). */
  kubernetes?: KubernetesFlags;
  /** Standalone mode's config file (services with origin 'config'); absent: API services only. */
  config?: string;
  devices: string[];
  mode: Mode;
  xdp: XdpFlag;
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  bpffs: string;
  apiSocket: string;
  apiAddr?: HostPort;
  apiTokenFile?: string;
  metricsAddr?: HostPort;
  stateFile: string;
  /** Node addresses for NodePort and SNAT; absent: the addresses of the devices. */
  nodeAddresses?: string[];
  /** This node's name: backends whose `node` is this name are local (externalTrafficPolicy Local). */
  nodeName: string;
  /** Conntrack entries (flows, and one more per SNAT flow). */
  conntrackEntries: number;
  /** The node ports SNAT flows leave from. */
  snatPorts: PortRange;
  /** Set the sysctls the datapath needs and mount bpffs if missing (false: only warn). */
  nodeSetup: boolean;
  /** --cleanup: take xlb off this node instead of running. */
  cleanup: boolean;
  /** Service addresses the DSR receive side accepts in a DSR option, as canonical CIDRs. */
  dsrServiceRanges: string[];
  /** Capacities of the LB maps (--bpf-lb-service-map-max, --bpf-lb-backend-map-max). */
  capacity: LbCapacity;
  /** Socket-level load balancing on (default) or off (--no-socket-lb). */
  socketLb: boolean;
  /** --cgroup-root: the cgroup v2 directory socket LB attaches to; absent: the unified hierarchy's root. */
  cgroupRoot?: string;
  /** --pod-devices: patterns of pods' host-side devices (`lxc+` a prefix); empty: no per-packet pod datapath. */
  podDevices: string[];
  /** The EDT bandwidth manager on the devices (default), or not loaded at all (--no-bandwidth-manager). */
  bandwidthManager: boolean;
  /** --edt-horizon: a pod's packet that would depart this far past now or later is dropped. */
  edtHorizonNs: number;
}

export interface LbCapacity {
  /** Service frontends, and service ids (each has a Maglev table slot). */
  services: number;
  /** Backends, and backend slots over all services. */
  backends: number;
}

export type AgentCommandLine = { help: true } | { help: false; flags: AgentFlags };

/** A bad command line; the message starts with the flag it is about. */
export class FlagError extends Error {
  override name = 'FlagError';
}

export const AGENT_USAGE = `usage: xlb-agent --standalone [--config FILE] --device IFACE[,IFACE] [options]
       xlb-agent [--kubeconfig PATH] [--k8s-api-server URL] --device IFACE[,IFACE] [options]

Runs the load balancer on this node: loads the XDP/tc datapath, serves the services of Kubernetes
(or, standalone, of the config file) and of the REST API, exports metrics.

  --standalone               no Kubernetes: services come from --config and the API
  --config FILE              YAML or JSON: "services:" a list of service objects, each with an "id"
                             (a DNS label) beside the service fields, e.g.
                               services:
                                 - id: web
                                   frontend: { address: 198.18.0.10, port: 80, protocol: TCP }
                                   backends: [ { address: 198.18.1.2, port: 8080 } ]
                             An id that the API also stored (state file) is taken from this file.
  --kubeconfig PATH          Kubernetes mode: watch Services, EndpointSlices and this Node with this
                             kubeconfig. Without --standalone or --kubeconfig the agent runs in-cluster
                             (service account token and CA, KUBERNETES_SERVICE_HOST/PORT)
  --k8s-api-server URL       the apiserver to talk to (there is no kube-proxy to reach the
                             kubernetes ClusterIP): overrides the kubeconfig's or in-cluster server
  --nodeport-addresses CIDR[,CIDR]
                             as kube-proxy's: NodePorts listen only on node addresses inside these
                             ranges, or "primary" (the node's first address of each family).
                             Default: every node address
  --healthz-addr HOST:PORT   the node health server, /healthz and /livez as kube-proxy serves them
                             (default ${DEFAULT_HEALTHZ_ADDR}; "" for none)
  --device IFACE[,IFACE]     devices to attach to (required; repeatable)
  --mode snat|dsr|hybrid     forwarding mode of services that name none (default ${DEFAULT_MODE})
  --xdp native|generic|off   XDP attach mode on the devices (default ${DEFAULT_XDP})
  --maglev-table-size M      one of ${MAGLEV_TABLE_SIZES.join(', ')} (default ${DEFAULT_MAGLEV_TABLE_SIZE})
  --maglev-seed B64          12-byte base64 seed, the same on every node (default ${DEFAULT_MAGLEV_SEED})
  --bpffs DIR                where the maps are pinned (default ${DEFAULT_BPFFS})
  --conntrack-entries N      flows conntrack holds, a SNAT flow counting twice: 4 × a power of two
                             (default ${DEFAULT_CONNTRACK_ENTRIES}; ~144 bytes each). A table that fits
                             the CPU caches makes new flows faster; a full one evicts the oldest
  --snat-port-range MIN-MAX  node ports SNAT flows leave from, at most one flow per port and backend
                             address:port (default ${DEFAULT_SNAT_PORTS.min}-${DEFAULT_SNAT_PORTS.max}: below Linux's ephemeral
                             ports and the NodePort range, so the node's own connections never take
                             a port a SNAT flow holds; 28976 flows per backend). A range
                             at least as wide as conntrack has buckets (entries / 4) lets each new
                             SNAT flow keep its reply entry in its own bucket
  --node-address ADDR[,ADDR] node addresses for NodePort and SNAT (default: the devices' addresses)
  --node-name NAME           this node's name, for backends' "node" and externalTrafficPolicy Local
                             (default: the host name)
  --state-file PATH          services created through the API (default ${DEFAULT_STATE_FILE})
  --cgroup-root DIR          cgroup v2 directory whose processes (pods, host processes) get socket-level
                             load balancing: a connect() or sendmsg() to a service address talks to a
                             backend directly (default: the cgroup v2 root, found in /proc/self/mountinfo,
                             or mounted at /run/xlb/cgroupv2 when the node has none)
  --no-socket-lb             no socket-level load balancing (then only packets through the devices are)
  --pod-devices PATTERN[,PATTERN]
                             the host side of pods' veths (lxc+ : every device named lxc…; eth1 : that
                             one): tc_pod translates service traffic per packet there, for sockets the
                             socket-level load balancing does not see; attached as devices come and go
  --edt-horizon DURATION     the bandwidth manager drops a rate-limited pod's packet that would leave
                             this long after now or later (default 2s; e.g. 500ms, 1.5s; 1ms to 60s)
  --no-bandwidth-manager     no EDT bandwidth manager: pods' egress bandwidth (the annotation
                             kubernetes.io/egress-bandwidth, standalone PUT /v1/bandwidth/DEVICE) is not
                             enforced. By default tc_edt_egress is on the devices and, unless
                             --no-node-setup, fq is made their root qdisc (pacing needs it)
  --bpf-lb-service-map-max N service frontends (and services) the maps hold (default ${DEFAULT_SERVICE_MAP_MAX})
  --bpf-lb-backend-map-max N backends, and backend slots over all services (default ${DEFAULT_BACKEND_MAP_MAX})
  --dsr-service-ranges CIDR[,CIDR]
                             service addresses a DSR option arriving here may name: the load
                             balancers' VIP ranges and node addresses (NodePort). A DSR packet naming
                             any other is dropped (dsr_untrusted), so nobody who reaches a backend
                             directly can have its replies sent from an address of their choosing.
                             Default: none, every DSR option is refused
  --no-node-setup            change nothing on the node: no sysctl is set, no bpffs mounted; settings
                             the datapath cannot work with are start-up warnings (and in xlb status).
                             By default the agent sets, and logs: net.ipv4.conf.DEV.forwarding=1,
                             net.ipv6.conf.DEV.forwarding=1 (accept_ra 1 -> 2 to keep SLAAC),
                             net.ipv4.conf.{all,DEV}.send_redirects=0, rp_filter 1 -> 2 on DEV, and
                             mounts a bpffs where --bpffs needs one
  --cleanup                  take xlb off this node and exit: detach its programs from every device,
                             remove the pins under --bpffs and the API socket (refused while an agent
                             runs). Sysctls stay as they are (the agent logged their old values)
  --api-socket PATH          REST API on a unix socket, mode 0600, no token (default ${DEFAULT_API_SOCKET})
  --api-addr HOST:PORT       also serve the REST API over TCP; needs --api-token-file
  --api-token-file FILE      bearer token (the file's content, trimmed) every TCP request must carry
  --metrics-addr HOST:PORT   plain HTTP listener serving only GET /metrics
  -h, --help                 this text

HOST is an IP address (IPv6 in brackets: [::1]:9090). Exit codes: 0 after a clean shutdown
(SIGINT/SIGTERM), 1 when start-up or the datapath fails, 2 for a bad command line.`;

function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      standalone: { type: 'boolean' },
      config: { type: 'string' },
      kubeconfig: { type: 'string' },
      'k8s-api-server': { type: 'string' },
      'nodeport-addresses': { type: 'string', multiple: true },
      'healthz-addr': { type: 'string' },
      'bpf-lb-service-map-max': { type: 'string' },
      'bpf-lb-backend-map-max': { type: 'string' },
      'cgroup-root': { type: 'string' },
      'no-socket-lb': { type: 'boolean' },
      'pod-devices': { type: 'string', multiple: true },
      'edt-horizon': { type: 'string' },
      'no-bandwidth-manager': { type: 'boolean' },
      device: { type: 'string', multiple: true },
      mode: { type: 'string' },
      xdp: { type: 'string' },
      'maglev-table-size': { type: 'string' },
      'maglev-seed': { type: 'string' },
      bpffs: { type: 'string' },
      'conntrack-entries': { type: 'string' },
      'snat-port-range': { type: 'string' },
      'node-address': { type: 'string', multiple: true },
      'node-name': { type: 'string' },
      'state-file': { type: 'string' },
      'api-socket': { type: 'string' },
      'api-addr': { type: 'string' },
      'api-token-file': { type: 'string' },
      'metrics-addr': { type: 'string' },
      'no-node-setup': { type: 'boolean' },
      'dsr-service-ranges': { type: 'string', multiple: true },
      cleanup: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

/** Parses xlb-agent's arguments (without node and the script). Throws FlagError naming the flag. */
export function parseAgentFlags(argv: string[]): AgentCommandLine {
  if (argv.includes('--help') || argv.includes('-h')) return { help: true };
  let values: ReturnType<typeof parseCommandLine>;
  try {
    values = parseCommandLine(argv);
  } catch (error) {
    // node:util's messages name the option: "Unknown option '--devic'", "Option '--mode <value>' argument missing".
    throw new FlagError(error instanceof Error ? error.message : String(error));
  }

  const standalone = values.standalone === true || values.cleanup === true;
  for (const flag of ['kubeconfig', 'k8s-api-server', 'nodeport-addresses', 'healthz-addr'] as const) {
    if (standalone && values[flag] !== undefined) throw new FlagError(`--${flag}: Kubernetes mode only, cannot be combined with --${values.cleanup === true ? 'cleanup' : 'standalone'}`);
  }
  if (!standalone && values.config !== undefined) throw new FlagError('--config: standalone mode only (add --standalone); Kubernetes mode takes its services from the apiserver');

  const apiAddr = optional(values['api-addr'], (text) => parseHostPort('--api-addr', text));
  const metricsAddr = optional(values['metrics-addr'], (text) => parseHostPort('--metrics-addr', text));
  const apiTokenFile = optional(values['api-token-file'], (text) => path('--api-token-file', text));
  if (apiAddr && apiTokenFile === undefined) {
    throw new FlagError('--api-addr: a TCP listener needs --api-token-file FILE (every request must carry its bearer token)');
  }
  if (!apiAddr && apiTokenFile !== undefined) {
    throw new FlagError('--api-token-file: only used with --api-addr (the unix socket needs no token)');
  }
  if (apiAddr && metricsAddr && apiAddr.port !== 0 && apiAddr.port === metricsAddr.port && sameHost(apiAddr, metricsAddr)) {
    throw new FlagError(`--metrics-addr: ${formatHostPort(metricsAddr)} is also --api-addr`);
  }

  const flags: AgentFlags = {
    // --cleanup looks at every device of the node unless told which.
    devices: values.cleanup === true && values.device === undefined ? [] : parseDevices(values.device ?? []),
    mode: oneOf('--mode', values.mode ?? DEFAULT_MODE, MODES),
    xdp: oneOf('--xdp', values.xdp ?? DEFAULT_XDP, XDP_MODES),
    maglevTableSize: parseTableSize(values['maglev-table-size']),
    maglevSeed: parseSeed(values['maglev-seed']),
    bpffs: path('--bpffs', values.bpffs ?? DEFAULT_BPFFS),
    apiSocket: socketPath(values['api-socket'] ?? DEFAULT_API_SOCKET),
    stateFile: path('--state-file', values['state-file'] ?? DEFAULT_STATE_FILE),
    // The host name as Kubernetes names nodes (lower case); only a name given here must be valid.
    conntrackEntries: parseConntrackEntries(values['conntrack-entries']),
    snatPorts: parseSnatPorts(values['snat-port-range']),
    nodeName: values['node-name'] === undefined ? hostname().toLowerCase() : parseNodeName(values['node-name']),
    nodeSetup: values['no-node-setup'] !== true,
    cleanup: values.cleanup === true,
    dsrServiceRanges: parseDsrServiceRanges(values['dsr-service-ranges'] ?? []),
    capacity: {
      services: parseCount('--bpf-lb-service-map-max', values['bpf-lb-service-map-max'], DEFAULT_SERVICE_MAP_MAX, MAX_SERVICE_MAP_MAX),
      backends: parseCount('--bpf-lb-backend-map-max', values['bpf-lb-backend-map-max'], DEFAULT_BACKEND_MAP_MAX, MAX_BACKEND_MAP_MAX),
    },
    socketLb: values['no-socket-lb'] !== true,
    podDevices: parsePodDevices(values['pod-devices'] ?? []),
    bandwidthManager: values['no-bandwidth-manager'] !== true,
    edtHorizonNs: parseEdtHorizon(values['edt-horizon']),
  };
  if (values['no-bandwidth-manager'] === true && values['edt-horizon'] !== undefined) {
    throw new FlagError('--edt-horizon: the bandwidth manager is off (--no-bandwidth-manager)');
  }
  if (values['cgroup-root'] !== undefined) {
    if (values['no-socket-lb'] === true) throw new FlagError('--cgroup-root: socket-level load balancing is off (--no-socket-lb)');
    flags.cgroupRoot = path('--cgroup-root', values['cgroup-root']);
  }
  if (!standalone) {
    flags.kubernetes = {
      nodePortAddresses: parseNodePortFlag(values['nodeport-addresses'] ?? []),
      ...optionalField('kubeconfig', optional(values.kubeconfig, (text) => path('--kubeconfig', text))),
      ...optionalField('apiServer', optional(values['k8s-api-server'], parseApiServer)),
      ...optionalField('healthzAddr', values['healthz-addr'] === '' ? undefined : parseHostPort('--healthz-addr', values['healthz-addr'] ?? DEFAULT_HEALTHZ_ADDR)),
    };
  }
  const config = optional(values.config, (text) => path('--config', text));
  if (config !== undefined) flags.config = config;
  if (apiAddr) flags.apiAddr = apiAddr;
  if (apiTokenFile !== undefined) flags.apiTokenFile = apiTokenFile;
  if (metricsAddr) flags.metricsAddr = metricsAddr;
  if (values['node-address'] !== undefined) flags.nodeAddresses = parseNodeAddresses(values['node-address']);
  return { help: false, flags };
}

function optionalField<K extends string, T>(key: K, value: T | undefined): { [P in K]?: T } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: T };
}

function parseCount(flag: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 16 || value > max) throw new FlagError(`${flag}: ${JSON.stringify(text)} is not a number in 16..${max}`);
  return value;
}

function parseNodePortFlag(texts: readonly string[]): NodePortAddressSpec {
  const spec = parseNodePortAddresses(texts.flatMap((text) => text.split(',')));
  if (typeof spec === 'string') throw new FlagError(`--nodeport-addresses: ${spec}`);
  return spec;
}

/** An http(s) URL with a host, e.g. https://198.18.0.1:6443 (Cilium's k8sServiceHost:k8sServicePort). */
function parseApiServer(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new FlagError(`--k8s-api-server: ${JSON.stringify(text)} is not a URL (e.g. https://198.18.0.1:6443)`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.hostname === '') {
    throw new FlagError(`--k8s-api-server: ${JSON.stringify(text)} must be an http(s) URL with a host (e.g. https://198.18.0.1:6443)`);
  }
  return text.replace(/\/+$/, '');
}

function parseDsrServiceRanges(texts: readonly string[]): string[] {
  if (texts.length === 0) return [];
  return [...new Set(listOf('--dsr-service-ranges', texts).map((text) => {
    const range = parseCidr(text);
    if (typeof range === 'string') throw new FlagError(`--dsr-service-ranges: ${range}`);
    return range.text;
  }))];
}

/** Interface names, each optionally ending in '+' (a prefix, as iptables writes it). */
function parsePodDevices(texts: readonly string[]): string[] {
  if (texts.length === 0) return [];
  const patterns = listOf('--pod-devices', texts);
  for (const pattern of patterns) {
    const name = pattern.endsWith('+') ? pattern.slice(0, -1) : pattern;
    if (name === '' || Buffer.byteLength(name) > 15 || /[/:\s+*]/.test(name)) {
      throw new FlagError(`--pod-devices: ${JSON.stringify(pattern)} is not an interface name or a prefix ending in '+' (e.g. lxc+)`);
    }
  }
  return [...new Set(patterns)];
}

/** The EDT horizon's default (the datapath's too: XLB_EDT_DEFAULT_HORIZON_NS) and range, in nanoseconds. */
export const DEFAULT_EDT_HORIZON_NS = 2_000_000_000;
const EDT_HORIZON_RANGE_NS = { min: 1_000_000, max: 60_000_000_000 };
const DURATION_UNITS_NS: Record<string, number> = { ms: 1e6, s: 1e9 };

/** "2s", "500ms", "1.5s" → nanoseconds. */
function parseEdtHorizon(text: string | undefined): number {
  if (text === undefined) return DEFAULT_EDT_HORIZON_NS;
  const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
  const ns = match ? Math.round(Number(match[1]) * (DURATION_UNITS_NS[match[2] ?? ''] ?? 0)) : NaN;
  if (!(ns >= EDT_HORIZON_RANGE_NS.min && ns <= EDT_HORIZON_RANGE_NS.max)) {
    throw new FlagError(`--edt-horizon: ${JSON.stringify(text)} is not a duration from 1ms to 60s (e.g. 2s, 500ms)`);
  }
  return ns;
}

function parseNodeName(text: string): string {
  if (!NODE_NAME.test(text)) throw new FlagError(`--node-name: ${JSON.stringify(text)} is not a node name (lower-case DNS name, e.g. worker-1)`);
  return text;
}

function optional<T>(text: string | undefined, parse: (text: string) => T): T | undefined {
  return text === undefined ? undefined : parse(text);
}

function oneOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(text)) return text as T;
  throw new FlagError(`${flag}: ${JSON.stringify(text)} is not one of ${allowed.join(', ')}`);
}

/** Comma-separated and/or repeated values, trimmed; empty items are errors. */
function listOf(flag: string, texts: readonly string[]): string[] {
  const items = texts.flatMap((text) => text.split(',')).map((item) => item.trim());
  if (items.some((item) => item === '')) throw new FlagError(`${flag}: empty item in ${JSON.stringify(texts.join(','))}`);
  return items;
}

/** Linux dev_valid_name(): 1..15 bytes, no '/', ':' or whitespace, not "." or "..". */
function parseDevices(texts: readonly string[]): string[] {
  if (texts.length === 0) throw new FlagError('--device: required — the interface(s) to attach the datapath to, e.g. --device eth0');
  const devices = listOf('--device', texts);
  const seen = new Set<string>();
  for (const device of devices) {
    if (Buffer.byteLength(device) > 15 || /[/:\s]/.test(device) || device === '.' || device === '..') {
      throw new FlagError(`--device: ${JSON.stringify(device)} is not an interface name (1 to 15 characters, no '/', ':' or spaces)`);
    }
    if (seen.has(device)) throw new FlagError(`--device: ${device} is given twice`);
    seen.add(device);
  }
  return devices;
}

function parseTableSize(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAGLEV_TABLE_SIZE;
  const size = Number(text);
  if (!/^\d+$/.test(text) || !MAGLEV_TABLE_SIZES.includes(size)) {
    throw new FlagError(`--maglev-table-size: ${JSON.stringify(text)} is not one of the primes ${MAGLEV_TABLE_SIZES.join(', ')}`);
  }
  return size;
}

function parseConntrackEntries(text: string | undefined): number {
  if (text === undefined) return DEFAULT_CONNTRACK_ENTRIES;
  try {
    if (!/^\d+$/.test(text)) throw new Error('not a number');
    conntrackBuckets(Number(text));
    return Number(text);
  } catch {
    throw new FlagError(`--conntrack-entries: ${JSON.stringify(text)} is not 4 × a power of two (e.g. 65536, 262144, 1048576)`);
  }
}

function parseSnatPorts(text: string | undefined): PortRange {
  if (text === undefined) return { ...DEFAULT_SNAT_PORTS };
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(text);
  const [min, max] = match ? [Number(match[1]), Number(match[2])] : [0, 0];
  if (!match || min < 1 || max > 65535 || min > max) {
    throw new FlagError(`--snat-port-range: ${JSON.stringify(text)} is not MIN-MAX with 1 ≤ MIN ≤ MAX ≤ 65535 (e.g. 61000-65535)`);
  }
  return { min, max };
}

function parseSeed(text: string | undefined): MaglevSeed {
  try {
    return parseMaglevSeed(text ?? DEFAULT_MAGLEV_SEED);
  } catch (error) {
    throw new FlagError(`--maglev-seed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function path(flag: string, text: string): string {
  if (text.trim() === '') throw new FlagError(`${flag}: empty path`);
  return resolve(text);
}

function socketPath(text: string): string {
  const full = path('--api-socket', text);
  if (Buffer.byteLength(full) > MAX_SOCKET_PATH_BYTES) {
    throw new FlagError(`--api-socket: ${full} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket path may have`);
  }
  return full;
}

/** "198.18.0.1:9090", "[2001:db8::1]:9090", "0.0.0.0:9090"; port 0 picks a free port (logged). */
export function parseHostPort(flag: string, text: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const bracketed = match?.[1];
  const host = bracketed ?? match?.[2] ?? '';
  const port = Number(match?.[3] ?? NaN);
  if (!match || host.includes('%') || !(bracketed === undefined ? isIP(host) === 4 : isIP(host) === 6) || port > 65535) {
    throw new FlagError(
      `${flag}: ${JSON.stringify(text)} is not HOST:PORT with an IP address HOST (IPv6 in brackets) and a port 0..65535`,
    );
  }
  return { host: canonicalIpAddress(host), port };
}

export function formatHostPort(address: HostPort): string {
  return hostPort(address.host, address.port);
}

function sameHost(a: HostPort, b: HostPort): boolean {
  const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '::';
  return a.host === b.host || wildcard(a.host) || wildcard(b.host);
}

function parseNodeAddresses(texts: readonly string[]): string[] {
  const addresses = listOf('--node-address', texts);
  const seen = new Set<string>();
  return addresses.map((text) => {
    const family = isIP(text);
    if (family === 0 || text.includes('%')) {
      throw new FlagError(`--node-address: ${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
    }
    const address = canonicalIpAddress(text);
    if (address === '0.0.0.0' || address === '::') {
      throw new FlagError(`--node-address: ${address} is the unspecified address, not a node address`);
    }
    if (seen.has(address)) throw new FlagError(`--node-address: ${address} is given twice`);
    seen.add(address);
    return address;
  });
}

/**
 * The default node addresses: every global address of the devices, in device order (link-local and
 * loopback addresses cannot be NodePort or SNAT addresses). `interfaces` is os.networkInterfaces().
 */
export function deviceAddresses(
  devices: readonly string[],
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>,
): string[] {
  const out: string[] = [];
  for (const device of devices) {
    for (const info of interfaces[device] ?? []) {
      if (info.internal || info.address.includes('%')) continue;
      const address = canonicalIpAddress(info.address);
      const linkLocal = info.family === 'IPv6' ? /^fe[89ab][0-9a-f]:/i.test(address) : address.startsWith('169.254.');
      if (!linkLocal && !out.includes(address)) out.push(address);
    }
  }
  return out;
}

/** What agent/node-datapath.ts's createNodeDatapath() receives. */
export interface NodeDatapathOptions {
  /** Interfaces to attach to, as given to --device. */
  devices: string[];
  /** XDP attach mode on the devices; 'off' attaches no XDP (tc programs only). */
  xdp: XdpFlag;
  /** --mode: the forwarding mode of services whose `mode` is absent. */
  mode: Mode;
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  /** --bpffs: where maps are pinned. */
  bpffs: string;
  /** --node-address, or the devices' addresses; may be empty (then NodePort/SNAT have no address). */
  nodeAddresses: string[];
  /** Where NodePort services listen (--nodeport-addresses applied); default nodeAddresses. */
  nodePortAddresses?: string[];
  /** --node-name: which backends are local. */
  nodeName: string;
  /** --conntrack-entries. */
  conntrackEntries: number;
  /** --snat-port-range. */
  snatPorts: PortRange;
  /** --no-node-setup turns this off: then unmet settings are only warned about. */
  nodeSetup: boolean;
  /** --dsr-service-ranges: canonical CIDRs. */
  dsrServiceRanges: string[];
  /** --bpf-lb-service-map-max, --bpf-lb-backend-map-max (default: the flags' defaults). */
  capacity?: LbCapacity;
  /** One line per event, to the agent's log. */
  log: (message: string) => void;
  /** Settings the datapath cannot work with (default: log). */
  warn?: (message: string) => void;
}

export function nodeDatapathOptions(
  flags: AgentFlags,
  nodeAddresses: string[],
  log: (message: string) => void,
): NodeDatapathOptions {
  return {
    devices: [...flags.devices],
    xdp: flags.xdp,
    mode: flags.mode,
    maglevTableSize: flags.maglevTableSize,
    maglevSeed: flags.maglevSeed,
    bpffs: flags.bpffs,
    nodeAddresses,
    nodeName: flags.nodeName,
    conntrackEntries: flags.conntrackEntries,
    snatPorts: { ...flags.snatPorts },
    nodeSetup: flags.nodeSetup,
    dsrServiceRanges: [...flags.dsrServiceRanges],
    capacity: { ...flags.capacity },
    log,
  };
}
