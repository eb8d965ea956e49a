/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sending a translated packet on: the kernel's FIB picks the next hop and egress device; XDP_TX when
 * it leaves where it came in (one-arm LB), XDP_REDIRECT otherwise. Without a neighbour entry yet tc
 * sends the (already translated) packet on and the kernel resolves the next hop (xfer.h) — the next
 * packets go fast again. Any other refusal is counted with the FIB's own reason.
 * Every path applies the route's MTU (cached next hops carry it) and takes one hop off the packet's
 * TTL / hop limit, as a router does; packets that may not take another hop are never sent on.
 */
#ifndef XLB_FORWARD_H
#define XLB_FORWARD_H

#include <linux/if_ether.h>
#include "common.h"
#include "icmp.h"
#include "maps.h"
#include "hash.h"
#include "parse.h"
#include "seqlock.h"
#include "xfer.h"

#define XLB_NEXTHOP_TTL 1 /* coarse seconds (2^30 ns): how long a FIB answer is reused */

#define XLB_NEXTHOP_SLOTS 4096

/* The FIB's answers by destination, so a new flow to a known backend (or client) skips the FIB walk,
 * which costs more than the rest of a new flow's path. Direct-mapped and read inline (a kernel hash
 * map costs a function call or two, ~10 ns each here): destinations sharing a slot just take turns. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_NEXTHOP_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_nexthop_slot);
} xlb_nexthops SEC(".maps");

/* The FIB query's 64 bytes. */
XLB_SCRATCH(xlb_fib_scratch, struct bpf_fib_lookup)

static __always_inline int fwd_nexthop_fresh(const struct xlb_nexthop *nh, __u32 now_sec)
{
	return nh->ifindex && now_sec - nh->updated < XLB_NEXTHOP_TTL;
}

/* The frame's IP packet (trailing bytes included: they leave with it) fits the next hop's MTU. */
static __always_inline int fwd_fits(struct xdp_md *ctx, const struct xlb_pkt *pkt, const struct xlb_nexthop *nh)
{
	__u64 len = (void *)(long)ctx->data_end - (void *)(long)ctx->data;

	xlb_barrier_var(len); /* a length, not pointer arithmetic the verifier refuses */
	return len <= (__u64)nh->mtu + xlb_l3_off(pkt);
}

/*
 * The flow's cached next hop takes the packet as it is, with nothing else to check: fresh, the packet
 * fits its MTU, and it may take another hop. Otherwise the slow path sees to it (FIB, ICMP answers).
 */
static __always_inline int fwd_nexthop_usable(struct xdp_md *ctx, const struct xlb_pkt *pkt,
					      const struct xlb_nexthop *nh, __u32 now_sec)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *l3 = (void *)(long)ctx->data + xlb_l3_off(pkt);
	__u8 *hops = l3 + (pkt->tuple.family == XLB_AF_INET ? 8 : 7); /* TTL / hop limit */
	__u64 len;

	/* what fwd_fits and icmp_hops_spent ask, from one header pointer: this is every established packet */
	if (!fwd_nexthop_fresh(nh, now_sec) || (void *)(hops + 1) > data_end || *hops <= 1)
		return 0;
	len = data_end - (void *)l3;
	xlb_barrier_var(len);
	return len <= nh->mtu;
}

static __always_inline struct xlb_nexthop_slot *fwd_shared_slot(const struct xlb_pkt *pkt)
{
	const __u32 *a = pkt->tuple.daddr.v6;
	__u32 index = xlb_jhash_final(a[0] ^ a[1], a[2] ^ a[3], pkt->tuple.family) & (XLB_NEXTHOP_SLOTS - 1);

	return bpf_map_lookup_elem(&xlb_nexthops, &index);
}

static __always_inline int fwd_shared_matches(const struct xlb_nexthop_slot *slot, const struct xlb_pkt *pkt)
{
	return slot->family == pkt->tuple.family && xlb_addr_equal(&slot->addr, &pkt->tuple.daddr);
}

