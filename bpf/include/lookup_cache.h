/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Answers of hash-map lookups the datapath repeats (which service is at a frontend, which backend is
 * in a slot), kept in a direct-mapped array it reads inline: a hash-map lookup is one or two function
 * calls, ~10 ns each on this kernel (return thunks), a cached answer a few loads. Negative answers are
 * kept too. Each answer records the generation of the maps it came from; the agent bumps the
 * generation whenever it changes them, which voids every older answer at once. Slots are filled by
 * the datapath under their sequence lock (seqlock.h); colliding keys take turns.
 */
#ifndef XLB_LOOKUP_CACHE_H
#define XLB_LOOKUP_CACHE_H

#include "common.h"
#include "hash.h"
#include "maps.h"
#include "seqlock.h"

#define XLB_LOOKUP_CACHE_SLOTS 8192

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_LOOKUP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct xlb_lookup_cache_slot);
} xlb_lookup_cache SEC(".maps");

static __always_inline __u32 xlb_cache_index(const struct xlb_cache_key *key)
{
	const __u32 *w = (const __u32 *)key;

	_Static_assert(sizeof(*key) == 24, "xlb_cache_key is six words");
	return xlb_jhash_final(w[0] ^ w[1] ^ w[2], w[3] ^ w[4], w[5]) & (XLB_LOOKUP_CACHE_SLOTS - 1);
}

static __always_inline int xlb_cache_key_equal(const struct xlb_cache_key *a, const struct xlb_cache_key *b)
{
	const __u64 *x = (const __u64 *)a;
	const __u64 *y = (const __u64 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]));
}

/*
 * Look the key in ck->bytes (the map's own key, built there and zero-padded: no copy on the stack) up
 * in `map` through the cache: 1 with the value (value_size bytes) in *value, 0 when the map has no
 * such key. `generation` is the maps' generation, read by the caller before anything else, so an
 * answer read from an older map never passes for a newer one.
 */
static __always_inline int xlb_cached_lookup(void *map, const struct xlb_cache_key *ck, void *value, __u32 value_size,
					     __u32 generation)
{
	struct xlb_lookup_cache_slot *slot;
	__u32 index, seq;
	void *found;

	index = xlb_cache_index(ck);
	slot = bpf_map_lookup_elem(&xlb_lookup_cache, &index);
	if (!slot)
		return 0;
	seq = xlb_seq_read_begin(&slot->seq);
	if (slot->generation == generation && xlb_cache_key_equal(&slot->key, ck)) {
		int hit = slot->found;

		__builtin_memcpy(value, slot->value, value_size);
		if (xlb_seq_read_valid(&slot->seq, seq))
			return hit;
	}
	found = bpf_map_lookup_elem(map, ck->bytes);
	if (xlb_seq_write_begin(&slot->seq, &seq)) {
		slot->generation = generation;
		slot->key = *ck;
		slot->found = found != NULL;
		if (found)
			__builtin_memcpy(slot->value, found, value_size);
		xlb_seq_write_end(&slot->seq);
	}
	if (!found)
		return 0;
	__builtin_memcpy(value, found, value_size);
	return 1;
}

#endif
