/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Address/port translation of a parsed packet in place (DNAT to a backend, SNAT to the node, and the
 * reverse for replies), with incremental checksum updates, and the SNAT port table.
 */
#ifndef XLB_NAT_H
#define XLB_NAT_H

#include "common.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"

#define XLB_NAT_PORT_ATTEMPTS 8

/* Replies coming back from backends to a node SNAT port, keyed by their tuple as it arrives. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct xlb_tuple);
	__type(value, struct nat_reverse);
} xlb_snat SEC(".maps");

/* A port claim being built (reply tuple → reverse translation), off the stack the paths share. */
struct nat_claim {
	struct nat_reverse reverse;
	struct xlb_tuple reply;
};

XLB_SCRATCH(xlb_nat_scratch, struct nat_claim)

/* The L4 checksum field, or NULL for protocols without one we can update (SCTP's CRC32c does not
 * cover addresses, and its ports never change here). */
static __always_inline __sum16 *nat_l4_csum(void *data, void *data_end, const struct xlb_pkt *pkt)
{
	void *l4 = data + xlb_l4_off(pkt);

	if (pkt->frag == XLB_FRAG_LATER)
		return NULL;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return NULL;
		return &tcp->check;
	}
	if (pkt->tuple.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return NULL;
		/* IPv4 UDP without a checksum stays without one. */
		if (pkt->tuple.family == XLB_AF_INET && udp->check == 0)
			return NULL;
		return &udp->check;
	}
	return NULL;
}

/*
 * Rewrite source and destination (address, port) of the packet, keeping every checksum right.
 * pkt->tuple follows the packet. SCTP ports cannot change without recomputing its CRC32c.
 */
static __always_inline int nat_rewrite(void *data, void *data_end, struct xlb_pkt *pkt, const union xlb_addr *saddr,
				       __be16 sport, const union xlb_addr *daddr, __be16 dport)
{
	struct xlb_tuple *t = &pkt->tuple;
	__sum16 *l4_csum = nat_l4_csum(data, data_end, pkt);
	__be16 *ports = data + xlb_l4_off(pkt);
	/* DSR keeps the client as the source (passing the packet's own): half the work */
	int source_changes = saddr != &t->saddr || sport != t->sport;

	if (t->proto == IPPROTO_SCTP && (sport != t->sport || dport != t->dport))
		return -XLB_DROP_UNSUPPORTED;

	if (t->family == XLB_AF_INET) {
		struct iphdr *ip = data + xlb_l3_off(pkt);

		if ((void *)(ip + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		if (source_changes) {
			xlb_csum_replace4(&ip->check, ip->saddr, saddr->v4);
			ip->saddr = saddr->v4;
		}
		xlb_csum_replace4(&ip->check, ip->daddr, daddr->v4);
		ip->daddr = daddr->v4;
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		if (source_changes)
			__builtin_memcpy(&ip6->saddr, saddr->bytes, 16);
		__builtin_memcpy(&ip6->daddr, daddr->bytes, 16);
	}
	if (l4_csum) {
		if (source_changes)
			xlb_csum_replace_addr(l4_csum, t->family, &t->saddr, saddr);
		xlb_csum_replace_addr(l4_csum, t->family, &t->daddr, daddr);
	}
	if (pkt->frag != XLB_FRAG_LATER && (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP)) {
		if ((void *)(ports + 2) > data_end)
			return -XLB_DROP_MALFORMED;
		if (l4_csum) {
			if (source_changes)
				xlb_csum_replace2(l4_csum, ports[0], sport);
			xlb_csum_replace2(l4_csum, ports[1], dport);
		}
		ports[0] = sport;
		ports[1] = dport;
	}
	if (l4_csum && t->proto == IPPROTO_UDP && *l4_csum == 0)
		*l4_csum = 0xffff;
	t->saddr = *saddr;
	t->daddr = *daddr;
	t->sport = sport;
	t->dport = dport;
	return 0;
}

/* Claim a node port for a new SNAT flow: the reply tuple must be unique, so try a few ports. */
static __always_inline int nat_claim_port(const struct xlb_tuple *client, const struct lb_backend *backend,
					  const union xlb_addr *node, const struct xlb_config *cfg, __be16 *port)
{
	__u32 range = cfg->nat_port_max >= cfg->nat_port_min ? cfg->nat_port_max - cfg->nat_port_min + 1 : 1;
	__u32 start = bpf_get_prandom_u32();
	struct nat_claim *claim;
	int i;

	claim = xlb_nat_scratch_get();
	if (!claim)
		return -XLB_DROP_NAT_NO_PORT;
	__builtin_memset(claim, 0, sizeof(*claim));
	claim->reverse.client = client->saddr;
	claim->reverse.service = client->daddr;
	claim->reverse.client_port = client->sport;
	claim->reverse.service_port = client->dport;
	claim->reply.saddr = backend->addr;
	claim->reply.daddr = *node;
	claim->reply.sport = backend->port;
	claim->reply.proto = client->proto;
	claim->reply.family = client->family;
	for (i = 0; i < XLB_NAT_PORT_ATTEMPTS; i++) {
		claim->reply.dport = bpf_htons(cfg->nat_port_min + (start + i * 7919) % range);
		if (bpf_map_update_elem(&xlb_snat, &claim->reply, &claim->reverse, BPF_NOEXIST) == 0) {
			*port = claim->reply.dport;
			return 0;
		}
	}
	return -XLB_DROP_NAT_NO_PORT;
}

#endif
