// SPDX-License-Identifier: GPL-2.0
/*
 * The EDT bandwidth manager at tc egress of the node's devices: every packet a rate-limited pod sends
 * out of the node gets its departure time, or is dropped past the horizon. Logic in edt.h; the rates
 * are the agent's (agent/edt-datapath.ts). It shares tc_dsr_egress's tc priority under a handle of its
 * own, attached after it: cls_bpf runs the newest filter of a priority first, so this one sees every
 * packet and hands it on without a verdict.
 */
#include "edt.h"

SEC("tc")
int tc_edt_egress(struct __sk_buff *skb)
{
	return edt_sched_departure(skb);
}

char LICENSE[] SEC("license") = "GPL";
