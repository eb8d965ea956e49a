// SPDX-License-Identifier: GPL-2.0
/*
 * The throughput bench's ceiling for an XDP load balancer: one hash lookup (service address and port →
 * its endpoints), one endpoint picked by a hash of the client's address and port, the destination
 * rewritten (checksums updated incrementally), a hop taken off the TTL, the MACs of the one next hop
 * written, and the frame redirected to the device toward the endpoints. No conntrack, no FIB lookup,
 * no counters: what any XDP forwarder must at least do, timed the same way as xlb.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"

#define XLB_FWD_MAX_ENDPOINTS 16

struct xlb_fwd_key {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct xlb_fwd_service {
	__u32 count;
	__be16 port; /* the endpoints' port */
	__u16 pad;
	__be32 endpoints[XLB_FWD_MAX_ENDPOINTS];
};

/* The one next hop: the device toward the endpoints and the MACs to write. */
struct xlb_fwd_nexthop {
	__u32 ifindex;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct xlb_fwd_key);
	__type(value, struct xlb_fwd_service);
} xlb_fwd_svcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_fwd_nexthop);
} xlb_fwd_nexthop SEC(".maps");

SEC("xdp")
int xdp_fwd_min(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	struct xlb_fwd_key key = {};
	struct xlb_fwd_service *svc;
	struct xlb_fwd_nexthop *nh;
	__u32 zero = 0, hash, count, index;
	__be32 daddr, endpoint;
	__be16 dport;

	if ((void *)(tcp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_TCP || ip->ttl <= 1)
		return XDP_PASS;
	key.addr = ip->daddr;
	key.port = tcp->dest;
	svc = bpf_map_lookup_elem(&xlb_fwd_svcs, &key);
	nh = bpf_map_lookup_elem(&xlb_fwd_nexthop, &zero);
	if (!svc || !nh)
		return XDP_PASS;
	count = svc->count;
	if (count == 0 || count > XLB_FWD_MAX_ENDPOINTS)
		return XDP_DROP;
	hash = (ip->saddr ^ ((__u32)tcp->source << 16)) * 0x9e3779b1;
	index = (hash >> 16) % count;
	asm volatile("" : "+r"(index)); /* keep the bound below for the verifier */
	endpoint = svc->endpoints[index & (XLB_FWD_MAX_ENDPOINTS - 1)];

	daddr = ip->daddr;
	dport = tcp->dest;
	ip->daddr = endpoint;
	tcp->dest = svc->port;
	xlb_csum_replace4(&ip->check, daddr, endpoint);
	xlb_csum_replace4(&tcp->check, daddr, endpoint);
	xlb_csum_replace2(&tcp->check, dport, svc->port);
	xlb_csum_replace2(&ip->check, bpf_htons((__u16)ip->ttl << 8), bpf_htons((__u16)(ip->ttl - 1) << 8));
	ip->ttl--;
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	return bpf_redirect(nh->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
