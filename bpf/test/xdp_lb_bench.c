// SPDX-License-Identifier: GPL-2.0
/*
 * A harness to time xdp_lb's new-flow path in the kernel's repeat loop. BPF_PROG_TEST_RUN runs a
 * program repeatedly on one frame that the program may rewrite, so xdp_lb would see its own output
 * from the second run on. The wrapper restores the frame from a template and gives each run a flow of
 * its own — source port and the low 16 bits of the source address from a counter, 64000 × 65536 flows
 * before one repeats — then runs the very same xdp_lb code (included, not copied). Past the conntrack
 * table's size every new flow evicts an old one: the steady state of a busy node.
 * xdp_template_only does the restoring alone: the peer that measures the harness's own cost.
 * xdp_lb_same_flow / xdp_template_same_only restore the template's one flow every run instead.
 */
#include "../xdp/xdp_lb.c"

#define XLB_BENCH_FRAME_LEN 80

struct xlb_bench_frame {
	__u32 sport_offset; /* where the frame's TCP/UDP source port is */
	__u32 saddr_offset; /* where the last two bytes of its source address are */
	__u8 bytes[XLB_BENCH_FRAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_bench_frame);
} xlb_bench_tmpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xlb_bench_seq SEC(".maps");

/* Put the template back (undoing a grown head first), as a flow of its own when new_flow; 0 on success. */
static __always_inline int bench_restore(struct xdp_md *ctx, int new_flow)
{
	__u32 zero = 0;
	struct xlb_bench_frame *tmpl = bpf_map_lookup_elem(&xlb_bench_tmpl, &zero);
	__u32 *seq = bpf_map_lookup_elem(&xlb_bench_seq, &zero);
	void *data, *data_end;
	__be16 *port, *host;
	__u32 flow;
	int grown = (int)(ctx->data_end - ctx->data) - XLB_BENCH_FRAME_LEN;

	if (!tmpl || !seq)
		return -1;
	if (grown && bpf_xdp_adjust_head(ctx, grown))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + XLB_BENCH_FRAME_LEN > data_end)
		return -1;
	__builtin_memcpy(data, tmpl->bytes, XLB_BENCH_FRAME_LEN);
	if (!new_flow)
		return 0;
	port = data + (tmpl->sport_offset & 0x7f);
	host = data + (tmpl->saddr_offset & 0x7f);
	if ((void *)(port + 1) > data_end || (void *)(host + 1) > data_end)
		return -1;
	flow = (*seq)++;
	*port = bpf_htons(1024 + flow % 64000);
	*host = bpf_htons(flow / 64000);
	return 0;
}

SEC("xdp")
int xdp_lb_new_flows(struct xdp_md *ctx)
{
	if (bench_restore(ctx, 1))
		return XDP_ABORTED;
	return xdp_lb_packet(ctx);
}

SEC("xdp")
int xdp_template_only(struct xdp_md *ctx)
{
	return bench_restore(ctx, 1) ? XDP_ABORTED : XDP_TX;
}

/* The template's own flow every run: established from the second run on, whatever the translation
 * does to the frame (SNAT rewrites both ends, so a frame cannot be fed back as it comes out). */
SEC("xdp")
int xdp_lb_same_flow(struct xdp_md *ctx)
{
	if (bench_restore(ctx, 0))
		return XDP_ABORTED;
	return xdp_lb_packet(ctx);
}

SEC("xdp")
int xdp_template_same_only(struct xdp_md *ctx)
{
	return bench_restore(ctx, 0) ? XDP_ABORTED : XDP_TX;
}
