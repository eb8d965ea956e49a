/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packet parsing shared by the XDP and tc programs: Ethernet (+ one 802.1Q tag), IPv4 with options,
 * IPv6 with the common extension headers, TCP/UDP/SCTP ports, ICMP/ICMPv6 types. Everything is bounds
 * checked against data_end; a packet that does not parse is never guessed at.
 */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "common.h"

/* ICMP headers of our own: <linux/icmp.h> drags in libc socket headers that do not build for BPF. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
		struct {
			__be16 unused;
			__be16 mtu;
		} frag;
	} un;
};

struct icmp6hdr {
	__u8 icmp6_type;
	__u8 icmp6_code;
	__sum16 icmp6_cksum;
	__be32 icmp6_data;
};

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_PORT_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_PORT_UNREACH 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

#define XLB_ETH_P_8021Q 0x8100
#define XLB_IPV6_MAX_EXT_HEADERS 4

enum xlb_tuple_kind {
	XLB_TUPLE_FLOW = 0,       /* a flow as it arrives (every parsed packet) */
	XLB_TUPLE_SNAT_REPLY = 1, /* conntrack key of a SNAT flow's reply (backend → node:port) */
};

/* The 5-tuple of a flow as seen on the wire; also the conntrack key. */
struct xlb_tuple {
	union xlb_addr saddr;
	union xlb_addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 kind; /* enum xlb_tuple_kind */
	__u8 pad;
};

/* The flow tuple seen from the other side. */
static __always_inline void tuple_reverse(const struct xlb_tuple *in, struct xlb_tuple *out)
{
	out->saddr = in->daddr;
	out->daddr = in->saddr;
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
	out->family = in->family;
	out->kind = XLB_TUPLE_FLOW;
	out->pad = 0;
}

enum xlb_frag {
	XLB_FRAG_NONE = 0,
	XLB_FRAG_FIRST,  /* carries the L4 header; later fragments follow its decision */
	XLB_FRAG_LATER,  /* no L4 header: ports come from the fragment map */
};

struct xlb_pkt {
	struct xlb_tuple tuple;
	__u32 l3_off;       /* from the start of the frame */
	__u32 l4_off;
	__u32 l3_len;       /* IPv4 header with options; IPv6 header with extension headers */
	__be32 frag_id;     /* IPv4 identification or IPv6 fragment identification */
	__u8 frag;          /* enum xlb_frag */
	__u8 tcp_flags;     /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u8 icmp_type;
	__u8 icmp_error;    /* ICMP/ICMPv6 error: the quoted packet follows at l4_off + 8 */
	__u8 ipv6_dstopts;  /* IPv6: a destination options header precedes the L4 header */
	__u8 pad[3];
};

/* Offsets as the verifier needs them: provably small. Parsing never produces larger ones (an IPv6
 * packet whose extension headers go beyond XLB_L4_OFF_MAX is refused), so the clamp never bites. */
#define XLB_L3_OFF_MAX 18
#define XLB_L4_OFF_MAX 512

static __always_inline __u32 xlb_l3_off(const struct xlb_pkt *pkt)
{
	__u32 off = pkt->l3_off;

	return off < XLB_L3_OFF_MAX ? off : XLB_L3_OFF_MAX;
}

static __always_inline __u32 xlb_l4_off(const struct xlb_pkt *pkt)
{
	__u32 off = pkt->l4_off;

	return off < XLB_L4_OFF_MAX ? off : XLB_L4_OFF_MAX;
}

enum {
	XLB_PARSE_OK = 0,
	XLB_PARSE_NOT_IP = 1,
	XLB_PARSE_UNPARSED = 2, /* IP with headers we do not follow (e.g. many IPv6 extensions): the stack's */
};

#define XLB_TCP_FIN 0x01
#define XLB_TCP_SYN 0x02
#define XLB_TCP_RST 0x04
#define XLB_TCP_ACK 0x10

static __always_inline int xlb_icmp4_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

static __always_inline int xlb_icmp6_is_error(__u8 type)
{
	return type >= 1 && type <= 4; /* unreachable, too big, time exceeded, parameter problem */
}

