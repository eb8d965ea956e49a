// SPDX-License-Identifier: Apache-2.0
/*
 * Request/response over TCP, for the east-west bench (bench/east-west/rr.ts): what a pod's round trips
 * and short connections to a ClusterIP cost through xlb's tc_pod, through kube-proxy's iptables rules,
 * or through socket-LB. In C because Node's own socket machinery costs tens of microseconds per
 * connection, more than the datapaths being compared.
 *
 *   rr serve PORT[,PORT...]
 *       Echo server on [::]:PORT (IPv4 too) for each PORT: every byte read is written back; a connection is closed
 *       when its peer closes. One thread, epoll, non-blocking; prints "ready" once listening.
 *   rr pingpong ADDR[,ADDR...] PORT SECONDS COUNT
 *       One connection (to the first address), then 1 byte out and 1 byte back, COUNT times or for
 *       SECONDS, whichever ends first.
 *   rr crr ADDR[,ADDR...] PORT SECONDS COUNT
 *       socket, connect, 1 byte out, 1 byte back, close — COUNT times or for SECONDS, to the addresses in
 *       turn (a service's backends reached straight, as the service spreads its connections). The
 *       client closes first (TIME_WAIT is the client's, as for a pod calling a service; the bench lets
 *       the client's namespace reuse such ports: net.ipv4.tcp_tw_reuse).
 *   Both print one line: "done TRANSACTIONS ELAPSED_NS P50_NS P90_NS P99_NS CPU_NS": per-transaction
 *   latency percentiles (a round trip, or a whole connection), and the CPU time the client took meanwhile
 *   (CLOCK_PROCESS_CPUTIME_ID: its system time holds the packets' way through the stack, which the
 *   sender's context carries over veths). Any failure — connect refused, a 2 s timeout, a
 *   short read — ends the run with a message and exit status 1: the bench only counts working traffic.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 2
#define MAX_EVENTS 64
#define MAX_ADDRS 8

static long long clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static socklen_t parse_addr(const char *text, int port, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? sizeof(*a) : 0;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)out;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? sizeof(*a) : 0;
}

/* Listeners on [::]:PORT (IPv4 too) for each of `ports`, in the epoll set `ep`. */
static int listen_on(int ep, const int *ports, int n)
{
	for (int i = 0; i < n; i++) {
		struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_port = htons(ports[i]), .sin6_addr = IN6ADDR_ANY_INIT };
		struct epoll_event ev = { .events = EPOLLIN };
		int one = 1, zero = 0;
		int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);

		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
		    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4096) < 0) {
			perror("rr serve");
			return -1;
		}
		/* Listeners are told from connections by a mark in the upper half of the data. */
		ev.data.u64 = (1ULL << 32) | (unsigned int)fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			perror("epoll_ctl");
			return -1;
		}
	}
	return 0;
}

static int serve(const int *ports, int n)
{
	struct epoll_event ev = { .events = EPOLLIN }, events[MAX_EVENTS];
	int one = 1;
	int ep = epoll_create1(0);

	if (ep < 0 || listen_on(ep, ports, n) < 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int count = epoll_wait(ep, events, MAX_EVENTS, -1);

		if (count < 0 && errno != EINTR) {
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < count; i++) {
			int fd = (int)(events[i].data.u64 & 0xffffffffULL);

			if (events[i].data.u64 >> 32) {
				for (;;) {
					int conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK);

					if (conn < 0)
						break;
					setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.data.u64 = (unsigned int)conn;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev) < 0)
						close(conn);
				}
				continue;
			}
			char buf[4096];
			ssize_t got = read(fd, buf, sizeof(buf));

			if (got > 0) {
				if (write(fd, buf, got) != got)
					close(fd); /* a 1-byte echo that does not fit: the peer is gone */
			} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(fd); /* closing removes it from the epoll set */
			}
		}
	}
}

