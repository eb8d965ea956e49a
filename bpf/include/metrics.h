/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU counters by reason and direction, and the sampled event ring buffer read by `xlb monitor`. */
#ifndef XLB_METRICS_H
#define XLB_METRICS_H

#include "common.h"
#include "maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_REASON_MAX * XLB_DIR_MAX);
	__type(key, __u32);
	__type(value, struct xlb_counter);
} xlb_metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} xlb_events SEC(".maps");

XLB_BTF_TYPE(xlb_event);
XLB_BTF_ENUM(xlb_reason);
XLB_BTF_ENUM(xlb_direction);
XLB_BTF_ENUM(xlb_event_type);

/*
 * A program's paths as global functions: the verifier checks each once, on its own, instead of every
 * combination of their branches inside one function (xdp_lb's and tc_pod's exceeded its budget). Pointer
 * arguments of global functions may be NULL as far as the verifier knows, hence the checks at their top.
 */
#define XLB_SUBPROG __attribute__((noinline))

/* What happened to a packet, for the counters and events: the program's action and why. */
struct xlb_verdict {
	int action; /* the program's return: XDP_* or TC_ACT_* (bpf_redirect's) */
	int reason; /* enum xlb_reason */
	__u32 service_id;
	__u32 backend_id;
};

static __always_inline void xlb_count(int reason, int direction, __u32 bytes)
{
	__u32 key = direction * XLB_REASON_MAX + reason;
	struct xlb_counter *counter;

	if (key >= XLB_REASON_MAX * XLB_DIR_MAX)
		return;
	counter = bpf_map_lookup_elem(&xlb_metrics, &key);
	if (counter) {
		counter->packets += 1;
		counter->bytes += bytes;
	}
}

/* Best effort: a full ring buffer loses the event, never the packet. The identities are the security
 * identities of the source and destination a policy decided on (policy.h), else 0. */
static __always_inline void xlb_emit_identities(__u8 type, int reason, int direction, const struct xlb_tuple *tuple,
						__u32 ifindex, __u32 service_id, __u32 backend_id, __u32 src_identity,
						__u32 dst_identity)
{
	struct xlb_event *event = bpf_ringbuf_reserve(&xlb_events, sizeof(*event), 0);

	if (!event)
		return;
	event->timestamp = bpf_ktime_get_ns();
	__builtin_memcpy(&event->tuple, tuple, sizeof(*tuple));
	event->ifindex = ifindex;
	event->service_id = service_id;
	event->backend_id = backend_id;
	event->src_identity = src_identity;
	event->dst_identity = dst_identity;
	event->type = type;
	event->reason = reason;
	event->direction = direction;
	event->pad = 0;
	bpf_ringbuf_submit(event, 0);
}

static __always_inline void xlb_emit(__u8 type, int reason, int direction, const struct xlb_tuple *tuple,
				     __u32 ifindex, __u32 service_id, __u32 backend_id)
{
	xlb_emit_identities(type, reason, direction, tuple, ifindex, service_id, backend_id, 0, 0);
}

#endif
