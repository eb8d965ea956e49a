/* SPDX-License-Identifier: GPL-2.0 */
/* Runtime configuration the agent can change without reloading programs (node addresses, SNAT ports). */
#ifndef XLB_CONFIG_H
#define XLB_CONFIG_H

#include "common.h"
#include "maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_config);
} xlb_config SEC(".maps");

static __always_inline struct xlb_config *xlb_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_config, &zero);
}

#endif
