// SPDX-License-Identifier: GPL-2.0
/*
 * tc_pod: every service from inside the cluster, for packets socket-level load balancing does not see
 * (pods whose sockets are not under its cgroup, traffic routed in from another namespace). Attached to
 * the host side of each pod's veth (agent/pod-datapath.ts): its ingress hook sees what the pod sends,
 * its egress hook what is sent to the pod. Flow state and its shapes (DNAT, hairpin, clash): pod.h.
 *
 * From the pod (tc_pod_ingress), top down:
 *   parse → (later fragment: ports from its first) → a reply the pod sends to a translated source
 *   (hairpin)? turn it back → port some frontend uses? → conntrack (an established flow has its backend)
 *   → else service lookup, source ranges, backend selection, reply entry → the pod's egress policy for
 *   that backend → (a claimed source port) → translate → new conntrack entry → on to the stack, which
 *   routes it (or, hairpin, straight back into the pod). A service without backends is answered with
 *   port unreachable (icmp_skb.h). Anything else the pod sends: its egress policy (policy.h).
 * To the pod (tc_pod_egress): a reply of one of its flows? Its source becomes the service again. An ICMP
 * error about one of its flows? Its quote becomes what the pod sent. Anything else: its ingress policy.
 *
 * Why the stack routes a translated packet (TC_ACT_OK) instead of a FIB lookup and bpf_redirect_neigh:
 * a pod's packet to a backend goes where any of its packets to that address would go — through the
 * node's routes, policy rules, netfilter and conntrack, neighbour resolution, MTU and ICMP errors, all
 * of which the CNI set up and which the node already needs for pod-to-pod traffic (forwarding
 * included). Our translation happens before the stack sees the packet (tc ingress comes before
 * PREROUTING) and after it is done with replies (tc egress comes after POSTROUTING), so netfilter only
 * ever sees the backend's tuple. A redirect would save the stack's forwarding path per packet, at the
 * price of redoing all of that; xdp_lb does it because it must, here it can come later. Packets that
 * go back into the pod they came from (hairpin, ICMP answers) are redirected: the stack would send
 * ICMP redirects for a packet that leaves by the device it came in by.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "frag.h"
#include "icmp_skb.h"
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "nat.h"
#include "parse.h"
#include "pod.h"
#include "policy.h"
#include "skb_nat.h"

static __always_inline void pod_drop(struct xlb_verdict *v, int reason)
{
	v->action = TC_ACT_SHOT;
	v->reason = reason;
}

/* Where a translated packet of the pod's flow goes: back into the pod for a hairpin, else to the stack. */
static __always_inline int pod_onward(struct __sk_buff *skb, int hairpin)
{
	return hairpin ? skb_send_back(skb) : TC_ACT_OK;
}

/*
 * A reply entry found (ref): the packet gets the service as its source and the pod's own address and
 * port as its destination. From the pod (from_pod) it is the pod answering itself through a hairpin
 * flow — back into the pod — or a local backend answering xdp_lb's SNAT flow — to the stack, which
 * routes it to its client. The entry is read in place, and the packet dropped if it was rewritten
 * meanwhile (what it was translated with may be torn).
 */
XLB_SUBPROG int pod_reply_path(struct __sk_buff *skb, struct xlb_pkt *pkt, struct ct_ref *ref, int from_pod,
			       struct xlb_verdict *v)
{
	struct nat_reverse *reverse;
	struct ct_bucket *bucket;
	union ct_value *value;
	int back, err;

