/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection tracking for load-balanced flows: the client's tuple → the backend it got, so established
 * flows keep their backend when backends are added (Maglev reshuffles a little), and translation state
 * (SNAT address/port, DSR) stays with the flow.
 *
 * The table is ours, not a kernel hash map: a set-associative array (struct ct_bucket) that the program
 * reads and writes inline. Every call and return costs ~10 ns on kernels with return-thunk mitigations
 * (SRSO "Safe RET" here), and a kernel hash map is calls all the way down: a lookup cost ~30 ns and an
 * insert ~250 ns on this machine, against a few ns for a lookup here (bench/datapath.ts). The price is
 * doing what the map did for us:
 * - concurrency: one table for every CPU (on veth a flow's packets may be handled on either CPU). Each
 *   way has a sequence lock (seqlock.h): writers take it with a compare-and-swap, readers check it
 *   around what they read;
 * - eviction: a new flow takes an empty or expired way, else the one of its bucket expiring first
 *   (counted: XLB_CT_EVICTED);
 * - pairs: a SNAT flow is two entries, the flow (client tuple) and its reply entry (reply tuple → the
 *   reverse translation, which holds the port). Each knows where the other is (ct_bucket.peer) and they
 *   live and die together: one expiry written to both by packets of either direction (ct_touch,
 *   ct_refresh_reverse), and an entry overwritten while live takes its other half with it (ct_store);
 * - the agent's purges and counts run in BPF too (xlb_ct_sweep), under the same protocol.
 */
#ifndef XLB_CONNTRACK_H
#define XLB_CONNTRACK_H

#include "common.h"
#include "config.h"
#include "hash.h"
#include "maps.h"
#include "parse.h"
#include "seqlock.h"

#define XLB_CT_BUCKETS 65536 /* × XLB_CT_WAYS = 262144 flows by default */
#define XLB_CT_READ_RETRIES 8

/*
 * Lifetimes in seconds, as kube-proxy's conntrack settings: established TCP long; closing short, a
 * TIME_WAIT-like grace after the last FIN or RST before a SNAT port is free again; opening (TCP until its
 * handshake completes or its backend answers, mid-stream pick-ups included) short, so that nobody buys
 * hours of state with packets the backend never answers.
 */
#define XLB_CT_LIFETIME_TCP 21600
#define XLB_CT_LIFETIME_CLOSING 10
#define XLB_CT_LIFETIME_OPENING 60
#define XLB_CT_LIFETIME_NONTCP 60
#define XLB_NS 1000000000ULL

/* Nanoseconds per jiffy (1e9 / CONFIG_HZ), set at load when the agent knows the kernel's HZ. */
const volatile __u64 xlb_ns_per_jiffy = 0;
/* Buckets − 1, set at load with the map's size (a power of two). */
const volatile __u32 xlb_ct_bucket_mask = XLB_CT_BUCKETS - 1;

/* Conntrack time, in ns: jiffies resolution is plenty for lifetimes in seconds, and reading jiffies
 * costs next to nothing, where even the coarse clock helper cost ~15 ns a packet here. The config's
 * clock_offset moves it forward (tests age entries without waiting; 0 on a node). */
static __always_inline __u64 xlb_now(void)
{
	struct xlb_config *cfg = xlb_get_config();
	__u64 offset = cfg ? (__u64)cfg->clock_offset * XLB_NS : 0;

	if (xlb_ns_per_jiffy)
		return bpf_jiffies64() * xlb_ns_per_jiffy + offset;
	return bpf_ktime_get_coarse_ns() + offset;
}

/* Units of 2^30 ns (about 1.07 s): a shift instead of a 64-bit division, for next-hop ages. */
static __always_inline __u32 xlb_coarse_sec(__u64 ns)
{
	return ns >> 30;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_CT_BUCKETS);
	__type(key, __u32);
	__type(value, struct ct_bucket);
} xlb_ct SEC(".maps");

/* The agent's purge requests for the next sweep (struct ct_purge_key → 1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ct_purge_key);
	__type(value, __u8);
} xlb_ct_purge SEC(".maps");

/* The packet's flow as it arrived, and the conntrack entry a new flow builds. */
XLB_SCRATCH(xlb_ct_scratch, struct ct_way)

