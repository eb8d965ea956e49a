// SPDX-License-Identifier: GPL-2.0
/* A small object that exercises every libbpf binding call in the tests: maps of each kind the
 * datapath uses, load-time constants, XDP and tc programs, a ring buffer, map-in-map. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "xlb_test.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct xlb_test_key);
	__type(value, struct xlb_test_value);
} xlb_test_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_TEST_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xlb_test_counts SEC(".maps");

struct xlb_test_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} xlb_test_inner0 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct xlb_test_inner);
} xlb_test_outer SEC(".maps") = {
	.values = { [0] = &xlb_test_inner0 },
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 4096);
} xlb_test_events SEC(".maps");

/* Ring buffer records have no map to carry their type into BTF; this keeps it there for userspace. */
const struct xlb_test_event *xlb_test_event_btf __attribute__((unused));

/* Set at load time by the loader; the verdict the XDP program returns by default. */
const volatile __u32 xlb_test_verdict = XDP_PASS;

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&xlb_test_counts, &counter);

	if (value)
		*value += 1;
}

/* Overrides the load-time verdict when slot [0][0] of the map-in-map holds one. */
static __always_inline __u32 verdict_override(__u32 slot)
{
	__u32 key = 0;
	void *inner = bpf_map_lookup_elem(&xlb_test_outer, &slot);
	__u32 *verdict;

	if (!inner)
		return 0;
	verdict = bpf_map_lookup_elem(inner, &key);
	return verdict ? *verdict : 0;
}

SEC("xdp")
int xdp_test(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct xlb_test_event event = {};
	__u8 mac[ETH_ALEN];
	__u32 override;

	count(XLB_TEST_COUNTER_XDP);
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;

	/* Swap the MACs so tests can see the program wrote the packet. */
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	event.ifindex = ctx->ingress_ifindex;
	event.len = data_end - data;
	event.proto = eth->h_proto;
	bpf_ringbuf_output(&xlb_test_events, &event, sizeof(event), 0);

	override = verdict_override(0);
	return override ? override : xlb_test_verdict;
}

/* The live-frames generator: every frame goes back out of the interface it was "received" on. */
SEC("xdp")
int xdp_test_tx(struct xdp_md *ctx)
{
	count(XLB_TEST_COUNTER_TX);
	return XDP_TX;
}

SEC("tc")
int tc_test_ingress(struct __sk_buff *skb)
{
	count(XLB_TEST_COUNTER_TC_INGRESS);
	return TC_ACT_OK;
}

SEC("tc")
int tc_test_egress(struct __sk_buff *skb)
{
	count(XLB_TEST_COUNTER_TC_EGRESS);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