	if (!pkt || !ref || !v)
		return 0;
	value = ct_found(ref, &bucket);
	if (!value || !bucket)
		return 0;
	reverse = &value->reverse;
	ct_refresh_reverse(bucket, ref, pkt, xlb_now());
	v->service_id = reverse->service_id;
	v->backend_id = reverse->backend_id;
	/* A fragmented reply (a large DNS answer): its later fragments find this entry by the ports kept here. */
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	back = from_pod && xlb_addr_equal(&reverse->client, &pkt->tuple.saddr);
	err = skb_nat_rewrite(skb, pkt, &reverse->service, reverse->service_port, &reverse->client, reverse->client_port);
	if (err) {
		pod_drop(v, -err);
		return 0;
	}
	if (!ct_unchanged(bucket, ref)) {
		pod_drop(v, XLB_DROP_CT_BUSY);
		return 0;
	}
	v->reason = XLB_FWD_REPLY;
	v->action = pod_onward(skb, back);
	return 0;
}

/* Rewrite toward the backend: the destination always; the source too when the flow translates it. */
static __always_inline int pod_translate(struct __sk_buff *skb, struct xlb_pkt *pkt, const struct ct_entry *ct)
{
	const union xlb_addr *saddr = &pkt->tuple.saddr;
	__be16 sport = pkt->tuple.sport;

	if (ct->flags & XLB_CT_F_SNAT) {
		saddr = &ct->nat_addr;
		sport = ct->nat_port;
	}
	return skb_nat_rewrite(skb, pkt, saddr, sport, &ct->slot.backend.addr, ct->slot.backend.port);
}

/*
 * The first packet of a pod's flow to a service, in three global functions (one would exceed the
 * verifier's budget, and nesting them its stack): the service and a backend, the state built in the
 * scratch entry and the reply entry stored (pod_open_path); a source port when the flow needs one
 * (pod_claim_source); the translation and the flow's entry where ct_lookup said it goes
 * (pod_commit_path). The flow as it arrived is already the scratch key. pod_open_path answers 0 to go
 * on, XLB_POD_CLAIM_SOURCE, or -1 when the verdict is given (not a service, refused).
 */
XLB_SUBPROG int pod_open_path(struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct xlb_config *cfg = xlb_get_config();
	struct ct_way *scratch = xlb_ct_scratch_get();
	__u32 generation = lb_generation();
	struct lb_service svc;
	int err;

	if (!pkt || !ref || !v || !cfg || !scratch)
		return -1;
	if (!lb_lookup_service(&pkt->tuple, generation, &svc))
		return -1;
	v->service_id = svc.id;
	err = pod_open_flow(&svc, pkt, cfg, &scratch->value.entry, ref, generation, xlb_now());
	if (err >= 0)
		return err;
	v->action = TC_ACT_SHOT; /* a reject is answered (tc_pod_from_pod) */
	v->reason = -err;
	return -1;
}

/* A port for a new flow whose source is translated (pod.h: hairpin, clash), its reply entry stored. */
XLB_SUBPROG int pod_claim_source(const struct xlb_pkt *pkt, struct ct_ref *ref)
{
	struct xlb_config *cfg = xlb_get_config();
	struct ct_way *scratch = xlb_ct_scratch_get();

	if (!pkt || !ref || !cfg || !scratch)
		return -XLB_DROP_NAT_NO_PORT;
	return nat_claim_port(&pkt->tuple, &scratch->value.entry, cfg, xlb_now(), ref);
}

/*
 * The pod's egress policy for its new service flow, now that the backend is chosen (in the scratch
 * entry): 0, or a negative drop reason. Decided before a source port is claimed and the flow stored;
 * a denied flow's reply entry, already stored, goes again with it (pod_commit_path).
 */
XLB_SUBPROG int pod_policy_service_path(const struct xlb_pkt *pkt, __u32 ifindex, struct xlb_verdict *v)
{
	const struct policy_endpoint *ep = policy_endpoint_of(ifindex);
	struct ct_way *scratch = xlb_ct_scratch_get();
	const struct lb_backend *backend;
	int err;

	if (!pkt || !v || !scratch || !ep)
		return 0;
	backend = &scratch->value.entry.slot.backend;
	err = policy_check_service_flow(ep, ifindex, &pkt->tuple, backend, pod_is_hairpin(backend, &pkt->tuple));
	if (err)
		v->backend_id = scratch->value.entry.slot.backend_id; /* the drop names the backend refused */
	return err;
}

