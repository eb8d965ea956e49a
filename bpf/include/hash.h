/* SPDX-License-Identifier: GPL-2.0 */
/* Bob Jenkins' lookup3 mixing (the kernel's jhash), inline: flow hashes for Maglev and conntrack. */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include "common.h"
#include "parse.h"

static __always_inline __u32 xlb_rol32(__u32 word, int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

#define XLB_JHASH_MIX(a, b, c)                                   \
	do {                                                     \
		a -= c; a ^= xlb_rol32(c, 4); c += b;            \
		b -= a; b ^= xlb_rol32(a, 6); a += c;            \
		c -= b; c ^= xlb_rol32(b, 8); b += a;            \
		a -= c; a ^= xlb_rol32(c, 16); c += b;           \
		b -= a; b ^= xlb_rol32(a, 19); a += c;           \
		c -= b; c ^= xlb_rol32(b, 4); b += a;            \
	} while (0)

static __always_inline __u32 xlb_jhash_final(__u32 a, __u32 b, __u32 c)
{
	c ^= b; c -= xlb_rol32(b, 14);
	a ^= c; a -= xlb_rol32(c, 11);
	b ^= a; b -= xlb_rol32(a, 25);
	c ^= b; c -= xlb_rol32(b, 16);
	a ^= c; a -= xlb_rol32(c, 4);
	b ^= a; b -= xlb_rol32(a, 14);
	c ^= b; c -= xlb_rol32(b, 24);
	return c;
}

/*
 * The seeded hash of a whole tuple: every byte counts, so a table hashed by it cannot be flooded with
 * tuples that only differ where a cheaper fold would cancel out. An IPv4 tuple has three words of
 * substance (the rest of its addresses is zero): one final mix of those, as the kernel's jhash_3words;
 * IPv6, jhash2 over all ten words.
 */
static __always_inline __u32 xlb_tuple_hash(const struct xlb_tuple *tuple, __u32 seed)
{
	const __u32 *k = (const __u32 *)tuple;
	__u32 init = 0xdeadbeef + (sizeof(*tuple) / 4 << 2) + seed;
	__u32 a = init, b = init, c = init;

	_Static_assert(sizeof(*tuple) == 40, "xlb_tuple is ten words");
	if (tuple->family == XLB_AF_INET)
		return xlb_jhash_final(k[0] + 0xdeadbeef, k[4] + 0xdeadbeef, k[8] + seed + k[9]);
	a += k[0]; b += k[1]; c += k[2];
	XLB_JHASH_MIX(a, b, c);
	a += k[3]; b += k[4]; c += k[5];
	XLB_JHASH_MIX(a, b, c);
	a += k[6]; b += k[7]; c += k[8];
	XLB_JHASH_MIX(a, b, c);
	a += k[9];
	return xlb_jhash_final(a, b, c);
}

#endif
