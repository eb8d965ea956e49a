/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Socket-level load balancing (cgroup v2 sock_addr hooks), as Cilium's bpf_sock does it: a connect()
 * to a service address gets a backend once, and the socket then talks to the backend itself — no
 * per-packet NAT for TCP and connected UDP. Unconnected UDP is translated per sendmsg(). A reverse
 * entry per socket and backend lets recvmsg() and getpeername() show the application the service
 * address it asked for. The service lookup and backend selection are lb.h's, on the maps xdp_lb uses.
 *
 * Differences from the packet path, each on purpose:
 * - Session affinity keys on the socket's network namespace (its cookie), not a source address: at
 *   connect() time a socket usually has none yet. A pod is one netns, so this is ClientIP affinity
 *   for pods (Cilium does the same: lb4_affinity_backend_id_by_netns). The netns cookie is written
 *   into the affinity key's client address under 0100::/64, the IPv6 discard-only prefix (RFC 6666),
 *   which no real client has, so these entries never meet the packet path's.
 * - The Maglev hash has no source port to hash either: the socket cookie stands in for it, so one
 *   socket (a DNS client's unconnected UDP socket, say) keeps its backend across datagrams.
 * - Services with loadBalancerSourceRanges are left to the packet path, which sees real source
 *   addresses; a socket's source is unknown at connect() time.
 * - A service without a backend refuses the connect() / sendmsg() with ECONNREFUSED, what
 *   kube-proxy's REJECT rule makes the application see (Cilium rejects with EHOSTUNREACH).
 * - IPv4 services reached from dual-stack sockets (IPv4-mapped IPv6 addresses) are served too.
 */
#ifndef XLB_SOCK_H
#define XLB_SOCK_H

#include "common.h"
#include "config.h"
#include "lb.h"
#include "metrics.h"

/* What a cgroup sock_addr program returns: 0 refuses the call (with bpf_set_retval's errno), 1 lets it on. */
#define XLB_SYS_REJECT 0
#define XLB_SYS_PROCEED 1

#define XLB_ECONNREFUSED 111
#define XLB_ENOMEM 12
#define XLB_IPPROTO_TCP 6
#define XLB_IPPROTO_UDP 17

#define XLB_SOCK_REVNAT_ENTRIES 65536

/* The reverse map's key: a socket and the backend it was sent to (an unconnected UDP socket may talk
 * to several services, hence the backend in the key). The cookie is node-wide unique (kernel ≥ 5.12). */
struct sock_revnat_key {
	__u64 cookie;
	union xlb_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad[5];
};

/* What the application asked for: the service frontend, and the service it was (stale once the
 * frontend names another service, or none). */
struct sock_revnat {
	union xlb_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
	__u32 service_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_SOCK_REVNAT_ENTRIES);
	__type(key, struct sock_revnat_key);
	__type(value, struct sock_revnat);
} xlb_sock_revnat SEC(".maps");

/* An address as a sock_addr hook holds it; `mapped`: an IPv4 address in an IPv6 socket (::ffff:a.b.c.d). */
struct sock_peer {
	union xlb_addr addr;
	__be16 port;
	__u8 family;
	__u8 mapped;
};

/*
 * The address in the call (connect/sendmsg: the destination; recvmsg/getpeername: the peer). `v6` is a
 * constant at every call site: the verifier lets connect4 programs read only user_ip4, connect6 ones only
 * user_ip6, so each program must be compiled with its own family's accesses alone.
 */
static __always_inline void sock_read_peer(const struct bpf_sock_addr *ctx, const int v6, struct sock_peer *peer)
{
	peer->port = (__be16)ctx->user_port;
	if (!v6) {
		peer->family = XLB_AF_INET;
		peer->addr.v4 = ctx->user_ip4;
		return;
	}
	peer->addr.v6[0] = ctx->user_ip6[0];
	peer->addr.v6[1] = ctx->user_ip6[1];
	peer->addr.v6[2] = ctx->user_ip6[2];
	peer->addr.v6[3] = ctx->user_ip6[3];
	peer->family = XLB_AF_INET6;
	if (!peer->addr.v6[0] && !peer->addr.v6[1] && peer->addr.v6[2] == bpf_htonl(0xffff)) {
		peer->addr.v6[0] = peer->addr.v6[3];
		peer->addr.v6[2] = 0;
		peer->addr.v6[3] = 0;
		peer->family = XLB_AF_INET;
		peer->mapped = 1;
	}
}

