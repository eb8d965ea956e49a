// SPDX-License-Identifier: GPL-2.0
/* The cheapest XDP program there is: the benchmark's peer, measured beside xdp_lb in the same run, and
 * what gives a veth NAPI so frames sent into it with XDP_TX are received (see agent/lab/topology.ts). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
