/* SPDX-License-Identifier: GPL-2.0 */
/* Types, constants and the one reason enum every xlb program shares. */
#ifndef XLB_COMMON_H
#define XLB_COMMON_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define XLB_AF_INET 2
#define XLB_AF_INET6 10

/*
 * Room for a value of `value_type` off the 512-byte BPF stack, which the program's paths share: a
 * one-slot per-CPU array `name`, and name_get() for this CPU's slot. XDP and tc programs run to
 * completion on their CPU, so nothing else touches the slot meanwhile.
 */
#define XLB_SCRATCH(name, value_type)                                                  \
	struct {                                                                       \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                               \
		__uint(max_entries, 1);                                                \
		__type(key, __u32);                                                    \
		__type(value, value_type);                                             \
	} name SEC(".maps");                                                           \
	static __always_inline value_type *name##_get(void)                            \
	{                                                                              \
		__u32 zero = 0;                                                        \
		return bpf_map_lookup_elem(&name, &zero);                              \
	}

/* Hides a value from the compiler so a bound check it could prove redundant stays for the verifier. */
#define xlb_barrier_var(var) asm volatile("" : "+r"(var))

/* Keeps a type in the object's BTF when no map names it (ring buffer records, config values), so the
 * TypeScript codecs can be checked against it. */
#define XLB_BTF_TYPE(type) const struct type *__xlb_btf_##type __attribute__((unused))
#define XLB_BTF_ENUM(type) const enum type *__xlb_btf_##type __attribute__((unused))

/* An IPv4 or IPv6 address; IPv4 sits in the first 4 bytes, the rest zero, so one key serves both. */
union xlb_addr {
	__be32 v4;
	__be32 v6[4];
	__u8 bytes[16];
};

static __always_inline int xlb_addr_equal(const union xlb_addr *a, const union xlb_addr *b)
{
	return !((a->v6[0] ^ b->v6[0]) | (a->v6[1] ^ b->v6[1]) | (a->v6[2] ^ b->v6[2]) | (a->v6[3] ^ b->v6[3]));
}

/*
 * Why a packet went where it went. One enum for the XDP and tc programs, the per-CPU counters
 * (index = direction * XLB_REASON_MAX + reason), the ring-buffer events, metrics labels and
 * `xlb monitor`. Reasons from XLB_DROP_FIRST on are drops; functions return them negated.
 */
enum xlb_reason {
	XLB_FWD_NEW_FLOW = 0,      /* first packet of a flow sent to a backend */
	XLB_FWD_ESTABLISHED,       /* later packet of a tracked flow sent to its backend */
	XLB_FWD_REPLY,             /* SNAT reply translated back towards the client */
	XLB_FWD_ICMP_ERROR,        /* ICMP error of a tracked flow translated and forwarded */
	XLB_PASS_NOT_SERVICE,      /* not for a service: left to the kernel stack */
	XLB_PASS_FRAGMENT,         /* fragment of a flow we do not track: left to the stack */
	XLB_REJECT_NO_BACKEND,     /* service without backends: ICMP unreachable sent back (kube-proxy REJECT) */
	XLB_DSR_RECEIVED,          /* backend side: DSR option read, service address remembered */
	XLB_DSR_REPLY,             /* backend side: reply source rewritten to the service address */
	XLB_CT_EVICTED,            /* not a verdict: a new flow took the conntrack way of a live one (table full) */
	XLB_FWD_NEIGH_RESOLVE,     /* tc: a packet xdp_lb translated (and counted) sent on while its next hop resolves */
	XLB_POD_HAIRPIN = 12,      /* not a verdict: a pod's new flow whose backend is that pod (tc_pod: its source becomes the service) */
	XLB_PASS_UNPARSED = 13,    /* headers xdp_lb does not translate (a VLAN tag, many IPv6 extensions): the stack's */
	XLB_SOCK_XLATE = 14,       /* socket-LB: a connect() or sendmsg() to a service given a backend's address instead */
	XLB_SOCK_REVERSE = 15,     /* socket-LB: recvmsg() / getpeername() shown the service's address for a backend's */
	XLB_FORWARD_REASON_MAX,