/* A fresh shared answer for the packet's destination into *out: 1, else 0. */
static __always_inline int fwd_shared_get(struct xlb_nexthop_slot *slot, const struct xlb_pkt *pkt, __u32 now_sec,
					  struct xlb_nexthop *out)
{
	__u32 seq = xlb_seq_read_begin(&slot->seq);

	if (!fwd_shared_matches(slot, pkt) || !fwd_nexthop_fresh(&slot->nexthop, now_sec))
		return 0;
	*out = slot->nexthop;
	return xlb_seq_read_valid(&slot->seq, seq);
}

static __always_inline void fwd_shared_put(struct xlb_nexthop_slot *slot, const struct xlb_pkt *pkt,
					   const struct xlb_nexthop *found)
{
	__u32 seq;

	if (!xlb_seq_write_begin(&slot->seq, &seq))
		return; /* another CPU is filling it */
	slot->family = pkt->tuple.family;
	slot->addr = pkt->tuple.daddr;
	slot->nexthop = *found;
	xlb_seq_write_end(&slot->seq);
}

/*
 * One hop off the TTL / hop limit of the IP packet after *eth (callers checked it may take one); the
 * IPv4 header checksum follows incrementally, as the kernel's ip_decrease_ttl does.
 */
static __always_inline void fwd_take_hop(struct ethhdr *eth, void *data_end)
{
	__be16 proto = ((__be16 *)eth)[6]; /* h_proto in one load (struct ethhdr is packed) */

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 check;

		if ((void *)(ip + 1) > data_end)
			return;
		check = (__u32)ip->check + (__u32)bpf_htons(0x0100);
		ip->check = (__sum16)(check + (check >= 0xffff));
		ip->ttl--;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return;
		ip6->hop_limit--;
	}
}

static __always_inline int fwd_transmit(struct xdp_md *ctx, struct ethhdr *eth, const struct xlb_nexthop *nh)
{
	fwd_take_hop(eth, (void *)(long)ctx->data_end);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	if (nh->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(nh->ifindex, 0);
}

/* The FIB query for the translated packet, built in per-CPU scratch (*out): 0, or the drop reason. */
static __always_inline int fwd_fib_query(struct xdp_md *ctx, const struct xlb_pkt *pkt, struct bpf_fib_lookup **out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup *fib = xlb_fib_scratch_get();

	*out = fib;
	if (!fib)
		return XLB_DROP_FIB;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = pkt->tuple.family;
	fib->l4_protocol = pkt->tuple.proto;
	fib->sport = pkt->tuple.sport;
	fib->dport = pkt->tuple.dport;
	fib->ifindex = ctx->ingress_ifindex;
	if (pkt->tuple.family == XLB_AF_INET) {
		struct iphdr *ip = data + xlb_l3_off(pkt);

		if ((void *)(ip + 1) > data_end)
			return XLB_DROP_MALFORMED;
		fib->tot_len = bpf_ntohs(ip->tot_len);
		fib->tos = ip->tos;
		fib->ipv4_src = pkt->tuple.saddr.v4;
		fib->ipv4_dst = pkt->tuple.daddr.v4;
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return XLB_DROP_MALFORMED;
		fib->tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(fib->ipv6_src, pkt->tuple.saddr.bytes, 16);
		__builtin_memcpy(fib->ipv6_dst, pkt->tuple.daddr.bytes, 16);
	}
	return 0;
}

/* The drop reason for a FIB answer that is neither success nor a missing neighbour. */
static __always_inline int fwd_fib_drop_reason(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_BLACKHOLE:
		return XLB_DROP_FIB_BLACKHOLE;
	case BPF_FIB_LKUP_RET_UNREACHABLE:
		return XLB_DROP_FIB_UNREACHABLE;
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return XLB_DROP_FIB_PROHIBIT;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return XLB_DROP_FIB_NOT_FORWARDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return XLB_DROP_FIB_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return XLB_DROP_FRAG_NEEDED;
	case BPF_FIB_LKUP_RET_NO_SRC_ADDR:
		return XLB_DROP_FIB_NO_SRC_ADDR;
	default:
		return XLB_DROP_FIB;
	}
}

