/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ICMP errors xlb sends, built over the frame and sent back out with XDP_TX: port unreachable for a
 * service without backends (what kube-proxy's REJECT rule sends), time exceeded for a packet whose TTL /
 * hop limit is spent, and fragmentation needed / packet too big for a packet too big for its next hop
 * (with the MTU less our DSR option when the option made it too big, as Cilium does). Each quotes the
 * offending packet as its sender sent it (translated ones turned back) — IP header and the first 8 bytes of L4, as RFC 792 /
 * RFC 4443 ask — and comes from the address that packet was sent to. Paths only decide on an answer
 * (their verdict's reason); xdp_lb builds it at its top (xlb_icmp_answer). Every answer passes one rate
 * limit (ratelimit.h); suppressed ones are counted as XLB_DROP_ICMP_RATE_LIMITED.
 */
#ifndef XLB_ICMP_H
#define XLB_ICMP_H

#include <linux/if_ether.h>
#include "common.h"
#include "csum.h"
#include "dsr.h"
#include "parse.h"
#include "ratelimit.h"

#define XLB_ICMP_TTL 64
#define XLB_ICMP_L4_QUOTE 8
#define XLB_ICMP4_QUOTE (sizeof(struct iphdr) + XLB_ICMP_L4_QUOTE)
#define XLB_ICMP6_QUOTE (sizeof(struct ipv6hdr) + XLB_ICMP_L4_QUOTE)
#define ICMP_EXC_TTL 0
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_EXC_HOPLIMIT 0
#define XLB_IP_DF 0x4000

/*
 * What an answer needs of the packet it answers, copied out first so the answer can be written over
 * the frame from its first byte: the frame's Ethernet header, the IP header without options or
 * extension headers (lengths and next header made to agree), and the first 8 bytes of L4.
 */
struct icmp_offender {
	struct ethhdr eth;
	__u8 pad[2];
	union {
		struct iphdr ip;
		struct ipv6hdr ip6;
	};
	__u8 l4[XLB_ICMP_L4_QUOTE];
	__u32 mtu; /* too big: the next hop's MTU (icmp_note_mtu) */
};

XLB_SCRATCH(xlb_icmp_room, struct icmp_offender)

static __always_inline __u16 icmp_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The quote of the packet as it is now in the frame (*q, per-CPU scratch); 0, or a negative drop reason. */
static __always_inline int icmp_offender_take(struct xdp_md *ctx, const struct xlb_pkt *pkt, struct icmp_offender **out)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct icmp_offender *q = xlb_icmp_room_get();
	void *l3 = data + xlb_l3_off(pkt);
	void *l4 = data + xlb_l4_off(pkt);
	__u32 extra = pkt->l3_len;

	*out = q;
	if (!q)
		return -XLB_DROP_MALFORMED;
	if (data + sizeof(q->eth) > data_end || l4 + XLB_ICMP_L4_QUOTE > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(&q->eth, data, sizeof(q->eth));
	__builtin_memcpy(q->l4, l4, XLB_ICMP_L4_QUOTE);
	if (pkt->tuple.family == XLB_AF_INET) {
		if (l3 + sizeof(q->ip) > data_end || extra < sizeof(q->ip))
			return -XLB_DROP_MALFORMED;
		__builtin_memcpy(&q->ip, l3, sizeof(q->ip));
		extra -= sizeof(q->ip);
		q->ip.ihl = 5;
		q->ip.tot_len = bpf_htons(bpf_ntohs(q->ip.tot_len) - extra);
		q->ip.check = 0;
		q->ip.check = icmp_fold(bpf_csum_diff(NULL, 0, (__be32 *)&q->ip, sizeof(q->ip), 0));
		return 0;
	}
	if (l3 + sizeof(q->ip6) > data_end || extra < sizeof(q->ip6))
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(&q->ip6, l3, sizeof(q->ip6));
	extra -= sizeof(q->ip6);
	q->ip6.nexthdr = pkt->tuple.proto;
	q->ip6.payload_len = bpf_htons(bpf_ntohs(q->ip6.payload_len) - extra);
	return 0;
}

/* Make room for `head` new bytes in front of the frame and cut it to `total` bytes. */
static __always_inline int icmp_reshape(struct xdp_md *ctx, int head, int total)
{
	if (bpf_xdp_adjust_head(ctx, -head))
		return -1;
	return bpf_xdp_adjust_tail(ctx, total - (int)(ctx->data_end - ctx->data));
}

static __always_inline void icmp_turn_eth(struct ethhdr *eth, const struct ethhdr *orig)
{
	__builtin_memcpy(eth->h_dest, orig->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, orig->h_dest, ETH_ALEN);
	eth->h_proto = orig->h_proto;
}

/* The frame becomes an ICMP error {type, code, info} about the packet *q quotes; 0, or a negative drop reason. */
static __always_inline int icmp4_send(struct xdp_md *ctx, const struct icmp_offender *q, __u8 type, __u8 code, __be32 info)
{
	const int head = sizeof(struct iphdr) + sizeof(struct icmphdr);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct icmphdr *icmp;
	__u8 *quote;

	if (icmp_reshape(ctx, head, ETH_HLEN + head + XLB_ICMP4_QUOTE))
		return -XLB_DROP_MALFORMED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	icmp = (void *)(ip + 1);
	quote = (void *)(icmp + 1);
	if (quote + XLB_ICMP4_QUOTE > (__u8 *)data_end)
		return -XLB_DROP_MALFORMED;
	icmp_turn_eth(eth, &q->eth);
	__builtin_memcpy(quote, &q->ip, sizeof(q->ip));
	__builtin_memcpy(quote + sizeof(q->ip), q->l4, XLB_ICMP_L4_QUOTE);
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(head + XLB_ICMP4_QUOTE);
	ip->ttl = XLB_ICMP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = q->ip.daddr;
	ip->daddr = q->ip.saddr;
	ip->check = icmp_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
	icmp->type = type;
	icmp->code = code;
	icmp->checksum = 0;
	icmp->un.gateway = info;
	icmp->checksum = icmp_fold(bpf_csum_diff(NULL, 0, (__be32 *)icmp, sizeof(*icmp) + XLB_ICMP4_QUOTE, 0));
	return 0;
}

/* The IPv6 pseudo-header's words after the addresses (which are summed where they lie in the answer). */
struct icmp6_pseudo_tail {
	__be32 len;
	__be32 nexthdr;
};

static __always_inline int icmp6_send(struct xdp_md *ctx, const struct icmp_offender *q, __u8 type, __u8 code, __be32 info)
{
	const int head = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	struct icmp6_pseudo_tail pseudo;
	void *data, *data_end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	struct icmp6hdr *icmp6;
	__u8 *quote;
	__u32 sum;

	if (icmp_reshape(ctx, head, ETH_HLEN + head + XLB_ICMP6_QUOTE))
		return -XLB_DROP_MALFORMED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = data + ETH_HLEN;
	icmp6 = (void *)(ip6 + 1);
	quote = (void *)(icmp6 + 1);
	if (quote + XLB_ICMP6_QUOTE > (__u8 *)data_end)
		return -XLB_DROP_MALFORMED;
	icmp_turn_eth(eth, &q->eth);
	__builtin_memcpy(quote, &q->ip6, sizeof(q->ip6));
	__builtin_memcpy(quote + sizeof(q->ip6), q->l4, XLB_ICMP_L4_QUOTE);
	__builtin_memset(ip6, 0, sizeof(*ip6));
	ip6->version = 6;
	ip6->payload_len = bpf_htons(sizeof(*icmp6) + XLB_ICMP6_QUOTE);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = XLB_ICMP_TTL;
	__builtin_memcpy(&ip6->saddr, &q->ip6.daddr, 16);
	__builtin_memcpy(&ip6->daddr, &q->ip6.saddr, 16);
	icmp6->icmp6_type = type;
	icmp6->icmp6_code = code;
	icmp6->icmp6_cksum = 0;
	icmp6->icmp6_data = info;

	pseudo.len = bpf_htonl(sizeof(*icmp6) + XLB_ICMP6_QUOTE);
	pseudo.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip6->saddr, 32, 0);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&pseudo, sizeof(pseudo), sum);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp6, sizeof(*icmp6) + XLB_ICMP6_QUOTE, sum);
	icmp6->icmp6_cksum = icmp_fold(sum);
	return 0;
}

