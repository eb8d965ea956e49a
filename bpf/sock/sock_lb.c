// SPDX-License-Identifier: GPL-2.0
/*
 * Socket-level load balancing: cgroup v2 hooks on the sockets of every process under the cgroup the
 * agent attaches them to (--cgroup-root). connect() and sendmsg() to a service go to a backend chosen
 * once; recvmsg() and getpeername() show the service again; a closing socket takes its reverse entry
 * along. Logic in sock.h; the service and backend maps are xdp_lb's (lb.h), shared through their pins.
 */
#include "sock.h"

SEC("cgroup/connect4")
int xlb_connect4(struct bpf_sock_addr *ctx)
{
	struct sock_verdict v = {};

	return sock_fwd_verdict(sock_xlate_fwd(ctx, 0, 0, &v), &v);
}

SEC("cgroup/connect6")
int xlb_connect6(struct bpf_sock_addr *ctx)
{
	struct sock_verdict v = {};

	return sock_fwd_verdict(sock_xlate_fwd(ctx, 1, 0, &v), &v);
}

SEC("cgroup/sendmsg4")
int xlb_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct sock_verdict v = {};

	return sock_fwd_verdict(sock_xlate_fwd(ctx, 0, 1, &v), &v);
}

SEC("cgroup/sendmsg6")
int xlb_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct sock_verdict v = {};

	return sock_fwd_verdict(sock_xlate_fwd(ctx, 1, 1, &v), &v);
}

SEC("cgroup/recvmsg4")
int xlb_recvmsg4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 0);
	return XLB_SYS_PROCEED;
}

SEC("cgroup/recvmsg6")
int xlb_recvmsg6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 1);
	return XLB_SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int xlb_peername4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 0);
	return XLB_SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int xlb_peername6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, 1);
	return XLB_SYS_PROCEED;
}

SEC("cgroup/sock_release")
int xlb_release(struct bpf_sock *sk)
{
	sock_forget(sk);
	return XLB_SYS_PROCEED;
}

char LICENSE[] SEC("license") = "GPL";
