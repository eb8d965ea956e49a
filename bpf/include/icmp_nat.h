/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ICMP errors about translated flows (fragmentation needed, unreachable, time exceeded), so path MTU
 * discovery works through the load balancer: the error is sent where the quoted packet came from, with
 * the quoted headers translated back to what that host sent.
 * - about a packet we sent to a backend with SNAT: it arrives at the node address; it goes to the client,
 *   quoting client → service;
 * - about a reply to a client (quoting service → client): it arrives at the service address; it goes to
 *   the flow's backend, quoting what the backend sent (backend → client, or backend → node:SNAT port).
 */
#ifndef XLB_ICMP_NAT_H
#define XLB_ICMP_NAT_H

#include "common.h"
#include "conntrack.h"
#include "csum.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"

/* The quoted packet of an ICMP error: its tuple, and where its headers sit. */
struct icmp_quote {
	struct xlb_tuple tuple;
	__u32 ip_off;
	__u32 l4_off;
};

/* Where the outer IP packet ends by its own length (offset from the frame's start), 0 if unreadable. */
static __always_inline __u32 icmp_outer_end(void *data, void *data_end, const struct xlb_pkt *pkt)
{
	if (pkt->tuple.family == XLB_AF_INET) {
		struct iphdr *ip = data + xlb_l3_off(pkt);

		return (void *)(ip + 1) > data_end ? 0 : xlb_l3_off(pkt) + bpf_ntohs(ip->tot_len);
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		return (void *)(ip6 + 1) > data_end ? 0 : xlb_l3_off(pkt) + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	}
}

/*
 * The quoted packet's tuple, read only from bytes inside the outer packet's own length: bytes after it
 * (padding, or left there on purpose) are no part of the error, and its checksum does not cover them.
 */
static __always_inline int icmp_parse_quote(void *data, void *data_end, const struct xlb_pkt *pkt, struct icmp_quote *q)
{
	__u32 outer_end = icmp_outer_end(data, data_end, pkt);
	__be16 *ports;

	q->ip_off = xlb_l4_off(pkt) + 8;
	if (pkt->tuple.family == XLB_AF_INET) {
		struct iphdr *ip = data + (q->ip_off & 0x3ff);

		if ((void *)(ip + 1) > data_end || ip->ihl != 5)
			return -XLB_DROP_ICMP_QUOTE;
		q->tuple.family = XLB_AF_INET;
		q->tuple.proto = ip->protocol;
		q->tuple.saddr.v4 = ip->saddr;
		q->tuple.daddr.v4 = ip->daddr;
		q->l4_off = q->ip_off + sizeof(*ip);
	} else {
		struct ipv6hdr *ip6 = data + (q->ip_off & 0x3ff);

		if ((void *)(ip6 + 1) > data_end)
			return -XLB_DROP_ICMP_QUOTE;
		q->tuple.family = XLB_AF_INET6;
		q->tuple.proto = ip6->nexthdr;
		__builtin_memcpy(q->tuple.saddr.bytes, &ip6->saddr, 16);
		__builtin_memcpy(q->tuple.daddr.bytes, &ip6->daddr, 16);
		q->l4_off = q->ip_off + sizeof(*ip6);
	}
	if (q->tuple.proto != IPPROTO_TCP && q->tuple.proto != IPPROTO_UDP)
		return -XLB_DROP_ICMP_QUOTE;
	if (q->l4_off + 2 * sizeof(__be16) > outer_end)
		return -XLB_DROP_ICMP_QUOTE;
	ports = data + (q->l4_off & 0x3ff);
	if ((void *)(ports + 2) > data_end)
		return -XLB_DROP_ICMP_QUOTE;
	q->tuple.sport = ports[0];
	q->tuple.dport = ports[1];
	return 0;
}

/*
 * Rewrite the outer destination and the quoted source/destination, keeping the outer IPv4 header,
 * the quoted IPv4 header and the ICMP checksum (with ICMPv6's pseudo-header) right.
 */
