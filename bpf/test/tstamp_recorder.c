// SPDX-License-Identifier: GPL-2.0
/*
 * What a peer receives, with the departure time it was given: at tc ingress, every IPv4 UDP packet to
 * tstamp_port is recorded — skb->tstamp, its type and the packet's length — in arrival order, up to
 * TSTAMP_RECORDS packets (test/e2e/edt.test.ts). Reading tstamp_type makes skb->tstamp read as it is:
 * otherwise tc ingress reads a delivery time as 0.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TSTAMP_RECORDS 4096

struct tstamp_record {
	__u64 tstamp;
	__u32 len;
	__u8 tstamp_type; /* BPF_SKB_TSTAMP_DELIVERY_MONO when a delivery time came across */
	__u8 pad[3];
};

const volatile __u16 tstamp_port = 9;

/* The packets seen (also past TSTAMP_RECORDS); packets may arrive on several CPUs at once. */
struct tstamp_count {
	struct bpf_spin_lock lock;
	__u32 packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tstamp_count);
} tstamp_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TSTAMP_RECORDS);
	__type(key, __u32);
	__type(value, struct tstamp_record);
} tstamp_records SEC(".maps");

static __always_inline int is_recorded(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	if (skb->protocol != bpf_htons(ETH_P_IP) || bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) ||
	    ip.protocol != IPPROTO_UDP || bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, &udp, sizeof(udp)))
		return 0;
	return udp.dest == bpf_htons(tstamp_port);
}

SEC("tc")
int tstamp_record(struct __sk_buff *skb)
{
	__u32 zero = 0, index;
	struct tstamp_count *count = bpf_map_lookup_elem(&tstamp_count, &zero);
	struct tstamp_record *record;

	if (!count || !is_recorded(skb))
		return TC_ACT_OK;
	bpf_spin_lock(&count->lock);
	index = count->packets++;
	bpf_spin_unlock(&count->lock);
	record = bpf_map_lookup_elem(&tstamp_records, &index);
	if (record) {
		record->tstamp = skb->tstamp;
		record->tstamp_type = skb->tstamp_type;
		record->len = skb->len;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