	XLB_DROP_FIRST = 16,
	XLB_DROP_MALFORMED = XLB_DROP_FIRST, /* truncated or inconsistent headers */
	XLB_DROP_NO_BACKEND,       /* service without usable backends, and no reject possible */
	XLB_DROP_SOURCE_RANGE,     /* source not in the service's loadBalancerSourceRanges */
	XLB_DROP_CT_FULL,          /* conntrack insert failed */
	XLB_DROP_NAT_NO_PORT,      /* no free SNAT port for the flow */
	XLB_DROP_NAT_FULL,         /* SNAT map insert failed */
	XLB_DROP_FIB,              /* the FIB refused the packet for a reason without a name below */
	XLB_DROP_FRAG_NEEDED,      /* too big for the next hop: ICMP frag-needed / packet-too-big sent back (IPv4: when
				    * DF is set or our DSR option grew it; the MTU told is less the option) */
	XLB_DROP_UNSUPPORTED,      /* a header we cannot translate (e.g. unknown IPv6 extension) */
	XLB_DROP_BACKEND_GONE,     /* tracked backend no longer exists and no other is available */
	XLB_DROP_DSR_OPTION,       /* DSR option present but malformed */
	XLB_DROP_ICMP_QUOTE,       /* ICMP error whose quoted packet we cannot read */
	XLB_DROP_CT_BUSY,          /* the flow's conntrack entry was rewritten while the packet read it */
	/* The FIB's own answers (BPF_FIB_LKUP_RET_*) for a translated packet it would not forward: */
	XLB_DROP_FIB_BLACKHOLE,    /* the route is a blackhole */
	XLB_DROP_FIB_UNREACHABLE,  /* the route is unreachable (no route, or an unreachable route) */
	XLB_DROP_FIB_PROHIBIT,     /* the route is prohibit (administratively refused) */
	XLB_DROP_FIB_NOT_FORWARDED,/* the destination is this node itself, or not a unicast route */
	XLB_DROP_FIB_FWD_DISABLED, /* forwarding is disabled on the device (the forwarding sysctl) */
	XLB_DROP_FIB_NO_SRC_ADDR,  /* no source address for the route */
	XLB_DROP_NO_NEIGH,         /* no next-hop MAC, and the driver cannot hand the packet to tc (no XDP metadata) */
	XLB_DROP_TTL_EXCEEDED = 36, /* TTL / hop limit 1 or 0 on a packet to forward: ICMP time exceeded sent back */
	XLB_DROP_ICMP_RATE_LIMITED = 37, /* a packet to be answered with an ICMP error (unreachable, time exceeded,
					  * too big) dropped unanswered: xlb's ICMP errors are over their rate (ratelimit.h) */
	XLB_DROP_DSR_SPOOFED = 44, /* a packet to a service already carrying DSR information: only the LB adds it */
	XLB_DROP_DSR_UNTRUSTED = 45, /* backend side: a DSR option naming a service address outside --dsr-service-ranges */
	XLB_DROP_SOCK_REVNAT = 46, /* socket-LB: the socket's reverse entry could not be stored; connect() / sendmsg() refused */
	XLB_DROP_POLICY_EGRESS = 47,  /* tc_pod: a pod's new connection out that no network policy of the pod allows */
	XLB_DROP_POLICY_INGRESS = 48, /* tc_pod: a new connection to a pod that no network policy of the pod allows */
	XLB_DROP_EDT_HORIZON = 49, /* EDT: a pod's packet would leave later than the horizon past now (over its egress rate) */
	XLB_REASON_MAX = 64,
};

enum xlb_direction {
	XLB_DIR_INGRESS = 0,
	XLB_DIR_EGRESS = 1,
	XLB_DIR_MAX = 2,
};

static __always_inline int xlb_is_drop(int reason)
{
	return reason >= XLB_DROP_FIRST;
}

#endif
