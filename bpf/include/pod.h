/* SPDX-License-Identifier: GPL-2.0 */
/*
 * East-west load balancing for pods (bpf/tc/tc_pod.c): what a pod's flow to a service keeps, and how its
 * packets and their replies are translated. Service lookup, backend selection and conntrack are
 * xdp_lb's own (lb.h, conntrack.h, nat.h) on the very same maps, shared through their pins: one table of
 * flows, swept, purged (a removed backend's flows go) and counted by the agent as one.
 *
 * A pod's flow is two conntrack entries, linked so they live and die together, as a SNAT flow's are: the
 * flow as it arrives from the pod (pod → service), holding its backend, and a reply entry keyed by the
 * reply as it comes back (kind XLB_TUPLE_SNAT_REPLY: a reverse translation, whatever translated the flow),
 * holding the service address and port to give the replies back. Three shapes:
 * - DNAT (the common one): only the destination changes, the pod's address and port stay the source
 *   (no SNAT east-west); its replies are backend → pod:port.
 * - hairpin: the backend is the pod itself. Translated to pod → pod, the packet would come back into the
 *   pod and its answer stay inside it, where the client's socket would see it come from the wrong
 *   address. So the source becomes the service address, with a port of the SNAT range (nat_claim_port):
 *   the pod answers service:port, which it routes out to the host, where the reply entry (pod:backend
 *   port → service:claimed port) turns it back into service → pod:client port.
 * - clash: another flow of the same pod and port already expects replies from this backend (one UDP
 *   socket asking two services that share a backend): the source port is translated as well, so the
 *   replies of each are told apart.
 */
#ifndef XLB_POD_H
#define XLB_POD_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "flow.h"
#include "lb.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"

/* A new flow's packet is its own sender's: the backend chosen is the pod that sent it. */
static __always_inline int pod_is_hairpin(const struct lb_backend *backend, const struct xlb_tuple *flow)
{
	return xlb_addr_equal(&backend->addr, &flow->saddr);
}

/*
 * The source of a new flow is to become nat_addr and a port claimed for it (hairpin, clash): the flow is
 * marked so; the port is claimed apart (pod_claim_source in tc_pod.c, nat_claim_port, verified once).
 * XLB_POD_CLAIM_SOURCE tells the caller.
 */
#define XLB_POD_CLAIM_SOURCE 1

static __always_inline int pod_translate_source(struct ct_entry *ct, const union xlb_addr *nat_addr)
{
	ct->flags |= XLB_CT_F_SNAT;
	ct->nat_addr = *nat_addr;
	return XLB_POD_CLAIM_SOURCE;
}

/*
 * Whether the live reply entry found at claim->ref is the other half of this very flow's own entry: a
 * TCP flow that was closing, reopened by a SYN to the same backend. Its entry is about to be replaced,
 * so the reply entry is expired here and looked up again (its way is then the new one's to take).
 */
static __always_inline int pod_reply_is_own(struct nat_claim *claim, const struct ct_ref *flow, __u64 now)
{
	struct ct_bucket *bucket;
	__u32 way = claim->ref.way & (XLB_CT_WAYS - 1);

	if (!flow->found)
		return 0;
	bucket = ct_bucket_at(claim->ref.index);
	if (!bucket || bucket->peer[way] != ct_loc(flow->index, flow->way) + 1)
		return 0;
	ct_expire_now(bucket, way);
	return !ct_exists_placed(&claim->reply, now, &claim->ref);
}

/*
 * The reply entry of a DNAT flow (*ct holds its backend): backend → pod:port, in its own bucket, linked
 * to the flow by the flow's store (flow_ref->peer). When another flow holds that reply tuple, the source
 * port is to be translated instead (the clash above): XLB_POD_CLAIM_SOURCE.
 */
static __always_inline int pod_claim_reply(const struct xlb_tuple *flow, struct ct_entry *ct, const struct xlb_config *cfg,
					   __u64 now, struct ct_ref *flow_ref)
{
	struct nat_claim *claim = xlb_nat_scratch_get();

	if (!claim)
		return -XLB_DROP_CT_FULL;
	__builtin_memset(claim, 0, sizeof(*claim));
	nat_fill_claim(claim, flow, ct, &flow->saddr);
	claim->reply.dport = flow->sport;
	ct_place_reply(ct_reply_hash(&claim->reply, cfg->ct_seed), claim->reply.dport, &claim->ref);
	if (ct_exists_placed(&claim->reply, now, &claim->ref) && !pod_reply_is_own(claim, flow_ref, now))
		return pod_translate_source(ct, &flow->saddr);
	if (claim->ref.busy)
		return -XLB_DROP_CT_BUSY;
	return nat_claimed(claim, ct, flow_ref, now);
}

