/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Services and backends: frontend lookup, source ranges, session affinity and backend selection
 * (Maglev or random). The agent writes these maps (lb/datapath/lb-writer.ts); only lookups here.
 */
#ifndef XLB_LB_H
#define XLB_LB_H

#include "common.h"
#include "hash.h"
#include "maps.h"
#include "lookup_cache.h"
#include "parse.h"
#include "seqlock.h"

#define XLB_MAX_SERVICES 4096
#define XLB_MAX_BACKENDS 65536
#define XLB_MAGLEV_MAX_SIZE 131071

/* Set at load: the Maglev table size M (prime) and the flow-hash seed, bytes 4..11 of --maglev-seed
 * (bytes 0..3 seed the control plane's murmur3, as in Cilium). */
const volatile __u32 xlb_maglev_size = 16381;
const volatile __u32 xlb_maglev_hash_seed0 = 0;
const volatile __u32 xlb_maglev_hash_seed1 = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
} xlb_lb_svc SEC(".maps");

/* Bumped by the agent whenever it changes the LB maps: cached answers of an older generation are void. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xlb_lb_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
} xlb_lb_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_BACKENDS);
	__type(key, struct lb_slot_key);
	__type(value, struct lb_slot);
} xlb_lb_slot SEC(".maps");

/* A service's Maglev table: one element of M u16 slot numbers (value size 2·M, set by the loader). */
struct xlb_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(value_size, 2 * 16381);
};

/*
 * The Maglev tables by service id. An array of maps, because both lookups are inlined (a hash map's
 * is a function call, ~20 ns here); the agent swaps in a whole new inner map when a table changes, so
 * the datapath never sees a half-written one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct xlb_maglev_table);
} xlb_lb_maglev SEC(".maps");

/* Service id → struct lb_maglev_digest of its table; the agent's alone (see maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct lb_maglev_digest);
} xlb_lb_mgdig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
} xlb_lb_affin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lb_source_range_key);
	__type(value, __u8);
} xlb_lb_srcrng SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_port_bitmap);
} xlb_lb_ports SEC(".maps");

static __always_inline int lb_port_in_use(__be16 dport)
{
	__u32 zero = 0;
	struct lb_port_bitmap *ports = bpf_map_lookup_elem(&xlb_lb_ports, &zero);
	__u16 port = bpf_ntohs(dport);

	return ports && ((ports->words[(port >> 6) & 1023] >> (port & 63)) & 1);
}

/* The generation of the LB maps: cached lookups (lookup_cache.h) of another generation are void. */
static __always_inline __u32 lb_generation(void)
{
	__u32 zero = 0;
	__u32 *generation = bpf_map_lookup_elem(&xlb_lb_gen, &zero);

	return generation ? XLB_READ_ONCE(*generation) : 0;
}

/* The service at the packet's destination into *out: 1, or 0 when there is none. */
static __always_inline int lb_lookup_service(const struct xlb_tuple *tuple, __u32 generation, struct lb_service *out)
{
	struct xlb_cache_key ck = { .kind = XLB_CACHE_SERVICE };
	struct lb_service_key *key = (struct lb_service_key *)ck.bytes;

	_Static_assert(sizeof(*key) <= sizeof(ck.bytes), "a service key fits a cache key");
	key->addr = tuple->daddr;
	key->port = tuple->dport;
	key->proto = tuple->proto;
	key->family = tuple->family;
	return xlb_cached_lookup(&xlb_lb_svc, &ck, out, sizeof(*out), generation);
}

static __always_inline int lb_source_allowed(const struct lb_service *svc, const struct xlb_tuple *tuple)
{
	struct lb_source_range_key key = {
		.prefixlen = 32 + 128,
		.service_id = bpf_htonl(svc->id),
		.addr = tuple->saddr,
	};

	if (!(svc->flags & XLB_SVC_F_SOURCE_RANGES))
		return 1;
	return bpf_map_lookup_elem(&xlb_lb_srcrng, &key) != NULL;
}

static __always_inline struct lb_backend *lb_lookup_backend(__u32 backend_id)
{
	return bpf_map_lookup_elem(&xlb_lb_be, &backend_id);
}

static __always_inline __u16 *lb_maglev_table(__u32 service_id)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(&xlb_lb_maglev, &service_id);

	return inner ? bpf_map_lookup_elem(inner, &zero) : NULL;
}

