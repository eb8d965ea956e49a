// SPDX-License-Identifier: GPL-2.0
/* A tc program that lets every packet pass: the peer a tc program's cost is measured beside. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
