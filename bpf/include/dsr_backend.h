/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The backend side of DSR, run by tc on every node. The first packet of a DSR flow arrives carrying the
 * service address (dsr.h): remember it per flow in xlb_dsr_ct and strip it, so the local stack sees a
 * plain packet; then give the backend's replies (and ICMP errors it sends about those flows) the service
 * address and port as their source, so they go straight to the client.
 *
 * Packet edits go through helpers (bpf_skb_store_bytes, bpf_l3/l4_csum_replace), not direct writes with
 * csum.h: locally generated TCP/UDP replies are CHECKSUM_PARTIAL (the L4 field holds only the
 * pseudo-header sum, the device adds the rest), and bpf_l4_csum_replace knows to update such a field
 * the other way round and to leave port changes to the device; BPF_F_RECOMPUTE_CSUM keeps a received
 * CHECKSUM_COMPLETE skb->csum right. csum.h serves the copies we edit on the stack.
 */
#ifndef XLB_DSR_BACKEND_H
#define XLB_DSR_BACKEND_H

#include <linux/pkt_cls.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "common.h"
#include "parse.h"
#include "maps.h"
#include "csum.h"
#include "metrics.h"
#include "dsr.h"
#include "frag.h"

/* As many flows as the load balancer's conntrack holds: an entry evicted while its flow lives would
 * let the replies out with the backend's own address. */
#define XLB_DSR_CT_SIZE 262144

/* Keyed by the flow as it arrives at the backend (client → backend); LRU so idle flows age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XLB_DSR_CT_SIZE);
	__type(key, struct xlb_tuple);
	__type(value, struct dsr_entry);
} xlb_dsr_ct SEC(".maps");

/* The service address the first fragment of a DSR reply went out with, by datagram (backend's
 * addresses, IP id, protocol): later fragments carry no ports to find their flow by, and must leave
 * with the same source or the client cannot reassemble the datagram. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, union xlb_addr);
} xlb_dsr_frag SEC(".maps");

/* The service addresses a DSR option may name: a client that reaches a backend directly cannot have its
 * replies leave from any address it likes (a reflection tool), only from the load balancers' own. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dsr_trust_key);
	__type(value, __u8);
} xlb_dsr_trust SEC(".maps");

/* Parse what the skb head holds, pulling more into it if it stops inside the headers (parse.h). */
static __always_inline int dsr_backend_parse(struct __sk_buff *skb, struct xlb_pkt *pkt)
{
	return xlb_parse_skb(skb, pkt);
}

static __always_inline int dsr_backend_record(const struct xlb_pkt *pkt, const union xlb_addr *service, __be16 port)
{
	struct dsr_entry entry = { .service_port = port, .last_seen = bpf_ktime_get_ns() };
	struct dsr_trust_key trust = { .prefixlen = 32 + 128, .family = pkt->tuple.family, .addr = *service };

	if (!bpf_map_lookup_elem(&xlb_dsr_trust, &trust))
		return -XLB_DROP_DSR_UNTRUSTED;
	/* Later fragments have no ports; the first fragment recorded the flow. */
	if (pkt->frag == XLB_FRAG_LATER)
		return XLB_DSR_RECEIVED;
	entry.service = *service;
	if (bpf_map_update_elem(&xlb_dsr_ct, &pkt->tuple, &entry, BPF_ANY))
		return -XLB_DROP_CT_FULL;
	return XLB_DSR_RECEIVED;
}

/*
 * Find our option among the IPv4 options: 1 with scan->at = its offset from the end of the base header,
 * 0 when absent, or a negative drop reason when it is there with the wrong length.
 */
static __always_inline int dsr4_find_option(struct __sk_buff *skb, const struct xlb_pkt *pkt, struct dsr4_scan *scan)
{
	scan->len = pkt->l3_len - sizeof(struct iphdr);
	if (scan->len == 0 || scan->len > XLB_IPV4_MAX_OPTIONS ||
	    bpf_skb_load_bytes(skb, pkt->l3_off + sizeof(struct iphdr), scan->options, scan->len))
		return 0;
	return dsr4_scan_options(scan);
}