/* The flow's Maglev hash: same flow, same slot, on every node with the same seed. */
static __always_inline __u32 lb_flow_hash(const struct xlb_tuple *tuple)
{
	__u32 a = tuple->saddr.v6[0] ^ tuple->saddr.v6[1] ^ tuple->saddr.v6[2] ^ tuple->saddr.v6[3];
	__u32 b = (((__u32)tuple->sport << 16) | tuple->dport) ^ xlb_maglev_hash_seed1;
	__u32 c = tuple->proto ^ xlb_maglev_hash_seed0;

	return xlb_jhash_final(a + 0xdeadbeef, b + 0xdeadbeef, c + 0xdeadbeef);
}

static __always_inline __u32 lb_select_slot(const struct lb_service *svc, const struct xlb_tuple *tuple)
{
	__u32 hash = lb_flow_hash(tuple);
	__u32 size = xlb_maglev_size;
	__u16 *table;
	__u32 index;

	/* Without a table (algorithm random, or a ClusterIP: east-west), the flow's hash picks: as good as
	 * random over flows, and the same flow (a retransmitted SYN, the datagrams of one UDP socket, whose
	 * cookie stands in for its port at the socket layer) gets the same backend again. */
	if (!(svc->flags & XLB_SVC_F_MAGLEV))
		return hash % svc->backend_count;

	table = lb_maglev_table(svc->id);
	if (!table || size == 0)
		return hash % svc->backend_count;
	/* hash → [0, size) by multiply and shift (Lemire's reduction): as uniform as hash % size, without
	 * the division, which costs more than the rest of the selection. */
	index = ((__u64)hash * size) >> 32;
	xlb_barrier_var(index);
	/* size is a load-time constant and the map's value is 2·size bytes: this bound is what lets the
	 * verifier accept table[index]. */
	if (index >= size)
		return 0;
	return table[index];
}

/* ClientIP affinity: the backend this client used within the timeout, if it still exists, into *out. */
static __always_inline int lb_affinity_backend(const struct lb_service *svc, const struct xlb_tuple *tuple, __u64 now,
					       struct lb_slot *out)
{
	struct lb_affinity_key key = { .service_id = svc->id, .client = tuple->saddr };
	struct lb_affinity *entry;
	struct lb_backend *backend;

	if (!svc->affinity_timeout)
		return 0;
	entry = bpf_map_lookup_elem(&xlb_lb_affin, &key);
	if (!entry || now - entry->last_used > (__u64)svc->affinity_timeout * 1000000000ULL)
		return 0;
	backend = lb_lookup_backend(entry->backend_id);
	if (!backend)
		return 0;
	entry->last_used = now;
	out->backend_id = entry->backend_id;
	out->backend = *backend;
	return 1;
}

static __always_inline void lb_affinity_remember(const struct lb_service *svc, const struct xlb_tuple *tuple,
						 __u32 backend_id, __u64 now)
{
	struct lb_affinity_key key = { .service_id = svc->id, .client = tuple->saddr };
	struct lb_affinity entry = { .last_used = now, .backend_id = backend_id };

	if (svc->affinity_timeout)
		bpf_map_update_elem(&xlb_lb_affin, &key, &entry, BPF_ANY);
}

/*
 * A backend for a new flow, its id and a copy of it into *out: affinity first, then the service's
 * algorithm. 0 when there is none. Slots hold their backend, and their lookups are cached
 * (lookup_cache.h), so the common case reads no hash map but the Maglev table.
 */
static __always_inline int lb_select_backend(const struct lb_service *svc, const struct xlb_tuple *tuple, __u64 now,
					     __u32 generation, struct lb_slot *out)
{
	struct xlb_cache_key ck = { .kind = XLB_CACHE_SLOT };
	struct lb_slot_key *key = (struct lb_slot_key *)ck.bytes;

	_Static_assert(sizeof(*key) <= sizeof(ck.bytes), "a slot key fits a cache key");
	if (svc->backend_count == 0)
		return 0;
	if (lb_affinity_backend(svc, tuple, now, out))
		return 1;
	key->service_id = svc->id;
	key->slot = lb_select_slot(svc, tuple);
	if (!xlb_cached_lookup(&xlb_lb_slot, &ck, out, sizeof(*out), generation) || !out->backend_id)
		return 0;
	lb_affinity_remember(svc, tuple, out->backend_id, now);
	return 1;
}

#endif
