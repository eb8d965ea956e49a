/**
 * What kube-proxy writes to the kernel for the bench's services (ClusterIP, one TCP port, endpoints on
 * other nodes, a cluster CIDR for its local-traffic detector), so the bench can time the same write:
 *
 * - iptables mode (pkg/proxy/iptables/proxier.go, syncProxyRules): one iptables-restore --noflush of
 *   the filter and nat tables. nat: KUBE-SERVICES → KUBE-SVC-<hash> (masquerade off-cluster sources,
 *   then one rule per endpoint with `-m statistic --mode random --probability 1/(n-i)`) →
 *   KUBE-SEP-<hash> (hairpin masquerade, DNAT); KUBE-MARK-MASQ, KUBE-POSTROUTING MASQUERADE. Chain
 *   names as kube-proxy hashes them (sha256, base32, 16 characters). A full sync declares and writes
 *   every chain; a partial sync (kube-proxy ≥ 1.27, MinimizeIPTablesRestore) writes the top-level
 *   chains in full, only the changed services' chains, and deletes the chains that went stale.
 * - nftables mode (pkg/proxy/nftables/proxier.go): one `nft -f` transaction building table ip
 *   kube-proxy: the service-ips verdict map (address . protocol . port → goto service chain), service
 *   chains (masquerade off-cluster sources, `numgen random mod N vmap` → endpoint chains), endpoint
 *   chains (hairpin masquerade, dnat), mark-for-masquerade and masquerading.
 *
 * Only the text is generated here; the bench runs it inside a network namespace of its own.
 */
import { createHash } from 'node:crypto';
import { CLUSTER_CIDR, PORT_NAME, SERVICE_PORT, TARGET_PORT, type BenchService } from './objects.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Go's base32.StdEncoding of a SHA-256 digest, first `chars` characters (no padding reached). */
function hashBase32(text: string, chars: number): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= chars) break;
  }
  return out;
}

function servicePortName(s: BenchService): string {
  return `${s.namespace}/${s.name}:${PORT_NAME}`;
}

/** kube-proxy iptables: servicePortPolicyClusterChain. */
export function kubeSvcChain(s: BenchService): string {
  return `KUBE-SVC-${hashBase32(`${servicePortName(s)}tcp`, 16)}`;
}

/** kube-proxy iptables: servicePortEndpointChainName. */
export function kubeSepChain(s: BenchService, endpoint: string): string {
  return `KUBE-SEP-${hashBase32(`${servicePortName(s)}tcp${endpoint}:${TARGET_PORT}`, 16)}`;
}

/** kube-proxy's computeProbability: 1/n with ten decimals. */
function probability(n: number): string {
  return (1 / n).toFixed(10);
}

const FILTER_TABLE = [
  '*filter',
  ':KUBE-NODEPORTS - [0:0]',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-EXTERNAL-SERVICES - [0:0]',
  ':KUBE-FIREWALL - [0:0]',
  ':KUBE-FORWARD - [0:0]',
  ':KUBE-PROXY-FIREWALL - [0:0]',
  '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
  '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  'COMMIT',
];

const NAT_TOP_CHAINS = [':KUBE-NODEPORTS - [0:0]', ':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]', ':KUBE-POSTROUTING - [0:0]'];
const NAT_TOP_RULES = [
  '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
  '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
  '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
];
const NODEPORTS_JUMP = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS';

/**
 * Once per namespace, before the first sync and not timed: the jumps from the built-in chains that
 * kube-proxy makes with `iptables -I` (not with the restore).
 */
export const IPTABLES_JUMPS = [
  '*filter',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-FORWARD - [0:0]',
  ':KUBE-FIREWALL - [0:0]',
  '-A INPUT -j KUBE-FIREWALL',
  '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
  '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'COMMIT',
  '*nat',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-POSTROUTING - [0:0]',
  '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
  'COMMIT',
  '',
].join('\n');

function serviceJump(s: BenchService, svcChain: string): string {
  return `-A KUBE-SERVICES -m comment --comment "${servicePortName(s)} cluster IP" -m tcp -p tcp -d ${s.clusterIP} --dport ${SERVICE_PORT} -j ${svcChain}`;
}

/** The KUBE-SVC and KUBE-SEP chains of one service: declarations and rules. */
function serviceChains(s: BenchService, chains: string[], rules: string[]): void {
  const name = servicePortName(s);
  const svc = kubeSvcChain(s);
  const seps = s.endpoints.map((e) => kubeSepChain(s, e));
  chains.push(`:${svc} - [0:0]`);
  for (const sep of seps) chains.push(`:${sep} - [0:0]`);
  rules.push(`-A ${svc} -m comment --comment "${name} cluster IP" -m tcp -p tcp -d ${s.clusterIP} --dport ${SERVICE_PORT} ! -s ${CLUSTER_CIDR} -j KUBE-MARK-MASQ`);
  const n = s.endpoints.length;
  s.endpoints.forEach((endpoint, i) => {
    const comment = `-m comment --comment "${name} -> ${endpoint}:${TARGET_PORT}"`;
    rules.push(i < n - 1 ? `-A ${svc} ${comment} -m statistic --mode random --probability ${probability(n - i)} -j ${seps[i]}` : `-A ${svc} ${comment} -j ${seps[i]}`);
  });
  s.endpoints.forEach((endpoint, i) => {
    rules.push(`-A ${seps[i]} -m comment --comment ${name} -s ${endpoint} -j KUBE-MARK-MASQ`);
    rules.push(`-A ${seps[i]} -m comment --comment ${name} -m tcp -p tcp -j DNAT --to-destination ${endpoint}:${TARGET_PORT}`);
  });
}

