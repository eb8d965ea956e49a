// SPDX-License-Identifier: GPL-2.0
/*
 * What one cache miss costs on this machine, for the datapath benchmark: each run reads one word of a
 * random line of a conntrack-sized array, and the next run's address depends on what it read, so the
 * misses cannot overlap. memory_latency_base does the same but the read. A new flow into a table too big
 * for the caches waits for at least one such miss: the bucket its key hashes to.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define XLB_MEMORY_LINES ((38 << 20) / 64) /* as many lines as the default conntrack table's 38 MB */

struct line {
	__u64 words[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_MEMORY_LINES);
	__type(key, __u32);
	__type(value, struct line);
} xlb_memory SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xlb_memory_chain SEC(".maps");

/* The next line to read: a mixed counter (the array is all zeros, so chaining changes no address). */
static __always_inline __u32 next_line(__u64 *chain)
{
	__u32 x = ++*chain;

	x *= 0x9e3779b1;
	x ^= x >> 15;
	x *= 0x85ebca6b;
	x ^= x >> 13;
	return x % XLB_MEMORY_LINES;
}

SEC("xdp")
int memory_latency(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *chain = bpf_map_lookup_elem(&xlb_memory_chain, &zero);
	struct line *line;
	__u32 index;

	if (!chain)
		return XDP_ABORTED;
	index = next_line(chain);
	line = bpf_map_lookup_elem(&xlb_memory, &index);
	if (!line)
		return XDP_ABORTED;
	*chain += line->words[index & 7];
	return XDP_PASS;
}

SEC("xdp")
int memory_latency_base(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *chain = bpf_map_lookup_elem(&xlb_memory_chain, &zero);

	if (!chain)
		return XDP_ABORTED;
	return next_line(chain) == ~0U ? XDP_ABORTED : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