/* A translated packet too big for a next hop of MTU `mtu`: dropped, the MTU noted for the program's
 * answer (xlb_icmp_answer: fragmentation needed / packet too big). */
static __always_inline int fwd_too_big(__u32 mtu, int *reason_out)
{
	icmp_note_mtu(mtu);
	*reason_out = XLB_DROP_FRAG_NEEDED;
	return XDP_DROP;
}

/*
 * XDP action for the translated packet; *reason_out is changed when it is not forwarded. nh caches the
 * FIB's answer for the flow (NULL: no cache); now_sec is the coarse clock in seconds. The shared cache
 * is asked first; only its misses build a FIB query. A cached answer carries its route's MTU, so a
 * packet too big for it meets the same answer as from the FIB.
 */
static __always_inline int fwd_packet(struct xdp_md *ctx, const struct xlb_pkt *pkt, struct xlb_nexthop *nh,
				      __u32 now_sec, int *reason_out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_nexthop_slot *shared;
	struct ethhdr *eth = data;
	struct xlb_nexthop cached;
	struct bpf_fib_lookup *fib;
	int rc;

	if ((void *)(eth + 1) > data_end) {
		*reason_out = XLB_DROP_MALFORMED;
		return XDP_DROP;
	}
	/* the paths that translate it answered a spent TTL already; this is for the rest (ICMP errors) */
	if (icmp_hops_spent(ctx, pkt)) {
		*reason_out = XLB_DROP_TTL_EXCEEDED;
		return XDP_DROP;
	}
	if (nh && fwd_nexthop_fresh(nh, now_sec)) {
		if (!fwd_fits(ctx, pkt, nh))
			return fwd_too_big(nh->mtu, reason_out);
		return fwd_transmit(ctx, eth, nh);
	}
	shared = fwd_shared_slot(pkt);
	if (shared && fwd_shared_get(shared, pkt, now_sec, &cached)) {
		if (nh)
			*nh = cached;
		if (!fwd_fits(ctx, pkt, &cached))
			return fwd_too_big(cached.mtu, reason_out);
		return fwd_transmit(ctx, eth, &cached);
	}
	rc = fwd_fib_query(ctx, pkt, &fib);
	if (rc || !fib) {
		*reason_out = rc ? rc : XLB_DROP_FIB;
		return XDP_DROP;
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS: {
		/* on success the FIB leaves the route's MTU where it read the packet's length */
		struct xlb_nexthop found = { .ifindex = fib->ifindex, .updated = now_sec, .mtu = fib->mtu_result };

		__builtin_memcpy(found.dmac, fib->dmac, ETH_ALEN);
		__builtin_memcpy(found.smac, fib->smac, ETH_ALEN);
		if (nh)
			*nh = found;
		if (shared)
			fwd_shared_put(shared, pkt, &found);
		/* the FIB measured the IP length; bytes after it (padding) leave too, as the cached paths count */
		if (!fwd_fits(ctx, pkt, &found))
			return fwd_too_big(found.mtu, reason_out);
		return fwd_transmit(ctx, eth, &found);
	}
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		if ((void *)(eth + 1) > data_end) {
			*reason_out = XLB_DROP_MALFORMED;
			return XDP_DROP;
		}
		fwd_take_hop(eth, data_end);
		return xfer_to_tc(ctx, fib->ifindex, reason_out);
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return fwd_too_big(fib->mtu_result, reason_out);
	default:
		*reason_out = fwd_fib_drop_reason(rc);
		return XDP_DROP;
	}
}

#endif