/* Send the error the quote asks for, in the packet's family; 0, or a negative drop reason. */
static __always_inline int icmp_send(struct xdp_md *ctx, const struct icmp_offender *q, __u8 family, __u8 type4,
				     __u8 code4, __u8 type6, __u8 code6, __u32 info)
{
	if (family == XLB_AF_INET)
		return icmp4_send(ctx, q, type4, code4, bpf_htonl(info));
	return icmp6_send(ctx, q, type6, code6, bpf_htonl(info));
}

/* Answer a packet for a service without backends; negative drop reason when it is not answered. */
static __always_inline int icmp_port_unreachable(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	struct icmp_offender *q;
	int err;

	if (!xlb_icmp_allowed())
		return -XLB_DROP_ICMP_RATE_LIMITED;
	err = icmp_offender_take(ctx, pkt, &q);
	if (err || !q)
		return -XLB_DROP_NO_BACKEND;
	return icmp_send(ctx, q, pkt->tuple.family, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, ICMPV6_DEST_UNREACH,
			 ICMPV6_PORT_UNREACH, 0);
}

/* The TTL / hop limit of the packet as it is in the frame, 0 when unreadable. */
static __always_inline __u8 icmp_hops_left(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *hops = data + xlb_l3_off(pkt) + (pkt->tuple.family == XLB_AF_INET ? 8 : 7);

	if ((void *)(hops + 1) > data_end)
		return 0;
	return *hops;
}

