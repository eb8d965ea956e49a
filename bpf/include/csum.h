/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Incremental Internet checksum updates (RFC 1624: HC' = ~(~HC + ~m + m')) on packet memory, usable
 * from XDP and tc alike. Values are summed as loaded (network order): one's complement sums do not
 * care about byte order as long as every term uses the same one.
 */
#ifndef XLB_CSUM_H
#define XLB_CSUM_H

#include "common.h"

/* Fold a 32-bit one's complement sum to 16 bits and complement it: the checksum field's value. */
static __always_inline __sum16 xlb_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

static __always_inline __u32 xlb_csum_add32(__u32 sum, __be32 from, __be32 to)
{
	return sum + (__u16)~from + (__u16)~(from >> 16) + (to & 0xffff) + (to >> 16);
}

static __always_inline void xlb_csum_replace4(__sum16 *csum, __be32 from, __be32 to)
{
	*csum = xlb_csum_fold(xlb_csum_add32((__u16)~*csum, from, to));
}

/* Two 32-bit words changed under *csum (e.g. both addresses of an IPv4 header): one fold. */
static __always_inline void xlb_csum_replace4x2(__sum16 *csum, __be32 from1, __be32 to1, __be32 from2, __be32 to2)
{
	*csum = xlb_csum_fold(xlb_csum_add32(xlb_csum_add32((__u16)~*csum, from1, to1), from2, to2));
}

static __always_inline void xlb_csum_replace2(__sum16 *csum, __be16 from, __be16 to)
{
	*csum = xlb_csum_fold((__u16)~*csum + (__u16)~from + to);
}

/* An IPv6 address (four words) changed under *csum. */
static __always_inline void xlb_csum_replace16(__sum16 *csum, const __be32 *from, const __be32 *to)
{
	__u32 sum = (__u16)~*csum;

	sum = xlb_csum_add32(sum, from[0], to[0]);
	sum = xlb_csum_add32(sum, from[1], to[1]);
	sum = xlb_csum_add32(sum, from[2], to[2]);
	sum = xlb_csum_add32(sum, from[3], to[3]);
	*csum = xlb_csum_fold(sum);
}

/* An address under *csum changed, v4 or v6. */
static __always_inline void xlb_csum_replace_addr(__sum16 *csum, __u8 family, const union xlb_addr *from,
						  const union xlb_addr *to)
{
	if (family == XLB_AF_INET)
		xlb_csum_replace4(csum, from->v4, to->v4);
	else
		xlb_csum_replace16(csum, from->v6, to->v6);
}

#endif