/*
 * Remove our option (at scan->at) and fix ihl, tot_len and the header checksum. adjust_room(NET) removes
 * bytes right after the 20-byte base header, so the new header (the other options closed up, in order) is
 * built on the stack first and written over what remains. 1 when stripped, 0 when the option had to stay
 * (the stack ignores options it does not know), or a negative drop reason when the packet was left
 * half-edited.
 */
static __always_inline int dsr4_strip_option(struct __sk_buff *skb, const struct xlb_pkt *pkt, const struct dsr4_scan *scan)
{
	__u32 l3 = pkt->l3_off;
	__u64 hlen = (__u64)pkt->l3_len - XLB_DSR_OPT4_LEN; /* 64-bit: the bounds checked are the ones used */
	__u32 header[15] = {};
	struct iphdr *ip = (struct iphdr *)header;
	__u8 *options = (__u8 *)header + sizeof(struct iphdr);
	__u32 j;

	/* adjust_room measures from the MAC header: an in-band VLAN tag (only seen under test) moves L3. */
	if (l3 != sizeof(struct ethhdr) || hlen < sizeof(struct iphdr) || hlen > sizeof(struct iphdr) + XLB_IPV4_MAX_OPTIONS - XLB_DSR_OPT4_LEN)
		return 0;
	if (bpf_skb_load_bytes(skb, l3, header, sizeof(struct iphdr)))
		return 0;
#pragma unroll
	for (j = 0; j < XLB_IPV4_MAX_OPTIONS - XLB_DSR_OPT4_LEN; j++) {
		__u32 from = j < scan->at ? j : j + XLB_DSR_OPT4_LEN;

		if (from < XLB_IPV4_MAX_OPTIONS)
			options[j] = scan->options[from];
	}
	ip->ihl = hlen / 4;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) - XLB_DSR_OPT4_LEN);
	ip->check = 0;
	ip->check = xlb_csum_fold(bpf_csum_diff(0, 0, header, hlen, 0));
	if (bpf_skb_adjust_room(skb, -XLB_DSR_OPT4_LEN, BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return 0;
	if (bpf_skb_store_bytes(skb, l3, header, hlen, BPF_F_RECOMPUTE_CSUM))
		return -XLB_DROP_UNSUPPORTED;
	return 1;
}

static __always_inline int dsr4_receive(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	struct dsr4_scan scan = {};
	struct xlb_dsr_opt4 opt;
	union xlb_addr service = {};
	int ret;

	if (pkt->l3_len == sizeof(struct iphdr))
		return XLB_PASS_NOT_SERVICE; /* no options: the common case, decided without a look */
	ret = dsr4_find_option(skb, pkt, &scan);
	if (ret <= 0)
		return ret < 0 ? ret : XLB_PASS_NOT_SERVICE;
	if (scan.at > XLB_IPV4_MAX_OPTIONS - sizeof(opt))
		return -XLB_DROP_DSR_OPTION;
	__builtin_memcpy(&opt, &scan.options[scan.at], sizeof(opt));
	service.v4 = opt.addr;
	ret = dsr_backend_record(pkt, &service, opt.port);
	if (ret < 0)
		return ret;
	ret = dsr4_strip_option(skb, pkt, &scan);
	return ret < 0 ? ret : XLB_DSR_RECEIVED;
}

/* Remove the destination options header that follows the IPv6 header; same return values as dsr4_strip_option. */
static __always_inline int dsr6_strip_header(struct __sk_buff *skb, const struct xlb_pkt *pkt, __u8 nexthdr)
{
	__u32 l3 = pkt->l3_off;
	struct ipv6hdr ip6;

	if (l3 != sizeof(struct ethhdr))
		return 0;
	if (bpf_skb_adjust_room(skb, -XLB_DSR_DOH6_LEN, BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return 0;
	if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)))
		return -XLB_DROP_UNSUPPORTED;
	ip6.payload_len = bpf_htons(bpf_ntohs(ip6.payload_len) - XLB_DSR_DOH6_LEN);
	ip6.nexthdr = nexthdr;
	if (bpf_skb_store_bytes(skb, l3, &ip6, offsetof(struct ipv6hdr, saddr), BPF_F_RECOMPUTE_CSUM))
		return -XLB_DROP_UNSUPPORTED;
	return 1;
}

