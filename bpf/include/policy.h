/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Identity policy (Kubernetes NetworkPolicy) for pods, enforced by tc_pod on the host side of each pod's
 * veth. The pod's egress is what tc_pod_ingress sees (decided after service translation: the backend
 * actually chosen is the peer), its ingress what tc_pod_egress sees (decided on the wire tuple, before a
 * reply's reverse translation).
 *
 * Four maps, written by the agent (lb/datapath/policy-writer.ts):
 * - xlb_ipcache: address prefix → security identity (longest prefix wins; not there: World);
 * - xlb_policy_ep: the pod's host-side device → its endpoint (identity, which directions are enforced).
 *   A device not in it has no policy at all: one lookup, and its packets go on as before;
 * - xlb_policy: allow entries {device, peer identity (0: any), direction, protocol, port prefix}, an LPM
 *   trie so that "any protocol" and port ranges (endPort, as the few prefixes that cover it) are one entry
 *   each. A packet is looked up with its peer's identity, then with identity 0; any match allows;
 * - xlb_policy_ct: the connections of registered endpoints (enforced or not, so a pod that becomes selected
 *   by a policy still gets the replies of connections it opened before), keyed by the device and the
 *   connection's tuple seen from the pod (pod → peer: a packet from the pod as it leaves tc_pod, one to it
 *   reversed), so both directions of a connection find it with one lookup, whoever opened it.
 *
 * A new connection (no live entry) is decided once: its peer's identity from the ipcache, then — when the
 * endpoint enforces that direction — the allow entries, with the packet's protocol and destination port
 * (protocols without ports: port 0, matched only by entries of any protocol). Allowed: tracked; denied:
 * dropped (XLB_DROP_POLICY_EGRESS / _INGRESS, an event with both identities). Always allowed, as Cilium
 * does: connections from the Host identity to the pod (kubelet's probes), ICMP errors (tc_pod handles
 * those apart, as part of the flow they quote) and IPv6's neighbour discovery and MLD. Tracked
 * connections cost one hash lookup, and a write at most once per coarse second. A policy change
 * therefore applies to new connections only, at once.
 *
 * A hairpin (a pod reaching itself through a service) is a connection out of the pod and into it: both
 * its egress and its ingress must allow it, the peer being its own identity.
 *
 * The flows tc_pod translates itself (a pod's service flows, their replies, hairpins) are tracked by
 * tc_pod's own conntrack: their policy is decided when that entry is made, and their later packets and
 * replies pass on it without looking here.
 *
 * Later IPv4/IPv6 fragments carry no ports: tc_pod only follows those whose first fragment it remembered
 * (its own flows); the others pass untouched, the first fragment having been decided (dropped, the
 * datagram never reassembles).
 */
#ifndef XLB_POLICY_H
#define XLB_POLICY_H

#include "common.h"
#include "conntrack.h"
#include "maps.h"
#include "parse.h"

/* Whose direction, seen from the pod: ingress = to the pod, egress = from it. */
enum xlb_policy_direction {
	XLB_POLICY_INGRESS = 0,
	XLB_POLICY_EGRESS = 1,
};

/* What an endpoint enforces: one bit per direction (1 << enum xlb_policy_direction). */
enum xlb_policy_endpoint_flags {
	XLB_POLICY_F_INGRESS = 1 << XLB_POLICY_INGRESS,
	XLB_POLICY_F_EGRESS = 1 << XLB_POLICY_EGRESS,
};

/* Reserved identities the datapath itself knows (lb/policy/types.ts ReservedIdentity). */
enum xlb_reserved_identity {
	XLB_IDENTITY_ANY = 0, /* in an allow entry: any peer */
	XLB_IDENTITY_HOST = 1,
	XLB_IDENTITY_WORLD = 2, /* an address the ipcache does not know */
};

/* LPM key: prefixlen counts the 32 bits of family and pad plus the address prefix, so IPv4 prefixes never
 * cover IPv6 addresses. */
struct policy_ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	union xlb_addr addr;
};

struct policy_ipcache_value {
	__u32 identity;
};

/* Keyed by the ifindex of the pod's host-side device (the one tc_pod runs on). */
struct policy_endpoint {
	__u32 identity;
	__u8 flags; /* enum xlb_policy_endpoint_flags */
	__u8 pad[3];
};

