/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Address/port translation of a parsed skb in place, for tc programs (nat.h's nat_rewrite serves XDP,
 * which sees finished bytes), and sending an skb back out of the device it came in by.
 *
 * The L4 checksum goes through the kernel's helper, because only the kernel knows how the skb carries it:
 * what a pod sends reaches the host side of its veth with CHECKSUM_PARTIAL (its L4 field holds only the
 * pseudo-header sum; whoever transmits it last adds the rest), which bpf_l4_csum_replace knows to update
 * the other way round, and to leave alone for a port change; a received CHECKSUM_COMPLETE skb has its
 * skb->csum kept right. Two calls at most, each given the whole difference (addresses: pseudo-header;
 * ports): the differences are summed here. Everything else — the bytes, and the IPv4 header checksum,
 * which is never offloaded — is written directly: each helper call costs more than the whole of that
 * (bench/east-west/tc.ts measured one helper call per field at twice the cost of the rest of a packet).
 */
#ifndef XLB_SKB_NAT_H
#define XLB_SKB_NAT_H

#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "common.h"
#include "csum.h"
#include "parse.h"

/* Where the packet's L4 checksum is (0: none to update) and how bpf_l4_csum_replace must treat it. */
struct skb_csum {
	__u32 off;
	__u64 flags;
};

static __always_inline struct skb_csum skb_l4_csum(const struct xlb_pkt *pkt)
{
	struct skb_csum csum = {};

	/* A later fragment has no L4 header; its first fragment's checksum covers the whole datagram. */
	if (pkt->frag == XLB_FRAG_LATER)
		return csum;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		csum.off = xlb_l4_off(pkt) + offsetof(struct tcphdr, check);
	} else if (pkt->tuple.proto == IPPROTO_UDP) {
		csum.off = xlb_l4_off(pkt) + offsetof(struct udphdr, check);
		csum.flags = BPF_F_MARK_MANGLED_0; /* IPv4 "no checksum" stays 0; a computed 0 becomes 0xffff */
	}
	/* SCTP's CRC32c covers no pseudo-header (and its ports never change here): nothing to update. */
	if (csum.off && pkt->tuple.family == XLB_AF_INET6)
		csum.flags |= BPF_F_IPV6;
	return csum;
}

/* The one's complement difference of replacing the 32-bit word `from` by `to` (RFC 1624), added to *sum. */
static __always_inline void skb_csum_diff32(__u64 *sum, __u32 from, __u32 to)
{
	*sum += (__u32)~from;
	*sum += to;
}

static __always_inline void skb_csum_diff_addr(__u64 *sum, __u8 family, const union xlb_addr *from, const union xlb_addr *to)
{
	skb_csum_diff32(sum, from->v6[0], to->v6[0]);
	if (family == XLB_AF_INET)
		return;
	skb_csum_diff32(sum, from->v6[1], to->v6[1]);
	skb_csum_diff32(sum, from->v6[2], to->v6[2]);
	skb_csum_diff32(sum, from->v6[3], to->v6[3]);
}

/* A 64-bit sum of 32-bit terms folded back to 32 bits with its carries: the __wsum the helper takes. */
static __always_inline __u32 skb_csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__u32)sum;
}

/*
 * Give the packet source (saddr, sport) and destination (daddr, dport), writing only what changes and
 * keeping every checksum right; pkt->tuple follows the packet. A later fragment carries no ports: its
 * addresses change alone. SCTP ports cannot change without recomputing its CRC32c.
 */
static __always_inline int skb_nat_rewrite(struct __sk_buff *skb, struct xlb_pkt *pkt, const union xlb_addr *saddr,
					   __be16 sport, const union xlb_addr *daddr, __be16 dport)
{
	struct xlb_tuple *t = &pkt->tuple;
	struct skb_csum csum = skb_l4_csum(pkt);
	int ports = pkt->frag != XLB_FRAG_LATER &&
		    (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP);
	int new_saddr = !xlb_addr_equal(saddr, &t->saddr);
	int new_daddr = !xlb_addr_equal(daddr, &t->daddr);
	int new_ports = ports && (sport != t->sport || dport != t->dport);
	void *data, *data_end;
	__u64 pseudo = 0;
	__be16 *l4;

	if (t->proto == IPPROTO_SCTP && (sport != t->sport || dport != t->dport))
		return -XLB_DROP_UNSUPPORTED;
	if (new_saddr)
		skb_csum_diff_addr(&pseudo, t->family, &t->saddr, saddr);
	if (new_daddr)
		skb_csum_diff_addr(&pseudo, t->family, &t->daddr, daddr);
	if (csum.off && (new_saddr || new_daddr) &&
	    bpf_l4_csum_replace(skb, csum.off, 0, skb_csum_fold64(pseudo), csum.flags | BPF_F_PSEUDO_HDR))
		return -XLB_DROP_UNSUPPORTED;
	if (csum.off && new_ports) {
		__u64 diff = 0;

		/* both ports are one 32-bit word, as loaded */
		skb_csum_diff32(&diff, t->sport | (__u32)t->dport << 16, sport | (__u32)dport << 16);
		if (bpf_l4_csum_replace(skb, csum.off, 0, skb_csum_fold64(diff), csum.flags & ~BPF_F_IPV6))
			return -XLB_DROP_UNSUPPORTED;
	}
	/* the helpers may have moved the packet: its pointers are taken afresh */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (t->family == XLB_AF_INET) {
		struct iphdr *ip = data + xlb_l3_off(pkt);

		if ((void *)(ip + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		if (new_saddr || new_daddr)
			xlb_csum_replace4x2(&ip->check, ip->saddr, saddr->v4, ip->daddr, daddr->v4);
		ip->saddr = saddr->v4;
		ip->daddr = daddr->v4;
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		if (new_saddr)
			__builtin_memcpy(&ip6->saddr, saddr->bytes, 16);
		if (new_daddr)
			__builtin_memcpy(&ip6->daddr, daddr->bytes, 16);
	}
	if (new_ports) {
		l4 = data + xlb_l4_off(pkt);
		if ((void *)(l4 + 2) > data_end)
			return -XLB_DROP_MALFORMED;
		l4[0] = sport;
		l4[1] = dport;
	}
	t->saddr = *saddr;
	t->daddr = *daddr;
	t->sport = sport;
	t->dport = dport;
	return 0;
}

/*
 * Send the packet back out of the device it arrived on, to whoever sent it: the Ethernet addresses
 * swap (it goes to its sender's MAC, from the one it was sent to). A tc verdict.
 */
static __always_inline int skb_send_back(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return bpf_redirect(skb->ifindex, 0);
}

#endif
