/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The load balancer's half of DSR: put the service address into the first packet of a flow, so the
 * backend node can answer from the service address straight to the client (dsr.h has the format).
 * The header is grown at the front (bpf_xdp_adjust_head) and the L2/L3 headers move down over the gap.
 * A packet the option makes too big for its next hop is answered as Cilium does, with fragmentation
 * needed / packet too big carrying the MTU less the option (icmp.h, icmp_dsr_too_big).
 */
#ifndef XLB_DSR_ENCAP_H
#define XLB_DSR_ENCAP_H

#include "common.h"
#include "dsr.h"
#include "parse.h"

#define XLB_ETH_VLAN_HLEN 18

/* Full IPv4 header checksum of a 28-byte header (20 + our 8-byte option). */
static __always_inline __sum16 dsr_ipv4_csum(const __u16 *words)
{
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < 14; i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/* Headers are copied out and back whole: source and destination overlap. */
struct dsr_head4 {
	__u8 l2[XLB_ETH_VLAN_HLEN];
	struct iphdr ip;
};

struct dsr_head6 {
	__u8 l2[XLB_ETH_VLAN_HLEN];
	struct ipv6hdr ip6;
};

/* Where the headers wait while the packet grows. */
union dsr_head {
	struct dsr_head4 v4;
	struct dsr_head6 v6;
};

XLB_SCRATCH(xlb_dsr_scratch, union dsr_head)

static __always_inline int dsr_insert_ipv4(struct xdp_md *ctx, struct xlb_pkt *pkt, const union xlb_addr *svc_addr,
					   __be16 svc_port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	union dsr_head *scratch = xlb_dsr_scratch_get();
	struct xlb_dsr_opt4 *opt;
	struct dsr_head4 *head;
	struct iphdr *ip;
	__u32 l2 = pkt->l3_off;

	if (!scratch)
		return -XLB_DROP_UNSUPPORTED;
	head = &scratch->v4;

	/* Options already present would have to move too; such SYNs are rare enough to refuse, counted. */
	if (pkt->l3_len != sizeof(struct iphdr))
		return -XLB_DROP_UNSUPPORTED;
	if (l2 != ETH_HLEN && l2 != XLB_ETH_VLAN_HLEN)
		return -XLB_DROP_UNSUPPORTED;
	if (data + XLB_ETH_VLAN_HLEN + sizeof(struct iphdr) > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(head->l2, data, XLB_ETH_VLAN_HLEN);
	if (l2 == ETH_HLEN)
		__builtin_memcpy(&head->ip, data + ETH_HLEN, sizeof(struct iphdr));
	else
		__builtin_memcpy(&head->ip, data + XLB_ETH_VLAN_HLEN, sizeof(struct iphdr));

	if (bpf_xdp_adjust_head(ctx, -(int)XLB_DSR_OPT4_LEN))
		return -XLB_DROP_UNSUPPORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + XLB_ETH_VLAN_HLEN + sizeof(struct iphdr) + XLB_DSR_OPT4_LEN > data_end)
		return -XLB_DROP_MALFORMED;

	head->ip.ihl += XLB_DSR_OPT4_LEN / 4;
	head->ip.tot_len = bpf_htons(bpf_ntohs(head->ip.tot_len) + XLB_DSR_OPT4_LEN);
	head->ip.check = 0;
	if (l2 == ETH_HLEN) {
		__builtin_memcpy(data, head->l2, ETH_HLEN);
		ip = data + ETH_HLEN;
	} else {
		__builtin_memcpy(data, head->l2, XLB_ETH_VLAN_HLEN);
		ip = data + XLB_ETH_VLAN_HLEN;
	}
	if ((void *)(ip + 1) + XLB_DSR_OPT4_LEN > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(ip, &head->ip, sizeof(struct iphdr));
	opt = (void *)(ip + 1);
	opt->type = XLB_DSR_OPT4_TYPE;
	opt->len = XLB_DSR_OPT4_LEN;
	opt->port = svc_port;
	opt->addr = svc_addr->v4;
	ip->check = dsr_ipv4_csum((const __u16 *)ip);

	pkt->l3_len += XLB_DSR_OPT4_LEN;
	pkt->l4_off += XLB_DSR_OPT4_LEN;
	return 0;
}

static __always_inline int dsr_insert_ipv6(struct xdp_md *ctx, struct xlb_pkt *pkt, const union xlb_addr *svc_addr,
					   __be16 svc_port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	union dsr_head *scratch = xlb_dsr_scratch_get();
	struct xlb_dsr_doh6 *doh;
	struct dsr_head6 *head;
	struct ipv6hdr *ip6;
	__u32 l2 = pkt->l3_off;

	if (!scratch)
		return -XLB_DROP_UNSUPPORTED;
	head = &scratch->v6;

	if (l2 != ETH_HLEN && l2 != XLB_ETH_VLAN_HLEN)
		return -XLB_DROP_UNSUPPORTED;
	if (data + XLB_ETH_VLAN_HLEN + sizeof(struct ipv6hdr) > data_end)
		return -XLB_DROP_MALFORMED;
	__builtin_memcpy(head->l2, data, XLB_ETH_VLAN_HLEN);
	if (l2 == ETH_HLEN)
		__builtin_memcpy(&head->ip6, data + ETH_HLEN, sizeof(struct ipv6hdr));
	else
		__builtin_memcpy(&head->ip6, data + XLB_ETH_VLAN_HLEN, sizeof(struct ipv6hdr));
	/* A hop-by-hop header must stay first; we do not insert in front of it. */
	if (head->ip6.nexthdr == IPPROTO_HOPOPTS)
		return -XLB_DROP_UNSUPPORTED;

	if (bpf_xdp_adjust_head(ctx, -(int)XLB_DSR_DOH6_LEN))
		return -XLB_DROP_UNSUPPORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	if (l2 == ETH_HLEN) {
		if (data + ETH_HLEN > data_end)
			return -XLB_DROP_MALFORMED;
		__builtin_memcpy(data, head->l2, ETH_HLEN);
		ip6 = data + ETH_HLEN;
	} else {
		if (data + XLB_ETH_VLAN_HLEN > data_end)
			return -XLB_DROP_MALFORMED;
		__builtin_memcpy(data, head->l2, XLB_ETH_VLAN_HLEN);
		ip6 = data + XLB_ETH_VLAN_HLEN;
	}
	doh = (void *)(ip6 + 1);
	if ((void *)(doh + 1) > data_end)
		return -XLB_DROP_MALFORMED;
	doh->nexthdr = head->ip6.nexthdr;
	doh->hdrlen = (XLB_DSR_DOH6_LEN - 8) / 8;
	doh->opt_type = XLB_DSR_OPT6_TYPE;
	doh->opt_len = XLB_DSR_OPT6_LEN;
	__builtin_memcpy(doh->addr, svc_addr->bytes, 16);
	doh->port = svc_port;
	doh->pad1[0] = 0;
	doh->pad1[1] = 0;
	head->ip6.nexthdr = IPPROTO_DSTOPTS;
	head->ip6.payload_len = bpf_htons(bpf_ntohs(head->ip6.payload_len) + XLB_DSR_DOH6_LEN);
	__builtin_memcpy(ip6, &head->ip6, sizeof(struct ipv6hdr));

	pkt->l3_len += XLB_DSR_DOH6_LEN;
	pkt->l4_off += XLB_DSR_DOH6_LEN;
	pkt->ipv6_dstopts = 1;
	return 0;
}

static __always_inline int dsr_insert(struct xdp_md *ctx, struct xlb_pkt *pkt, const union xlb_addr *svc_addr,
				      __be16 svc_port)
{
	if (pkt->tuple.family == XLB_AF_INET)
		return dsr_insert_ipv4(ctx, pkt, svc_addr, svc_port);
	return dsr_insert_ipv6(ctx, pkt, svc_addr, svc_port);
}

#endif
