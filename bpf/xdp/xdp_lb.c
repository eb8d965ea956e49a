// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_lb: north-south load balancing on the node's devices. The packet's journey, top down:
 * parse → (later fragment: ports from its first) → ICMP error of a tracked flow? translate it →
 * SNAT reply? translate back → port some frontend uses? → conntrack (an established flow has its
 * backend) → else service lookup, source ranges, backend selection, SNAT port → translate (DNAT +
 * SNAT, or DNAT + DSR option on the first packet) → next hop (cached FIB answer) → TX/redirect →
 * new conntrack entry.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "dsr_encap.h"
#include "dsr_guard.h"
#include "flow.h"
#include "forward.h"
#include "frag.h"
#include "icmp.h"
#include "icmp_nat.h"
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "nat.h"
#include "parse.h"

static __always_inline void drop(struct xlb_verdict *v, int reason)
{
	v->action = XDP_DROP;
	v->reason = reason;
}

/* A packet to forward that may not take another hop (1): answered with time exceeded instead (answer()),
 * before anything of it is translated or stored. */
static __always_inline int expired(struct xdp_md *ctx, const struct xlb_pkt *pkt, struct xlb_verdict *v)
{
	if (!icmp_hops_spent(ctx, pkt))
		return 0;
	drop(v, XLB_DROP_TTL_EXCEEDED);
	return 1;
}

static __always_inline int uses_dsr(const struct lb_service *svc, __u8 proto)
{
	return svc->mode == XLB_MODE_DSR || (svc->mode == XLB_MODE_HYBRID && proto == IPPROTO_TCP);
}

/*
 * Whether a DSR flow's packet carries the service address. TCP: its SYN, which opens the backend
 * side's state for the connection. UDP: every datagram, as Cilium does, so a lost first datagram or an
 * entry the backend side evicted never has the backend answer from its own address. Others: the first.
 */
static __always_inline int carries_dsr_info(const struct xlb_pkt *pkt, int new_flow)
{
	if (pkt->tuple.proto == IPPROTO_TCP)
		return (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
	return new_flow || pkt->tuple.proto == IPPROTO_UDP;
}

static __always_inline const union xlb_addr *node_address(const struct xlb_config *cfg, __u8 family)
{
	return family == XLB_AF_INET ? &cfg->node_v4 : &cfg->node_v6;
}

/* A new flow: who may come, which backend, and the state its later packets need (built in *ct). */
static __always_inline int open_flow(const struct lb_service *svc, const struct xlb_pkt *pkt,
				     const struct xlb_config *cfg, struct ct_entry *ct, struct ct_ref *ref, __u32 generation,
				     __u64 now)
{
	int dsr = uses_dsr(svc, pkt->tuple.proto);
	int err = flow_start(svc, pkt, ct, generation, now, dsr);

	if (err)
		return err;
	if (dsr) {
		ct->flags |= XLB_CT_F_DSR;
		return 0;
	}
	ct->flags |= XLB_CT_F_SNAT;
	ct->nat_addr = *node_address(cfg, pkt->tuple.family);
	return nat_claim_port(&pkt->tuple, ct, cfg, now, ref);
}

/* Rewrite toward the backend: DNAT always; the source becomes the node (SNAT) or stays the client (DSR). */
static __always_inline int translate_to_backend(struct xdp_md *ctx, struct xlb_pkt *pkt, const struct ct_entry *ct,
						const struct lb_backend *backend, int first_packet)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	union xlb_addr service;
	__be16 service_port;
	int err;

	if (ct->flags & XLB_CT_F_SNAT)
		return nat_rewrite(data, data_end, pkt, &ct->nat_addr, ct->nat_port, &backend->addr, backend->port);
	if (!first_packet)
		return nat_rewrite(data, data_end, pkt, &pkt->tuple.saddr, pkt->tuple.sport, &backend->addr, backend->port);
	service = pkt->tuple.daddr;
	service_port = pkt->tuple.dport;
	err = nat_rewrite(data, data_end, pkt, &pkt->tuple.saddr, pkt->tuple.sport, &backend->addr, backend->port);
	return err ? err : dsr_insert(ctx, pkt, &service, service_port);
}