/*
 * Ports (or ICMP echo id), TCP flags and ICMP type from the L4 header at pkt->l4_off. ip_end is where the
 * IP packet ends by its own length (offset from the frame's start): an L4 header in the bytes after it
 * (padding, or bytes a crafted short length leaves over) is not the packet's.
 */
static __always_inline int xlb_parse_l4(void *data, void *data_end, struct xlb_pkt *pkt, __u32 ip_end)
{
	void *l4 = data + xlb_l4_off(pkt);
	__u32 l4_len = pkt->tuple.proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);

	if ((pkt->tuple.proto == IPPROTO_TCP || pkt->tuple.proto == IPPROTO_UDP || pkt->tuple.proto == IPPROTO_SCTP ||
	     pkt->tuple.proto == IPPROTO_ICMP || pkt->tuple.proto == IPPROTO_ICMPV6) &&
	    pkt->l4_off + l4_len > ip_end)
		return -XLB_DROP_MALFORMED;
	switch (pkt->tuple.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		pkt->tuple.sport = tcp->source;
		pkt->tuple.dport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		return XLB_PARSE_OK;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		/* SCTP's common header starts with the two ports, like UDP. */
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		pkt->tuple.sport = udp->source;
		pkt->tuple.dport = udp->dest;
		return XLB_PARSE_OK;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmphdr *icmp = l4;

		/* ICMP is protocol 1 in IPv4 and 58 in IPv6; the other number is nobody's business here. */
		if (pkt->tuple.proto != (pkt->tuple.family == XLB_AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6))
			return XLB_PARSE_OK;
		if ((void *)(icmp + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		pkt->icmp_type = icmp->type;
		pkt->icmp_error = pkt->tuple.proto == IPPROTO_ICMP ? xlb_icmp4_is_error(icmp->type)
								   : xlb_icmp6_is_error(icmp->type);
		if (!pkt->icmp_error && (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY ||
					 icmp->type == ICMPV6_ECHO_REQUEST || icmp->type == ICMPV6_ECHO_REPLY)) {
			pkt->tuple.sport = icmp->un.echo.id;
			pkt->tuple.dport = icmp->un.echo.id;
		}
		return XLB_PARSE_OK;
	}
	default:
		return XLB_PARSE_OK;
	}
}

static __always_inline int xlb_parse_ipv4(void *data, void *data_end, struct xlb_pkt *pkt, int whole_frame)
{
	struct iphdr *ip = data + xlb_l3_off(pkt);
	__u16 frag_off;

	if ((void *)(ip + 1) > data_end)
		return -XLB_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return -XLB_DROP_MALFORMED;
	pkt->l3_len = ip->ihl * 4;
	if ((void *)ip + pkt->l3_len > data_end || bpf_ntohs(ip->tot_len) < pkt->l3_len)
		return -XLB_DROP_MALFORMED;
	if (whole_frame && (void *)ip + bpf_ntohs(ip->tot_len) > data_end)
		return -XLB_DROP_MALFORMED;

	pkt->tuple.family = XLB_AF_INET;
	pkt->tuple.proto = ip->protocol;
	pkt->tuple.saddr.v4 = ip->saddr;
	pkt->tuple.daddr.v4 = ip->daddr;
	pkt->l4_off = pkt->l3_off + pkt->l3_len;
	pkt->frag_id = ip->id;

	frag_off = bpf_ntohs(ip->frag_off);
	if (frag_off & 0x1fff)
		pkt->frag = XLB_FRAG_LATER;
	else if (frag_off & 0x2000)
		pkt->frag = XLB_FRAG_FIRST;
	if (pkt->frag == XLB_FRAG_LATER)
		return XLB_PARSE_OK;
	return xlb_parse_l4(data, data_end, pkt, pkt->l3_off + bpf_ntohs(ip->tot_len));
}

struct xlb_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

