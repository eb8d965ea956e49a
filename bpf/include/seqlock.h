/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sequence locks on map memory shared by every CPU: a writer makes the seq odd with a compare-and-swap,
 * writes, and makes it even again; a reader takes the seq before and checks it after what it read, and
 * gives up (or retries) when it changed or was odd. Writers never wait: a busy seq means "skip".
 *
 * Ordering, on every CPU the kernel runs BPF on: taking the lock is a compare-and-swap and releasing it
 * a fetch-and-add whose result is used, and BPF's fetching atomics are fully ordered on every JIT (x86
 * lock cmpxchg/xadd, arm64 ldaddal/casal): the writes inside are seen before the seq is even again. A
 * reader fences after taking the seq (an acquire) and before checking it again (a read barrier). On x86
 * loads stay in program order and the JIT keeps ours, so a compiler barrier is that fence; elsewhere
 * (arm64, where loads may pass each other; clang 14 has no BPF load-acquire) it is a fully ordered atomic
 * on a word of this CPU's own, which no other CPU's cache line shares.
 */
#ifndef XLB_SEQLOCK_H
#define XLB_SEQLOCK_H

#include "common.h"

#define XLB_READ_ONCE(x) (*(volatile typeof(x) *)&(x))

#if defined(__TARGET_ARCH_x86)
static __always_inline void xlb_seq_read_fence(void)
{
	asm volatile("" ::: "memory");
}
#else
XLB_SCRATCH(xlb_seq_fence_word, __u32)

static __always_inline void xlb_seq_read_fence(void)
{
	__u32 *word = xlb_seq_fence_word_get();
	__u32 old;

	asm volatile("" ::: "memory");
	if (!word)
		return;
	old = __sync_fetch_and_add(word, 0);
	xlb_barrier_var(old); /* used: clang emits the fetching (fully ordered) form */
}
#endif

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
	__u32 old = __sync_fetch_and_add(lock, 1);

	xlb_barrier_var(old); /* used: clang emits the fetching (fully ordered) form, not a relaxed add */
}

/* The seq a read starts from; odd means a write is under way. */
static __always_inline __u32 xlb_seq_read_begin(const __u32 *lock)
{
	__u32 seq = XLB_READ_ONCE(*lock);

	xlb_seq_read_fence();
	return seq;
}

/* Whether what was read since xlb_seq_read_begin returned `seq` is whole. */
static __always_inline int xlb_seq_read_valid(const __u32 *lock, __u32 seq)
{
	xlb_seq_read_fence();
	return !(seq & 1) && XLB_READ_ONCE(*lock) == seq;
}

#endif