/* Replies to our SNAT ports come to a node address, on a port of the SNAT range: only those are looked up. */
/*
 * Send a translated packet of a tracked entry on by a copy of the entry's next hop (*nexthop, read
 * from *cached): a fresh FIB answer goes back into the entry, and a packet whose entry was rewritten
 * meanwhile (what it was translated with may be torn) is dropped instead.
 */
static __always_inline void forward_tracked(struct xdp_md *ctx, struct xlb_pkt *pkt, struct ct_bucket *bucket,
					    struct ct_ref *ref, struct xlb_nexthop *nexthop, const struct xlb_nexthop *cached,
					    __u64 now, struct xlb_verdict *v)
{
	v->action = fwd_packet(ctx, pkt, nexthop, xlb_coarse_sec(now), &v->reason);
	if (nexthop->updated != cached->updated)
		ct_update_nexthop(bucket, ref, nexthop);
	if (!ct_unchanged(bucket, ref)) {
		drop(v, XLB_DROP_CT_BUSY);
	}
}

/*
 * Replies to our SNAT ports come to a node address, on a port of the SNAT range: only those are
 * looked up, as conntrack keys of kind XLB_TUPLE_SNAT_REPLY (built in *key). 1 when one is ours, 0
 * when not, -1 when its entry is being written (the packet is dropped, not given to the stack).
 */
static __always_inline int snat_reply_lookup(const struct xlb_pkt *pkt, const struct xlb_config *cfg, struct xlb_tuple *key,
					     struct ct_ref *ref)
{
	const union xlb_addr *node = node_address(cfg, pkt->tuple.family);
	__u16 port = bpf_ntohs(pkt->tuple.dport);
	struct ct_bucket *bucket;

	if (port < cfg->nat_port_min || port > cfg->nat_port_max)
		return 0;
	if (!xlb_addr_equal(node, &pkt->tuple.daddr))
		return 0;
	*key = pkt->tuple;
	key->kind = XLB_TUPLE_SNAT_REPLY;
	if (ct_lookup_reply(key, cfg->ct_seed, xlb_now(), ref, &bucket))
		return 1;
	return ref->busy ? -1 : 0;
}

/* A reply from a backend to one of our SNAT ports: back to the client, from the service address. */
XLB_SUBPROG int xlb_snat_reply_path(struct xdp_md *ctx, struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_nexthop nexthop;
	struct nat_reverse *reverse;
	struct ct_bucket *bucket;
	union ct_value *value;
	__u64 now = xlb_now();
	int err;

	if (!pkt || !ref || !v)
		return 0;
	value = ct_found(ref, &bucket);
	if (!value || !bucket)
		return 0;
	if (expired(ctx, pkt, v))
		return 0;
	reverse = &value->reverse;
	nexthop = reverse->nexthop;
	ct_refresh_reverse(bucket, ref, pkt, now);
	v->service_id = reverse->service_id;
	v->backend_id = reverse->backend_id;
	/* A fragmented reply (a large DNS answer): its later fragments find this entry by the ports kept here. */
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	err = nat_rewrite(data, data_end, pkt, &reverse->service, reverse->service_port, &reverse->client,
			  reverse->client_port);
	if (err) {
		drop(v, -err);
		return 0;
	}
	v->reason = XLB_FWD_REPLY;
	forward_tracked(ctx, pkt, bucket, ref, &nexthop, &reverse->nexthop, now, v);
	return 0;
}

