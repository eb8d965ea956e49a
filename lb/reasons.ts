/**
 * The datapath's reasons (enum xlb_reason in bpf/include/common.h), by name: counters, events, metrics
 * labels and `xlb monitor` all speak these. A test checks every value against the compiled BTF.
 */
export const Reason = {
  FWD_NEW_FLOW: 0,
  FWD_ESTABLISHED: 1,
  FWD_REPLY: 2,
  FWD_ICMP_ERROR: 3,
  PASS_NOT_SERVICE: 4,
  PASS_FRAGMENT: 5,
  REJECT_NO_BACKEND: 6,
  DSR_RECEIVED: 7,
  DSR_REPLY: 8,
  /** Not a verdict: counts new flows that evicted a live flow's conntrack entry (table full). */
  CT_EVICTED: 9,
  /** tc: a packet xdp_lb translated and counted, sent on while the kernel resolves its next hop. */
  FWD_NEIGH_RESOLVE: 10,
  /** Not a verdict: a pod's new flow whose backend is that pod (tc_pod hairpin: its source becomes the service address). */
  POD_HAIRPIN: 12,
  PASS_UNPARSED: 13,
  /** Socket-LB: a connect() or sendmsg() to a service given a backend's address instead (counted egress). */
  SOCK_XLATE: 14,
  /** Socket-LB: recvmsg() / getpeername() shown the service's address in place of its backend's (counted ingress). */
  SOCK_REVERSE: 15,
  DROP_MALFORMED: 16,
  DROP_NO_BACKEND: 17,
  DROP_SOURCE_RANGE: 18,
  DROP_CT_FULL: 19,
  DROP_NAT_NO_PORT: 20,
  DROP_NAT_FULL: 21,
  DROP_FIB: 22,
  DROP_FRAG_NEEDED: 23,
  DROP_UNSUPPORTED: 24,
  DROP_BACKEND_GONE: 25,
  DROP_DSR_OPTION: 26,
  DROP_ICMP_QUOTE: 27,
  DROP_CT_BUSY: 28,
  DROP_FIB_BLACKHOLE: 29,
  DROP_FIB_UNREACHABLE: 30,
  DROP_FIB_PROHIBIT: 31,
  DROP_FIB_NOT_FORWARDED: 32,
  DROP_FIB_FWD_DISABLED: 33,
  DROP_FIB_NO_SRC_ADDR: 34,
  DROP_NO_NEIGH: 35,
  /** TTL / hop limit 1 or 0 on a packet to forward: answered with ICMP time exceeded. */
  DROP_TTL_EXCEEDED: 36,
  /** A packet that would have been answered with an ICMP error, dropped unanswered: over the ICMP rate limit. */
  DROP_ICMP_RATE_LIMITED: 37,
  DROP_DSR_SPOOFED: 44,
  DROP_DSR_UNTRUSTED: 45,
  /** Socket-LB: the socket's reverse entry could not be stored, so its connect() / sendmsg() was refused. */
  DROP_SOCK_REVNAT: 46,
  /** A pod's new connection out that no network policy of the pod allows (tc_pod). */
  DROP_POLICY_EGRESS: 47,
  /** A new connection to a pod that no network policy of the pod allows (tc_pod). */
  DROP_POLICY_INGRESS: 48,
  /** EDT: a pod's packet that would depart later than the horizon past now, over its egress bandwidth. */
  DROP_EDT_HORIZON: 49,
} as const;

export type ReasonName = keyof typeof Reason;

/** Array size of the counters per direction (XLB_REASON_MAX). */
export const REASON_MAX = 64;
export const DROP_FIRST = 16;

export const Direction = { INGRESS: 0, EGRESS: 1 } as const;
export type DirectionName = keyof typeof Direction;

const names = new Map<number, ReasonName>(Object.entries(Reason).map(([name, value]) => [value, name as ReasonName]));

/**
 * The metrics/monitor label: the name without its verdict prefix ("DROP_SOURCE_RANGE" →
 * "source_range"). REJECT_ and DSR_ stay, so every reason keeps a label of its own
 * (REJECT_NO_BACKEND ≠ DROP_NO_BACKEND, DSR_REPLY ≠ FWD_REPLY).
 */
export function reasonLabel(reason: number): string {
  const name = names.get(reason);
  return name ? name.toLowerCase().replace(/^(fwd|pass|drop)_/, '') : `reason_${reason}`;
}

export function reasonName(reason: number): ReasonName | undefined {
  return names.get(reason);
}

export function isDrop(reason: number): boolean {
  return reason >= DROP_FIRST;
}

/** Counter index in xlb_metrics: direction * XLB_REASON_MAX + reason. */
export function counterIndex(reason: number, direction: number): number {
  return direction * REASON_MAX + reason;
}