/*
 * LPM key of an allow entry, its bits in this order: device, peer identity, direction (always whole),
 * then protocol and destination port (an entry may stop before the protocol: any protocol and port; or
 * after some port bits: a port prefix). ifindex and identity are host order: they are never split.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u32 identity; /* XLB_IDENTITY_ANY: any peer */
	__u8 direction; /* enum xlb_policy_direction */
	__u8 proto;
	__be16 dport;
};

/* Bits of struct policy_key after prefixlen: a whole key, and one up to its direction (any protocol). */
#define XLB_POLICY_KEY_BITS 96
#define XLB_POLICY_ANY_PROTO_BITS 72

/* A connection of an endpoint: its tuple seen from the pod (saddr: the pod), on its device. */
struct policy_ct_key {
	struct xlb_tuple tuple;
	__u32 ifindex;
	__u32 pad;
};

enum xlb_policy_ct_flags {
	XLB_POLICY_CT_F_CLOSING = 1 << 0, /* TCP FIN or RST seen: short lifetime */
};

struct policy_ct_entry {
	__u32 expires; /* xlb_coarse_sec units */
	__u8 flags;    /* enum xlb_policy_ct_flags */
	__u8 opened;   /* enum xlb_policy_direction the connection was opened in */
	__u8 pad[2];
};

/* Every pod of the cluster and every ipBlock prefix; allocated as used (no prealloc), so a large cap costs nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 524288);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_ipcache_key);
	__type(value, struct policy_ipcache_value);
} xlb_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct policy_endpoint);
} xlb_policy_ep SEC(".maps");

/* The allow entries of every endpoint of the node: a thousand rules for each of a few hundred pods. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, __u8);
} xlb_policy SEC(".maps");

/* Sized by the agent as xdp_lb's conntrack (agent/pod-datapath.ts); this is the default. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct policy_ct_key);
	__type(value, struct policy_ct_entry);
} xlb_policy_ct SEC(".maps");

/* The endpoint on this device, or NULL: no policy here. */
static __always_inline const struct policy_endpoint *policy_endpoint_of(__u32 ifindex)
{
	return bpf_map_lookup_elem(&xlb_policy_ep, &ifindex);
}

static __always_inline __u32 policy_identity_of(const union xlb_addr *addr, __u8 family)
{
	struct policy_ipcache_key key = {
		.prefixlen = 32 + (family == XLB_AF_INET ? 32 : 128),
		.family = family,
		.addr = *addr,
	};
	struct policy_ipcache_value *value = bpf_map_lookup_elem(&xlb_ipcache, &key);

	return value ? value->identity : XLB_IDENTITY_WORLD;
}

/* IPv6's link-local control messages — multicast listener queries and reports, router and neighbour
 * discovery: what IPv4 does with ARP, which is not IP and never reaches a policy. Always allowed, never
 * tracked, or a pod under an ingress policy would lose its neighbours. */
static __always_inline int policy_is_link_control(const struct xlb_pkt *pkt)
{
	__u8 type = pkt->icmp_type;

	return pkt->tuple.proto == IPPROTO_ICMPV6 && ((type >= 130 && type <= 137) || type == 143);
}

static __always_inline int policy_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

/* Whether an allow entry of the endpoint on `ifindex` matches: for this peer, else for any. */
static __always_inline int policy_allows(__u32 ifindex, __u32 identity, __u8 direction, __u8 proto, __be16 dport)
{
	struct policy_key key = {
		.prefixlen = XLB_POLICY_KEY_BITS,
		.ifindex = ifindex,
		.identity = identity,
		.direction = direction,
		.proto = proto,
		.dport = policy_has_ports(proto) ? dport : 0,
	};

	if (bpf_map_lookup_elem(&xlb_policy, &key))
		return 1;
	key.identity = XLB_IDENTITY_ANY;
	return bpf_map_lookup_elem(&xlb_policy, &key) != NULL;
}

/* A new connection in `direction` with a peer of identity `peer`, to port `dport`: 0 when it may open,
 * else the negative drop reason. */
static __always_inline int policy_decide(const struct policy_endpoint *ep, __u32 ifindex, __u8 direction, __u32 peer,
					 __u8 proto, __be16 dport)
{
	if (!(ep->flags & (1 << direction)))
		return 0;
	if (direction == XLB_POLICY_INGRESS && peer == XLB_IDENTITY_HOST)
		return 0;
	if (policy_allows(ifindex, peer, direction, proto, dport))
		return 0;
	return direction == XLB_POLICY_INGRESS ? -XLB_DROP_POLICY_INGRESS : -XLB_DROP_POLICY_EGRESS;
}

