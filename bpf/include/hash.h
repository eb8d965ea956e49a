/* SPDX-License-Identifier: GPL-2.0 */
/* Bob Jenkins' lookup3 final mix (the kernel's jhash_3words), inline: flow hashes for Maglev and conntrack. */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include "common.h"
#include "parse.h"

static __always_inline __u32 xlb_rol32(__u32 word, int shift)
{
	return (word << shift) | (word >> (32 - shift));
}

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
 * The conntrack hash of a tuple: one seeded final mix (the kernel's jhash_3words) of the source, the
 * destination and ports + protocol. IPv6 addresses are folded to a word first. Tuples made to collide
 * (the fold is easy to invert for someone choosing source addresses) only share a bucket: in a
 * set-associative table they evict each other and at most the bucket's other ways, never lengthen
 * anyone's lookup the way chains in a hash map would. `ports`: the tuple's ports word, or a stand-in
 * for it (conntrack places SNAT reply entries by a hash without their node port).
 */
static __always_inline __u32 xlb_tuple_hash_ports(const struct xlb_tuple *tuple, __u32 ports, __u32 seed)
{
	const __u32 *s = tuple->saddr.v6;
	const __u32 *d = tuple->daddr.v6;
	const __u32 *k = (const __u32 *)tuple;

	_Static_assert(sizeof(*tuple) == 40, "xlb_tuple: saddr, daddr, then the ports word and the protocol word");
	return xlb_jhash_final((s[0] ^ s[1] ^ s[2] ^ s[3]) + 0xdeadbeef, (d[0] ^ d[1] ^ d[2] ^ d[3]) + 0xdeadbeef,
			       ports + seed + k[9]);
}

static __always_inline __u32 xlb_tuple_hash(const struct xlb_tuple *tuple, __u32 seed)
{
	return xlb_tuple_hash_ports(tuple, ((const __u32 *)tuple)[8], seed);
}

#endif
