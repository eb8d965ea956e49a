/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The EDT bandwidth manager: a pod's egress rate enforced by Earliest Departure Time. Each packet of a
 * rate-limited pod is given the time it may leave (skb->tstamp) so that the pod's packets leave at
 * its rate; the fq qdisc on the egress device holds each packet until then. A packet that would have
 * to wait longer than the horizon is dropped instead: the pod sends faster than its rate for longer
 * than the horizon allows, and a queue of seconds helps nobody.
 *
 * Pods are told apart by the device their packets came into the node by (skb->ingress_ifindex: the
 * host side of the pod's veth), which a forwarded packet keeps up to the node's egress device.
 *
 * Every packet leaving the node looks its device up, rated or not: a device index below
 * XLB_EDT_DIRECT_PODS is the index of its entry in an array (xlb_edt, rate 0: no limit), found without
 * hashing; a hash lookup cost ~20 ns a packet more here. Larger indexes (a node that has made that many
 * devices since boot: the kernel hands indexes out in turn) are in the hash xlb_edt_far, as correct and
 * as slow as before.
 */
#ifndef XLB_EDT_H
#define XLB_EDT_H

#include <linux/pkt_cls.h>
#include "common.h"
#include "metrics.h"
#include "seqlock.h"

#define XLB_NSEC_PER_SEC 1000000000ULL
/* What the agent's --edt-horizon defaults to, and what the datapath uses before the agent says. */
#define XLB_EDT_DEFAULT_HORIZON_NS (2 * XLB_NSEC_PER_SEC)
#define XLB_EDT_MAX_PODS 65536
#define XLB_EDT_DIRECT_PODS 16384

/* One pod's egress rate and where its schedule stands. */
struct edt_rate {
	__u64 rate;   /* bytes per second the pod may send; 0 = no limit */
	__u64 t_last; /* departure time (bpf_ktime_get_ns) given to the pod's latest packet; compare-and-swapped */
};

struct edt_config {
	__u64 horizon_ns; /* a packet departing this far past now or later is dropped */
};

/* ifindex of the pod's host-side device → its rate, for indexes below XLB_EDT_DIRECT_PODS (the agent
 * reads the bound as this map's size). The agent writes rate and a zero t_last; a zero rate: no limit.
 * Written in place (an array's element is not replaced, as a hash's is): edt_schedule reads the rate
 * once, and a compare-and-swap that lands after the agent's zero only keeps the old schedule going. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_EDT_DIRECT_PODS);
	__type(key, __u32);
	__type(value, struct edt_rate);
} xlb_edt SEC(".maps");

/* The same for the devices with larger indexes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_EDT_MAX_PODS);
	__type(key, __u32);
	__type(value, struct edt_rate);
} xlb_edt_far SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edt_config);
} xlb_edt_config SEC(".maps");

/* The rate of the pod behind device `ifindex`, or NULL: no limit. */
static __always_inline struct edt_rate *edt_rate_of(__u32 ifindex)
{
	struct edt_rate *info;

	/* Two calls kept apart (the barrier): one call on either map would be a helper call for both, as
	 * the verifier inlines an array's lookup only where the map is known. */
	if (ifindex < XLB_EDT_DIRECT_PODS) {
		info = bpf_map_lookup_elem(&xlb_edt, &ifindex);
		barrier_var(info);
	} else {
		info = bpf_map_lookup_elem(&xlb_edt_far, &ifindex);
	}
	return info && info->rate ? info : NULL;
}

static __always_inline __u64 edt_horizon(void)
{
	__u32 zero = 0;
	struct edt_config *config = bpf_map_lookup_elem(&xlb_edt_config, &zero);

	return config && config->horizon_ns ? config->horizon_ns : XLB_EDT_DEFAULT_HORIZON_NS;
}

/* How often a packet tries to advance its pod's schedule before giving up (other CPUs advancing it meanwhile). */
#define XLB_EDT_CAS_TRIES 4

/*
 * Advance the pod's schedule by a packet of `len` bytes sent at `t` (its own departure time, or now):
 * the time its rate takes to send the packet. 0 with *departure 0 when the packet may leave at once
 * (the pod is under its rate); 0 with the departure time, now the pod's latest, when it must wait;
 * -XLB_DROP_EDT_HORIZON when it would leave the horizon or more past now (the horizon is read only
 * then: a pod under its rate never needs it). len × 1e9 stays far below 2^64
 * for any skb (len < 2^32), so the delay is exact to the nanosecond, rounded down.
 *
 * The schedule is one per pod, advanced by every CPU its packets run on: t_last moves by compare-and-swap
 * (a spin lock cost about twice as much per packet). A packet that loses the race XLB_EDT_CAS_TRIES times —
 * the pod sending from several CPUs at once, far over its rate — is dropped as over the horizon: letting
 * it leave unscheduled would break the rate.
 */
static __always_inline int edt_schedule(struct edt_rate *info, __u64 len, __u64 t, __u64 now, __u64 *departure)
{
	__u64 rate = info->rate;
	__u64 delay, last, next, horizon = 0;
	int i;

	*departure = 0;
	if (rate == 0)
		return 0;
	delay = len * XLB_NSEC_PER_SEC / rate;
	for (i = 0; i < XLB_EDT_CAS_TRIES; i++) {
		last = XLB_READ_ONCE(info->t_last);
		next = last + delay;
		if (next <= t) {
			if (__sync_val_compare_and_swap(&info->t_last, last, t) == last)
				return 0;
			continue;
		}
		if (!horizon)
			horizon = edt_horizon();
		if (next - now >= horizon)
			return -XLB_DROP_EDT_HORIZON;
		if (__sync_val_compare_and_swap(&info->t_last, last, next) == last) {
			*departure = next;
			return 0;
		}
	}
	return -XLB_DROP_EDT_HORIZON;
}

/*
 * Give a packet leaving by a node device its departure time, when the pod it came from has a rate;
 * TC_ACT_SHOT past the horizon (counted as edt_horizon, egress). Otherwise TC_ACT_UNSPEC: no verdict,
 * so the tc filters after this one (tc_dsr_egress, which rewrites DSR replies) still see the packet. The time is written as
 * a monotonic delivery time, which fq paces by and which stays with the packet across a veth (a plain
 * write of skb->tstamp at egress leaves it a receive time, cleared when it changes namespace).
 */
static __always_inline int edt_sched_departure(struct __sk_buff *skb)
{
	struct edt_rate *info = edt_rate_of(skb->ingress_ifindex);
	__u64 now, t, departure;

	if (!info)
		return TC_ACT_UNSPEC;
	now = bpf_ktime_get_ns();
	t = skb->tstamp > now ? skb->tstamp : now;
	if (edt_schedule(info, skb->len, t, now, &departure) < 0) {
		xlb_count(XLB_DROP_EDT_HORIZON, XLB_DIR_EGRESS, skb->len);
		return TC_ACT_SHOT;
	}
	if (departure)
		bpf_skb_set_tstamp(skb, departure, BPF_SKB_TSTAMP_DELIVERY_MONO);
	return TC_ACT_UNSPEC;
}

XLB_BTF_TYPE(edt_config);

#endif