static int open_connection(const struct sockaddr_storage *addr, socklen_t len)
{
	struct timeval timeout = { .tv_sec = IO_TIMEOUT_S };
	int one = 1;
	int fd = socket(addr->ss_family, SOCK_STREAM, 0);

	if (fd < 0) {
		perror("socket");
		return -1;
	}
	/* SO_SNDTIMEO bounds connect() too. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)addr, len) < 0) {
		perror("connect");
		close(fd);
		return -1;
	}
	return fd;
}

/* 1 byte out, 1 byte back. */
static int exchange(int fd)
{
	char byte = 'x';
	ssize_t got;

	if (write(fd, &byte, 1) != 1) {
		perror("write");
		return -1;
	}
	got = read(fd, &byte, 1);
	if (got != 1) {
		if (got == 0)
			fprintf(stderr, "read: the server closed the connection\n");
		else
			perror("read");
		return -1;
	}
	return 0;
}

static int by_value(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static long long percentile(const long long *sorted, long n, double q)
{
	return n ? sorted[(long)((n - 1) * q)] : 0;
}

static int client(int crr, const struct sockaddr_storage *addr, const socklen_t *len, int addrs, double seconds, long count)
{
	long long *took = malloc(sizeof(*took) * count);
	long long start, deadline, t0, t1, cpu;
	long done = 0;
	int fd = -1;

	if (!took) {
		perror("malloc");
		return 1;
	}
	if (!crr && (fd = open_connection(&addr[0], len[0])) < 0)
		return 1;
	cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	start = now_ns();
	deadline = start + (long long)(seconds * 1e9);
	t1 = start;
	while (done < count && t1 < deadline) {
		t0 = t1;
		if (crr) {
			fd = open_connection(&addr[done % addrs], len[done % addrs]);
			if (fd < 0)
				return 1;
		}
		if (exchange(fd) < 0)
			return 1;
		if (crr)
			close(fd);
		t1 = now_ns();
		took[done++] = t1 - t0;
	}
	cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	if (!crr)
		close(fd);
	qsort(took, done, sizeof(*took), by_value);
	printf("done %ld %lld %lld %lld %lld %lld\n", done, t1 - start, percentile(took, done, 0.5), percentile(took, done, 0.9),
	       percentile(took, done, 0.99), cpu);
	free(took);
	return 0;
}

/* ADDR[,ADDR...] into addr[] and len[]; the number of addresses, 0 if one does not parse. */
static int parse_addrs(char *list, int port, struct sockaddr_storage *addr, socklen_t *len)
{
	int n = 0;

	for (char *next, *text = list; text && n < MAX_ADDRS; text = next, n++) {
		next = strchr(text, ',');
		if (next)
			*next++ = 0;
		len[n] = parse_addr(text, port, &addr[n]);
		if (!len[n])
			return 0;
	}
	return n;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage addr[MAX_ADDRS];
	socklen_t len[MAX_ADDRS];

	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "serve")) {
		int ports[MAX_ADDRS], n = 0;

		for (char *next, *text = argv[2]; text && n < MAX_ADDRS; text = next) {
			next = strchr(text, ',');
			if (next)
				*next++ = 0;
			ports[n] = atoi(text);
			if (ports[n++] <= 0)
				return 2;
		}
		return serve(ports, n);
	}
	if (argc == 6 && (!strcmp(argv[1], "pingpong") || !strcmp(argv[1], "crr")) && atof(argv[4]) > 0 && atol(argv[5]) > 0) {
		int addrs = parse_addrs(argv[2], atoi(argv[3]), addr, len);

		if (addrs)
			return client(!strcmp(argv[1], "crr"), addr, len, addrs, atof(argv[4]), atol(argv[5]));
	}
	fprintf(stderr, "usage: rr serve PORT[,PORT...] | rr pingpong|crr ADDR[,ADDR...] PORT SECONDS COUNT\n");
	return 2;
}
