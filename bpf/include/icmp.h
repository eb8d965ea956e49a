/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ICMP answers built in place: "port unreachable" for a service without backends (what kube-proxy's
 * REJECT rule sends), quoting the offending packet's IP header and first 8 bytes of L4, as RFC 792 /
 * RFC 4443 ask. The frame is turned around and sent back out with XDP_TX.
 */
#ifndef XLB_ICMP_H
#define XLB_ICMP_H

#include <linux/if_ether.h>
#include "common.h"
#include "parse.h"

#define XLB_ICMP_TTL 64
#define XLB_ICMP4_QUOTE (sizeof(struct iphdr) + 8)
#define XLB_ICMP6_QUOTE (sizeof(struct ipv6hdr) + 8)

static __always_inline __u16 icmp_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Make room for `head` new bytes in front of the IP header and cut the frame to `total` bytes. */
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

static __always_inline int icmp4_port_unreachable(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	const int head = sizeof(struct iphdr) + sizeof(struct icmphdr);
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr orig;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct icmphdr *icmp;

	if (pkt->l3_off != ETH_HLEN || pkt->l3_len != sizeof(struct iphdr))
		return -XLB_DROP_NO_BACKEND;
	if (data + ETH_HLEN > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(&orig, data, ETH_HLEN);
	if (icmp_reshape(ctx, head, ETH_HLEN + head + XLB_ICMP4_QUOTE))
		return -XLB_DROP_NO_BACKEND;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = data + ETH_HLEN;
	icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) + XLB_ICMP4_QUOTE > data_end)
		return -XLB_DROP_MALFORMED;
	icmp_turn_eth(eth, &orig);
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(head + XLB_ICMP4_QUOTE);
	ip->ttl = XLB_ICMP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = pkt->tuple.daddr.v4;
	ip->daddr = pkt->tuple.saddr.v4;
	ip->check = icmp_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
	__builtin_memset(icmp, 0, sizeof(*icmp));
	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_PORT_UNREACH;
	icmp->checksum = icmp_fold(bpf_csum_diff(NULL, 0, (__be32 *)icmp, sizeof(*icmp) + XLB_ICMP4_QUOTE, 0));
	return 0;
}

struct icmp6_pseudo {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__be32 nexthdr;
};

static __always_inline int icmp6_port_unreachable(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	const int head = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct icmp6_pseudo pseudo = {};
	struct ethhdr orig;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	struct icmp6hdr *icmp6;
	__u32 sum;

	if (pkt->l3_off != ETH_HLEN || pkt->l3_len != sizeof(struct ipv6hdr))
		return -XLB_DROP_NO_BACKEND;
	if (data + ETH_HLEN > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(&orig, data, ETH_HLEN);
	if (icmp_reshape(ctx, head, ETH_HLEN + head + XLB_ICMP6_QUOTE))
		return -XLB_DROP_NO_BACKEND;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = data + ETH_HLEN;
	icmp6 = (void *)(ip6 + 1);
	if ((void *)(icmp6 + 1) + XLB_ICMP6_QUOTE > data_end)
		return -XLB_DROP_MALFORMED;
	icmp_turn_eth(eth, &orig);
	__builtin_memset(ip6, 0, sizeof(*ip6));
	ip6->version = 6;
	ip6->payload_len = bpf_htons(sizeof(*icmp6) + XLB_ICMP6_QUOTE);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = XLB_ICMP_TTL;
	__builtin_memcpy(&ip6->saddr, pkt->tuple.daddr.bytes, 16);
	__builtin_memcpy(&ip6->daddr, pkt->tuple.saddr.bytes, 16);
	__builtin_memset(icmp6, 0, sizeof(*icmp6));
	icmp6->icmp6_type = ICMPV6_DEST_UNREACH;
	icmp6->icmp6_code = ICMPV6_PORT_UNREACH;

	__builtin_memcpy(pseudo.saddr, pkt->tuple.daddr.bytes, 16);
	__builtin_memcpy(pseudo.daddr, pkt->tuple.saddr.bytes, 16);
	pseudo.len = bpf_htonl(sizeof(*icmp6) + XLB_ICMP6_QUOTE);
	pseudo.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)icmp6, sizeof(*icmp6) + XLB_ICMP6_QUOTE, sum);
	icmp6->icmp6_cksum = icmp_fold(sum);
	return 0;
}

/* Answer a packet for a service without backends; negative drop reason when it cannot be answered. */
static __always_inline int icmp_port_unreachable(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	if (pkt->tuple.family == XLB_AF_INET)
		return icmp4_port_unreachable(ctx, pkt);
	return icmp6_port_unreachable(ctx, pkt);
}

#endif
