/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The DSR wire format, shared by the load balancer (adds it) and the backend side (reads it).
 * IPv4: an IP option, type 0x9A (copied, class 0, number 26), length 8: {service port, service address}.
 * IPv6: a destination options header of 24 bytes holding one option, type 0x1B (skip if unknown, may not
 * change en route), length 18: {service address, service port}, then two Pad1 bytes.
 * Only the first packet of a flow carries it (TCP SYN, first UDP datagram).
 */
#ifndef XLB_DSR_H
#define XLB_DSR_H

#include <linux/ip.h>
#include "common.h"
#include "parse.h"

#define XLB_DSR_OPT4_TYPE 0x9A
#define XLB_DSR_OPT4_LEN 8
#define XLB_DSR_OPT6_TYPE 0x1B
#define XLB_DSR_OPT6_LEN 18
#define XLB_DSR_DOH6_LEN 24
#define XLB_IPV4_MAX_OPTIONS 40
#define XLB_IPOPT_END 0
#define XLB_IPOPT_NOP 1

struct xlb_dsr_opt4 {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};

struct xlb_dsr_doh6 {
	__u8 nexthdr;
	__u8 hdrlen;   /* in 8-byte units, not counting the first 8: 2 */
	__u8 opt_type;
	__u8 opt_len;
	__be32 addr[4];
	__be16 port;
	__u8 pad1[2];  /* two Pad1 options */
};

/* The IPv4 options, copied to the stack for dsr4_scan_step to walk. */
struct dsr4_scan {
	__u8 options[XLB_IPV4_MAX_OPTIONS];
	__u32 len;
	__u32 next;  /* offset of the option to look at */
	__u32 at;    /* offset of ours, when found */
	int found;   /* 1 found, 0 not (yet), -XLB_DROP_DSR_OPTION wrong length */
};

/*
 * One option per bpf_loop turn: the callback is verified once however the options vary, where an
 * open-coded walk (NOP or not, at every offset) multiplies the verifier's paths past its limit.
 */
static long dsr4_scan_step(__u64 index, void *ctx)
{
	struct dsr4_scan *scan = ctx;
	__u32 i = scan->next;
	__u8 type, len;

	if (i >= scan->len || i >= XLB_IPV4_MAX_OPTIONS)
		return 1;
	type = scan->options[i];
	if (type == XLB_IPOPT_END)
		return 1;
	if (type == XLB_IPOPT_NOP) {
		scan->next = i + 1;
		return 0;
	}
	if (i + 1 >= scan->len || i + 1 >= XLB_IPV4_MAX_OPTIONS)
		return 1;
	len = scan->options[i + 1];
	if (type == XLB_DSR_OPT4_TYPE) {
		scan->found = len == XLB_DSR_OPT4_LEN && i + XLB_DSR_OPT4_LEN <= scan->len ? 1 : -XLB_DROP_DSR_OPTION;
		scan->at = i;
		return 1;
	}
	if (len < 2)
		return 1; /* broken options: the stack's own parser rejects the packet */
	scan->next = i + len;
	return 0;
}

/* Walk the options copied into scan (options, len): 1 with scan->at = our option's offset, 0 when absent,
 * or -XLB_DROP_DSR_OPTION when it is there with the wrong length. */
static __always_inline int dsr4_scan_options(struct dsr4_scan *scan)
{
	/* Every turn but the last consumes at least one byte. */
	bpf_loop(XLB_IPV4_MAX_OPTIONS + 1, dsr4_scan_step, scan, 0);
	return scan->found;
}

#endif
