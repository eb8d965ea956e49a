/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Fragments: only the first carries ports, so it records them; later fragments of the same datagram
 * (same addresses, protocol and IP id) take them from here and follow the first one's backend.
 */
#ifndef XLB_FRAG_H
#define XLB_FRAG_H

#include "common.h"
#include "maps.h"
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} xlb_frag SEC(".maps");

static __always_inline void frag_key_of(const struct xlb_pkt *pkt, struct frag_key *key)
{
	key->saddr = pkt->tuple.saddr;
	key->daddr = pkt->tuple.daddr;
	key->id = pkt->frag_id;
	key->proto = pkt->tuple.proto;
	key->family = pkt->tuple.family;
}

static __always_inline void frag_remember(const struct xlb_pkt *pkt)
{
	struct frag_key key = {};
	struct frag_ports ports = { .sport = pkt->tuple.sport, .dport = pkt->tuple.dport };

	frag_key_of(pkt, &key);
	bpf_map_update_elem(&xlb_frag, &key, &ports, BPF_ANY);
}

/* Fill in the ports of a later fragment; 0 when its first fragment was never seen. */
static __always_inline int frag_recall(struct xlb_pkt *pkt)
{
	struct frag_key key = {};
	struct frag_ports *ports;

	frag_key_of(pkt, &key);
	ports = bpf_map_lookup_elem(&xlb_frag, &key);
	if (!ports)
		return 0;
	pkt->tuple.sport = ports->sport;
	pkt->tuple.dport = ports->dport;
	return 1;
}

#endif
