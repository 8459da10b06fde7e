/* relay: the cheapest possible proxy hop, for scenario 3's floor row.
 *
 *   relay LISTEN_IP LISTEN_PORT DEST_IP DEST_PORT
 *
 * One thread, one epoll loop: each accepted connection gets a connection to DEST, and
 * whatever one side sends is written to the other, one read() and one write() per
 * wake-up, no parsing, no TLS, no buffering beyond the read. Two of these chained in front
 * of the upstream cost what any two-process proxy path costs on this machine before it does
 * any work of its own (two more wake-ups and loopback hops each way): the floor under
 * scenario 3's added latency. A bench tool, not part of egressgw; built by bench/s3.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536

static int peer[MAX_FD];

static int addr(struct sockaddr_in *a, const char *ip, const char *port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((unsigned short)atoi(port));
	return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

/* Writes all of p[0 .. n) to a blocking socket. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Closes fd and its peer; an event for either later in the same batch is skipped. */
static void pair_close(int fd)
{
	int p = peer[fd];

	peer[fd] = peer[p] = -1;
	close(p);
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in la, da;
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	static char buf[65536];
	int ls, ep, one = 1;

	if (argc != 5 || addr(&la, argv[1], argv[2]) < 0 || addr(&da, argv[3], argv[4]) < 0) {
		fprintf(stderr, "usage: relay LISTEN_IP LISTEN_PORT DEST_IP DEST_PORT\n");
		return 2;
	}
	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(ls, 128) < 0) {
		perror("relay: listen");
		return 1;
	}
	ep = epoll_create1(0);
	ev.data.fd = ls;
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r;

			if (fd == ls) {
				int c = accept(ls, NULL, NULL), u;

				if (c < 0)
					continue;
				u = socket(AF_INET, SOCK_STREAM, 0);
				if (u < 0 || c >= MAX_FD || u >= MAX_FD ||
				    connect(u, (struct sockaddr *)&da, sizeof(da)) < 0) {
					close(c);
					if (u >= 0)
						close(u);
					continue;
				}
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				peer[c] = u;
				peer[u] = c;
				ev.data.fd = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				ev.data.fd = u;
				epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
				continue;
			}
			if (peer[fd] < 0)
				continue;
			r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(peer[fd], buf, (size_t)r) < 0)
				pair_close(fd);   /* closing removes both from the epoll set */
		}
	}
}