static __always_inline int icmp_nat_rewrite(void *data, void *data_end, struct xlb_pkt *pkt, const struct icmp_quote *q,
					    const union xlb_addr *outer_daddr, const union xlb_addr *saddr, __be16 sport,
					    const union xlb_addr *daddr, __be16 dport)
{
	struct icmphdr *icmp = data + xlb_l4_off(pkt);
	__be16 *ports = data + (q->l4_off & 0x3ff);
	__u8 family = pkt->tuple.family;

	if ((void *)(icmp + 1) > data_end || (void *)(ports + 2) > data_end)
		return -XLB_DROP_MALFORMED;

	if (family == XLB_AF_INET) {
		struct iphdr *outer = data + xlb_l3_off(pkt);
		struct iphdr *inner = data + (q->ip_off & 0x3ff);
		__sum16 inner_check;

		if ((void *)(outer + 1) > data_end || (void *)(inner + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		xlb_csum_replace4(&outer->check, outer->daddr, outer_daddr->v4);
		outer->daddr = outer_daddr->v4;
		inner_check = inner->check;
		xlb_csum_replace4(&inner->check, inner->saddr, saddr->v4);
		xlb_csum_replace4(&inner->check, inner->daddr, daddr->v4);
		xlb_csum_replace4(&icmp->checksum, inner->saddr, saddr->v4);
		xlb_csum_replace4(&icmp->checksum, inner->daddr, daddr->v4);
		xlb_csum_replace2(&icmp->checksum, inner_check, inner->check);
		inner->saddr = saddr->v4;
		inner->daddr = daddr->v4;
	} else {
		struct ipv6hdr *outer = data + xlb_l3_off(pkt);
		struct ipv6hdr *inner = data + (q->ip_off & 0x3ff);

		if ((void *)(outer + 1) > data_end || (void *)(inner + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		xlb_csum_replace16(&icmp->checksum, pkt->tuple.daddr.v6, outer_daddr->v6);
		xlb_csum_replace16(&icmp->checksum, q->tuple.saddr.v6, saddr->v6);
		xlb_csum_replace16(&icmp->checksum, q->tuple.daddr.v6, daddr->v6);
		__builtin_memcpy(&outer->daddr, outer_daddr->bytes, 16);
		__builtin_memcpy(&inner->saddr, saddr->bytes, 16);
		__builtin_memcpy(&inner->daddr, daddr->bytes, 16);
	}
	xlb_csum_replace2(&icmp->checksum, ports[0], sport);
	xlb_csum_replace2(&icmp->checksum, ports[1], dport);
	ports[0] = sport;
	ports[1] = dport;
	pkt->tuple.daddr = *outer_daddr;
	return 0;
}

/* 1 when the error was about one of our flows and has been translated (pkt->tuple.daddr is its new
 * destination), 0 when it is not ours (the stack takes it), negative on a malformed quote. */
static __always_inline int icmp_nat_translate(void *data, void *data_end, struct xlb_pkt *pkt,
					      const struct xlb_config *cfg)
{
	struct xlb_tuple *key = xlb_key_scratch_get();
	struct icmp_quote q = {};
	struct ct_bucket *bucket;
	union ct_value *value;
	struct ct_entry *ct;
	struct ct_ref ref;
	int err = icmp_parse_quote(data, data_end, pkt, &q);

	if (err || !key)
		return 0;
	/* Quoting node:SNAT port → backend: a packet we sent with SNAT; its reply tuple is a reverse entry. */
	tuple_reverse(&q.tuple, key);
	key->kind = XLB_TUPLE_SNAT_REPLY;
	value = ct_lookup_reply(key, cfg->ct_seed, xlb_now(), &ref, &bucket);
	if (value && bucket) {
		struct nat_reverse *reverse = &value->reverse;

		err = icmp_nat_rewrite(data, data_end, pkt, &q, &reverse->client, &reverse->client, reverse->client_port,
				       &reverse->service, reverse->service_port);
		if (!err && !ct_unchanged(bucket, &ref))
			err = -XLB_DROP_CT_BUSY;
		return err ? err : 1;
	}
	/* Quoting service → client: a reply of a flow we track; back to its backend as the backend sent it. */
	key->kind = XLB_TUPLE_FLOW;
	value = ct_lookup_flow(key, cfg->ct_seed, xlb_now(), &ref, &bucket);
	if (!value || !bucket)
		return 0;
	ct = &value->entry;
	if (ct->flags & XLB_CT_F_SNAT)
		err = icmp_nat_rewrite(data, data_end, pkt, &q, &ct->slot.backend.addr, &ct->slot.backend.addr, ct->slot.backend.port,
				       &ct->nat_addr, ct->nat_port);
	else
		err = icmp_nat_rewrite(data, data_end, pkt, &q, &ct->slot.backend.addr, &ct->slot.backend.addr, ct->slot.backend.port,
				       &q.tuple.daddr, q.tuple.dport);
	if (!err && !ct_unchanged(bucket, &ref))
		err = -XLB_DROP_CT_BUSY;
	return err ? err : 1;
}

#endif