/* 1 when the packet may not take another hop (TTL / hop limit 1 or 0): forwarding it would be wrong. */
static __always_inline int icmp_hops_spent(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	return icmp_hops_left(ctx, pkt) <= 1;
}

/*
 * Answer a packet whose hops are spent with time exceeded, quoting it as it came (so: call before
 * translating it); 0 when the frame is the answer, else the negative drop reason.
 */
static __always_inline int icmp_time_exceeded(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	struct icmp_offender *q;

	/* never an ICMP error about an ICMP error (RFC 1122 3.2.2) */
	if (pkt->icmp_error)
		return -XLB_DROP_TTL_EXCEEDED;
	if (!xlb_icmp_allowed())
		return -XLB_DROP_ICMP_RATE_LIMITED;
	if (icmp_offender_take(ctx, pkt, &q) || !q)
		return -XLB_DROP_TTL_EXCEEDED;
	if (icmp_send(ctx, q, pkt->tuple.family, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, ICMPV6_TIME_EXCEED,
		      ICMPV6_EXC_HOPLIMIT, 0))
		return -XLB_DROP_TTL_EXCEEDED;
	return 0;
}

/* How much our DSR information grew the packet (the first of a DSR flow): 8 / 24 bytes, else 0. */
static __always_inline __u32 icmp_dsr_growth(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *l3 = data + xlb_l3_off(pkt);

	if (pkt->tuple.family == XLB_AF_INET) {
		struct xlb_dsr_opt4 *opt = l3 + sizeof(struct iphdr);

		if (pkt->l3_len != sizeof(struct iphdr) + XLB_DSR_OPT4_LEN || (void *)(opt + 1) > data_end ||
		    opt->type != XLB_DSR_OPT4_TYPE || opt->len != XLB_DSR_OPT4_LEN)
			return 0;
		return XLB_DSR_OPT4_LEN;
	} else {
		struct xlb_dsr_doh6 *doh = l3 + sizeof(struct ipv6hdr);

		if (!pkt->ipv6_dstopts || pkt->l3_len < sizeof(struct ipv6hdr) + XLB_DSR_DOH6_LEN ||
		    (void *)(doh + 1) > data_end || doh->opt_type != XLB_DSR_OPT6_TYPE || doh->opt_len != XLB_DSR_OPT6_LEN)
			return 0;
		return XLB_DSR_DOH6_LEN;
	}
}

/*
 * The quote of a translated packet back as it arrived (*flow): addresses and ports, the IPv4 header
 * checksum, and the UDP checksum among the quoted 8 bytes (TCP's lies past them).
 */
