// SPDX-License-Identifier: GPL-2.0
/*
 * DSR, backend side: tc programs on every node's devices. Ingress remembers and strips the service
 * address the load balancer put on a flow's first packet; egress gives that flow's replies, and ICMP
 * errors about it, the service address as their source. Logic in dsr_backend.h. Ingress also sends on
 * what this node's xdp_lb translated but could not transmit yet (xfer.h): the LB's own packets.
 */
#include "dsr_backend.h"
#include "xfer.h"

SEC("tc")
int tc_dsr_ingress(struct __sk_buff *skb)
{
	__u32 egress = xfer_take(skb);
	struct xlb_pkt pkt = {};

	if (egress) {
		xlb_count(XLB_FWD_NEIGH_RESOLVE, XLB_DIR_INGRESS, skb->len);
		return bpf_redirect_neigh(egress, NULL, 0, 0);
	}
	/* Not IP, or headers the stack will judge for itself: none of our business. */
	if (dsr_backend_parse(skb, &pkt) != XLB_PARSE_OK)
		return TC_ACT_OK;
	return dsr_backend_verdict(skb, &pkt, dsr_backend_receive(skb, &pkt), XLB_DIR_INGRESS);
}

SEC("tc")
int tc_dsr_egress(struct __sk_buff *skb)
{
	struct xlb_pkt pkt = {};
	int ret;

	if (dsr_backend_parse(skb, &pkt) != XLB_PARSE_OK)
		return TC_ACT_OK;
	if (pkt.frag == XLB_FRAG_LATER)
		ret = dsr_backend_rewrite_later_fragment(skb, &pkt);
	else if (pkt.icmp_error)
		ret = dsr_backend_rewrite_icmp_error(skb, &pkt);
	else
		ret = dsr_backend_rewrite_reply(skb, &pkt);
	return dsr_backend_verdict(skb, &pkt, ret, XLB_DIR_EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
