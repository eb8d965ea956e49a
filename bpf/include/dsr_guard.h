/* SPDX-License-Identifier: GPL-2.0 */
/* The load balancer refuses DSR information it did not add (the wire format is in dsr.h). */
#ifndef XLB_DSR_GUARD_H
#define XLB_DSR_GUARD_H

#include <linux/ipv6.h>
#include <stddef.h>
#include "dsr.h"

/*
 * The load balancer's side: does a packet arriving for a service already carry DSR information? Only
 * the load balancer may add it; a client's own would have the backend answer from any address it
 * chose (a reflection tool). Packets without IPv4 options or IPv6 destination options (nearly all)
 * are answered without a look. Not inlined: the scan's 56 bytes of stack stay off the fast path's.
 */
static __noinline int dsr_info_present(struct xdp_md *ctx, const struct xlb_pkt *pkt)
{
	struct dsr4_scan scan = {};
	__u8 first[4];

	if (pkt->tuple.family == XLB_AF_INET6) {
		/* The backend side reads it only as the first option of a header right after the IPv6 one. */
		if (!pkt->ipv6_dstopts ||
		    bpf_xdp_load_bytes(ctx, xlb_l3_off(pkt) + offsetof(struct ipv6hdr, nexthdr), first, 1) ||
		    first[0] != IPPROTO_DSTOPTS ||
		    bpf_xdp_load_bytes(ctx, xlb_l3_off(pkt) + sizeof(struct ipv6hdr), first, sizeof(first)))
			return 0;
		return first[2] == XLB_DSR_OPT6_TYPE;
	}
	scan.len = pkt->l3_len - sizeof(struct iphdr);
	if (scan.len == 0 || scan.len > XLB_IPV4_MAX_OPTIONS ||
	    bpf_xdp_load_bytes(ctx, xlb_l3_off(pkt) + sizeof(struct iphdr), scan.options, scan.len))
		return 0;
	return dsr4_scan_options(&scan) != 0;
}

#endif