static __always_inline int xlb_parse_ipv6(void *data, void *data_end, struct xlb_pkt *pkt, int whole_frame)
{
	struct ipv6hdr *ip6 = data + xlb_l3_off(pkt);
	__u32 ip_end;
	__u32 off;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return -XLB_DROP_MALFORMED;
	if (ip6->version != 6)
		return -XLB_DROP_MALFORMED;
	if (whole_frame && (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
		return -XLB_DROP_MALFORMED;

	pkt->tuple.family = XLB_AF_INET6;
	__builtin_memcpy(pkt->tuple.saddr.bytes, &ip6->saddr, 16);
	__builtin_memcpy(pkt->tuple.daddr.bytes, &ip6->daddr, 16);
	next = ip6->nexthdr;
	off = xlb_l3_off(pkt) + sizeof(*ip6);
	ip_end = off + bpf_ntohs(ip6->payload_len);

#pragma unroll
	for (i = 0; i < XLB_IPV6_MAX_EXT_HEADERS; i++) {
		if (off > XLB_L4_OFF_MAX)
			return XLB_PARSE_UNPARSED;
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
			__u8 *ext = data + off;

			if ((void *)(ext + 2) > data_end || off + 2 > ip_end)
				return -XLB_DROP_MALFORMED;
			if (next == IPPROTO_DSTOPTS)
				pkt->ipv6_dstopts = 1;
			next = ext[0];
			off += (ext[1] + 1) * 8;
		} else if (next == IPPROTO_FRAGMENT) {
			struct xlb_ipv6_frag_hdr *fh = data + off;
			__u16 frag_off;

			if ((void *)(fh + 1) > data_end || off + sizeof(*fh) > ip_end)
				return -XLB_DROP_MALFORMED;
			frag_off = bpf_ntohs(fh->frag_off);
			pkt->frag_id = fh->identification;
			if (frag_off & 0xfff8)
				pkt->frag = XLB_FRAG_LATER;
			else if (frag_off & 1)
				pkt->frag = XLB_FRAG_FIRST;
			next = fh->nexthdr;
			off += sizeof(*fh);
		} else {
			break;
		}
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS || next == IPPROTO_FRAGMENT ||
	    off > XLB_L4_OFF_MAX)
		return XLB_PARSE_UNPARSED; /* more extension headers than we follow: the stack knows them all */

	pkt->tuple.proto = next;
	pkt->l4_off = off;
	pkt->l3_len = off - pkt->l3_off;
	if (pkt->frag == XLB_FRAG_LATER)
		return XLB_PARSE_OK;
	return xlb_parse_l4(data, data_end, pkt, ip_end);
}

/*
 * Fills pkt from the frame; XLB_PARSE_NOT_IP for ARP and friends, negative drop reason when malformed.
 * whole_frame: data_end is the end of the packet (XDP), so IP lengths are checked against it; tc sees
 * only the linear head of an skb and passes 0.
 */
static __always_inline int xlb_parse(void *data, void *data_end, struct xlb_pkt *pkt, int whole_frame)
{
	struct ethhdr *eth = data;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return -XLB_DROP_MALFORMED;
	proto = eth->h_proto;
	pkt->l3_off = sizeof(*eth);
	if (proto == bpf_htons(XLB_ETH_P_8021Q)) {
		__be16 *inner = data + sizeof(*eth) + 2;

		if ((void *)(inner + 1) > data_end)
			return -XLB_DROP_MALFORMED;
		proto = *inner;
		pkt->l3_off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return xlb_parse_ipv4(data, data_end, pkt, whole_frame);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xlb_parse_ipv6(data, data_end, pkt, whole_frame);
	return XLB_PARSE_NOT_IP;
}

/* Linear bytes pulled into an skb's head when it ends inside the headers: VLAN + IPv4 with 40 bytes of
 * options, or IPv6 with a few extension headers, plus a TCP header. */
#define XLB_PARSE_PULL_LEN 160

/*
 * xlb_parse for tc: what the skb's linear head holds (tc sees only that, so IP lengths are not checked
 * against it); if the head stops inside the headers, pull more into it and parse again.
 */
static __always_inline int xlb_parse_skb(struct __sk_buff *skb, struct xlb_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	int ret = xlb_parse(data, data_end, pkt, 0);

	if (ret != -XLB_DROP_MALFORMED || skb->len <= (__u32)(data_end - data))
		return ret;
	if (bpf_skb_pull_data(skb, skb->len < XLB_PARSE_PULL_LEN ? skb->len : XLB_PARSE_PULL_LEN))
		return ret;
	__builtin_memset(pkt, 0, sizeof(*pkt));
	return xlb_parse((void *)(long)skb->data, (void *)(long)skb->data_end, pkt, 0);
}

#endif