/* A conntrack key being built for a lookup (another direction's, another kind's). */
XLB_SCRATCH(xlb_key_scratch, struct xlb_tuple)

XLB_BTF_TYPE(ct_sweep);

/*
 * Where a flow's entry is (or would go), from ct_lookup. Plain numbers, no pointer: it is handed to
 * global functions, where the verifier would not trust a pointer read back from memory.
 */
struct ct_ref {
	__u32 index; /* the bucket */
	__u32 tag;
	__u32 way;   /* when found: the way holding the flow (live or expired) */
	__u32 seq;   /* when found: that way's seq when it was read */
	__u8 found;
	__u8 busy; /* the key's way stayed locked through every retry: neither found nor missing */
	__u8 keep; /* way + 1 that a store here must not take (the other half of a SNAT flow), or 0 */
	__u8 pad;
	__u32 peer; /* ct_loc + 1 of the stored entry's other half (a new SNAT flow's reply entry), or 0 */
};

/*
 * Which bucket a key lives in, and its tag (ct_place_flow, ct_place_reply). A flow: by its hash. A
 * SNAT reply entry: by the hash of its tuple without the node port, plus the port, so the port decides
 * the bucket and nat_claim_port can pick the one that puts a flow's reply entry in the flow's own
 * bucket: a new SNAT flow then waits for one cold bucket, not two.
 */
static __always_inline __u32 ct_reply_hash(const struct xlb_tuple *reply, __u32 seed)
{
	return xlb_tuple_hash_ports(reply, reply->sport, seed);
}

static __always_inline void ct_place_reply(__u32 reply_hash, __be16 node_port, struct ct_ref *ref)
{
	ref->index = (reply_hash + bpf_ntohs(node_port)) & xlb_ct_bucket_mask;
	ref->tag = (reply_hash ^ ((__u32)node_port << 16)) | 1;
}

static __always_inline void ct_place_flow(const struct xlb_tuple *flow, __u32 seed, struct ct_ref *ref)
{
	__u32 hash = xlb_tuple_hash(flow, seed);

	ref->index = hash & xlb_ct_bucket_mask;
	ref->tag = hash | 1;
}

static __always_inline struct ct_bucket *ct_bucket_at(__u32 index)
{
	return bpf_map_lookup_elem(&xlb_ct, &index);
}