static __always_inline int dsr6_receive(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + pkt->l3_off;
	struct xlb_dsr_doh6 *doh = (void *)(ip6 + 1);
	union xlb_addr service;
	__be16 port;
	__u8 nexthdr;
	int ret;

	if ((void *)(doh + 1) > data_end || ip6->nexthdr != IPPROTO_DSTOPTS || doh->opt_type != XLB_DSR_OPT6_TYPE)
		return XLB_PASS_NOT_SERVICE;
	if (doh->hdrlen != XLB_DSR_DOH6_LEN / 8 - 1 || doh->opt_len != XLB_DSR_OPT6_LEN)
		return -XLB_DROP_DSR_OPTION;
	__builtin_memcpy(service.v6, doh->addr, sizeof(service.v6));
	port = doh->port;
	nexthdr = doh->nexthdr;
	ret = dsr_backend_record(pkt, &service, port);
	if (ret < 0)
		return ret;
	ret = dsr6_strip_header(skb, pkt, nexthdr);
	return ret < 0 ? ret : XLB_DSR_RECEIVED;
}

/* Ingress: XLB_DSR_RECEIVED, XLB_PASS_NOT_SERVICE, or a negative drop reason. */
static __always_inline int dsr_backend_receive(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	return pkt->tuple.family == XLB_AF_INET ? dsr4_receive(skb, pkt) : dsr6_receive(skb, pkt);
}

static __always_inline __u32 dsr_saddr_off(const struct xlb_pkt *pkt)
{
	return pkt->l3_off + (pkt->tuple.family == XLB_AF_INET ? offsetof(struct iphdr, saddr) : offsetof(struct ipv6hdr, saddr));
}

/*
 * Give the packet a new source address and port: the IPv4 header checksum, the L4 checksum at csum_off
 * (pseudo-header, then port; 0 = none to fix: SCTP's CRC covers no pseudo-header), then the bytes.
 */
static __always_inline int dsr_rewrite_source(struct __sk_buff *skb, const struct xlb_pkt *pkt, __u32 csum_off,
					      __u64 csum_flags, const union xlb_addr *to, __be16 to_port)
{
	const union xlb_addr *from = &pkt->tuple.saddr;
	__be16 from_port = pkt->tuple.sport;

	if (pkt->tuple.family == XLB_AF_INET) {
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, from->v4, to->v4, csum_flags | BPF_F_PSEUDO_HDR | 4))
			return -XLB_DROP_UNSUPPORTED;
		if (bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), from->v4, to->v4, 4) ||
		    bpf_skb_store_bytes(skb, dsr_saddr_off(pkt), &to->v4, 4, 0))
			return -XLB_DROP_UNSUPPORTED;
	} else {
		__s64 diff = bpf_csum_diff((__be32 *)from->v6, 16, (__be32 *)to->v6, 16, 0);

		if (csum_off && bpf_l4_csum_replace(skb, csum_off, 0, diff, csum_flags | BPF_F_PSEUDO_HDR | BPF_F_IPV6))
			return -XLB_DROP_UNSUPPORTED;
		if (bpf_skb_store_bytes(skb, dsr_saddr_off(pkt), to->v6, 16, 0))
			return -XLB_DROP_UNSUPPORTED;
	}
	if (from_port == to_port)
		return 0;
	if ((csum_off && bpf_l4_csum_replace(skb, csum_off, from_port, to_port, csum_flags | 2)) ||
	    bpf_skb_store_bytes(skb, pkt->l4_off, &to_port, 2, 0))
		return -XLB_DROP_UNSUPPORTED;
	return 0;
}

