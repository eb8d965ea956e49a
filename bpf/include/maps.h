/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every layout that crosses between the datapath and userspace: map keys and values, ring-buffer
 * records, runtime config. One definition each; lb/layouts.ts mirrors them and a test checks the
 * mirror against this object's BTF. Explicit padding everywhere, so hash keys compare byte-exact.
 */
#ifndef XLB_MAPS_H
#define XLB_MAPS_H

#include "common.h"
#include "parse.h"

/* ---- services (lb.h) ---- */

/* A frontend: LoadBalancer/ExternalIP address, or one node address for a NodePort. */
struct lb_service_key {
	union xlb_addr addr;
	__be16 port;
	__u8 proto;
	__u8 family;
};

enum xlb_forwarding_mode {
	XLB_MODE_SNAT = 0,
	XLB_MODE_DSR = 1,
	XLB_MODE_HYBRID = 2, /* DSR for TCP, SNAT for everything else */
};

enum xlb_service_flags {
	XLB_SVC_F_MAGLEV = 1 << 0,        /* else random */
	XLB_SVC_F_SOURCE_RANGES = 1 << 1, /* check xlb_lb_srcrng */
	XLB_SVC_F_NODEPORT = 1 << 2,
	XLB_SVC_F_LOCAL = 1 << 3,         /* externalTrafficPolicy Local: the table holds only local backends */
};

struct lb_service {
	__u32 id;               /* key of the maglev table, slots, affinity and source ranges */
	__u16 backend_count;    /* slots 0 .. backend_count-1 are live */
	__u8 flags;             /* enum xlb_service_flags */
	__u8 mode;              /* enum xlb_forwarding_mode */
	__u32 affinity_timeout; /* seconds of ClientIP affinity; 0 = none */
};

/* One bit per destination port that some frontend listens on: packets to other ports skip the
 * service lookup (most traffic an LB node sees that is not for a service). */
struct lb_port_bitmap {
	__u64 words[1024];
};

/* What a service's Maglev table was computed from (SHA-1 of its size, seed, backends and weights).
 * The datapath never reads it: a restarted agent compares it with what it would compute, and skips
 * computing tables that are already right. */
struct lb_maglev_digest {
	__u8 sha1[20];
};

struct lb_backend {
	union xlb_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};

/* Slot n of a service: the n-th backend the control plane listed (what Maglev tables index). */
struct lb_slot_key {
	__u32 service_id;
	__u32 slot;
};

/* What a slot holds: the backend's id and a copy of it (one lookup for a new flow, not two). */
struct lb_slot {
	__u32 backend_id;
	struct lb_backend backend;
};

struct lb_affinity_key {
	__u32 service_id;
	__u32 pad;
	union xlb_addr client;
};

struct lb_affinity {
	__u64 last_used; /* bpf_ktime_get_ns */
	__u32 backend_id;
	__u32 pad;
};

/* LPM key: prefixlen counts the 32 bits of service_id plus the address prefix. */
struct lb_source_range_key {
	__u32 prefixlen;
	__u32 service_id;
	union xlb_addr addr;
};

/* ---- forwarding (forward.h) ---- */

/* The next hop a flow's packets leave by, from one FIB lookup, reused until it is XLB_NEXTHOP_TTL old:
 * a FIB lookup costs more than the rest of an established packet's path. */
struct xlb_nexthop {
	__u32 ifindex;   /* 0: not looked up yet */
	__u32 updated;   /* coarse seconds */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 mtu;       /* of the route (the FIB's mtu_result): bigger packets do not take this next hop */
	__u16 pad;
};

/* One slot of the shared next-hop cache: a FIB answer for a destination, for every new flow going there. */
struct xlb_nexthop_slot {
	__u32 seq;  /* seqlock.h */
	__u8 family; /* 0: empty */
	__u8 pad[3];
	union xlb_addr addr;
	struct xlb_nexthop nexthop;
};

/* ---- conntrack (conntrack.h) ---- */

enum xlb_ct_flags {
	XLB_CT_F_DSR = 1 << 0,
	XLB_CT_F_SNAT = 1 << 1,
	XLB_CT_F_CLOSING = 1 << 2, /* FIN or RST seen: short lifetime */
	XLB_CT_F_OPENING = 1 << 3, /* TCP, handshake not complete and the backend not heard: short lifetime, so
				    * a SYN flood or stray mid-stream packets cannot hold entries (and SNAT ports) for hours */
	XLB_CT_F_HANDSHAKE = 1 << 4, /* TCP: the SYN was answered (SNAT: the backend's SYN-ACK seen; DSR: opened by a
				      * SYN), so the client's next packet without SYN completes the handshake */
};

/* A tracked flow's state; its key is the client's tuple as it arrives (struct xlb_tuple). */
struct ct_entry {
	__u64 last_seen;        /* xlb_now() */
	__u32 service_id;
	struct lb_slot slot;    /* the backend the flow got: its id and a copy (established packets look nothing up) */
	union xlb_addr nat_addr; /* SNAT: the node address the flow leaves with */
	__be16 nat_port;         /* SNAT: the source port the flow leaves with */
	__u8 flags;              /* enum xlb_ct_flags */
	__u8 pad;
	struct xlb_nexthop nexthop; /* towards the backend */
};

/* 128 bytes: two cache lines, so with the 64-byte bucket head every way starts on a line of its own. */
/* ---- SNAT (nat.h) ---- */

/* Keyed in conntrack by the reply tuple as it arrives from the backend (backend → node:nat_port,
 * kind XLB_TUPLE_SNAT_REPLY). */
struct nat_reverse {
	union xlb_addr client;
	union xlb_addr service;
	__be16 client_port;
	__be16 service_port;
	struct xlb_nexthop nexthop; /* towards the client */
	__u32 backend_id;           /* of the flow: purged with it */
	__u32 service_id;
};

