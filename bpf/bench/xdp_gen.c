// SPDX-License-Identifier: GPL-2.0
/*
 * The throughput bench's traffic generator: run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES
 * on the generator's veth, it writes a whole frame (Ethernet, IPv4, TCP, payload: 64 bytes) into every
 * page the kernel hands it and sends it with XDP_TX. The whole frame, every time: live-frame pages are
 * recycled and keep whatever the receiving side wrote into them (a MAC rewrite, a TTL, a DSR option
 * pushed in front), so a frame only patched would leave with a foreign destination MAC and be dropped.
 *
 * Each frame belongs to flow `seq & flow_mask` (established: a fixed set of flows that cycle) or to a
 * flow of its own (new flows: flow_mask ~0, every frame a SYN from an address and port never used in
 * this configuration). A flow's client is saddr_base + low 13 bits, its port 1024 + the next 15 bits;
 * its destination is service (flow % services), address daddr_base + service * daddr_stride, plus
 * (flow / services) % fanout when the frames go to the endpoints themselves (plain routing).
 * Checksums are the template's, updated incrementally (RFC 1624) for what changed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"

#define XLB_GEN_FRAME_LEN 64
#define XLB_GEN_CLIENT_BITS 13
#define XLB_GEN_PORT_BITS 15
#define XLB_GEN_PORT_BASE 1024

/* Written by userspace before each run; `seq` counts the frames sent since (one generator at a time:
 * a live test run stays on its CPU, so a plain increment is enough). */
struct xlb_gen_config {
	__u8 frame[XLB_GEN_FRAME_LEN]; /* the template: flow 0 to service 0, checksums valid */
	__u64 seq;
	__u32 flow_mask;
	__u32 flow_base;
	__u32 services;
	__u32 fanout;
	__u32 daddr_stride;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_gen_config);
} xlb_gen_config SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_gen_config *cfg;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 zero = 0, flow, service, pick, saddr, daddr, services, fanout;
	__be32 saddr0, daddr0;
	__be16 sport0, sport;

	cfg = bpf_map_lookup_elem(&xlb_gen_config, &zero);
	if (!cfg || data + XLB_GEN_FRAME_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->frame, XLB_GEN_FRAME_LEN);

	flow = cfg->flow_base + ((__u32)cfg->seq & cfg->flow_mask);
	cfg->seq++;
	services = cfg->services ? cfg->services : 1;
	fanout = cfg->fanout ? cfg->fanout : 1;
	service = flow % services;
	pick = (flow / services) % fanout;

	saddr0 = ip->saddr;
	daddr0 = ip->daddr;
	sport0 = tcp->source;
	saddr = bpf_ntohl(saddr0) + (flow & ((1 << XLB_GEN_CLIENT_BITS) - 1));
	daddr = bpf_ntohl(daddr0) + service * cfg->daddr_stride + pick;
	sport = bpf_htons(XLB_GEN_PORT_BASE + ((flow >> XLB_GEN_CLIENT_BITS) & ((1 << XLB_GEN_PORT_BITS) - 1)));

	ip->saddr = bpf_htonl(saddr);
	ip->daddr = bpf_htonl(daddr);
	tcp->source = sport;
	xlb_csum_replace4x2(&ip->check, saddr0, ip->saddr, daddr0, ip->daddr);
	xlb_csum_replace4x2(&tcp->check, saddr0, ip->saddr, daddr0, ip->daddr);
	xlb_csum_replace2(&tcp->check, sport0, sport);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