/*
 * A pod's new flow to `svc` (its tuple as it arrived: pkt->tuple): who may come, which backend, and the
 * state its packets and replies need, built in *ct with its reply entry stored (flow_ref: where
 * ct_lookup_flow said the flow's entry goes). 0; XLB_POD_CLAIM_SOURCE when a source port is still to be
 * claimed; or a negative reason: XLB_REJECT_NO_BACKEND when the service has no backend (answered with
 * port unreachable), drops otherwise.
 */
static __always_inline int pod_open_flow(const struct lb_service *svc, const struct xlb_pkt *pkt, const struct xlb_config *cfg,
					 struct ct_entry *ct, struct ct_ref *flow_ref, __u32 generation, __u64 now)
{
	int err = flow_start(svc, pkt, ct, generation, now, 0);

	if (err)
		return err;
	if (pod_is_hairpin(&ct->slot.backend, &pkt->tuple))
		return pod_translate_source(ct, &pkt->tuple.daddr);
	return pod_claim_reply(&pkt->tuple, ct, cfg, now, flow_ref);
}

/*
 * Replies come back to a pod from its flow's backend (DNAT, clash), or — from the pod, on the way in — to
 * a service address on a port of the SNAT range (hairpin; xdp_lb's SNAT flows to a backend in this pod
 * too, to a node address). Both are looked up as reply entries (key: the packet's tuple, kind
 * XLB_TUPLE_SNAT_REPLY, built in *key). 1 when one is found, 0 when not, -1 when its way is being written
 * (the packet is dropped rather than given to the stack untranslated).
 */
static __always_inline int pod_reply_lookup(const struct xlb_pkt *pkt, const struct xlb_config *cfg, int from_pod,
					    struct xlb_tuple *key, struct ct_ref *ref)
{
	__u16 port = bpf_ntohs(pkt->tuple.dport);
	struct ct_bucket *bucket;

	if (from_pod && (port < cfg->nat_port_min || port > cfg->nat_port_max))
		return 0;
	*key = pkt->tuple;
	key->kind = XLB_TUPLE_SNAT_REPLY;
	if (ct_lookup_reply(key, cfg->ct_seed, xlb_now(), ref, &bucket))
		return 1;
	return ref->busy ? -1 : 0;
}

/*
 * A pod's TCP SYN straight to a backend (no service) on the very tuple a service flow of its used towards
 * that backend: the reply entry of that flow, keyed backend → pod:port, would turn the new connection's
 * SYN-ACK into a reply from the service. A backend cannot hold two connections on one tuple, so the old
 * flow is over (the pod's kernel reuses a port per destination, and to the pod the service was another
 * one): both halves of it go now. Only the DNAT shape is concerned — a flow whose source was translated
 * expects its replies on another port.
 */
static __always_inline void pod_forget_replaced(const struct xlb_pkt *pkt, const struct xlb_config *cfg, struct xlb_tuple *key)
{
	struct ct_bucket *bucket, *flow_bucket;
	union ct_value *value;
	struct ct_ref ref;
	__u32 flow_way;

	if (pkt->tuple.proto != IPPROTO_TCP || (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) != XLB_TCP_SYN)
		return;
	tuple_reverse(&pkt->tuple, key);
	key->kind = XLB_TUPLE_SNAT_REPLY;
	value = ct_lookup_reply(key, cfg->ct_seed, xlb_now(), &ref, &bucket);
	if (!value || !bucket || value->reverse.client_port != pkt->tuple.sport ||
	    !xlb_addr_equal(&value->reverse.client, &pkt->tuple.saddr))
		return;
	flow_bucket = ct_peer_of(bucket, ref.index, ref.way, &flow_way);
	if (flow_bucket)
		ct_expire_now(flow_bucket, flow_way);
	ct_expire_now(bucket, ref.way);
}

#endif