/* An ICMP error: translated when it is about one of our flows, else left to the stack. */
XLB_SUBPROG int xlb_icmp_error_path(struct xdp_md *ctx, struct xlb_pkt *pkt, struct xlb_verdict *v)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_config *cfg = xlb_get_config();
	int err;

	if (!pkt || !v || !cfg)
		return 0;
	err = icmp_nat_translate(data, data_end, pkt, cfg);
	if (err < 0) {
		drop(v, -err);
	} else if (err > 0) {
		v->reason = XLB_FWD_ICMP_ERROR;
		v->action = fwd_packet(ctx, pkt, NULL, 0, &v->reason);
	}
	return 0;
}

/* Answered with port unreachable (answer()). */
static __always_inline void reject(struct xlb_verdict *v)
{
	v->action = XDP_DROP;
	v->reason = XLB_REJECT_NO_BACKEND;
}

/*
 * The first packet of a flow (or a new connection on an old tuple): service, source ranges, backend,
 * translation, next hop, and a conntrack entry where ct_lookup said it goes.
 */
XLB_SUBPROG int xlb_new_flow_path(struct xdp_md *ctx, struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct xlb_config *cfg = xlb_get_config();
	struct ct_way *scratch = xlb_ct_scratch_get();
	__u32 generation = lb_generation();
	struct lb_service svc;
	struct ct_entry *ct;
	__u64 now = xlb_now();
	int err;

	if (!pkt || !ref || !v || !cfg || !scratch)
		return 0;
	ct = &scratch->value.entry;
	if (!lb_lookup_service(&pkt->tuple, generation, &svc))
		return 0;
	v->service_id = svc.id;
	/* a spent TTL is answered only to sources the service lets in; others meet the source ranges below */
	if (icmp_hops_spent(ctx, pkt) && lb_source_allowed(&svc, &pkt->tuple) && expired(ctx, pkt, v))
		return 0;
	err = open_flow(&svc, pkt, cfg, ct, ref, generation, now);
	if (err == -XLB_REJECT_NO_BACKEND) {
		reject(v);
		return 0;
	}
	if (err)
		goto drop;
	v->reason = XLB_FWD_NEW_FLOW;
	v->backend_id = ct->slot.backend_id;
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	err = translate_to_backend(ctx, pkt, ct, &ct->slot.backend, (ct->flags & XLB_CT_F_DSR) && carries_dsr_info(pkt, 1));
	if (err)
		goto drop;
	v->action = fwd_packet(ctx, pkt, &ct->nexthop, xlb_coarse_sec(now), &v->reason);
	if (v->action == XDP_DROP)
		goto unclaim;
	err = ct_create(&scratch->key, &scratch->value, ref, now);
	if (err < 0)
		goto drop;
	if (err)
		xlb_count(XLB_CT_EVICTED, XLB_DIR_INGRESS, 0);
	return 0;
drop:
	drop(v, -err);
unclaim:
	ct_release_peer(ref); /* a SNAT port claimed for a flow not stored is free again */
	return 0;
}

/*
 * A later packet of a tracked flow: to its backend, with what the entry remembers (read in place, and
 * checked afterwards not to have been rewritten meanwhile).
 */
XLB_SUBPROG int xlb_established_path(struct xdp_md *ctx, struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct xlb_nexthop nexthop;
	struct ct_bucket *bucket;
	union ct_value *value;
	struct ct_entry *ct;
	__u64 now = xlb_now();
	int err;

	if (!pkt || !ref || !v)
		return 0;
	value = ct_found(ref, &bucket);
	if (!value || !bucket)
		return 0;
	ct = &value->entry;
	if (expired(ctx, pkt, v))
		return 0;
	nexthop = ct->nexthop;
	ct_touch(bucket, ref, ct, pkt, now);
	v->reason = XLB_FWD_ESTABLISHED;
	v->service_id = ct->service_id;
	v->backend_id = ct->slot.backend_id;
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	err = translate_to_backend(ctx, pkt, ct, &ct->slot.backend, (ct->flags & XLB_CT_F_DSR) && carries_dsr_info(pkt, 0));
	if (err) {
		drop(v, -err);
		return 0;
	}
	forward_tracked(ctx, pkt, bucket, ref, &nexthop, &ct->nexthop, now, v);
	return 0;
}