/* What a conntrack way holds: a flow's state, or (key kind XLB_TUPLE_SNAT_REPLY) a SNAT reverse entry. */
union ct_value {
	struct ct_entry entry;
	struct nat_reverse reverse;
};

struct ct_way {
	struct xlb_tuple key;
	union ct_value value;
	__u8 pad[8];
};

#define XLB_CT_WAYS 4

/*
 * One set of the conntrack table (conntrack.h): a flow lives in one of the XLB_CT_WAYS ways of the
 * bucket its hash picks. Tags and expiry times fill the first cache line, so a new flow — a miss, then
 * an insert into a free, expired or soonest-expiring way — reads no other line.
 * seq[i] is odd while way i is being written (a seqlock: readers retry or give up, never use a torn way).
 */
struct ct_bucket {
	__u32 seq[XLB_CT_WAYS];
	__u32 tag[XLB_CT_WAYS];     /* 0: way i is empty; else its key's hash | 1 */
	__u32 expires[XLB_CT_WAYS]; /* when way i's flow expires, in xlb_coarse_sec units */
	__u32 peer[XLB_CT_WAYS];    /* the other half of way i's SNAT flow (flow ↔ reply entry): its bucket × XLB_CT_WAYS
				     * + its way + 1; 0: none. The two expire together (conntrack.h, ct_touch_flow) */
	struct ct_way way[XLB_CT_WAYS];
};

/* What the agent asks of a conntrack sweep (xlb_ct_sweep, run through BPF_PROG_TEST_RUN), and its answer. */
enum xlb_ct_sweep_flags {
	XLB_CT_SWEEP_FLUSH = 1 << 0, /* clear every entry */
	XLB_CT_SWEEP_PURGE = 1 << 1, /* clear entries whose {service, backend} is in xlb_ct_purge */
};

struct ct_sweep {
	__u32 flags;    /* in: enum xlb_ct_sweep_flags; expired entries are always cleared */
	__u32 live;     /* out: entries left */
	__u32 cleared;  /* out: entries cleared, expired ones included */
	__u32 purged;   /* out: entries cleared by FLUSH or PURGE */
	__u32 busy;     /* out: ways skipped because a packet was writing them */
	__u32 pad;
};

/* A purge request: entries of this backend in this service; service_id 0 = in every service. */
struct ct_purge_key {
	__u32 service_id;
	__u32 backend_id;
};

/* ---- fragments (frag.h) ---- */

struct frag_key {
	union xlb_addr saddr;
	union xlb_addr daddr;
	__be32 id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct frag_ports {
	__be16 sport;
	__be16 dport;
};

/* ---- DSR, backend side (dsr_backend.h) ---- */

/* Keyed by the flow as the backend sees it arrive (client → backend). */
struct dsr_entry {
	union xlb_addr service;
	__be16 service_port;
	__u8 pad[6];
	__u64 last_seen;
};

/* LPM key of the service addresses a DSR option may name (--dsr-service-ranges): prefixlen counts the
 * 32 bits of family plus the address prefix, so an IPv4 range never covers IPv6 addresses. */
struct dsr_trust_key {
	__u32 prefixlen;
	__u32 family;
	union xlb_addr addr;
};

/* ---- cached lookups (lookup_cache.h) ---- */

enum xlb_cache_kind {
	XLB_CACHE_SERVICE = 1, /* xlb_lb_svc: struct lb_service_key → struct lb_service */
	XLB_CACHE_SLOT = 2,    /* xlb_lb_slot: struct lb_slot_key → struct lb_slot */
};

/* A key of any cached map, zero-padded, with the map it is of. */
struct xlb_cache_key {
	__u8 kind; /* enum xlb_cache_kind */
	__u8 pad[3];
	__u8 bytes[20];
} __attribute__((aligned(8))); /* compared as three u64 words */

/* One slot of the lookup cache: a cache line. */
struct xlb_lookup_cache_slot {
	__u32 seq;        /* seqlock.h */
	__u32 generation; /* of the maps when the answer was read (xlb_lb_gen) */
	struct xlb_cache_key key;
	__u8 value[24];
	__u8 found;       /* 0: the map had no such key */
	__u8 pad[7];
};

/* ---- runtime config (config.h) ---- */

struct xlb_config {
	union xlb_addr node_v4;   /* SNAT source for IPv4 flows */
	union xlb_addr node_v6;   /* SNAT source for IPv6 flows */
	__u16 nat_port_min;       /* SNAT source ports, host order */
	__u16 nat_port_max;
	__u32 event_sample;       /* 1 in N new-flow events reach the ring buffer; 0 = none */
	__u32 ct_seed;            /* conntrack hash seed: random per node, kept across agent restarts */
	__u32 clock_offset;       /* seconds added to the datapath's clock (xlb_now): 0, except in tests that age entries */
};

/* ---- counters and events (metrics.h) ---- */

struct xlb_counter {
	__u64 packets;
	__u64 bytes;
};

enum xlb_event_type {
	XLB_EVENT_DROP = 1,
	XLB_EVENT_NEW_FLOW = 2,
	XLB_EVENT_REJECT = 3,
};

struct xlb_event {
	__u64 timestamp;   /* bpf_ktime_get_ns */
	struct xlb_tuple tuple;
	__u32 ifindex;
	__u32 service_id;
	__u32 backend_id;
	__u32 src_identity; /* policy drops: the security identities of the source and destination, else 0 */
	__u32 dst_identity;
	__u8 type;         /* enum xlb_event_type */
	__u8 reason;       /* enum xlb_reason */
	__u8 direction;    /* enum xlb_direction */
	__u8 pad;
};

#endif