/* A new flow just stored (in the scratch entry, its key the flow as it arrived): a hairpin's packets, which
 * come back to the pod, are tracked by its policy (policy_track_hairpin). */
XLB_SUBPROG int pod_policy_hairpin_path(const struct xlb_pkt *pkt, __u32 ifindex)
{
	struct ct_way *scratch = xlb_ct_scratch_get();

	if (pkt && scratch && pod_is_hairpin(&scratch->value.entry.slot.backend, &scratch->key))
		policy_track_hairpin(ifindex, &scratch->key, &scratch->value.entry, pkt);
	return 0;
}

/* err: the claim's outcome, 0 or a negative drop reason (then the reply entry goes again). */
XLB_SUBPROG int pod_commit_path(struct __sk_buff *skb, struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v, int err)
{
	struct ct_way *scratch = xlb_ct_scratch_get();
	struct ct_entry *ct;
	int hairpin;

	if (!pkt || !ref || !v || !scratch)
		return 0;
	ct = &scratch->value.entry;
	if (err)
		goto drop;
	v->reason = XLB_FWD_NEW_FLOW;
	v->backend_id = ct->slot.backend_id;
	hairpin = pod_is_hairpin(&ct->slot.backend, &pkt->tuple);
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	err = pod_translate(skb, pkt, ct);
	if (err)
		goto drop;
	err = ct_create(&scratch->key, &scratch->value, ref, xlb_now());
	if (err < 0)
		goto drop;
	if (err)
		xlb_count(XLB_CT_EVICTED, XLB_DIR_INGRESS, 0);
	if (hairpin)
		xlb_count(XLB_POD_HAIRPIN, XLB_DIR_INGRESS, 0);
	v->action = pod_onward(skb, hairpin);
	return 0;
drop:
	pod_drop(v, -err);
	ct_release_peer(ref); /* a reply entry (or claimed port) stored for a flow not stored goes too */
	return 0;
}

/* A later packet of a tracked flow: to its backend, with what the entry remembers (read in place, then
 * checked not to have been rewritten meanwhile). */
XLB_SUBPROG int pod_established_path(struct __sk_buff *skb, struct xlb_pkt *pkt, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct ct_bucket *bucket;
	union ct_value *value;
	struct ct_entry *ct;
	int hairpin, err;

	if (!pkt || !ref || !v)
		return 0;
	value = ct_found(ref, &bucket);
	if (!value || !bucket)
		return 0;
	ct = &value->entry;
	ct_touch(bucket, ref, ct, pkt, xlb_now());
	v->reason = XLB_FWD_ESTABLISHED;
	v->service_id = ct->service_id;
	v->backend_id = ct->slot.backend_id;
	hairpin = pod_is_hairpin(&ct->slot.backend, &pkt->tuple);
	if (pkt->frag == XLB_FRAG_FIRST)
		frag_remember(pkt);
	err = pod_translate(skb, pkt, ct);
	if (err) {
		pod_drop(v, -err);
		return 0;
	}
	if (!ct_unchanged(bucket, ref)) {
		pod_drop(v, XLB_DROP_CT_BUSY);
		return 0;
	}
	v->action = pod_onward(skb, hairpin);
	return 0;
}

/*
 * A packet to a port some frontend listens on: conntrack first (an established flow needs nothing
 * else), so only packets without a live flow pay the service lookup. *flow: the flow as it arrived.
 */
static __always_inline void pod_service_path(struct __sk_buff *skb, struct xlb_pkt *pkt, const struct xlb_config *cfg,
					     struct xlb_tuple *flow, struct ct_ref *ref, struct xlb_verdict *v)
{
	struct ct_bucket *bucket;
	union ct_value *value;
	int opened, err;

