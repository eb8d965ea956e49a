/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Hand-over from xdp_lb to tc for a translated packet whose next hop has no neighbour entry yet (the
 * first packet to a new backend or client). XDP cannot queue a packet while ARP/ND runs, so it marks
 * the packet in its XDP metadata and passes it up; tc ingress on the same device sees the mark first
 * and sends the packet on with bpf_redirect_neigh(), which resolves the next hop and queues the packet
 * meanwhile. The packet thus leaves exactly as later ones do (DSR option included), it never meets
 * the stack's forwarding path, and the node's own DSR receive side never mistakes it for traffic to a
 * local backend. Cilium hands packets from XDP to tc the same way (ctx_move_xfer).
 */
#ifndef XLB_XFER_H
#define XLB_XFER_H

#include <linux/pkt_cls.h>
#include "common.h"

#define XLB_XFER_MAGIC 0x786c6231 /* "xlb1": the metadata is ours */

struct xlb_xfer {
	__u32 magic;
	__u32 ifindex; /* egress device the FIB chose */
};

/* XDP: mark the packet for tc and pass it up, its verdict (new flow, reply ...) kept; XDP_DROP when the
 * driver keeps no metadata. */
static __always_inline int xfer_to_tc(struct xdp_md *ctx, __u32 ifindex, int *reason_out)
{
	struct xlb_xfer *xfer;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*xfer))) {
		/* Passing it unmarked would let the stack forward it and our DSR receive side consume its
		 * option: a packet with the service's information stripped is worse than one lost. */
		*reason_out = XLB_DROP_NO_NEIGH;
		return XDP_DROP;
	}
	xfer = (void *)(long)ctx->data_meta;
	if ((void *)(xfer + 1) > (void *)(long)ctx->data) {
		*reason_out = XLB_DROP_NO_NEIGH;
		return XDP_DROP;
	}
	xfer->magic = XLB_XFER_MAGIC;
	xfer->ifindex = ifindex;
	return XDP_PASS;
}

/*
 * tc ingress: the egress device xdp_lb marked the packet for, or 0 when it carries no mark. The mark
 * is wiped as it is read: the kernel keeps an skb's metadata when a veth hands it to its peer, and a
 * mark that survived into the next node would make its tc send the packet to a device of ours.
 */
static __always_inline __u32 xfer_take(struct __sk_buff *skb)
{
	struct xlb_xfer *xfer = (void *)(long)skb->data_meta;

	if ((void *)(xfer + 1) > (void *)(long)skb->data || xfer->magic != XLB_XFER_MAGIC)
		return 0;
	xfer->magic = 0;
	return xfer->ifindex;
}

#endif
