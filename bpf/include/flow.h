/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The start of a new flow to a service, the same for xdp_lb (north-south) and tc_pod (pods): the
 * source ranges, a backend, and the conntrack entry's first fields. What the flow then needs (DSR,
 * SNAT, a pod's DNAT or hairpin) is the program's.
 */
#ifndef XLB_FLOW_H
#define XLB_FLOW_H

#include "common.h"
#include "conntrack.h"
#include "lb.h"
#include "maps.h"
#include "parse.h"

/*
 * *ct filled for a new flow of `svc` (dsr: the flow's SYN will carry the DSR option): 0, or a negative
 * reason — XLB_REJECT_NO_BACKEND when the service has no backend (answered), drops otherwise.
 */
static __always_inline int flow_start(const struct lb_service *svc, const struct xlb_pkt *pkt, struct ct_entry *ct,
				      __u32 generation, __u64 now, int dsr)
{
	if (!lb_source_allowed(svc, &pkt->tuple))
		return -XLB_DROP_SOURCE_RANGE;
	__builtin_memset(ct, 0, sizeof(*ct));
	if (!lb_select_backend(svc, &pkt->tuple, now, generation, &ct->slot))
		/* traffic policy Local without a backend on this node: dropped, as kube-proxy does */
		return svc->flags & XLB_SVC_F_LOCAL ? -XLB_DROP_NO_BACKEND : -XLB_REJECT_NO_BACKEND;
	ct->last_seen = now;
	ct->service_id = svc->id;
	/* TCP lives briefly until its handshake ends or its backend answers, a flow picked up mid-stream too */
	if (pkt->tuple.proto == IPPROTO_TCP)
		ct->flags = ct_open_flags(pkt, dsr);
	return 0;
}

#endif