/*
 * The common case, inline (a function call costs ~10 ns here): a tracked flow's packet that needs no DSR
 * option, no fragment bookkeeping and no FIB lookup (the flow's next hop is fresh). 0 when the packet
 * needs more: xlb_established_path then takes it.
 */
static __always_inline int established_fast_path(struct xdp_md *ctx, struct xlb_pkt *pkt, struct ct_bucket *bucket,
						 struct ct_ref *ref, struct ct_entry *ct, __u64 now, struct xlb_verdict *v)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	int err;

	if (pkt->frag != XLB_FRAG_NONE || !fwd_nexthop_usable(ctx, pkt, &ct->nexthop, xlb_coarse_sec(now)) ||
	    ((ct->flags & XLB_CT_F_DSR) && carries_dsr_info(pkt, 0)) || (void *)(eth + 1) > data_end)
		return 0;
	ct_touch(bucket, ref, ct, pkt, now);
	v->service_id = ct->service_id;
	v->backend_id = ct->slot.backend_id;
	err = translate_to_backend(ctx, pkt, ct, &ct->slot.backend, 0);
	if (err) {
		drop(v, -err);
		return 1;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end) {
		drop(v, XLB_DROP_MALFORMED);
		return 1;
	}
	v->action = fwd_transmit(ctx, eth, &ct->nexthop);
	v->reason = XLB_FWD_ESTABLISHED;
	if (!ct_unchanged(bucket, ref))
		drop(v, XLB_DROP_CT_BUSY);
	return 1;
}

/*
 * A packet to a port some frontend listens on. Conntrack first: an established flow needs nothing
 * else (its entry holds the backend, and removing a service or backend purges its entries), so only
 * packets without a live flow pay the service lookup.
 */
static __always_inline void service_path(struct xdp_md *ctx, struct xlb_pkt *pkt, const struct xlb_config *cfg,
					 struct xlb_tuple *flow, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct ct_bucket *bucket;
	union ct_value *value;
	struct ct_entry *ct;

	if ((pkt->l3_len != sizeof(struct iphdr) || pkt->ipv6_dstopts) && dsr_info_present(ctx, pkt)) {
		*flow = pkt->tuple;
		drop(v, XLB_DROP_DSR_SPOOFED);
		return;
	}
	value = ct_lookup_flow(&pkt->tuple, cfg->ct_seed, xlb_now(), ref, &bucket);
	ct = value ? &value->entry : NULL;
	if (ct && bucket && !ct_is_reopened(ct, pkt)) {
		if (established_fast_path(ctx, pkt, bucket, ref, ct, xlb_now(), v)) {
			/* the flow as it arrived is the entry's key (pkt->tuple is translated by now) */
			if (xlb_is_drop(v->reason))
				*flow = bucket->way[ref->way & (XLB_CT_WAYS - 1)].key;
			return;
		}
		*flow = pkt->tuple;
		xlb_established_path(ctx, pkt, ref, v);
		return;
	}
	*flow = pkt->tuple; /* also the new entry's key */
	if (ref->busy) {
		drop(v, XLB_DROP_CT_BUSY);
		return;
	}
	xlb_new_flow_path(ctx, pkt, ref, v);
}

/* The ICMP error a verdict asks for (icmp.h), about the packet as it arrived (*flow), becomes the frame
 * sent back, or the drop is counted as why not. */
static __always_inline void answer(struct xdp_md *ctx, const struct xlb_pkt *pkt, const struct xlb_tuple *flow,
				   struct xlb_verdict *v)
{
	int err;

	if (v->reason != XLB_REJECT_NO_BACKEND && v->reason != XLB_DROP_TTL_EXCEEDED && v->reason != XLB_DROP_FRAG_NEEDED)
		return;
	err = xlb_icmp_answer(ctx, pkt, flow, v->reason);
	v->action = err ? XDP_DROP : XDP_TX;
	v->reason = err ? -err : v->reason;
}