	*flow = pkt->tuple; /* also a new flow's key */
	value = ct_lookup_flow(&pkt->tuple, cfg->ct_seed, xlb_now(), ref, &bucket);
	if (value && bucket && !ct_is_reopened(&value->entry, pkt)) {
		pod_established_path(skb, pkt, ref, v);
		return;
	}
	if (ref->busy) {
		pod_drop(v, XLB_DROP_CT_BUSY);
		return;
	}
	opened = pod_open_path(pkt, ref, v);
	if (opened < 0)
		return;
	err = pod_policy_service_path(pkt, skb->ifindex, v);
	if (!err && opened == XLB_POD_CLAIM_SOURCE)
		err = pod_claim_source(pkt, ref);
	pod_commit_path(skb, pkt, ref, v, err);
	if (v->reason == XLB_FWD_NEW_FLOW)
		pod_policy_hairpin_path(pkt, skb->ifindex);
}

/* The start of the packet an ICMP error quotes: its IP header and the first 8 bytes of its L4 header. */
struct pod_quote_l4 {
	__be16 sport;
	__be16 dport;
	__be16 udp_len;   /* TCP: the sequence number */
	__sum16 udp_check;
};

union pod_quote {
	struct {
		struct iphdr ip;
		struct pod_quote_l4 l4;
	} v4;
	struct {
		struct ipv6hdr ip;
		struct pod_quote_l4 l4;
	} v6;
};

/*
 * An ICMP error on its way to a pod about one of its flows (fragmentation needed from a router on the
 * path to the backend, port unreachable from the backend): it quotes the packet as translated (pod →
 * backend), which the pod's sockets would not recognise. The quote is turned back into what the pod
 * sent (pod:port → service:port, found by the flow's reply entry: the quote reversed), and an error the
 * backend itself sent comes from the service. The quote is edited on the stack and the ICMP checksum
 * moved by the difference (ICMPv6's also by its pseudo-header's); the quote's UDP checksum is kept
 * right, a TCP one (past the first 8 bytes) is left as receivers ignore it. Errors about anything else
 * pass as they are.
 */
