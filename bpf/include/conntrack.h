/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection tracking for load-balanced flows: the client's tuple → the backend it got, so established
 * flows keep their backend when backends are added (Maglev reshuffles a little), and translation state
 * (SNAT address/port, DSR) stays with the flow. One table for every CPU: on veth, a flow's packets may
 * be handled on either CPU, so per-CPU values would split flows; the LRU evicts the least recently used
 * entry when full rather than failing, and a failed insert is still counted.
 */
#ifndef XLB_CONNTRACK_H
#define XLB_CONNTRACK_H

#include "common.h"
#include "maps.h"
#include "parse.h"

#define XLB_CT_MAX_ENTRIES 262144

/* Lifetimes in seconds, as kube-proxy's conntrack settings: established TCP long, closing short. */
#define XLB_CT_LIFETIME_TCP 21600
#define XLB_CT_LIFETIME_CLOSING 10
#define XLB_CT_LIFETIME_NONTCP 60
#define XLB_NS 1000000000ULL

/* Nanoseconds per jiffy (1e9 / CONFIG_HZ), set at load when the agent knows the kernel's HZ. */
const volatile __u64 xlb_ns_per_jiffy = 0;

/* Conntrack time, in ns: jiffies resolution is plenty for lifetimes in seconds, and reading jiffies
 * costs next to nothing, where even the coarse clock helper cost ~15 ns a packet here. */
static __always_inline __u64 xlb_now(void)
{
	if (xlb_ns_per_jiffy)
		return bpf_jiffies64() * xlb_ns_per_jiffy;
	return bpf_ktime_get_coarse_ns();
}

/* Units of 2^30 ns (about 1.07 s): a shift instead of a 64-bit division, for next-hop ages. */
static __always_inline __u32 xlb_coarse_sec(__u64 ns)
{
	return ns >> 30;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_CT_MAX_ENTRIES);
	/* Per-CPU LRU lists over the one table: a new entry comes from this CPU's free list without the
	 * global LRU lock (bench/datapath.ts: new flows ~10% faster here); each CPU evicts from its share. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct xlb_tuple);
	__type(value, struct ct_entry);
} xlb_ct SEC(".maps");

/* Room for a conntrack entry being built: off the 512-byte BPF stack, which the paths share. Per CPU,
 * and XDP runs to completion on its CPU, so no one else touches it meanwhile. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_entry);
} xlb_ct_scratch SEC(".maps");

static __always_inline struct ct_entry *ct_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_ct_scratch, &zero);
}

static __always_inline __u64 ct_lifetime_ns(const struct ct_entry *entry, __u8 proto)
{
	if (entry->flags & XLB_CT_F_CLOSING)
		return XLB_CT_LIFETIME_CLOSING * XLB_NS;
	return (proto == IPPROTO_TCP ? XLB_CT_LIFETIME_TCP : XLB_CT_LIFETIME_NONTCP) * XLB_NS;
}

/* The live entry of this flow, or NULL when there is none or it has expired. */
static __always_inline struct ct_entry *ct_lookup(const struct xlb_tuple *tuple, __u64 now)
{
	struct ct_entry *entry = bpf_map_lookup_elem(&xlb_ct, tuple);

	if (!entry)
		return NULL;
	if (now - entry->last_seen > ct_lifetime_ns(entry, tuple->proto))
		return NULL;
	return entry;
}

/* A TCP SYN on a flow that was closing starts a new connection: it may pick a backend afresh. */
static __always_inline int ct_is_reopened(const struct ct_entry *entry, const struct xlb_pkt *pkt)
{
	return (entry->flags & XLB_CT_F_CLOSING) && pkt->tuple.proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

static __always_inline void ct_touch(struct ct_entry *entry, const struct xlb_pkt *pkt, __u64 now)
{
	/* Written only when it moved on: a store per packet would keep the entry's cache line bouncing
	 * between CPUs for nothing, lifetimes being seconds. */
	if (now - entry->last_seen > XLB_NS / 4)
		entry->last_seen = now;
	if (pkt->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST))
		entry->flags |= XLB_CT_F_CLOSING;
}

static __always_inline int ct_create(const struct xlb_tuple *tuple, const struct ct_entry *entry)
{
	if (bpf_map_update_elem(&xlb_ct, tuple, entry, BPF_ANY))
		return -XLB_DROP_CT_FULL;
	return 0;
}

#endif
