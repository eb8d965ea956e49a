/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sequence locks on map memory shared by every CPU: a writer makes the seq odd with a compare-and-swap,
 * writes, and makes it even again; a reader takes the seq before and checks it after what it read, and
 * gives up (or retries) when it changed or was odd. Writers never wait: a busy seq means "skip".
 * Readers rely on loads staying in program order, which x86 guarantees and the JIT preserves.
 */
#ifndef XLB_SEQLOCK_H
#define XLB_SEQLOCK_H

#include "common.h"

#define XLB_READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/* Take the lock: 1 when this CPU now holds it (*seq is the even value it had), 0 when another does. */
static __always_inline int xlb_seq_write_begin(__u32 *lock, __u32 *seq)
{
	*seq = XLB_READ_ONCE(*lock);
	if (*seq & 1)
		return 0;
	return __sync_val_compare_and_swap(lock, *seq, *seq + 1) == *seq;
}

/* Release it: a full barrier, so the writes before are visible before the seq is even again. */
static __always_inline void xlb_seq_write_end(__u32 *lock)
{
	__sync_fetch_and_add(lock, 1);
}

/* The seq a read starts from; odd means a write is under way. */
static __always_inline __u32 xlb_seq_read_begin(const __u32 *lock)
{
	return XLB_READ_ONCE(*lock);
}

/* Whether what was read since xlb_seq_read_begin returned `seq` is whole. */
static __always_inline int xlb_seq_read_valid(const __u32 *lock, __u32 seq)
{
	asm volatile("" ::: "memory");
	return !(seq & 1) && XLB_READ_ONCE(*lock) == seq;
}

#endif
