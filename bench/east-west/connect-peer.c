// SPDX-License-Identifier: Apache-2.0
/*
 * connect() timed in C, for the socket-LB benchmark (bench/east-west/socket.ts): Node's own socket
 * machinery costs tens of microseconds per connection and would bury the ~1 µs being measured.
 *
 *   connect-peer serve ADDR PORT
 *       TCP listener: accepts and closes, until killed; prints "ready".
 *   connect-peer compare tcp|udp BATCH ROUNDS NETNS WAY...     WAY = NAME:CGROUP_PROCS:ADDR[,ADDR...]:PORT
 *       Enters the network namespace NETNS (/run/netns/NAME; setns alone — `ip netns exec` would remount
 *       /sys and hide the cgroup files). Then ROUNDS times, each WAY in turn (the order rotating by
 *       round): move this process into the WAY's cgroup (its pid written to CGROUP_PROCS), then BATCH
 *       times, to the WAY's addresses in turn: socket(), connect() (timed alone), close() (timed alone);
 *       TCP closes with RST (SO_LINGER 0), so no TIME_WAIT piles up. Prints a line per batch:
 *       "NAME <mean ns per connect()> <mean ns per close()>". Fine interleaving in one process is what
 *       keeps the ways comparable on a busy machine. IPv6 addresses are written with '-' for ':'.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static socklen_t parse_addr(const char *text, int port, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1)
			return 0;
		return sizeof(*a);
	}
	struct sockaddr_in *a = (struct sockaddr_in *)out;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	if (inet_pton(AF_INET, text, &a->sin_addr) != 1)
		return 0;
	return sizeof(*a);
}

static int serve(const struct sockaddr_storage *addr, socklen_t len)
{
	int one = 1;
	int fd = socket(addr->ss_family, SOCK_STREAM, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, 4096) < 0) {
		perror("serve");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int conn = accept(fd, NULL, NULL);

		if (conn >= 0)
			close(conn);
		else if (errno != EINTR && errno != ECONNABORTED)
			return 1;
	}
}

#define MAX_ADDRS 8

struct way {
	char name[32];
	char procs[512];
	struct sockaddr_storage addr[MAX_ADDRS];
	socklen_t len[MAX_ADDRS];
	int addrs;
};

/* BATCH connects, to the way's addresses in turn: mean ns spent in connect() alone into *connect_ns,
 * in close() into *close_ns; -1 on failure. */
static int batch(int tcp, const struct way *w, long count, double *connect_ns, double *close_ns)
{
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	long long in_connect = 0, in_close = 0;

	for (long i = 0; i < count; i++) {
		const struct sockaddr_storage *addr = &w->addr[i % w->addrs];
		int fd = socket(addr->ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		long long t0, t1;

		if (fd < 0) {
			perror("socket");
			return -1;
		}
		t0 = now_ns();
		if (connect(fd, (const struct sockaddr *)addr, w->len[i % w->addrs]) < 0) {
			perror("connect");
			close(fd);
			return -1;
		}
		t1 = now_ns();
		in_connect += t1 - t0;
		if (tcp)
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		t0 = now_ns();
		close(fd);
		in_close += now_ns() - t0;
	}
	*connect_ns = (double)in_connect / count;
	*close_ns = (double)in_close / count;
	return 0;
}

static int join_cgroup(const char *procs)
{
	FILE *f = fopen(procs, "w");

	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f) != 0) {
		perror(procs);
		return -1;
	}
	return 0;
}

/* NAME:CGROUP_PROCS:ADDR[,ADDR...]:PORT, with '-' for each ':' of an IPv6 address. */
static int parse_way(const char *text, struct way *w)
{
	char buf[1024], *name, *procs, *addr, *port, *next;

	snprintf(buf, sizeof(buf), "%s", text);
	name = strtok(buf, ":");
	procs = strtok(NULL, ":");
	addr = strtok(NULL, ":");
	port = strtok(NULL, ":");
	if (!name || !procs || !addr || !port)
		return -1;
	for (char *c = addr; *c; c++)
		if (*c == '-')
			*c = ':';
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->procs, sizeof(w->procs), "%s", procs);
	for (w->addrs = 0; addr && w->addrs < MAX_ADDRS; w->addrs++, addr = next) {
		next = strchr(addr, ',');
		if (next)
			*next++ = 0;
		w->len[w->addrs] = parse_addr(addr, atoi(port), &w->addr[w->addrs]);
		if (!w->len[w->addrs])
			return -1;
	}
	return w->addrs ? 0 : -1;
}

static int compare(int tcp, long count, long rounds, const char *netns, int n, char **specs)
{
	struct way ways[8];
	int nsfd;

	if (n < 1 || n > 8)
		return 2;
	nsfd = open(netns, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
		perror(netns);
		return 1;
	}
	close(nsfd);
	for (int i = 0; i < n; i++)
		if (parse_way(specs[i], &ways[i]) < 0)
			return 2;
	for (long r = 0; r < rounds; r++) {
		for (int k = 0; k < n; k++) {
			struct way *w = &ways[(k + r) % n];
			double connect_ns, close_ns;

			if (join_cgroup(w->procs) < 0 || batch(tcp, w, count, &connect_ns, &close_ns) < 0)
				return 1;
			printf("%s %.1f %.1f\n", w->name, connect_ns, close_ns);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage addr;
	socklen_t len;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "serve")) {
		len = parse_addr(argv[2], atoi(argv[3]), &addr);
		return len ? serve(&addr, len) : 2;
	}
	if (argc >= 7 && !strcmp(argv[1], "compare") && atol(argv[3]) > 0 && atol(argv[4]) > 0)
		return compare(!strcmp(argv[2], "tcp"), atol(argv[3]), atol(argv[4]), argv[5], argc - 6, argv + 6);
	fprintf(stderr, "usage: connect-peer serve ADDR PORT | compare tcp|udp BATCH ROUNDS NETNS NAME:CGROUP_PROCS:ADDR[,ADDR...]:PORT...\n");
	return 2;
}