/* The key of a packet's connection: its tuple as it leaves the pod (from_pod), else reversed. */
static __always_inline void policy_ct_key_of(struct policy_ct_key *key, const struct xlb_tuple *tuple, __u32 ifindex,
					     int from_pod)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (from_pod)
		key->tuple = *tuple;
	else
		tuple_reverse(tuple, &key->tuple);
	key->tuple.kind = XLB_TUPLE_FLOW;
	key->tuple.pad = 0;
	key->ifindex = ifindex;
}

static __always_inline __u32 policy_ct_expiry(__u8 flags, __u8 proto, __u64 now)
{
	__u64 lifetime = flags & XLB_POLICY_CT_F_CLOSING ? XLB_CT_LIFETIME_CLOSING * XLB_NS : ct_proto_lifetime_ns(proto);

	return xlb_coarse_sec(now + lifetime);
}

static __always_inline __u8 policy_ct_flags(__u8 flags, const struct xlb_pkt *pkt)
{
	if (pkt->tuple.proto == IPPROTO_TCP && (pkt->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)))
		flags |= XLB_POLICY_CT_F_CLOSING;
	return flags;
}

/* The live entry of a packet's connection, or NULL. A TCP SYN on a closing connection opens a new one,
 * decided afresh. */
static __always_inline struct policy_ct_entry *policy_ct_find(const struct policy_ct_key *key, const struct xlb_pkt *pkt,
							       __u64 now)
{
	struct policy_ct_entry *entry = bpf_map_lookup_elem(&xlb_policy_ct, key);

	if (!entry || xlb_coarse_sec(now) > entry->expires)
		return NULL;
	if ((entry->flags & XLB_POLICY_CT_F_CLOSING) && pkt->tuple.proto == IPPROTO_TCP &&
	    (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN)
		return NULL;
	return entry;
}

/* A packet of a tracked connection: its expiry pushed back. Written only when it moves — once a coarse
 * second at most — so the entry's cache line is not bounced between CPUs by every packet. */
static __always_inline void policy_ct_touch(struct policy_ct_entry *entry, const struct xlb_pkt *pkt, __u64 now)
{
	__u8 flags = policy_ct_flags(entry->flags, pkt);
	__u32 expires = policy_ct_expiry(flags, pkt->tuple.proto, now);

	if (flags != entry->flags)
		entry->flags = flags;
	if (expires != entry->expires)
		entry->expires = expires;
}

/* Track a connection just allowed. Best effort: if the insert fails, its next packet is decided again. */
static __always_inline void policy_ct_create(const struct policy_ct_key *key, __u8 opened, const struct xlb_pkt *pkt,
					     __u64 now)
{
	struct policy_ct_entry entry = { .opened = opened };

	entry.flags = policy_ct_flags(0, pkt);
	entry.expires = policy_ct_expiry(entry.flags, pkt->tuple.proto, now);
	bpf_map_update_elem(&xlb_policy_ct, key, &entry, BPF_ANY);
}

/* A drop's connection, for its event: the identities of its source and destination (the pod's own is its
 * endpoint's). */
struct policy_parties {
	__u32 src_identity;
	__u32 dst_identity;
};

/* The parties of this CPU's last policy drop, read when its event is made: off the stack, which tc_pod's
 * paths have none of to spare. */
XLB_SCRATCH(xlb_policy_drop, struct policy_parties)

static __always_inline void policy_record_drop(const struct policy_endpoint *ep, __u32 peer, int from_pod)
{
	struct policy_parties *parties = xlb_policy_drop_get();

	if (!parties)
		return;
	parties->src_identity = from_pod ? ep->identity : peer;
	parties->dst_identity = from_pod ? peer : ep->identity;
}

static __always_inline int policy_is_drop(int reason)
{
	return reason == XLB_DROP_POLICY_EGRESS || reason == XLB_DROP_POLICY_INGRESS;
}

/* The identities a drop's event carries: a policy drop's parties, else none (0, 0). */
static __always_inline void policy_drop_identities(int reason, __u32 *src_identity, __u32 *dst_identity)
{
	struct policy_parties *parties = policy_is_drop(reason) ? xlb_policy_drop_get() : NULL;

	*src_identity = parties ? parties->src_identity : 0;
	*dst_identity = parties ? parties->dst_identity : 0;
}

/* The key of a packet's connection is built here, off the stack: the lookup sits inline in tc_pod's
 * programs, whose stack is spoken for. */
XLB_SCRATCH(xlb_policy_key, struct policy_ct_key)

/*
 * Whether a packet of an endpoint outside tc_pod's own flows (from_pod: leaving the pod, after any
 * translation; else on its way in, as on the wire) belongs to a tracked connection, which it pushes
 * back: all that nearly every packet costs, one hash lookup.
 */
static __always_inline int policy_tracked(__u32 ifindex, const struct xlb_pkt *pkt, int from_pod)
{
	struct policy_ct_key *key = xlb_policy_key_get();
	struct policy_ct_entry *entry;
	__u64 now = xlb_now();

	if (!key)
		return 0;
	policy_ct_key_of(key, &pkt->tuple, ifindex, from_pod);
	entry = policy_ct_find(key, pkt, now);
	if (!entry)
		return 0;
	policy_ct_touch(entry, pkt, now);
	return 1;
}

/* A packet that policy_tracked found no connection for opens one: decided and, allowed, tracked. 0, or a
 * negative drop reason (its parties recorded). */
static __always_inline int policy_open(const struct policy_endpoint *ep, __u32 ifindex, const struct xlb_pkt *pkt, int from_pod)
{
	__u8 direction = from_pod ? XLB_POLICY_EGRESS : XLB_POLICY_INGRESS;
	const union xlb_addr *peer_addr = from_pod ? &pkt->tuple.daddr : &pkt->tuple.saddr;
	struct policy_ct_key key;
	__u32 peer;
	int err;

	if (policy_is_link_control(pkt))
		return 0;
	peer = policy_identity_of(peer_addr, pkt->tuple.family);
	err = policy_decide(ep, ifindex, direction, peer, pkt->tuple.proto, pkt->tuple.dport);
	if (err) {
		policy_record_drop(ep, peer, from_pod);
		return err;
	}
	policy_ct_key_of(&key, &pkt->tuple, ifindex, from_pod);
	policy_ct_create(&key, direction, pkt, xlb_now());
	return 0;
}

/*
 * A pod's new flow to a service, its backend chosen (flow: as the pod sent it): the pod's egress decides,
 * with the backend as the peer and its port. A hairpin (the backend is the pod itself) is a connection out
 * of the pod and into it: both directions decide, the peer being the pod's own identity.
 */
static __always_inline int policy_check_service_flow(const struct policy_endpoint *ep, __u32 ifindex, const struct xlb_tuple *flow,
						     const struct lb_backend *backend, int hairpin)
{
	__u32 peer = hairpin ? ep->identity : policy_identity_of(&backend->addr, flow->family);
	int err = policy_decide(ep, ifindex, XLB_POLICY_EGRESS, peer, flow->proto, backend->port);

	if (!err && hairpin)
		err = policy_decide(ep, ifindex, XLB_POLICY_INGRESS, peer, flow->proto, backend->port);
	if (err)
		policy_record_drop(ep, peer, 1);
	return err;
}

/*
 * A hairpin flow stored (ct: its entry, with the source it claimed): tc_pod sends its packets straight
 * back into the pod, through tc_pod_egress, as connections from the service address — service:claimed
 * port → pod:backend port, and the answers service:port → pod:client port. Both are tracked here, so the
 * pod's ingress, decided for the flow as a whole, does not decide them again as coming from the service
 * address. Nothing on a device without an endpoint.
 */
static __always_inline void policy_track_hairpin(__u32 ifindex, const struct xlb_tuple *flow, const struct ct_entry *ct,
						 const struct xlb_pkt *pkt)
{
	struct xlb_tuple served = {
		.saddr = ct->slot.backend.addr,
		.daddr = ct->nat_addr,
		.sport = ct->slot.backend.port,
		.dport = ct->nat_port,
		.proto = flow->proto,
		.family = flow->family,
	};
	struct policy_ct_key key;
	__u64 now = xlb_now();

	if (!policy_endpoint_of(ifindex))
		return;
	policy_ct_key_of(&key, &served, ifindex, 1);
	policy_ct_create(&key, XLB_POLICY_INGRESS, pkt, now);
	policy_ct_key_of(&key, flow, ifindex, 1);
	policy_ct_create(&key, XLB_POLICY_EGRESS, pkt, now);
}

#endif