static __always_inline int ct_key_equal(const struct xlb_tuple *a, const struct xlb_tuple *b)
{
	const __u64 *x = (const __u64 *)a;
	const __u64 *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

static __always_inline __u64 ct_proto_lifetime_ns(__u8 proto)
{
	return (proto == IPPROTO_TCP ? XLB_CT_LIFETIME_TCP : XLB_CT_LIFETIME_NONTCP) * XLB_NS;
}

static __always_inline __u64 ct_lifetime_ns(const struct ct_entry *entry, __u8 proto)
{
	if (entry->flags & XLB_CT_F_CLOSING)
		return XLB_CT_LIFETIME_CLOSING * XLB_NS;
	if (entry->flags & XLB_CT_F_OPENING)
		return XLB_CT_LIFETIME_OPENING * XLB_NS;
	return ct_proto_lifetime_ns(proto);
}

/* When an entry seen `now` expires, in xlb_coarse_sec units: kept in the bucket's first cache line, so
 * finding a free way never reads the ways themselves (a cold line each, on a busy node). */
static __always_inline __u32 ct_expiry(const struct ct_entry *entry, __u8 proto, __u64 now)
{
	return xlb_coarse_sec(now + ct_lifetime_ns(entry, proto));
}

static __always_inline int ct_expired(const struct ct_bucket *bucket, __u32 way, __u64 now)
{
	return xlb_coarse_sec(now) > bucket->expires[way & (XLB_CT_WAYS - 1)];
}

/* The way of this bucket holding `tuple`, with its seq read before the key; -1 when none does. */
static __always_inline int ct_find_way(struct ct_bucket *bucket, const struct xlb_tuple *tuple, __u32 tag, __u32 *seq_out)
{
	int i;

#pragma unroll
	for (i = 0; i < XLB_CT_WAYS; i++) {
		__u32 seq = xlb_seq_read_begin(&bucket->seq[i]);

		if (bucket->tag[i] != tag || !ct_key_equal(&bucket->way[i].key, tuple))
			continue;
		*seq_out = seq;
		return i;
	}
	return -1;
}

/* ct_lookup_flow / ct_lookup_reply, in the bucket already placed in ref. */
static __always_inline union ct_value *ct_lookup_placed(const struct xlb_tuple *tuple, __u64 now, struct ct_ref *ref,
							 struct ct_bucket **bucket_out)
{
	struct ct_bucket *bucket;
	int attempt, way;

	ref->found = 0;
	ref->busy = 0;
	ref->keep = 0;
	ref->peer = 0;
	bucket = ct_bucket_at(ref->index);
	*bucket_out = bucket;
	if (!bucket)
		return NULL;
	for (attempt = 0; attempt < XLB_CT_READ_RETRIES; attempt++) {
		way = ct_find_way(bucket, tuple, ref->tag, &ref->seq);
		if (way < 0)
			return NULL;
		if (ref->seq & 1)
			continue;
		ref->way = way & (XLB_CT_WAYS - 1);
		ref->found = 1;
		if (ct_expired(bucket, ref->way, now))
			return NULL;
		return &bucket->way[ref->way].value;
	}
	/* Its way is being written (a next-hop refresh, a sweep): not a new flow, which for SNAT would
	 * claim another port and break the connection. The caller drops the packet instead. */
	ref->busy = 1;
	return NULL;
}

/*
 * The live entry of a flow's key (its state), or NULL: none, expired, or (ref->busy) its way still
 * being written after a few tries. ref and *bucket_out are filled either way.
 */
static __always_inline union ct_value *ct_lookup_flow(const struct xlb_tuple *flow, __u32 seed, __u64 now, struct ct_ref *ref,
						       struct ct_bucket **bucket_out)
{
	ct_place_flow(flow, seed, ref);
	return ct_lookup_placed(flow, now, ref, bucket_out);
}

/* ct_lookup_flow for a SNAT reply's key (kind XLB_TUPLE_SNAT_REPLY): its reverse translation. */
static __always_inline union ct_value *ct_lookup_reply(const struct xlb_tuple *reply, __u32 seed, __u64 now,
							struct ct_ref *ref, struct ct_bucket **bucket_out)
{
	ct_place_reply(ct_reply_hash(reply, seed), reply->dport, ref);
	return ct_lookup_placed(reply, now, ref, bucket_out);
}

/* The entry ct_lookup found, from its ref (all a global function gets from its caller): NULL if gone. */
static __always_inline union ct_value *ct_found(const struct ct_ref *ref, struct ct_bucket **bucket_out)
{
	struct ct_bucket *bucket = ct_bucket_at(ref->index);

	*bucket_out = bucket;
	return bucket ? &bucket->way[ref->way & (XLB_CT_WAYS - 1)].value : NULL;
}

/* Nobody rewrote the way since ct_lookup read it: what was read from it belongs to this flow. */
static __always_inline int ct_unchanged(const struct ct_bucket *bucket, const struct ct_ref *ref)
{
	return xlb_seq_read_valid(&bucket->seq[ref->way & (XLB_CT_WAYS - 1)], ref->seq);
}

/* A TCP SYN on a flow that was closing starts a new connection: it may pick a backend afresh. */
static __always_inline int ct_is_reopened(const struct ct_entry *entry, const struct xlb_pkt *pkt)
{
	return (entry->flags & XLB_CT_F_CLOSING) && pkt->tuple.proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

/* Where a way is, as ct_bucket.peer holds it (minus 1). */
static __always_inline __u32 ct_loc(__u32 index, __u32 way)
{
	return index * XLB_CT_WAYS + (way & (XLB_CT_WAYS - 1));
}

/* The way at ct_loc `peer` − 1 if it still names (index, way) as its other half, else NULL. Each half is
 * linked when stored (ct_store), so a way reused since by another entry no longer points back. */
static __always_inline struct ct_bucket *ct_peer_of(struct ct_bucket *bucket, __u32 index, __u32 way, __u32 *peer_way)
{
	__u32 peer = bucket->peer[way & (XLB_CT_WAYS - 1)];
	struct ct_bucket *other;

	if (!peer)
		return NULL;
	other = ct_bucket_at((peer - 1) / XLB_CT_WAYS);
	*peer_way = (peer - 1) & (XLB_CT_WAYS - 1);
	if (!other || !other->tag[*peer_way] || other->peer[*peer_way] != ct_loc(index, way) + 1)
		return NULL;
	return other;
}

/* Take way i for writing: 1 when this CPU now holds it (its seq odd), 0 when another one does. */
static __always_inline int ct_way_lock(struct ct_bucket *bucket, __u32 i, __u32 *seq)
{
	return xlb_seq_write_begin(&bucket->seq[i & (XLB_CT_WAYS - 1)], seq);
}

static __always_inline void ct_way_unlock(struct ct_bucket *bucket, __u32 i)
{
	xlb_seq_write_end(&bucket->seq[i & (XLB_CT_WAYS - 1)]);
}

/* Write a way's expiry under its lock. With seq_io, only if the way is as the caller read it, and then
 * *seq_io follows the write, so the caller's ct_unchanged still holds. 0 when skipped (busy, rewritten). */
static __always_inline int ct_write_expiry(struct ct_bucket *bucket, __u32 way, __u32 expires, __u32 *seq_io)
{
	__u32 seq;

	if (!ct_way_lock(bucket, way, &seq))
		return 0;
	if (seq_io && seq != *seq_io) {
		ct_way_unlock(bucket, way);
		return 0;
	}
	bucket->expires[way & (XLB_CT_WAYS - 1)] = expires;
	ct_way_unlock(bucket, way);
	if (seq_io)
		*seq_io = seq + 2;
	return 1;
}

/* How many times ct_way_lock_wait looks for a way's lock to come free: its holders write a few fields. */
#define XLB_CT_LOCK_TRIES 256

struct ct_lock_wait {
	struct ct_bucket *bucket;
	__u32 way;
	__u32 seq;
	int locked;
};

/* One look per bpf_loop turn: verified once, where an open-coded wait multiplies the paths. */
static long ct_lock_wait_step(__u64 index, void *ctx)
{
	struct ct_lock_wait *wait = ctx;
	struct ct_bucket *bucket = wait->bucket;

	if (!bucket)
		return 1;
	if (XLB_READ_ONCE(bucket->seq[wait->way & (XLB_CT_WAYS - 1)]) & 1)
		return 0;
	wait->locked = ct_way_lock(bucket, wait->way, &wait->seq);
	return wait->locked;
}

/* ct_way_lock for a write that must not be skipped: waits, boundedly, while another CPU holds the way. */
static __always_inline int ct_way_lock_wait(struct ct_bucket *bucket, __u32 way, __u32 *seq)
{
	struct ct_lock_wait wait = { .bucket = bucket, .way = way };

	bpf_loop(XLB_CT_LOCK_TRIES, ct_lock_wait_step, &wait, 0);
	*seq = wait.seq;
	return wait.locked;
}

/*
 * Expire a way now (the other half of an entry that goes, a port claimed for a flow that was not
 * stored). Unlike a refresh this is not skipped when the way is busy: a claimed port would otherwise
 * stay held for its opening lifetime.
 */
static __always_inline void ct_expire_now(struct ct_bucket *bucket, __u32 way)
{
	__u32 seq;

	if (!ct_way_lock_wait(bucket, way, &seq))
		return;
	bucket->expires[way & (XLB_CT_WAYS - 1)] = 0;
	ct_way_unlock(bucket, way);
}

/* A new TCP flow's flags: opening (short-lived) until its handshake completes or its backend answers.
 * A DSR flow's replies never pass here, so its SYN stands for the answer it gets; one picked up
 * mid-stream stays opening, living 60 s past its last packet (and Maglev gives it the same backend). */
static __always_inline __u8 ct_open_flags(const struct xlb_pkt *pkt, int dsr)
{
	int syn = (pkt->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;

	return XLB_CT_F_OPENING | (dsr && syn ? XLB_CT_F_HANDSHAKE : 0);
}

/*
 * A packet of the flow at (index, way) seen, from the client or (from_backend, SNAT) its backend: its
 * state moves on (FIN/RST: closing; opening ends when the backend answers, or when the client goes past
 * its SYN after the backend's SYN-ACK) and the flow and its reply entry are pushed back together. Every
 * write is made under the way's lock, and only to the entry the caller read: flow_seq (the seq the
 * caller read the flow's way at) or, without it, linked_to (the flow's way still names that as its
 * other half). peer_seq is the seq the caller read the other half at, if it read it. Busy ways are
 * skipped: the next packet moves them on.
 */
static __always_inline void ct_touch_flow(struct ct_bucket *bucket, __u32 index, __u32 way, struct ct_entry *entry,
					  const struct xlb_pkt *pkt, __u64 now, int from_backend, __u32 *flow_seq,
					  __u32 linked_to, __u32 *peer_seq)
{
	__u8 tcp = pkt->tcp_flags;
	__u8 flags = entry->flags;
	__u8 next = flags;
	struct ct_bucket *other;
	__u32 expires, seq, peer_way = 0;

	way &= XLB_CT_WAYS - 1;
	if (tcp & (XLB_TCP_FIN | XLB_TCP_RST))
		next |= XLB_CT_F_CLOSING;
	if (next & XLB_CT_F_OPENING) {
		int answered = from_backend && !(tcp & (XLB_TCP_SYN | XLB_TCP_RST));
		int completed = !from_backend && !(tcp & XLB_TCP_SYN) && (flags & XLB_CT_F_HANDSHAKE);

		if (from_backend && (tcp & XLB_TCP_SYN))
			next |= XLB_CT_F_HANDSHAKE;
		if (answered || completed)
			next &= ~XLB_CT_F_OPENING;
	}
	/* Written only when it moved on: a store per packet would keep the cache lines bouncing between
	 * CPUs for nothing, lifetimes being seconds. */
	if (next == flags && now - entry->last_seen <= XLB_NS / 4)
		return;
	if (!ct_way_lock(bucket, way, &seq))
		return;
	if (!bucket->tag[way] || (flow_seq ? seq != *flow_seq : bucket->peer[way] != linked_to)) {
		ct_way_unlock(bucket, way); /* rewritten since it was read: not this flow's any more */
		return;
	}
	entry->flags = next;
	entry->last_seen = now;
	expires = ct_expiry(entry, pkt->tuple.proto, now);
	bucket->expires[way] = expires;
	ct_way_unlock(bucket, way);
	if (flow_seq)
		*flow_seq = seq + 2;
	other = ct_peer_of(bucket, index, way, &peer_way);
	if (other)
		ct_write_expiry(other, peer_way, expires, peer_seq);
}

/* A client's packet of a tracked flow (ref: where ct_lookup found it; ref->seq follows what is written). */
static __always_inline void ct_touch(struct ct_bucket *bucket, struct ct_ref *ref, struct ct_entry *entry,
				     const struct xlb_pkt *pkt, __u64 now)
{
	ct_touch_flow(bucket, ref->index, ref->way, entry, pkt, now, 0, &ref->seq, 0, NULL);
}

/* Rewrite the cached next hop of a live entry (a flow's, or a SNAT reverse entry's) under the way's
 * lock. Afterwards ref->seq is the way's new seq, so ct_unchanged still holds for this writer. */
static __always_inline void ct_update_nexthop(struct ct_bucket *bucket, struct ct_ref *ref, const struct xlb_nexthop *nexthop)
{
	__u32 way = ref->way & (XLB_CT_WAYS - 1);
	struct ct_way *w = &bucket->way[way];
	__u32 seq;

	if (!ct_way_lock(bucket, way, &seq))
		return; /* busy: the next packet caches it */
	if (seq == ref->seq) {
		if (w->key.kind == XLB_TUPLE_SNAT_REPLY)
			w->value.reverse.nexthop = *nexthop;
		else
			w->value.entry.nexthop = *nexthop;
		ref->seq = seq + 2;
	}
	ct_way_unlock(bucket, way);
}

/* A backend's reply through a SNAT reverse entry (ref: where ct_lookup_reply found it): the flow it
 * belongs to is touched as by its client, which pushes both back. A reverse entry whose flow is gone
 * (its store failed) is left to expire. */
static __always_inline void ct_refresh_reverse(struct ct_bucket *bucket, struct ct_ref *ref, const struct xlb_pkt *pkt,
					       __u64 now)
{
	struct ct_bucket *flow;
	__u32 flow_way = 0;
	__u32 peer;

	flow = ct_peer_of(bucket, ref->index, ref->way, &flow_way);
	if (!flow)
		return;
	flow_way &= XLB_CT_WAYS - 1;
	peer = bucket->peer[ref->way & (XLB_CT_WAYS - 1)];
	ct_touch_flow(flow, (peer - 1) / XLB_CT_WAYS, flow_way, &flow->way[flow_way].value.entry, pkt, now, 1, NULL,
		      ct_loc(ref->index, ref->way) + 1, &ref->seq);
}

/* The way a new entry goes to: the flow's own (reopened or expired), an empty or expired one, else the
 * one expiring first (for flows of one kind, the least recently seen), never ref->keep's; *evicts says
 * whether it was live. */
static __always_inline __u32 ct_pick_way(const struct ct_bucket *bucket, const struct ct_ref *ref, __u64 now, int *evicts)
{
	__u32 soonest = ~0U;
	__u32 victim = 0;
	int i;

	*evicts = 0;
	if (ref->found)
		return ref->way;
#pragma unroll
	for (i = 0; i < XLB_CT_WAYS; i++) {
		if (ref->keep == i + 1)
			continue;
		if (!bucket->tag[i] || ct_expired(bucket, i, now))
			return i;
		if (bucket->expires[i] < soonest) {
			soonest = bucket->expires[i];
			victim = i;
		}
	}
	*evicts = 1;
	return victim;
}

/*
 * Under way `way`'s lock (taken at `seq`): whether another CPU stored `key` since ct_lookup missed it, or
 * is writing another way of the bucket right now (it may be storing `key`). Two CPUs that open one flow
 * at once then keep one entry, with one backend and one SNAT port, instead of two that evict others.
 */
static __always_inline int ct_stored_meanwhile(const struct ct_bucket *bucket, const struct xlb_tuple *key, __u32 way,
					       __u32 seq, const struct ct_ref *ref, __u64 now)
{
	int i;

	if (ref->found && seq != ref->seq)
		return 1; /* the entry it replaces changed since it was read */
#pragma unroll
	for (i = 0; i < XLB_CT_WAYS; i++) {
		if (i == way && ref->found)
			continue;
		if (i != way && (XLB_READ_ONCE(bucket->seq[i]) & 1))
			return 1;
		if (bucket->tag[i] == ref->tag && !ct_expired(bucket, i, now) && ct_key_equal(&bucket->way[i].key, key))
			return 1;
	}
	return 0;
}

/* Store an entry under `key` where ct_lookup said it goes, expiring at `expires`, with ref->peer as its
 * other half (which is linked back to it): 1 when a live entry was evicted for it. A live entry it
 * replaces (evicted, or the closing flow a SYN reopens) takes its own other half with it: a SNAT flow
 * without its reply entry, or a port held for a flow that is gone, would outlive its use. ref->way is
 * then the entry's way. */
static __always_inline int ct_store(const struct xlb_tuple *key, const union ct_value *value, __u32 expires,
				    struct ct_ref *ref, __u64 now)
{
	struct ct_bucket *bucket = ct_bucket_at(ref->index);
	struct ct_bucket *other;
	__u32 way, seq, peer_way = 0;
	int evicts;

	if (!bucket)
		return -XLB_DROP_CT_FULL;
	way = ct_pick_way(bucket, ref, now, &evicts) & (XLB_CT_WAYS - 1);
	if (!ct_way_lock(bucket, way, &seq))
		return -XLB_DROP_CT_FULL; /* another CPU is writing that very way: rare, and the client retries */
	if (ct_stored_meanwhile(bucket, key, way, seq, ref, now)) {
		ct_way_unlock(bucket, way);
		return -XLB_DROP_CT_BUSY; /* the flow's first packets on two CPUs: one entry, one translation */
	}
	if (bucket->tag[way] && !ct_expired(bucket, way, now)) {
		other = ct_peer_of(bucket, ref->index, way, &peer_way);
		if (other)
			ct_expire_now(other, peer_way);
	}
	bucket->way[way].key = *key;
	bucket->way[way].value = *value;
	bucket->expires[way] = expires;
	bucket->peer[way] = ref->peer;
	bucket->tag[way] = ref->tag;
	ct_way_unlock(bucket, way);
	ref->way = way;
	if (ref->peer) {
		other = ct_bucket_at((ref->peer - 1) / XLB_CT_WAYS);
		peer_way = (ref->peer - 1) & (XLB_CT_WAYS - 1);
		if (other && ct_way_lock_wait(other, peer_way, &seq)) {
			other->peer[peer_way] = ct_loc(ref->index, way) + 1;
			ct_way_unlock(other, peer_way);
		}
	}
	return evicts;
}

/* Store a new flow's state: 1 when a live entry was evicted for it. */
static __always_inline int ct_create(const struct xlb_tuple *tuple, const union ct_value *value, struct ct_ref *ref,
				     __u64 now)
{
	return ct_store(tuple, value, ct_expiry(&value->entry, tuple->proto, now), ref, now);
}

/* A new flow whose store did not happen (its packet was dropped after all): the other half claimed for
 * it (a SNAT port's reply entry, ref->peer) is expired, so no port is held for a flow that never was. */
static __always_inline void ct_release_peer(struct ct_ref *ref)
{
	struct ct_bucket *bucket;

	if (!ref->peer)
		return;
	bucket = ct_bucket_at((ref->peer - 1) / XLB_CT_WAYS);
	if (bucket)
		ct_expire_now(bucket, (ref->peer - 1) & (XLB_CT_WAYS - 1));
	ref->peer = 0;
}

/* Whether a live entry holds `key` in the bucket already placed in ref: ct_lookup_placed without the entry. */
static __always_inline int ct_exists_placed(const struct xlb_tuple *key, __u64 now, struct ct_ref *ref)
{
	struct ct_bucket *bucket;

	return ct_lookup_placed(key, now, ref, &bucket) != NULL;
}

/* ---- the agent's sweeps (xlb_ct_sweep in xdp_lb.c) ---- */

static __always_inline int ct_sweep_clears(const struct ct_way *way, const struct ct_sweep *sweep)
{
	int reverse = way->key.kind == XLB_TUPLE_SNAT_REPLY;
	__u32 backend_id = reverse ? way->value.reverse.backend_id : way->value.entry.slot.backend_id;
	__u32 service_id = reverse ? way->value.reverse.service_id : way->value.entry.service_id;
	struct ct_purge_key any = { .service_id = 0, .backend_id = backend_id };
	struct ct_purge_key pair = { .service_id = service_id, .backend_id = backend_id };

	if (sweep->flags & XLB_CT_SWEEP_FLUSH)
		return 1;
	return (sweep->flags & XLB_CT_SWEEP_PURGE) &&
	       (bpf_map_lookup_elem(&xlb_ct_purge, &any) || bpf_map_lookup_elem(&xlb_ct_purge, &pair));
}

static long ct_sweep_bucket(void *map, __u32 *index, struct ct_bucket *bucket, struct ct_sweep *sweep)
{
	__u64 now = xlb_now();
	__u32 seq;
	int i;

	for (i = 0; i < XLB_CT_WAYS; i++) {
		struct ct_way *way = &bucket->way[i];
		int expired, requested;

		if (!bucket->tag[i])
			continue;
		/* Decided without the lock, so live entries are only read: a locked way makes the packets
		 * of its flow wait (or drop), which counting must not cause. Re-checked under the lock. */
		expired = ct_expired(bucket, i, now);
		requested = !expired && ct_sweep_clears(way, sweep);
		if (!expired && !requested) {
			sweep->live++;
			continue;
		}
		if (!ct_way_lock(bucket, i, &seq)) {
			sweep->busy++;
			continue;
		}
		if (bucket->tag[i] && (ct_expired(bucket, i, now) || ct_sweep_clears(way, sweep))) {
			bucket->tag[i] = 0;
			sweep->cleared++;
			sweep->purged += requested;
		}
		ct_way_unlock(bucket, i);
	}
	return 0;
}

static __always_inline void ct_sweep(struct ct_sweep *sweep)
{
	bpf_for_each_map_elem(&xlb_ct, ct_sweep_bucket, sweep, 0);
}

#endif