XLB_SUBPROG int pod_icmp_error_path(struct __sk_buff *skb, struct xlb_pkt *pkt, struct xlb_verdict *v)
{
	struct xlb_config *cfg = xlb_get_config();
	struct xlb_tuple reply = {}, *key = &reply;
	union pod_quote old, new;
	struct pod_quote_l4 *l4;
	struct nat_reverse *reverse;
	struct ct_bucket *bucket;
	union ct_value *value;
	struct ct_ref ref;
	__u32 quote_off, size;
	int v4, from_backend;
	__sum16 csum;
	__s64 sum;

	if (!pkt || !v || !cfg || pkt->frag != XLB_FRAG_NONE)
		return 0;
	v4 = pkt->tuple.family == XLB_AF_INET;
	quote_off = xlb_l4_off(pkt) + 8;
	size = v4 ? sizeof(new.v4) : sizeof(new.v6);
	l4 = v4 ? &new.v4.l4 : &new.v6.l4;
	__builtin_memset(&old, 0, sizeof(old));
	if (bpf_skb_load_bytes(skb, quote_off, &old, size) || bpf_skb_load_bytes(skb, xlb_l4_off(pkt) + 2, &csum, sizeof(csum)))
		return 0;
	new = old;
	/* the flow's reply entry: the quoted packet reversed */
	if (v4) {
		if (old.v4.ip.ihl != 5)
			return 0;
		key->saddr.v4 = old.v4.ip.daddr;
		key->daddr.v4 = old.v4.ip.saddr;
		key->proto = old.v4.ip.protocol;
	} else {
		__builtin_memcpy(key->saddr.v6, &old.v6.ip.daddr, 16);
		__builtin_memcpy(key->daddr.v6, &old.v6.ip.saddr, 16);
		key->proto = old.v6.ip.nexthdr;
	}
	if (key->proto != IPPROTO_TCP && key->proto != IPPROTO_UDP)
		return 0;
	key->family = pkt->tuple.family;
	key->sport = l4->dport;
	key->dport = l4->sport;
	key->kind = XLB_TUPLE_SNAT_REPLY;
	value = ct_lookup_reply(key, cfg->ct_seed, xlb_now(), &ref, &bucket);
	if (!value || !bucket || !xlb_addr_equal(&value->reverse.client, &pkt->tuple.daddr))
		return 0;
	reverse = &value->reverse;
	v->service_id = reverse->service_id;
	v->backend_id = reverse->backend_id;
	/* the quote as the pod sent it: client:port → service:port */
	if (key->proto == IPPROTO_UDP && l4->udp_check) {
		xlb_csum_replace_addr(&l4->udp_check, key->family, &key->daddr, &reverse->client);
		xlb_csum_replace_addr(&l4->udp_check, key->family, &key->saddr, &reverse->service);
		xlb_csum_replace4(&l4->udp_check, l4->sport | (__u32)l4->dport << 16,
				  reverse->client_port | (__u32)reverse->service_port << 16);
		if (!l4->udp_check)
			l4->udp_check = 0xffff;
	}
	l4->sport = reverse->client_port;
	l4->dport = reverse->service_port;
	if (v4) {
		xlb_csum_replace4x2(&new.v4.ip.check, old.v4.ip.saddr, reverse->client.v4, old.v4.ip.daddr, reverse->service.v4);
		new.v4.ip.saddr = reverse->client.v4;
		new.v4.ip.daddr = reverse->service.v4;
	} else {
		__builtin_memcpy(&new.v6.ip.saddr, reverse->client.v6, 16);
		__builtin_memcpy(&new.v6.ip.daddr, reverse->service.v6, 16);
	}
	sum = bpf_csum_diff((__be32 *)&old, size, (__be32 *)&new, size, (__u16)~csum);
	/* sent by the backend itself: from the service, which ICMPv6 also sums in its pseudo-header */
	from_backend = xlb_addr_equal(&pkt->tuple.saddr, &key->saddr);
	if (from_backend && !v4)
		sum = bpf_csum_diff((__be32 *)pkt->tuple.saddr.v6, 16, (__be32 *)reverse->service.v6, 16, sum);
	csum = xlb_csum_fold(sum);
	if (bpf_skb_store_bytes(skb, quote_off, &new, size, 0) ||
	    bpf_skb_store_bytes(skb, xlb_l4_off(pkt) + 2, &csum, sizeof(csum), 0)) {
		pod_drop(v, XLB_DROP_ICMP_QUOTE);
		return 0;
	}
	if (from_backend) {
		union xlb_addr service = reverse->service;

		if (skb_nat_rewrite(skb, pkt, &service, pkt->tuple.sport, &pkt->tuple.daddr, pkt->tuple.dport)) {
			pod_drop(v, XLB_DROP_ICMP_QUOTE);
			return 0;
		}
	}
	if (!ct_unchanged(bucket, &ref)) {
		pod_drop(v, XLB_DROP_CT_BUSY);
		return 0;
	}
	v->reason = XLB_FWD_ICMP_ERROR;
	return 0;
}

/* A direct connection of the pod taking the tuple of a service flow that is over (pod_forget_replaced). */
XLB_SUBPROG int pod_direct_syn_path(const struct xlb_pkt *pkt)
{
	struct xlb_config *cfg = xlb_get_config();
	struct xlb_tuple *key = xlb_key_scratch_get();

	if (pkt && cfg && key)
		pod_forget_replaced(pkt, cfg, key);
	return 0;
}

