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

/* Bumped by the agent whenever it changes xlb_lb_svc: cached answers of an older generation are void. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xlb_lb_gen SEC(".maps");

#define XLB_SERVICE_CACHE_SLOTS 4096

/* Service lookups answered inline (lb_lookup_service): direct-mapped, filled by the datapath. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_SERVICE_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_service_cache_slot);
} xlb_lb_svc_cache SEC(".maps");

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

/* One Maglev table per service: M u16 slot numbers (value size 2·M, set by the loader). A hash update
 * swaps the whole table at once, so the datapath never sees a half-written one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 2 * 16381);
} xlb_lb_maglev SEC(".maps");

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

static __always_inline __u32 lb_service_cache_index(const struct lb_service_key *key)
{
	const __u32 *a = key->addr.v6;
	const __u32 *k = (const __u32 *)key;

	_Static_assert(sizeof(*key) == 20, "lb_service_key: the address, then port, protocol and family in one word");
	return xlb_jhash_final(a[0] ^ a[1], a[2] ^ a[3], k[4]) & (XLB_SERVICE_CACHE_SLOTS - 1);
}

static __always_inline int lb_service_key_equal(const struct lb_service_key *a, const struct lb_service_key *b)
{
	const __u32 *x = (const __u32 *)a;
	const __u32 *y = (const __u32 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]));
}

/*
 * The service at the packet's destination into *out: 1, or 0 when there is none. Answers (both kinds)
 * are cached inline for as long as the service maps keep their generation (the agent bumps it when it
 * changes them), so a new flow to a known frontend, and a packet to a port some frontend uses elsewhere,
 * skip the hash map's function calls.
 */
static __always_inline int lb_lookup_service(const struct xlb_tuple *tuple, struct lb_service *out)
{
	struct lb_service_key key = {
		.addr = tuple->daddr,
		.port = tuple->dport,
		.proto = tuple->proto,
		.family = tuple->family,
	};
	__u32 zero = 0, index = lb_service_cache_index(&key), generation, seq;
	struct lb_service_cache_slot *slot = bpf_map_lookup_elem(&xlb_lb_svc_cache, &index);
	__u32 *current = bpf_map_lookup_elem(&xlb_lb_gen, &zero);
	struct lb_service *found;

	if (!slot || !current)
		return 0;
	generation = XLB_READ_ONCE(*current); /* before the map is read: an answer never outlives its generation */
	seq = xlb_seq_read_begin(&slot->seq);
	if (slot->generation == generation && lb_service_key_equal(&slot->key, &key)) {
		*out = slot->service;
		if (xlb_seq_read_valid(&slot->seq, seq))
			return out->id != 0;
	}
	found = bpf_map_lookup_elem(&xlb_lb_svc, &key);
	if (xlb_seq_write_begin(&slot->seq, &seq)) {
		slot->generation = generation;
		slot->key = key;
		if (found)
			slot->service = *found;
		else
			__builtin_memset(&slot->service, 0, sizeof(slot->service));
		xlb_seq_write_end(&slot->seq);
	}
	if (!found)
		return 0;
	*out = *found;
	return 1;
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

static __always_inline struct lb_slot *lb_slot(__u32 service_id, __u32 slot)
{
	struct lb_slot_key key = { .service_id = service_id, .slot = slot };

	return bpf_map_lookup_elem(&xlb_lb_slot, &key);
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

	if (!(svc->flags & XLB_SVC_F_MAGLEV))
		return bpf_get_prandom_u32() % svc->backend_count;

	table = bpf_map_lookup_elem(&xlb_lb_maglev, &svc->id);
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

/* ClientIP affinity: the backend this client used within the timeout, if it still exists. */
static __always_inline struct lb_backend *lb_affinity_backend(const struct lb_service *svc, const struct xlb_tuple *tuple,
							      __u64 now, __u32 *backend_id)
{
	struct lb_affinity_key key = { .service_id = svc->id, .client = tuple->saddr };
	struct lb_affinity *entry;
	struct lb_backend *backend;

	if (!svc->affinity_timeout)
		return NULL;
	entry = bpf_map_lookup_elem(&xlb_lb_affin, &key);
	if (!entry || now - entry->last_used > (__u64)svc->affinity_timeout * 1000000000ULL)
		return NULL;
	backend = lb_lookup_backend(entry->backend_id);
	if (!backend)
		return NULL;
	entry->last_used = now;
	*backend_id = entry->backend_id;
	return backend;
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
 * A backend for a new flow, and its id: affinity first, then the service's algorithm. NULL when there
 * is none. The slot holds a copy of its backend, so the common case needs no xlb_lb_be lookup.
 */
static __always_inline struct lb_backend *lb_select_backend(const struct lb_service *svc, const struct xlb_tuple *tuple,
							    __u64 now, __u32 *backend_id)
{
	struct lb_backend *backend;
	struct lb_slot *slot;

	if (svc->backend_count == 0)
		return NULL;
	backend = lb_affinity_backend(svc, tuple, now, backend_id);
	if (backend)
		return backend;
	slot = lb_slot(svc->id, lb_select_slot(svc, tuple));
	if (!slot || !slot->backend_id)
		return NULL;
	lb_affinity_remember(svc, tuple, slot->backend_id, now);
	*backend_id = slot->backend_id;
	return &slot->backend;
}

#endif
