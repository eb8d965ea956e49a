/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One rate limit for every ICMP error xlb sends (port unreachable, time exceeded, fragmentation needed /
 * packet too big): without it each of them turns a spoofed packet into a reflected one. A token bucket
 * for the whole node, as the kernel's own ICMP limit (net.ipv4.icmp_msgs_per_sec 1000, burst 50), kept
 * as a GCRA "theoretical arrival time" in one u64 that CPUs advance with compare-and-swap. A CPU that
 * loses the race sends nothing: the limit errs on the side of fewer answers.
 */
#ifndef XLB_RATELIMIT_H
#define XLB_RATELIMIT_H

#include "common.h"

#define XLB_ICMP_RATE 1000 /* ICMP errors a second, node-wide */
#define XLB_ICMP_BURST 50  /* sent at once after a quiet spell */
#define XLB_ICMP_COST_NS (1000000000ULL / XLB_ICMP_RATE)

struct xlb_icmp_bucket {
	__u64 tat; /* bpf_ktime_get_ns when the bucket is full again: an answer may go while tat - now < burst */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_icmp_bucket);
} xlb_icmp_limit SEC(".maps");

/* 1 when an ICMP error may be sent now (and it is taken from the bucket), 0 when over the limit. */
static __always_inline int xlb_icmp_allowed(void)
{
	__u32 zero = 0;
	struct xlb_icmp_bucket *bucket = bpf_map_lookup_elem(&xlb_icmp_limit, &zero);
	__u64 now = bpf_ktime_get_ns();
	__u64 tat, next;

	if (!bucket)
		return 0;
	tat = bucket->tat;
	next = (tat > now ? tat : now) + XLB_ICMP_COST_NS;
	if (next - now > XLB_ICMP_BURST * XLB_ICMP_COST_NS)
		return 0;
	return __sync_val_compare_and_swap(&bucket->tat, tat, next) == tat;
}

#endif