/* A packet of the endpoint on `ifindex` outside tc_pod's own flows, of no tracked connection: decided. */
XLB_SUBPROG int pod_policy_path(const struct xlb_pkt *pkt, const struct policy_endpoint *ep, __u32 ifindex, int from_pod,
				struct xlb_verdict *v)
{
	int err;

	if (!pkt || !ep || !v)
		return 0;
	err = policy_open(ep, ifindex, pkt, from_pod);
	if (err)
		pod_drop(v, -err);
	return 0;
}

/* A device without an endpoint has no policy: one lookup, and nothing else; a tracked connection's packet
 * one more. *flow: what a drop reports. */
static __always_inline void pod_policy(struct __sk_buff *skb, const struct xlb_pkt *pkt, struct xlb_tuple *flow, int from_pod,
				       struct xlb_verdict *v)
{
	const struct policy_endpoint *ep = policy_endpoint_of(skb->ifindex);

	if (!ep || policy_tracked(skb->ifindex, pkt, from_pod))
		return;
	*flow = pkt->tuple;
	pod_policy_path(pkt, ep, skb->ifindex, from_pod, v);
}

static __always_inline int pod_sampled(const struct xlb_config *cfg)
{
	return cfg->event_sample == 1 || (cfg->event_sample > 1 && bpf_get_prandom_u32() % cfg->event_sample == 0);
}

/* Count what happened and report it (drops and rejects always, new flows when sampled); the tc verdict.
 * Traffic that is none of ours is neither counted nor touched. */
static __always_inline int pod_verdict(struct __sk_buff *skb, const struct xlb_config *cfg, const struct xlb_tuple *flow,
				       struct xlb_verdict *v, int direction, __u32 len)
{
	__u32 src_identity, dst_identity;

	if (v->reason == XLB_PASS_NOT_SERVICE)
		return TC_ACT_OK;
	xlb_count(v->reason, direction, len);
	if (xlb_is_drop(v->reason)) {
		policy_drop_identities(v->reason, &src_identity, &dst_identity);
		xlb_emit_identities(XLB_EVENT_DROP, v->reason, direction, flow, skb->ifindex, v->service_id, v->backend_id,
				    src_identity, dst_identity);
	} else if (v->reason == XLB_REJECT_NO_BACKEND)
		xlb_emit(XLB_EVENT_REJECT, v->reason, direction, flow, skb->ifindex, v->service_id, 0);
	else if (v->reason == XLB_FWD_NEW_FLOW && pod_sampled(cfg))
		xlb_emit(XLB_EVENT_NEW_FLOW, v->reason, direction, flow, skb->ifindex, v->service_id, v->backend_id);
	return v->action;
}

/* What pod_parsed makes of a frame. */
enum pod_parse {
	POD_NOT_OURS = 0,	/* not IP, malformed, in-band VLAN (the stack's), a later fragment of no flow of ours */
	POD_TRANSLATABLE = 1,	/* IP with the headers we follow, right after an Ethernet header, with its ports */
	/* IP with more headers than we follow (XLB_PARSE_UNPARSED): the stack takes it whole, so it is decided by
	 * the policy as a packet of no known protocol and no ports (only rules of any protocol allow it) — passed
	 * untouched it would open any connection past the pod's policy. */
	POD_POLICY_ONLY = 2,
};

static __always_inline int pod_parsed(struct __sk_buff *skb, struct xlb_pkt *pkt)
{
	int ret = xlb_parse_skb(skb, pkt);

	if (pkt->l3_off != sizeof(struct ethhdr))
		return POD_NOT_OURS;
	if (ret == XLB_PARSE_UNPARSED)
		return POD_POLICY_ONLY;
	if (ret != XLB_PARSE_OK)
		return POD_NOT_OURS;
	return pkt->frag != XLB_FRAG_LATER || frag_recall(pkt) ? POD_TRANSLATABLE : POD_NOT_OURS;
}