export interface RuleText {
  text: string;
  /** Chains declared in the nat table, and rules written to it. */
  chains: number;
  rules: number;
}

/** kube-proxy iptables mode, full sync: every chain declared, every rule written, stale chains deleted. */
export function iptablesFullSync(services: readonly BenchService[], staleChains: readonly string[] = []): RuleText {
  return iptablesSync(services, services, staleChains);
}

/**
 * kube-proxy iptables mode, partial sync (≥ 1.27): the top-level chains in full (KUBE-SERVICES: a
 * jump per service), the changed services' chains, and the endpoint chains gone stale deleted.
 */
export function iptablesPartialSync(services: readonly BenchService[], changed: readonly BenchService[], staleChains: readonly string[]): RuleText {
  return iptablesSync(services, changed, staleChains);
}

/** Top-level chains in full, the KUBE-SVC/KUBE-SEP chains of `written`, stale chains declared and deleted. */
function iptablesSync(services: readonly BenchService[], written: readonly BenchService[], staleChains: readonly string[]): RuleText {
  const chains = [...NAT_TOP_CHAINS];
  const rules = [...NAT_TOP_RULES];
  for (const s of services) rules.push(serviceJump(s, kubeSvcChain(s)));
  for (const s of written) serviceChains(s, chains, rules);
  rules.push(NODEPORTS_JUMP);
  // Rules written (what iptables-save shows afterwards); the -X lines below are not rules.
  const ruleCount = rules.length;
  for (const stale of staleChains) {
    chains.push(`:${stale} - [0:0]`);
    rules.push(`-X ${stale}`);
  }
  return { text: [...FILTER_TABLE, '*nat', ...chains, ...rules, 'COMMIT', ''].join('\n'), chains: chains.length, rules: ruleCount };
}

/** kube-proxy nftables: hashAndTruncate (8 base32 characters of the name's SHA-256, then the name). */
function hashAndTruncate(name: string): string {
  return `${hashBase32(name, 8)}-${name}`;
}

function nftServiceChain(s: BenchService): string {
  return `service-${hashAndTruncate(`${s.namespace}/${s.name}/tcp/${PORT_NAME}`)}`;
}

function nftEndpointChain(s: BenchService, endpoint: string): string {
  return `endpoint-${hashAndTruncate(`${s.namespace}/${s.name}/tcp/${PORT_NAME}__${endpoint}/${TARGET_PORT}`)}`;
}

const NFT_TABLE = 'ip kube-proxy';

/**
 * kube-proxy nftables mode, first sync: the whole table in one transaction. With `table: false`, only
 * the services' chains, rules and elements, to add to a table an earlier call made (the throughput
 * bench loads 10,000 services in groups: one transaction of them takes minutes in nft 1.0.6).
 */
export function nftablesFullSync(services: readonly BenchService[], options: { table?: boolean } = {}): RuleText {
  const t = NFT_TABLE;
  const table = [
    `add table ${t} { comment "rules for kube-proxy" ; }`,
    `add chain ${t} mark-for-masquerade`,
    `add rule ${t} mark-for-masquerade mark set mark or 0x4000`,
    `add chain ${t} masquerading`,
    `add rule ${t} masquerading mark and 0x4000 == 0 return`,
    `add rule ${t} masquerading mark set mark xor 0x4000`,
    `add rule ${t} masquerading masquerade fully-random`,
    `add chain ${t} services`,
    `add chain ${t} nat-prerouting { type nat hook prerouting priority -100 ; }`,
    `add rule ${t} nat-prerouting jump services`,
    `add chain ${t} nat-output { type nat hook output priority -100 ; }`,
    `add rule ${t} nat-output jump services`,
    `add chain ${t} nat-postrouting { type nat hook postrouting priority 100 ; }`,
    `add rule ${t} nat-postrouting jump masquerading`,
    `add set ${t} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`,
    `add map ${t} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
    `add rule ${t} services ip daddr . meta l4proto . th dport vmap @service-ips`,
  ];
  const withTable = options.table ?? true;
  const lines = withTable ? table : [];
  let chains = withTable ? 6 : 0;
  let rules = withTable ? 8 : 0;
  for (const s of services) {
    const svc = nftServiceChain(s);
    const endpoints = s.endpoints.map((e) => nftEndpointChain(s, e));
    for (const chain of endpoints) lines.push(`add chain ${t} ${chain}`);
    lines.push(`add chain ${t} ${svc}`);
    lines.push(`add rule ${t} ${svc} ip daddr ${s.clusterIP} tcp dport ${SERVICE_PORT} ip saddr != ${CLUSTER_CIDR} jump mark-for-masquerade`);
    lines.push(`add rule ${t} ${svc} numgen random mod ${endpoints.length} vmap { ${endpoints.map((chain, i) => `${i} : goto ${chain}`).join(' , ')} }`);
    s.endpoints.forEach((endpoint, i) => {
      lines.push(`add rule ${t} ${endpoints[i]} ip saddr ${endpoint} jump mark-for-masquerade`);
      lines.push(`add rule ${t} ${endpoints[i]} meta l4proto tcp dnat to ${endpoint}:${TARGET_PORT}`);
    });
    lines.push(`add element ${t} cluster-ips { ${s.clusterIP} }`);
    lines.push(`add element ${t} service-ips { ${s.clusterIP} . tcp . ${SERVICE_PORT} : goto ${svc} }`);
    chains += 1 + endpoints.length;
    rules += 2 + 2 * endpoints.length;
  }
  return { text: `${lines.join('\n')}\n`, chains, rules };
}
