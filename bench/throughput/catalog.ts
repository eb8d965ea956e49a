/** The systems the throughput bench knows, by id: names for the command line, labels for the report. */

export const SYSTEM_IDS = ['xlb-snat', 'xlb-dsr', 'iptables', 'nftables', 'routing', 'xdp-forwarder'] as const;
/** The chosen systems, and the reference measured with them every time (the generator alone). */
export type SystemId = (typeof SYSTEM_IDS)[number] | 'generator';

export const SYSTEM_LABELS: Record<SystemId, string> = {
  'xlb-snat': 'xlb SNAT',
  'xlb-dsr': 'xlb DSR',
  iptables: 'iptables (kube-proxy layout)',
  nftables: 'nftables (kube-proxy layout)',
  routing: 'plain routing',
  'xdp-forwarder': 'minimal XDP forwarder',
  generator: 'generator + sink alone',
};

/** What the sink should see from each system: the source rewritten to the node (SNAT), an IPv4 option (DSR). */
export const EXPECTED: Record<SystemId, { fromNode: boolean; optionOnNewFlows: boolean }> = {
  'xlb-snat': { fromNode: true, optionOnNewFlows: false },
  'xlb-dsr': { fromNode: false, optionOnNewFlows: true },
  iptables: { fromNode: true, optionOnNewFlows: false },
  nftables: { fromNode: true, optionOnNewFlows: false },
  routing: { fromNode: false, optionOnNewFlows: false },
  'xdp-forwarder': { fromNode: false, optionOnNewFlows: false },
  generator: { fromNode: false, optionOnNewFlows: false },
};

export function systemIds(text: string): SystemId[] {
  const ids = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const id of ids) {
    if (!(SYSTEM_IDS as readonly string[]).includes(id)) throw new Error(`--systems: unknown system ${JSON.stringify(id)} (one of ${SYSTEM_IDS.join(', ')})`);
  }
  if (ids.length === 0) throw new Error('--systems: name at least one');
  return [...new Set(ids)] as SystemId[];
}
