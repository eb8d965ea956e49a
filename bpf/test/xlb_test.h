/* SPDX-License-Identifier: GPL-2.0 */
#ifndef XLB_TEST_H
#define XLB_TEST_H

#include <linux/types.h>

enum xlb_test_counter {
	XLB_TEST_COUNTER_XDP,
	XLB_TEST_COUNTER_TX,
	XLB_TEST_COUNTER_TC_INGRESS,
	XLB_TEST_COUNTER_TC_EGRESS,
	XLB_TEST_COUNTER_MAX,
};

struct xlb_test_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct xlb_test_value {
	__u64 packets;
	__u64 bytes;
	__u32 last_len;
	__u32 pad;
};

struct xlb_test_event {
	__u32 ifindex;
	__u32 len;
	__be16 proto;
	__u8 pad[6];
};

#endif