static __always_inline int sampled(const struct xlb_config *cfg)
{
	return cfg->event_sample == 1 || (cfg->event_sample > 1 && bpf_get_prandom_u32() % cfg->event_sample == 0);
}

/* The whole journey of one packet (xdp_lb below; the benchmark's harness calls it too). */
static __always_inline int xdp_lb_packet(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	struct xlb_verdict v = { .action = XDP_PASS, .reason = XLB_PASS_NOT_SERVICE };
	struct xlb_config *cfg = xlb_get_config();
	struct ct_way *scratch = xlb_ct_scratch_get();
	struct xlb_pkt pkt = {};
	struct ct_ref ref;
	struct xlb_tuple *flow;
	int err;

	if (!cfg || !scratch)
		return XDP_PASS; /* not configured yet */
	err = xlb_parse(data, data_end, &pkt, 1);
	if (err == XLB_PARSE_NOT_IP)
		return XDP_PASS;
	/* The flow as it arrived (ports recalled for later fragments), kept off the stack: what events
	 * report and, for a new flow, its conntrack key. Each path that may report sets it; the common
	 * case, an established packet forwarded, never needs it. */
	flow = &scratch->key;
	/* A VLAN tag would leave with the frame whatever device the FIB picks: tagged frames are the stack's. */
	if (err == XLB_PARSE_UNPARSED || pkt.l3_off != sizeof(struct ethhdr)) {
		v.reason = XLB_PASS_UNPARSED;
		goto out;
	}
	if (err < 0) {
		*flow = pkt.tuple;
		drop(&v, -err);
		goto out;
	}
	if (pkt.frag == XLB_FRAG_LATER && !frag_recall(&pkt)) {
		v.reason = XLB_PASS_FRAGMENT;
		goto out;
	}
	if (pkt.icmp_error) {
		*flow = pkt.tuple;
		xlb_icmp_error_path(ctx, &pkt, &v);
		goto out;
	}
	err = snat_reply_lookup(&pkt, cfg, flow, &ref);
	if (err) {
		*flow = pkt.tuple;
		if (err > 0) {
			xlb_snat_reply_path(ctx, &pkt, &ref, &v);
		} else {
			drop(&v, XLB_DROP_CT_BUSY);
		}
		goto out;
	}
	if (lb_port_in_use(pkt.tuple.dport))
		service_path(ctx, &pkt, cfg, flow, &ref, &v);
out:
	answer(ctx, &pkt, flow, &v);
	xlb_count(v.reason, XLB_DIR_INGRESS, len);
	if (xlb_is_drop(v.reason))
		xlb_emit(XLB_EVENT_DROP, v.reason, XLB_DIR_INGRESS, flow, ctx->ingress_ifindex, v.service_id,
			 v.backend_id);
	else if (v.reason == XLB_REJECT_NO_BACKEND)
		xlb_emit(XLB_EVENT_REJECT, v.reason, XLB_DIR_INGRESS, flow, ctx->ingress_ifindex, v.service_id, 0);
	else if (v.reason == XLB_FWD_NEW_FLOW && sampled(cfg))
		xlb_emit(XLB_EVENT_NEW_FLOW, v.reason, XLB_DIR_INGRESS, flow, ctx->ingress_ifindex, v.service_id,
			 v.backend_id);
	return v.action;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	return xdp_lb_packet(ctx);
}

/* The agent's conntrack sweep (purge, flush, count), run through BPF_PROG_TEST_RUN: the table's
 * writers all follow its locking, the agent included. */
SEC("syscall")
int xlb_ct_sweep(struct ct_sweep *args)
{
	struct ct_sweep sweep = { .flags = args->flags };

	ct_sweep(&sweep);
	args->live = sweep.live;
	args->cleared = sweep.cleared;
	args->purged = sweep.purged;
	args->busy = sweep.busy;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