static __always_inline void icmp_quote_untranslate(struct icmp_offender *q, const struct xlb_tuple *flow)
{
	int ports = flow->proto == IPPROTO_TCP || flow->proto == IPPROTO_UDP || flow->proto == IPPROTO_SCTP;
	__be16 *l4_ports = (__be16 *)q->l4;
	__sum16 *udp_check = (__sum16 *)(q->l4 + 6);

	if (flow->family == XLB_AF_INET) {
		if (flow->proto == IPPROTO_UDP && *udp_check) {
			xlb_csum_replace4x2(udp_check, q->ip.saddr, flow->saddr.v4, q->ip.daddr, flow->daddr.v4);
			xlb_csum_replace4(udp_check, l4_ports[0] | (__u32)l4_ports[1] << 16, flow->sport | (__u32)flow->dport << 16);
			if (!*udp_check)
				*udp_check = 0xffff;
		}
		xlb_csum_replace4x2(&q->ip.check, q->ip.saddr, flow->saddr.v4, q->ip.daddr, flow->daddr.v4);
		q->ip.saddr = flow->saddr.v4;
		q->ip.daddr = flow->daddr.v4;
	} else {
		if (flow->proto == IPPROTO_UDP) {
			xlb_csum_replace16(udp_check, (const __be32 *)&q->ip6.saddr, flow->saddr.v6);
			xlb_csum_replace16(udp_check, (const __be32 *)&q->ip6.daddr, flow->daddr.v6);
			xlb_csum_replace4(udp_check, l4_ports[0] | (__u32)l4_ports[1] << 16, flow->sport | (__u32)flow->dport << 16);
			if (!*udp_check)
				*udp_check = 0xffff;
		}
		__builtin_memcpy(&q->ip6.saddr, flow->saddr.bytes, 16);
		__builtin_memcpy(&q->ip6.daddr, flow->daddr.bytes, 16);
	}
	if (ports) {
		l4_ports[0] = flow->sport;
		l4_ports[1] = flow->dport;
	}
}

/*
 * A translated packet too big for a next hop of MTU `mtu`, that arrived as *flow: answered with
 * fragmentation needed / packet too big quoting it as it arrived, carrying the MTU less what our DSR
 * information added (the first packet of a DSR flow: its sender's next try fits with the option, as
 * Cilium answers). 0 when the frame is the answer, else the negative drop reason. An IPv4 packet
 * without DF that we did not grow is not answered: a router would fragment it, which XDP cannot.
 */
static __always_inline int icmp_too_big(struct xdp_md *ctx, const struct xlb_pkt *pkt, const struct xlb_tuple *flow,
					__u32 mtu)
{
	__u32 grown = icmp_dsr_growth(ctx, pkt);
	struct icmp_offender *q;

	if (pkt->icmp_error || flow->family != pkt->tuple.family || mtu <= grown)
		return -XLB_DROP_FRAG_NEEDED;
	if (!xlb_icmp_allowed())
		return -XLB_DROP_ICMP_RATE_LIMITED;
	if (icmp_offender_take(ctx, pkt, &q) || !q)
		return -XLB_DROP_FRAG_NEEDED;
	if (flow->family == XLB_AF_INET && !grown && !(q->ip.frag_off & bpf_htons(XLB_IP_DF)))
		return -XLB_DROP_FRAG_NEEDED;
	icmp_quote_untranslate(q, flow);
	if (icmp_send(ctx, q, flow->family, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMPV6_PKT_TOOBIG, 0, mtu - grown))
		return -XLB_DROP_FRAG_NEEDED;
	return 0;
}

/* fwd_too_big: the MTU the answer to a packet too big tells (the next hop's), for xlb_icmp_answer. */
static __always_inline void icmp_note_mtu(__u32 mtu)
{
	struct icmp_offender *q = xlb_icmp_room_get();

	if (q)
		q->mtu = mtu;
}

/*
 * The answer a verdict asks for, built over the frame: port unreachable (XLB_REJECT_NO_BACKEND), time
 * exceeded (XLB_DROP_TTL_EXCEEDED) or fragmentation needed / packet too big (XLB_DROP_FRAG_NEEDED) about
 * the packet as it arrived (*flow). 0 when the frame is the answer (XDP_TX it), else the negative drop
 * reason. A global function called once, at the top of the program: the verifier checks it once, and
 * the paths deciding on answers keep their stack.
 */
__attribute__((noinline)) int xlb_icmp_answer(struct xdp_md *ctx, const struct xlb_pkt *pkt, const struct xlb_tuple *flow,
					     int reason)
{
	struct icmp_offender *q = xlb_icmp_room_get();

	if (!pkt || !flow || !q)
		return reason == XLB_REJECT_NO_BACKEND ? -XLB_DROP_NO_BACKEND : -reason;
	switch (reason) {
	case XLB_REJECT_NO_BACKEND:
		return icmp_port_unreachable(ctx, pkt);
	case XLB_DROP_TTL_EXCEEDED:
		return icmp_time_exceeded(ctx, pkt);
	case XLB_DROP_FRAG_NEEDED:
		return icmp_too_big(ctx, pkt, flow, q->mtu);
	default:
		return -reason;
	}
}

#endif
