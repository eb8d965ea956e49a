// SPDX-License-Identifier: GPL-2.0
/* The benchmark's peer: the cheapest XDP program there is, measured beside xdp_lb in the same run. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
