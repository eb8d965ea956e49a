/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Address/port translation of a parsed packet in place (DNAT to a backend, SNAT to the node, and the
 * reverse for replies), with incremental checksum updates, and SNAT port claims. A claimed port's
 * reverse translation lives in conntrack, keyed by the reply tuple (kind XLB_TUPLE_SNAT_REPLY): the
 * same inline table, not a kernel hash map whose inserts (and evictions, once full) cost a new SNAT
 * flow over a microsecond here.
 */
#ifndef XLB_NAT_H
#define XLB_NAT_H

#include "common.h"
#include "conntrack.h"
#include "csum.h"
#include "maps.h"
#include "metrics.h"
#include "parse.h"

/* Ports tried before a new SNAT flow is refused: with the range half taken, 8 tries fail for 1 flow
 * in 256; 32 for 1 in 4e9 (a try costs a conntrack lookup, and only crowded ranges need many). */
#define XLB_NAT_PORT_ATTEMPTS 32
/* Slots of xlb_nat_full, each remembering one exhausted range (a backend address:port, from one node
 * address, one protocol) for about a second. */
#define XLB_NAT_FULL_SLOTS 1024

/*
 * Ranges found exhausted lately: a reply tuple's hash without the port (ct_reply_hash, | 1) → until when,
 * in xlb_coarse_sec units (hash << 32 | until). Under a flood of new flows to a backend whose ports are
 * all taken, every refused flow would otherwise pay XLB_NAT_PORT_ATTEMPTS conntrack lookups (cold lines
 * on a busy node, microseconds a packet); while its range is remembered full, a new flow tries one port
 * only: the one placing its reply entry in its own bucket, which the flow's lookup has just read. A port
 * freed meanwhile is found by some of them (and the first that finds one forgets the exhaustion), and
 * the whole range is probed again a second later at the latest.
 * Slots are shared by every CPU: written once a second per exhausted range, a single aligned store.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_NAT_FULL_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} xlb_nat_full SEC(".maps");

/* A port claim being built (reply tuple → reverse translation), off the stack the paths share. */
struct nat_claim {
	union ct_value value;
	struct xlb_tuple reply;
	struct ct_ref ref; /* where the reply entry goes */
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
			xlb_csum_replace4x2(&ip->check, ip->saddr, saddr->v4, ip->daddr, daddr->v4);
			ip->saddr = saddr->v4;
		} else {
			xlb_csum_replace4(&ip->check, ip->daddr, daddr->v4);
		}
		ip->daddr = daddr->v4;
	} else {
		struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);

		if ((void *)(ip6 + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		if (source_changes)
			__builtin_memcpy(&ip6->saddr, saddr->bytes, 16);
		__builtin_memcpy(&ip6->daddr, daddr->bytes, 16);
	}
	if (l4_csum && source_changes && t->family == XLB_AF_INET) {
		xlb_csum_replace4x2(l4_csum, t->saddr.v4, saddr->v4, t->daddr.v4, daddr->v4);
	} else if (l4_csum) {
		if (source_changes)
			xlb_csum_replace_addr(l4_csum, t->family, &t->saddr, saddr);
		xlb_csum_replace_addr(l4_csum, t->family, &t->daddr, daddr);
	}
	if (pkt->frag != XLB_FRAG_LATER && (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP)) {
		if ((void *)(ports + 2) > data_end)
			return -XLB_DROP_MALFORMED;
		if (l4_csum) {
			/* both ports are one 32-bit word */
			if (source_changes)
				xlb_csum_replace4(l4_csum, ports[0] | (__u32)ports[1] << 16, sport | (__u32)dport << 16);
			else
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

/* Store the reverse entry of a free port, sharing the flow's bucket without taking the way the flow's
 * store will take, nor letting the flow's store take its own; a live entry it evicts is counted (and
 * takes its other half with it, ct_store). */
static __always_inline int nat_claimed(struct nat_claim *claim, struct ct_entry *ct, struct ct_ref *flow, __u64 now)
{
	struct ct_ref *ref = &claim->ref;
	int same_bucket = ref->index == flow->index;
	int err;

	if (same_bucket && flow->found)
		ref->keep = flow->way + 1; /* the flow's own entry (expired, or closing and reopened) */
	err = ct_store(&claim->reply, &claim->value, ct_expiry(ct, claim->reply.proto, now), ref, now);
	if (err < 0)
		return -XLB_DROP_NAT_FULL;
	if (err)
		xlb_count(XLB_CT_EVICTED, XLB_DIR_INGRESS, 0);
	if (same_bucket)
		flow->keep = ref->way + 1;
	flow->peer = ct_loc(ref->index, ref->way) + 1; /* the flow's store links the two halves */
	ct->nat_port = claim->reply.dport;
	return 0;
}

/* The slot remembering whether the range of reply tuples hashing to `hash` is exhausted: 1 when it says
 * so now. */
static __always_inline __u64 *nat_full_slot(__u32 hash, __u64 now, int *full)
{
	__u32 index = hash & (XLB_NAT_FULL_SLOTS - 1);
	__u64 *slot = bpf_map_lookup_elem(&xlb_nat_full, &index);

	*full = slot && (__u32)(*slot >> 32) == (hash | 1) && xlb_coarse_sec(now) <= (__u32)*slot;
	return slot;
}

/*
 * A reply entry for a translated flow (*ct holds its backend): the reverse translation (client and
 * service as the client sent them, backend and service ids for purges) and the reply tuple, backend →
 * reply_daddr; its destination port is the caller's to choose.
 */
static __always_inline void nat_fill_claim(struct nat_claim *claim, const struct xlb_tuple *client, const struct ct_entry *ct,
					   const union xlb_addr *reply_daddr)
{
	struct nat_reverse *reverse = &claim->value.reverse;

	reverse->client = client->saddr;
	reverse->service = client->daddr;
	reverse->client_port = client->sport;
	reverse->service_port = client->dport;
	reverse->backend_id = ct->slot.backend_id;
	reverse->service_id = ct->service_id;
	claim->reply.saddr = ct->slot.backend.addr;
	claim->reply.daddr = *reply_daddr;
	claim->reply.sport = ct->slot.backend.port;
	claim->reply.proto = client->proto;
	claim->reply.family = client->family;
	claim->reply.kind = XLB_TUPLE_SNAT_REPLY;
}

/*
 * Claim a node port for a new SNAT flow (its state in *ct: backend, service, node address; `flow`: where
 * ct_lookup_flow said the flow's entry goes): the reply tuple must be unique, so try a few ports. The
 * first is the one that places the reverse entry in the flow's own bucket (ct_place_reply), whose lines
 * the flow's lookup has just read — when the range holds it: a range narrower than the table has
 * buckets reaches only some buckets from each backend, and the offset wraps into the range elsewhere.
 * Either way it is as unpredictable from outside as a random port, both hashes being seeded with the
 * node's secret. The reverse entry lives as long as the flow's would (the two are linked: flow->peer);
 * when it shares the flow's bucket, the flow's store must leave its way alone (flow->keep). A range
 * found exhausted is remembered for a second (xlb_nat_full), so refusing a flow costs one try, not 32.
 */
static __always_inline int nat_claim_port(const struct xlb_tuple *client, struct ct_entry *ct, const struct xlb_config *cfg,
					  __u64 now, struct ct_ref *flow)
{
	__u32 range = cfg->nat_port_max >= cfg->nat_port_min ? cfg->nat_port_max - cfg->nat_port_min + 1 : 1;
	struct nat_claim *claim;
	struct ct_ref *ref;
	__u32 hash, start, stride;
	__u64 *full_slot;
	int i, full;

	claim = xlb_nat_scratch_get();
	if (!claim)
		return -XLB_DROP_NAT_NO_PORT;
	__builtin_memset(claim, 0, sizeof(*claim));
	ref = &claim->ref;
	nat_fill_claim(claim, client, ct, &ct->nat_addr);
	hash = ct_reply_hash(&claim->reply, cfg->ct_seed);
	/* The port whose entry ct_place_reply puts in the flow's bucket, as an offset into the range. Where the
	 * range holds more ports than the table has buckets, every bucket's-worth further lands there
	 * too (until the range wraps); else the next ports are spread wide. */
	start = (flow->index - hash - cfg->nat_port_min) & xlb_ct_bucket_mask;
	stride = range > xlb_ct_bucket_mask + 1 ? xlb_ct_bucket_mask + 1 : 7919;
	full_slot = nat_full_slot(hash, now, &full);
	for (i = 0; i < XLB_NAT_PORT_ATTEMPTS; i++) {
		claim->reply.dport = bpf_htons(cfg->nat_port_min + (start + i * stride) % range);
		ct_place_reply(hash, claim->reply.dport, ref);
		if (!ct_exists_placed(&claim->reply, now, ref)) {
			if (full && full_slot)
				*full_slot = 0; /* ports are free again: the next flows try them all */
			return nat_claimed(claim, ct, flow, now);
		}
		if (full)
			return -XLB_DROP_NAT_NO_PORT; /* remembered exhausted: one try */
	}
	/* Exhausted: remembered until the next coarse second ends (about 1–2 s). */
	if (full_slot)
		*full_slot = (__u64)(hash | 1) << 32 | (xlb_coarse_sec(now) + 1);
	return -XLB_DROP_NAT_NO_PORT;
}

#endif