/* Writes an address of the peer's family (and mapping) into the call. */
static __always_inline void sock_write_peer(struct bpf_sock_addr *ctx, const int v6, const struct sock_peer *peer,
					    const union xlb_addr *addr, __be16 port)
{
	ctx->user_port = (__u32)port;
	if (!v6) {
		ctx->user_ip4 = addr->v4;
	} else if (peer->mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = addr->v4;
	} else {
		ctx->user_ip6[0] = addr->v6[0];
		ctx->user_ip6[1] = addr->v6[1];
		ctx->user_ip6[2] = addr->v6[2];
		ctx->user_ip6[3] = addr->v6[3];
	}
}

/*
 * The flow lb.h selects by: destination the service; as source, the socket's netns under the
 * discard-only prefix (the affinity client, see the file comment) and 16 bits of the socket cookie
 * (the Maglev hash input a source port would be).
 */
static __always_inline void sock_flow(struct bpf_sock_addr *ctx, const struct sock_peer *dest, __u64 cookie,
				      struct xlb_tuple *tuple)
{
	__u64 netns = bpf_get_netns_cookie(ctx);

	tuple->saddr.v6[0] = bpf_htonl(0x01000000);
	tuple->saddr.v6[2] = (__u32)(netns >> 32);
	tuple->saddr.v6[3] = (__u32)netns;
	tuple->daddr = dest->addr;
	tuple->sport = (__be16)(cookie ^ (cookie >> 16) ^ (cookie >> 32) ^ (cookie >> 48));
	tuple->dport = dest->port;
	tuple->proto = ctx->protocol;
	tuple->family = dest->family;
}

/*
 * Remember which service the socket asked for when it talks to `backend`. A sendmsg() looks first and
 * leaves an unchanged entry alone (a UDP socket sending to a service again and again); a connect()
 * just writes (its socket is usually new: the lookup would miss, and the update looks anyway).
 * 0, or a negative errno.
 */
static __always_inline int sock_remember(__u64 cookie, const struct lb_backend *backend, const struct sock_peer *dest,
					 __u32 service_id, const int sendmsg)
{
	struct sock_revnat_key key = { .cookie = cookie, .addr = backend->addr, .port = backend->port, .family = backend->family };
	struct sock_revnat value = { .addr = dest->addr, .port = dest->port, .family = dest->family, .service_id = service_id };
	struct sock_revnat *known = sendmsg ? bpf_map_lookup_elem(&xlb_sock_revnat, &key) : NULL;

	if (known && known->service_id == service_id && known->port == value.port && xlb_addr_equal(&known->addr, &value.addr))
		return 0;
	return bpf_map_update_elem(&xlb_sock_revnat, &key, &value, BPF_ANY);
}

/* What a connect() / sendmsg() hook decided, for its counters and events. */
struct sock_verdict {
	struct xlb_tuple flow; /* the call as the application made it: to the service, from an address not known yet */
	__u32 service_id;
	__u32 backend_id;
};

/*
 * connect() or an unconnected sendmsg() (`sendmsg`): when the destination is a service, a backend for
 * this socket written in its place. 0 when the destination is no service of ours (or one left to the packet path),
 * 1 translated, or a negative reason: -XLB_REJECT_NO_BACKEND, -XLB_DROP_SOCK_REVNAT.
 */
static __always_inline int sock_xlate_fwd(struct bpf_sock_addr *ctx, const int v6, const int sendmsg, struct sock_verdict *v)
{
	struct xlb_tuple tuple = {};
	struct sock_peer dest = {};
	struct lb_service svc;
	struct lb_slot slot;
	__u32 generation;
	__u64 cookie;

	sock_read_peer(ctx, v6, &dest);
	/* Most connects are to no service: one bitmap load, and on. */
	if (!lb_port_in_use(dest.port))
		return 0;
	generation = lb_generation();
	v->flow.daddr = dest.addr;
	v->flow.dport = dest.port;
	v->flow.proto = ctx->protocol;
	v->flow.family = dest.family;
	if (!lb_lookup_service(&v->flow, generation, &svc))
		return 0;
	if (svc.flags & XLB_SVC_F_SOURCE_RANGES)
		return 0;
	v->service_id = svc.id;
	cookie = bpf_get_socket_cookie(ctx);
	sock_flow(ctx, &dest, cookie, &tuple);
	if (!lb_select_backend(&svc, &tuple, bpf_ktime_get_coarse_ns(), generation, &slot))
		return -XLB_REJECT_NO_BACKEND;
	/* A socket cannot change family: a backend of the other one (NAT46/64) is the packet path's. */
	if (slot.backend.family != dest.family)
		return 0;
	v->backend_id = slot.backend_id;
	if (sock_remember(cookie, &slot.backend, &dest, svc.id, sendmsg) < 0)
		return -XLB_DROP_SOCK_REVNAT;
	sock_write_peer(ctx, v6, &dest, &slot.backend.addr, slot.backend.port);
	return 1;
}

