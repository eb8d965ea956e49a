/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sending a translated packet on: the kernel's FIB picks the next hop and egress device; XDP_TX when
 * it leaves where it came in (one-arm LB), XDP_REDIRECT otherwise. Without a neighbour entry yet the
 * stack takes the (already translated) packet and resolves it — the next packets go fast again.
 */
#ifndef XLB_FORWARD_H
#define XLB_FORWARD_H

#include <linux/if_ether.h>
#include "common.h"
#include "parse.h"

#define XLB_AF_INET_FIB 2
#define XLB_AF_INET6_FIB 10

/* XDP action for the packet, after counting; reason_out says which reason to count. */
static __always_inline int fwd_fib_redirect(struct xdp_md *ctx, const struct xlb_pkt *pkt, int *reason_out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	int rc;

	if ((void *)(eth + 1) > data_end) {
		*reason_out = XLB_DROP_MALFORMED;
		return XDP_DROP;
	}
	fib.family = pkt->tuple.family;
	fib.l4_protocol = pkt->tuple.proto;
	fib.sport = pkt->tuple.sport;
	fib.dport = pkt->tuple.dport;
	fib.ifindex = ctx->ingress_ifindex;
	if (pkt->tuple.family == XLB_AF_INET) {
		struct iphdr *ip = data + xlb_l3_off(pkt);

		if ((void *)(ip + 1) > data_end) {
			*reason_out = XLB_DROP_MALFORMED;
			return XDP_DROP;
		}
		fib.tot_len = bpf_ntohs(ip->tot_len);
		fib.tos = ip->tos;
		fib.ipv4_src = pkt->tuple.saddr.v4;
		fib.ipv4_dst = pkt->tuple.daddr.v4;
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		if ((void *)(ip6 + 1) > data_end) {
			*reason_out = XLB_DROP_MALFORMED;
			return XDP_DROP;
		}
		fib.tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(fib.ipv6_src, pkt->tuple.saddr.bytes, 16);
		__builtin_memcpy(fib.ipv6_dst, pkt->tuple.daddr.bytes, 16);
	}

	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
		if (fib.ifindex == ctx->ingress_ifindex)
			return XDP_TX;
		return bpf_redirect(fib.ifindex, 0);
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		*reason_out = XLB_PASS_NO_NEIGH;
		return XDP_PASS;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		*reason_out = XLB_DROP_FRAG_NEEDED;
		return XDP_DROP;
	default:
		*reason_out = XLB_DROP_FIB;
		return XDP_DROP;
	}
}

#endif