/* Egress, a reply of a DSR flow (backend → client): source becomes the service. */
static __always_inline int dsr_backend_rewrite_reply(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	struct xlb_tuple flow = {
		.saddr = pkt->tuple.daddr, .daddr = pkt->tuple.saddr,
		.sport = pkt->tuple.dport, .dport = pkt->tuple.sport,
		.proto = pkt->tuple.proto, .family = pkt->tuple.family,
	};
	struct dsr_entry *entry;
	union xlb_addr service;
	__be16 service_port;
	__u32 csum_off = 0;
	__u64 flags = 0;
	int ret;

	if (pkt->tuple.proto == IPPROTO_TCP) {
		csum_off = pkt->l4_off + offsetof(struct tcphdr, check);
	} else if (pkt->tuple.proto == IPPROTO_UDP) {
		csum_off = pkt->l4_off + offsetof(struct udphdr, check);
		flags = BPF_F_MARK_MANGLED_0; /* IPv4 "no checksum" stays 0; a computed 0 becomes 0xffff */
	} else if (pkt->tuple.proto != IPPROTO_SCTP) {
		return XLB_PASS_NOT_SERVICE;
	}
	entry = bpf_map_lookup_elem(&xlb_dsr_ct, &flow);
	if (!entry)
		return XLB_PASS_NOT_SERVICE;
	entry->last_seen = bpf_ktime_get_ns();
	service = entry->service;
	service_port = entry->service_port;
	/* SCTP's CRC32c covers the ports and cannot be updated incrementally here. */
	if (pkt->tuple.proto == IPPROTO_SCTP && service_port != pkt->tuple.sport)
		return -XLB_DROP_UNSUPPORTED;
	ret = dsr_rewrite_source(skb, pkt, csum_off, flags, &service, service_port);
	if (ret < 0)
		return ret;
	if (pkt->frag == XLB_FRAG_FIRST) {
		struct frag_key key = {};

		frag_key_of(pkt, &key);
		bpf_map_update_elem(&xlb_dsr_frag, &key, &service, BPF_ANY);
	}
	return XLB_DSR_REPLY;
}

/* Egress, a later fragment of a DSR reply: the source its first fragment got (no L4 header here; the
 * first fragment's L4 checksum already covers the whole datagram's new pseudo-header). */
static __always_inline int dsr_backend_rewrite_later_fragment(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	struct frag_key key = {};
	union xlb_addr *service;
	int ret;

	frag_key_of(pkt, &key);
	service = bpf_map_lookup_elem(&xlb_dsr_frag, &key);
	if (!service)
		return XLB_PASS_NOT_SERVICE; /* not a fragment of a DSR reply */
	ret = dsr_rewrite_source(skb, pkt, 0, 0, service, pkt->tuple.sport);
	return ret < 0 ? ret : XLB_DSR_REPLY;
}

/* The start of the packet an ICMP error quotes: its IP header and the first 8 bytes of its L4 header. */
struct dsr_quote_l4 {
	__be16 sport;
	__be16 dport;
	__be16 udp_len;   /* TCP: sequence number */
	__sum16 udp_check;
};

union dsr_quote {
	struct {
		struct iphdr ip;
		struct dsr_quote_l4 l4;
	} v4;
	struct {
		struct ipv6hdr ip;
		struct dsr_quote_l4 l4;
	} v6;
};

/*
 * Egress, an ICMP error the backend sends about a DSR flow (quoting client → backend): the quoted
 * destination becomes the service, and so does the outer source when the backend itself is the sender.
 * The quote is edited on the stack, the ICMP checksum updated by the difference, and both written
 * back. A quoted TCP checksum (beyond the first 8 bytes) is left as it is: receivers do not check it.
 */