/* 1 in cfg->event_sample translations reaches the event ring (while someone watches: xlb monitor). */
static __always_inline int sock_sampled(void)
{
	struct xlb_config *cfg = xlb_get_config();

	return cfg && (cfg->event_sample == 1 || (cfg->event_sample > 1 && bpf_get_prandom_u32() % cfg->event_sample == 0));
}

/*
 * The verdict of a connect() / sendmsg() hook: translated and unknown destinations go on; a refusal
 * fails the call with an errno the application understands. Counted, and told to `xlb monitor`
 * (refusals always, translations sampled) as the packet path does.
 */
static __always_inline int sock_fwd_verdict(int ret, const struct sock_verdict *v)
{
	int reason = -ret;

	if (ret == 0)
		return XLB_SYS_PROCEED;
	if (ret > 0) {
		xlb_count(XLB_SOCK_XLATE, XLB_DIR_EGRESS, 0);
		if (sock_sampled())
			xlb_emit(XLB_EVENT_NEW_FLOW, XLB_SOCK_XLATE, XLB_DIR_EGRESS, &v->flow, 0, v->service_id, v->backend_id);
		return XLB_SYS_PROCEED;
	}
	xlb_count(reason, XLB_DIR_EGRESS, 0);
	xlb_emit(reason == XLB_REJECT_NO_BACKEND ? XLB_EVENT_REJECT : XLB_EVENT_DROP, reason, XLB_DIR_EGRESS, &v->flow, 0,
		 v->service_id, v->backend_id);
	bpf_set_retval(reason == XLB_REJECT_NO_BACKEND ? -XLB_ECONNREFUSED : -XLB_ENOMEM);
	return XLB_SYS_REJECT;
}

/*
 * recvmsg() / getpeername(): a backend this socket reached through a service is shown as that service.
 * An entry whose frontend no longer names the same service is stale: deleted, and the backend shown.
 */
static __always_inline void sock_xlate_rev(struct bpf_sock_addr *ctx, const int v6)
{
	struct sock_revnat_key key = {};
	struct sock_peer peer = {};
	struct xlb_tuple tuple = {};
	struct lb_service svc;
	struct sock_revnat *entry;

	sock_read_peer(ctx, v6, &peer);
	key.cookie = bpf_get_socket_cookie(ctx);
	key.addr = peer.addr;
	key.port = peer.port;
	key.family = peer.family;
	entry = bpf_map_lookup_elem(&xlb_sock_revnat, &key);
	if (!entry)
		return;
	tuple.daddr = entry->addr;
	tuple.dport = entry->port;
	tuple.proto = ctx->protocol;
	tuple.family = entry->family;
	if (!lb_lookup_service(&tuple, lb_generation(), &svc) || svc.id != entry->service_id) {
		bpf_map_delete_elem(&xlb_sock_revnat, &key);
		return;
	}
	sock_write_peer(ctx, v6, &peer, &tuple.daddr, tuple.dport);
	xlb_count(XLB_SOCK_REVERSE, XLB_DIR_INGRESS, 0);
}

/*
 * A socket going away: its reverse entry for the backend it is connected to goes with it, so the LRU
 * holds live sockets (an unconnected UDP socket's entries for several backends are left to the LRU).
 */
static __always_inline void sock_forget(struct bpf_sock *sk)
{
	struct sock_revnat_key key = {};

	if (sk->protocol != XLB_IPPROTO_TCP && sk->protocol != XLB_IPPROTO_UDP)
		return;
	key.port = sk->dst_port;
	if (!key.port)
		return;
	if (sk->family == XLB_AF_INET) {
		key.family = XLB_AF_INET;
		key.addr.v4 = sk->dst_ip4;
	} else if (sk->family == XLB_AF_INET6) {
		key.addr.v6[0] = sk->dst_ip6[0];
		key.addr.v6[1] = sk->dst_ip6[1];
		key.addr.v6[2] = sk->dst_ip6[2];
		key.addr.v6[3] = sk->dst_ip6[3];
		key.family = XLB_AF_INET6;
		if (!key.addr.v6[0] && !key.addr.v6[1] && key.addr.v6[2] == bpf_htonl(0xffff)) {
			key.addr.v6[0] = key.addr.v6[3];
			key.addr.v6[2] = 0;
			key.addr.v6[3] = 0;
			key.family = XLB_AF_INET;
		}
	} else {
		return;
	}
	key.cookie = bpf_get_socket_cookie(sk);
	bpf_map_delete_elem(&xlb_sock_revnat, &key);
}

XLB_BTF_TYPE(sock_revnat_key);
XLB_BTF_TYPE(sock_revnat);

#endif
