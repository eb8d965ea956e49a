/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Address/port translation of a parsed skb in place, for tc programs (nat.h's nat_rewrite serves XDP,
 * which sees finished bytes), and sending an skb back out of the device it came in by.
 *
 * Edits go through the kernel's helpers, never direct writes with csum.h: what a pod sends reaches the
 * host side of its veth with CHECKSUM_PARTIAL (its L4 field holds only the pseudo-header sum; whoever
 * transmits it last adds the rest), which bpf_l4_csum_replace knows to update the other way round,
 * leaving port changes to that last step; and a received CHECKSUM_COMPLETE skb keeps its skb->csum
 * right. The same calls are right for a packet with a finished checksum (CHECKSUM_NONE, UNNECESSARY).
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

/* One address of the packet (at addr_off) from *from to *to, with the IPv4 header checksum and the L4
 * checksum's pseudo-header. */
static __always_inline int skb_nat_addr(struct __sk_buff *skb, const struct xlb_pkt *pkt, __u32 addr_off,
					struct skb_csum csum, const union xlb_addr *from, const union xlb_addr *to)
{
	if (pkt->tuple.family == XLB_AF_INET) {
		if (csum.off && bpf_l4_csum_replace(skb, csum.off, from->v4, to->v4, csum.flags | BPF_F_PSEUDO_HDR | 4))
			return -XLB_DROP_UNSUPPORTED;
		if (bpf_l3_csum_replace(skb, xlb_l3_off(pkt) + offsetof(struct iphdr, check), from->v4, to->v4, 4) ||
		    bpf_skb_store_bytes(skb, addr_off, &to->v4, 4, 0))
			return -XLB_DROP_UNSUPPORTED;
		return 0;
	}
	if (csum.off) {
		__s64 diff = bpf_csum_diff((__be32 *)from->v6, 16, (__be32 *)to->v6, 16, 0);

		if (bpf_l4_csum_replace(skb, csum.off, 0, diff, csum.flags | BPF_F_PSEUDO_HDR))
			return -XLB_DROP_UNSUPPORTED;
	}
	if (bpf_skb_store_bytes(skb, addr_off, to->v6, 16, 0))
		return -XLB_DROP_UNSUPPORTED;
	return 0;
}

/* One port of the packet (at port_off) from `from` to `to`, with the L4 checksum. */
static __always_inline int skb_nat_port(struct __sk_buff *skb, __u32 port_off, struct skb_csum csum, __be16 from, __be16 to)
{
	if (csum.off && bpf_l4_csum_replace(skb, csum.off, from, to, (csum.flags & ~BPF_F_IPV6) | 2))
		return -XLB_DROP_UNSUPPORTED;
	if (bpf_skb_store_bytes(skb, port_off, &to, 2, 0))
		return -XLB_DROP_UNSUPPORTED;
	return 0;
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
	int v4 = t->family == XLB_AF_INET;
	__u32 l3 = xlb_l3_off(pkt);
	__u32 l4 = xlb_l4_off(pkt);
	int ports = pkt->frag != XLB_FRAG_LATER &&
		    (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP);
	int err;

	if (t->proto == IPPROTO_SCTP && (sport != t->sport || dport != t->dport))
		return -XLB_DROP_UNSUPPORTED;
	if (!xlb_addr_equal(saddr, &t->saddr)) {
		err = skb_nat_addr(skb, pkt, l3 + (v4 ? offsetof(struct iphdr, saddr) : offsetof(struct ipv6hdr, saddr)),
				   csum, &t->saddr, saddr);
		if (err)
			return err;
	}
	if (!xlb_addr_equal(daddr, &t->daddr)) {
		err = skb_nat_addr(skb, pkt, l3 + (v4 ? offsetof(struct iphdr, daddr) : offsetof(struct ipv6hdr, daddr)),
				   csum, &t->daddr, daddr);
		if (err)
			return err;
	}
	if (ports && sport != t->sport) {
		err = skb_nat_port(skb, l4, csum, t->sport, sport);
		if (err)
			return err;
	}
	if (ports && dport != t->dport) {
		err = skb_nat_port(skb, l4 + 2, csum, t->dport, dport);
		if (err)
			return err;
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
