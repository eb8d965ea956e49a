// SPDX-License-Identifier: GPL-2.0
/*
 * The throughput bench's sink, on the backends' side of the node: counts every IPv4 TCP frame that
 * arrives and drops it, before anything else sees it (no stack, no socket: what the node forwarded is
 * all that is measured). It also counts what says the node really load-balanced: frames to the
 * endpoints' range, frames from the node's SNAT address, frames carrying an IPv4 option (DSR).
 * Anything else (ARP, the node's neighbour discovery) goes to the stack.
 *
 * Two hooks, one count: xdp_sink where the node sends with XDP_REDIRECT (a veth takes those only
 * with an XDP program on its peer), tc_sink where the node's stack sends skbs — an XDP program there
 * would make the veth copy every skb into a page of its own first, a cost of the sink's that would be
 * charged to the node.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The counters, one per-CPU array slot each (userspace sums the CPUs). */
enum xlb_sink_counter {
	XLB_SINK_PACKETS,
	XLB_SINK_TO_ENDPOINTS,
	XLB_SINK_FROM_NODE,
	XLB_SINK_IP_OPTIONS,
	XLB_SINK_COUNTERS,
};

struct xlb_sink_config {
	__u32 endpoints_first; /* host order: the endpoints' addresses, first to last */
	__u32 endpoints_last;
	__be32 node_addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sink_config);
} xlb_sink_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XLB_SINK_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} xlb_sink_counts SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&xlb_sink_counts, &counter);

	if (value)
		*value += 1;
}

/* 1: a TCP frame of the bench, counted; 0: something else, for the stack. */
static __always_inline int sink_count(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct xlb_sink_config *cfg;
	__u32 zero = 0;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP)
		return 0;
	count(XLB_SINK_PACKETS);
	cfg = bpf_map_lookup_elem(&xlb_sink_config, &zero);
	if (cfg) {
		if (bpf_ntohl(ip->daddr) - cfg->endpoints_first <= cfg->endpoints_last - cfg->endpoints_first)
			count(XLB_SINK_TO_ENDPOINTS);
		if (ip->saddr == cfg->node_addr)
			count(XLB_SINK_FROM_NODE);
	}
	if (ip->ihl > 5)
		count(XLB_SINK_IP_OPTIONS);
	return 1;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	return sink_count((void *)(long)ctx->data, (void *)(long)ctx->data_end) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int tc_sink(struct __sk_buff *skb)
{
	return sink_count((void *)(long)skb->data, (void *)(long)skb->data_end) ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
