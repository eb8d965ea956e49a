/**
 * This node, as Kubernetes mode needs it: its name (whose endpoints are local), its zone (topology
 * hints) and its addresses (where NodePorts listen), and kube-proxy's --nodeport-addresses.
 */
import { canonicalIpAddress } from '../maglev/backend-key.js';
import { parseHostAddress, type Cidr, type Family } from '../service.js';
import { familyOf, inCidr, parseCidrMasked } from './addresses.js';
import { LABEL_ZONE, objectMeta, type Problem } from './objects.js';

export interface NodeInfo {
  name: string;
  /** The label topology.kubernetes.io/zone; undefined without one (topology hints then do not apply). */
  zone: string | undefined;
  /** status.addresses of type InternalIP, then ExternalIP, canonical, each once, in the Node's order. */
  addresses: string[];
}

/** The NodeInfo of a Node object; problems for malformed fields (an unusable address is left out). */
export function nodeInfo(node: unknown, problems: Problem[]): NodeInfo | undefined {
  const meta = objectMeta('Node', node, problems, false);
  if (!meta) return undefined;
  const { reader, labels } = meta;
  const status = reader.object((node as { status?: unknown }).status, 'status');
  const byType: Record<string, string[]> = { InternalIP: [], ExternalIP: [] };
  reader.list(status?.addresses, 'status.addresses').forEach((raw, i) => {
    const at = `status.addresses[${i}]`;
    const entry = reader.object(raw, at);
    const type = reader.string(entry?.type, `${at}.type`);
    const list = type === undefined ? undefined : byType[type];
    if (!entry || !list) return; // Hostname, InternalDNS, ExternalDNS: not addresses
    const parsed = parseHostAddress(entry.address);
    if (typeof parsed === 'string') reader.problem(`${at}.address`, parsed);
    else list.push(parsed.text);
  });
  const zone = labels.get(LABEL_ZONE);
  return {
    name: reader.ref.name,
    zone: zone === '' ? undefined : zone,
    addresses: [...new Set([...(byType.InternalIP ?? []), ...(byType.ExternalIP ?? [])])],
  };
}

/**
 * kube-proxy's --nodeport-addresses: empty (every node address), "primary" (the node's first address
 * of each family), or CIDRs (the node addresses inside any of them).
 */
export type NodePortAddressSpec = { kind: 'all' } | { kind: 'primary' } | { kind: 'cidrs'; cidrs: Cidr[] };

/** The flag's values parsed; a string says which value is wrong and why. */
export function parseNodePortAddresses(values: readonly string[]): NodePortAddressSpec | string {
  const list = values.map((v) => v.trim()).filter((v) => v !== '');
  if (list.length === 0) return { kind: 'all' };
  if (list.includes('primary')) return list.length === 1 ? { kind: 'primary' } : '"primary" cannot be combined with CIDRs';
  const cidrs: Cidr[] = [];
  for (const value of list) {
    const parsed = parseCidrMasked(value);
    if (typeof parsed === 'string') return parsed;
    cidrs.push(parsed);
  }
  return { kind: 'cidrs', cidrs };
}

/**
 * The addresses NodePort services listen on (LbNodeConfig.addresses): of `candidates` (the node's
 * addresses, primary ones first), those the spec selects. Canonical, each once, in candidate order.
 */
export function nodePortAddresses(candidates: readonly string[], spec: NodePortAddressSpec): string[] {
  const all = [...new Set(candidates.map((a) => canonicalIpAddress(a)))];
  if (spec.kind === 'all') return all;
  if (spec.kind === 'primary') {
    const seen = new Set<Family>();
    return all.filter((a) => !seen.has(familyOf(a)) && seen.add(familyOf(a)) !== undefined);
  }
  return all.filter((a) => spec.cidrs.some((c) => inCidr(a, c)));
}
