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

#include "common.h"

#define XLB_DSR_OPT4_TYPE 0x9A
#define XLB_DSR_OPT4_LEN 8
#define XLB_DSR_OPT6_TYPE 0x1B
#define XLB_DSR_OPT6_LEN 18
#define XLB_DSR_DOH6_LEN 24

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

#endif