static __always_inline int dsr_backend_rewrite_icmp_error(struct __sk_buff *skb, const struct xlb_pkt *pkt)
{
	__u32 quote_off = pkt->l4_off + 8;
	__u32 csum_off = pkt->l4_off + 2;
	union dsr_quote old, new;
	struct xlb_tuple flow = { .family = pkt->tuple.family };
	struct dsr_quote_l4 *l4 = pkt->tuple.family == XLB_AF_INET ? &new.v4.l4 : &new.v6.l4;
	__u32 size = pkt->tuple.family == XLB_AF_INET ? sizeof(new.v4) : sizeof(new.v6);
	struct dsr_entry *entry;
	union xlb_addr service;
	__sum16 csum;
	__s64 sum;

	__builtin_memset(&old, 0, sizeof(old));
	if (bpf_skb_load_bytes(skb, quote_off, &old, size) || bpf_skb_load_bytes(skb, csum_off, &csum, sizeof(csum)))
		return XLB_PASS_NOT_SERVICE;
	new = old;
	if (pkt->tuple.family == XLB_AF_INET) {
		if (old.v4.ip.ihl != 5)
			return XLB_PASS_NOT_SERVICE;
		flow.saddr.v4 = old.v4.ip.saddr;
		flow.daddr.v4 = old.v4.ip.daddr;
		flow.proto = old.v4.ip.protocol;
	} else {
		__builtin_memcpy(flow.saddr.v6, &old.v6.ip.saddr, 16);
		__builtin_memcpy(flow.daddr.v6, &old.v6.ip.daddr, 16);
		flow.proto = old.v6.ip.nexthdr;
	}
	if (flow.proto != IPPROTO_TCP && flow.proto != IPPROTO_UDP)
		return XLB_PASS_NOT_SERVICE;
	flow.sport = l4->sport;
	flow.dport = l4->dport;
	entry = bpf_map_lookup_elem(&xlb_dsr_ct, &flow);
	if (!entry)
		return XLB_PASS_NOT_SERVICE;
	service = entry->service;

	if (flow.proto == IPPROTO_UDP && l4->udp_check) {
		xlb_csum_replace_addr(&l4->udp_check, flow.family, &flow.daddr, &service);
		xlb_csum_replace2(&l4->udp_check, l4->dport, entry->service_port);
		if (!l4->udp_check)
			l4->udp_check = 0xffff;
	}
	l4->dport = entry->service_port;
	if (pkt->tuple.family == XLB_AF_INET) {
		new.v4.ip.daddr = service.v4;
		xlb_csum_replace4(&new.v4.ip.check, flow.daddr.v4, service.v4);
	} else {
		__builtin_memcpy(&new.v6.ip.daddr, service.v6, 16);
	}
	sum = bpf_csum_diff((__be32 *)&old, size, (__be32 *)&new, size, (__u16)~csum);
	/* ICMPv6 also covers the outer source through its pseudo-header. */
	if (pkt->tuple.family == XLB_AF_INET6 && xlb_addr_equal(&pkt->tuple.saddr, &flow.daddr))
		sum = bpf_csum_diff((__be32 *)pkt->tuple.saddr.v6, 16, service.v6, 16, sum);
	csum = xlb_csum_fold(sum);
	if (bpf_skb_store_bytes(skb, quote_off, &new, size, 0) || bpf_skb_store_bytes(skb, csum_off, &csum, sizeof(csum), 0))
		return -XLB_DROP_UNSUPPORTED;
	if (!xlb_addr_equal(&pkt->tuple.saddr, &flow.daddr))
		return XLB_FWD_ICMP_ERROR; /* sent by a router on the way, not by the backend: its source stays */
	if (pkt->tuple.family == XLB_AF_INET) {
		if (bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), flow.daddr.v4, service.v4, 4) ||
		    bpf_skb_store_bytes(skb, dsr_saddr_off(pkt), &service.v4, 4, 0))
			return -XLB_DROP_UNSUPPORTED;
	} else if (bpf_skb_store_bytes(skb, dsr_saddr_off(pkt), service.v6, 16, 0)) {
		return -XLB_DROP_UNSUPPORTED;
	}
	return XLB_FWD_ICMP_ERROR;
}

/* Count what happened and turn it into a tc verdict; ordinary traffic is neither counted nor touched. */
static __always_inline int dsr_backend_verdict(struct __sk_buff *skb, const struct xlb_pkt *pkt, int ret, int direction)
{
	if (ret < 0) {
		xlb_count(-ret, direction, skb->len);
		xlb_emit(XLB_EVENT_DROP, -ret, direction, &pkt->tuple, skb->ifindex, 0, 0);
		return TC_ACT_SHOT;
	}
	if (ret != XLB_PASS_NOT_SERVICE)
		xlb_count(ret, direction, skb->len);
	return TC_ACT_OK;
}

#endif
