/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Port unreachable for a service without backends, answered from tc (icmp.h builds XDP's over the
 * frame): what kube-proxy's REJECT rule sends, so a pod's connect() fails at once with ECONNREFUSED
 * instead of timing out. The answer is built whole in per-CPU scratch — Ethernet header, IP header,
 * ICMP header, and the offending packet's IP header (options and extension headers left out) with the
 * first 8 bytes of its L4 header, as RFC 792 / RFC 4443 ask — then the skb is cut or grown to its size,
 * overwritten with it, and sent back out of the device it came in by. It comes from the address the
 * packet was sent to, and passes the one ICMP rate limit of every xlb answer (ratelimit.h).
 */
#ifndef XLB_ICMP_SKB_H
#define XLB_ICMP_SKB_H

#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "common.h"
#include "csum.h"
#include "parse.h"
#include "ratelimit.h"

#define XLB_ICMP_SKB_TTL 64
#define XLB_ICMP_SKB_L4_QUOTE 8

struct icmp_skb_answer4 {
	struct ethhdr eth;
	struct iphdr ip;
	struct icmphdr icmp;
	struct iphdr quote_ip;
	__u8 quote_l4[XLB_ICMP_SKB_L4_QUOTE];
} __attribute__((packed));

struct icmp_skb_answer6 {
	struct ethhdr eth;
	struct ipv6hdr ip6;
	struct icmp6hdr icmp6;
	struct ipv6hdr quote_ip6;
	__u8 quote_l4[XLB_ICMP_SKB_L4_QUOTE];
} __attribute__((packed));

/* Room for either answer, word-aligned for bpf_csum_diff: the IP header starts 2 bytes in. */
struct icmp_skb_room {
	__u8 pad[2];
	union {
		struct icmp_skb_answer4 v4;
		struct icmp_skb_answer6 v6;
	};
};

XLB_SCRATCH(xlb_icmp_skb, struct icmp_skb_room)

/* A member of a packed answer as the words bpf_csum_diff sums (the room keeps them 4-byte aligned). */
#define ICMP_SKB_WORDS(answer, type, member) ((__be32 *)((__u8 *)(answer) + offsetof(type, member)))

/* The IPv6 pseudo-header's words after the addresses. */
struct icmp_skb_pseudo6 {
	__be32 len;
	__be32 nexthdr;
};

static __always_inline void icmp_skb_turn_eth(struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
}

static __always_inline int icmp_skb_unreachable4(struct __sk_buff *skb, const struct xlb_pkt *pkt, struct icmp_skb_answer4 *a)
{
	__u32 options = pkt->l3_len - sizeof(struct iphdr);

	if (bpf_skb_load_bytes(skb, 0, &a->eth, sizeof(a->eth)) ||
	    bpf_skb_load_bytes(skb, xlb_l3_off(pkt), &a->quote_ip, sizeof(a->quote_ip)) ||
	    bpf_skb_load_bytes(skb, xlb_l4_off(pkt), a->quote_l4, sizeof(a->quote_l4)))
		return -XLB_DROP_NO_BACKEND;
	/* the quote without its options: lengths and checksum made to agree */
	a->quote_ip.ihl = 5;
	a->quote_ip.tot_len = bpf_htons(bpf_ntohs(a->quote_ip.tot_len) - options);
	a->quote_ip.check = 0;
	a->quote_ip.check = xlb_csum_fold(bpf_csum_diff(NULL, 0, ICMP_SKB_WORDS(a, struct icmp_skb_answer4, quote_ip), sizeof(a->quote_ip), 0));
	icmp_skb_turn_eth(&a->eth);
	__builtin_memset(&a->ip, 0, sizeof(a->ip));
	a->ip.version = 4;
	a->ip.ihl = 5;
	a->ip.tot_len = bpf_htons(sizeof(*a) - sizeof(a->eth));
	a->ip.ttl = XLB_ICMP_SKB_TTL;
	a->ip.protocol = IPPROTO_ICMP;
	a->ip.saddr = a->quote_ip.daddr;
	a->ip.daddr = a->quote_ip.saddr;
	a->ip.check = xlb_csum_fold(bpf_csum_diff(NULL, 0, ICMP_SKB_WORDS(a, struct icmp_skb_answer4, ip), sizeof(a->ip), 0));
	__builtin_memset(&a->icmp, 0, sizeof(a->icmp));
	a->icmp.type = ICMP_DEST_UNREACH;
	a->icmp.code = ICMP_PORT_UNREACH;
	a->icmp.checksum = xlb_csum_fold(bpf_csum_diff(NULL, 0, ICMP_SKB_WORDS(a, struct icmp_skb_answer4, icmp),
						       sizeof(*a) - offsetof(struct icmp_skb_answer4, icmp), 0));
	if (bpf_skb_change_tail(skb, sizeof(*a), 0) || bpf_skb_store_bytes(skb, 0, a, sizeof(*a), 0))
		return -XLB_DROP_NO_BACKEND;
	return 0;
}

