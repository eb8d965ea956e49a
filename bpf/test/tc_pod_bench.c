// SPDX-License-Identifier: GPL-2.0
/*
 * A harness to time tc_pod in the kernel's repeat loop (bench/east-west/tc.ts). BPF_PROG_TEST_RUN runs
 * a program repeatedly on one skb that the program may rewrite, so tc_pod would see its own output from
 * the second run on. The wrappers restore the frame from a template first, as a flow of its own each run
 * (source port and the low 16 bits of the source address from a counter) or the template's one flow,
 * then run the very same tc_pod code (included, not copied). tc_template_only / tc_template_same_only
 * do the restoring alone: the harness's own cost, subtracted. tc_pass is the pass-through peer.
 */
#include "../tc/tc_pod.c"

#define XLB_TC_BENCH_FRAME_LEN 96

struct xlb_tc_bench_frame {
	__u32 sport_offset; /* where the frame's TCP/UDP source port is */
	__u32 saddr_offset; /* where the last two bytes of its source address are */
	__u8 bytes[XLB_TC_BENCH_FRAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_tc_bench_frame);
} xlb_tcb_tmpl SEC(".maps");

/* One counter for every CPU (not per CPU): a run that migrates mid-loop must not repeat flows still in conntrack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} xlb_tcb_seq SEC(".maps");

/* Put the template back (the skb is XLB_TC_BENCH_FRAME_LEN bytes), as a flow of its own when new_flow. */
static __always_inline int tcb_restore(struct __sk_buff *skb, int new_flow)
{
	__u32 zero = 0;
	struct xlb_tc_bench_frame *tmpl = bpf_map_lookup_elem(&xlb_tcb_tmpl, &zero);
	__u32 *seq = bpf_map_lookup_elem(&xlb_tcb_seq, &zero);
	__be16 port, host;
	__u32 flow;

	if (!tmpl || !seq || bpf_skb_store_bytes(skb, 0, tmpl->bytes, XLB_TC_BENCH_FRAME_LEN, 0))
		return -1;
	if (!new_flow)
		return 0;
	flow = __sync_fetch_and_add(seq, 1);
	port = bpf_htons(1024 + flow % 64000);
	host = bpf_htons(flow / 64000);
	if (bpf_skb_store_bytes(skb, tmpl->sport_offset & 0x7f, &port, 2, 0) ||
	    bpf_skb_store_bytes(skb, tmpl->saddr_offset & 0x7f, &host, 2, 0))
		return -1;
	return 0;
}

SEC("tc")
int tc_pod_new_flows(struct __sk_buff *skb)
{
	return tcb_restore(skb, 1) ? TC_ACT_SHOT : tc_pod_from_pod(skb);
}

SEC("tc")
int tc_pod_same_flow(struct __sk_buff *skb)
{
	return tcb_restore(skb, 0) ? TC_ACT_SHOT : tc_pod_from_pod(skb);
}

SEC("tc")
int tc_pod_same_reply(struct __sk_buff *skb)
{
	return tcb_restore(skb, 0) ? TC_ACT_SHOT : tc_pod_to_pod(skb);
}

SEC("tc")
int tc_template_only(struct __sk_buff *skb)
{
	return tcb_restore(skb, 1) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc")
int tc_template_same_only(struct __sk_buff *skb)
{
	return tcb_restore(skb, 0) ? TC_ACT_SHOT : TC_ACT_OK;
}

/* The cheapest tc program there is: the peer every figure is measured beside. */
SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