/* What a pod sends (tc ingress on the host side of its veth); also the benchmark's harness's entry. */
static __always_inline int tc_pod_from_pod(struct __sk_buff *skb)
{
	struct xlb_verdict v = { .action = TC_ACT_OK, .reason = XLB_PASS_NOT_SERVICE };
	struct xlb_config *cfg = xlb_get_config();
	struct ct_way *scratch = xlb_ct_scratch_get();
	struct xlb_pkt pkt = {};
	__u32 len = skb->len;
	struct xlb_tuple *flow;
	struct ct_ref ref;
	int parsed, err;

	parsed = pod_parsed(skb, &pkt);
	/* ICMP errors a pod sends about what it received are left as they are */
	if (!cfg || !scratch || parsed == POD_NOT_OURS || pkt.icmp_error)
		return TC_ACT_OK;
	/* The flow as it arrived, off the stack: what events report, and a new flow's conntrack key. */
	flow = &scratch->key;
	err = parsed == POD_TRANSLATABLE ? pod_reply_lookup(&pkt, cfg, 1, flow, &ref) : 0;
	if (err) {
		*flow = pkt.tuple;
		if (err > 0)
			pod_reply_path(skb, &pkt, &ref, 1, &v);
		else
			pod_drop(&v, XLB_DROP_CT_BUSY);
	} else if (parsed == POD_TRANSLATABLE && lb_port_in_use(pkt.tuple.dport)) {
		pod_service_path(skb, &pkt, cfg, flow, &ref, &v);
	}
	if (v.reason == XLB_PASS_NOT_SERVICE)
		pod_policy(skb, &pkt, flow, 1, &v);
	if (v.reason == XLB_PASS_NOT_SERVICE && (pkt.tcp_flags & XLB_TCP_SYN))
		pod_direct_syn_path(&pkt);
	if (v.reason == XLB_REJECT_NO_BACKEND) {
		err = xlb_icmp_skb_reject(skb, &pkt, &v.action);
		if (err)
			pod_drop(&v, -err);
	}
	return pod_verdict(skb, cfg, flow, &v, XLB_DIR_INGRESS, len);
}

/* What is sent to a pod (tc egress on the host side of its veth): replies of its flows, and its ingress policy. */
static __always_inline int tc_pod_to_pod(struct __sk_buff *skb)
{
	struct xlb_verdict v = { .action = TC_ACT_OK, .reason = XLB_PASS_NOT_SERVICE };
	struct xlb_config *cfg = xlb_get_config();
	struct xlb_tuple *key = xlb_key_scratch_get();
	struct xlb_pkt pkt = {};
	__u32 len = skb->len;
	struct ct_ref ref;
	int parsed, err;

	parsed = pod_parsed(skb, &pkt);
	if (!cfg || !key || parsed == POD_NOT_OURS)
		return TC_ACT_OK;
	if (pkt.icmp_error) {
		*key = pkt.tuple;
		pod_icmp_error_path(skb, &pkt, &v);
		return pod_verdict(skb, cfg, key, &v, XLB_DIR_EGRESS, len);
	}
	err = parsed == POD_TRANSLATABLE ? pod_reply_lookup(&pkt, cfg, 0, key, &ref) : 0;
	if (!err) {
		pod_policy(skb, &pkt, key, 0, &v);
		return pod_verdict(skb, cfg, key, &v, XLB_DIR_EGRESS, len);
	}
	*key = pkt.tuple;
	if (err > 0)
		pod_reply_path(skb, &pkt, &ref, 0, &v);
	else
		pod_drop(&v, XLB_DROP_CT_BUSY);
	return pod_verdict(skb, cfg, key, &v, XLB_DIR_EGRESS, len);
}

SEC("tc")
int tc_pod_ingress(struct __sk_buff *skb)
{
	return tc_pod_from_pod(skb);
}

SEC("tc")
int tc_pod_egress(struct __sk_buff *skb)
{
	return tc_pod_to_pod(skb);
}

char LICENSE[] SEC("license") = "GPL";