static __always_inline int icmp_skb_unreachable6(struct __sk_buff *skb, const struct xlb_pkt *pkt, struct icmp_skb_answer6 *a)
{
	__u32 extensions = pkt->l3_len - sizeof(struct ipv6hdr);
	struct icmp_skb_pseudo6 pseudo;
	__u32 sum;

	if (bpf_skb_load_bytes(skb, 0, &a->eth, sizeof(a->eth)) ||
	    bpf_skb_load_bytes(skb, xlb_l3_off(pkt), &a->quote_ip6, sizeof(a->quote_ip6)) ||
	    bpf_skb_load_bytes(skb, xlb_l4_off(pkt), a->quote_l4, sizeof(a->quote_l4)))
		return -XLB_DROP_NO_BACKEND;
	/* the quote without its extension headers: next header and length made to agree */
	a->quote_ip6.nexthdr = pkt->tuple.proto;
	a->quote_ip6.payload_len = bpf_htons(bpf_ntohs(a->quote_ip6.payload_len) - extensions);
	icmp_skb_turn_eth(&a->eth);
	__builtin_memset(&a->ip6, 0, sizeof(a->ip6));
	a->ip6.version = 6;
	a->ip6.payload_len = bpf_htons(sizeof(*a) - offsetof(struct icmp_skb_answer6, icmp6));
	a->ip6.nexthdr = IPPROTO_ICMPV6;
	a->ip6.hop_limit = XLB_ICMP_SKB_TTL;
	a->ip6.saddr = a->quote_ip6.daddr;
	a->ip6.daddr = a->quote_ip6.saddr;
	__builtin_memset(&a->icmp6, 0, sizeof(a->icmp6));
	a->icmp6.icmp6_type = ICMPV6_DEST_UNREACH;
	a->icmp6.icmp6_code = ICMPV6_PORT_UNREACH;
	pseudo.len = bpf_htonl(sizeof(*a) - offsetof(struct icmp_skb_answer6, icmp6));
	pseudo.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(NULL, 0, ICMP_SKB_WORDS(a, struct icmp_skb_answer6, ip6.saddr), 32, 0);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&pseudo, sizeof(pseudo), sum);
	sum = bpf_csum_diff(NULL, 0, ICMP_SKB_WORDS(a, struct icmp_skb_answer6, icmp6), sizeof(*a) - offsetof(struct icmp_skb_answer6, icmp6), sum);
	a->icmp6.icmp6_cksum = xlb_csum_fold(sum);
	if (bpf_skb_change_tail(skb, sizeof(*a), 0) || bpf_skb_store_bytes(skb, 0, a, sizeof(*a), 0))
		return -XLB_DROP_NO_BACKEND;
	return 0;
}

/*
 * The packet (as it arrived, untranslated) becomes port unreachable to its sender: a tc verdict in
 * *action, or the negative drop reason when it is not answered (over the rate limit; a GSO packet,
 * which a first packet never is; headers that cannot be quoted). A global function: verified once.
 */
__attribute__((noinline)) int xlb_icmp_skb_reject(struct __sk_buff *skb, const struct xlb_pkt *pkt, int *action)
{
	struct icmp_skb_room *room = xlb_icmp_skb_get();
	int err;

	if (!pkt || !action || !room)
		return -XLB_DROP_NO_BACKEND;
	if (skb->gso_size || pkt->l3_off != sizeof(struct ethhdr) || pkt->frag == XLB_FRAG_LATER)
		return -XLB_DROP_NO_BACKEND;
	if (!xlb_icmp_allowed())
		return -XLB_DROP_ICMP_RATE_LIMITED;
	if (pkt->tuple.family == XLB_AF_INET)
		err = icmp_skb_unreachable4(skb, pkt, &room->v4);
	else
		err = icmp_skb_unreachable6(skb, pkt, &room->v6);
	if (err)
		return err;
	*action = bpf_redirect(skb->ifindex, 0);
	return 0;
}

#endif
