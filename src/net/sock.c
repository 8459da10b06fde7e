#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>, which do not mix
 * well with glibc's headers. Both are 80 at their own level (SOL_IP / SOL_IPV6). */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static int parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* ip is NUL-terminated, without brackets; IPv6 may carry "%scope". */
static int set_ip(const char *ip, uint16_t port, struct sock_addr *out)
{
	char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	const char *pct;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, &out->u.in4.sin_addr) == 1) {
		out->u.in4.sin_family = AF_INET;
		out->u.in4.sin_port = htons(port);
		out->len = sizeof(out->u.in4);
		return 0;
	}
	if (strlen(ip) >= sizeof(buf))
		goto fail;
	strcpy(buf, ip);
	pct = strchr(buf, '%');
	if (pct) {
		const char *scope = pct + 1;
		char *end;
		unsigned long id;

		buf[pct - buf] = '\0';
		if (*scope == '\0')
			goto fail;
		id = strtoul(scope, &end, 10);
		if (*end != '\0')
			id = if_nametoindex(scope);
		if (id == 0)
			goto fail;
		out->u.in6.sin6_scope_id = (uint32_t)id;
	}
	if (inet_pton(AF_INET6, buf, &out->u.in6.sin6_addr) != 1)
		goto fail;
	out->u.in6.sin6_family = AF_INET6;
	out->u.in6.sin6_port = htons(port);
	out->len = sizeof(out->u.in6);
	return 0;
fail:
	memset(out, 0, sizeof(*out));
	errno = EINVAL;
	return -1;
}

int sock_addr_from_ip(const char *ip, uint16_t port, struct sock_addr *out)
{
	return set_ip(ip, port, out);
}

bool sock_is_ip_literal(const char *s)
{
	struct sock_addr a;

	return set_ip(s, 0, &a) == 0;
}

int sock_addr_parse(const char *s, struct sock_addr *out)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	const char *colon, *port;
	size_t hlen;
	uint16_t p;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			goto fail;
		hlen = (size_t)(rb - s - 1);
		port = rb + 2;
		if (hlen == 0 || hlen >= sizeof(host))
			goto fail;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (!strchr(host, ':'))       /* brackets are for IPv6 only */
			goto fail;
	} else if ((colon = strrchr(s, ':')) != NULL) {
		hlen = (size_t)(colon - s);
		port = colon + 1;
		if (hlen == 0 || hlen >= sizeof(host) || memchr(s, ':', hlen))
			goto fail;           /* unbracketed IPv6 is ambiguous */
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		if (strchr(host, '%'))
			goto fail;
	} else {
		strcpy(host, "0.0.0.0");
		port = s;
	}
	if (parse_port(port, strlen(port), &p) < 0)
		goto fail;
	return set_ip(host, p, out);
fail:
	memset(out, 0, sizeof(*out));
	errno = EINVAL;
	return -1;
}

uint16_t sock_addr_port(const struct sock_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return ntohs(a->u.in4.sin_port);
	if (a->u.sa.sa_family == AF_INET6)
		return ntohs(a->u.in6.sin6_port);
	return 0;
}

void sock_addr_set_port(struct sock_addr *a, uint16_t port)
{
	if (a->u.sa.sa_family == AF_INET)
		a->u.in4.sin_port = htons(port);
	else if (a->u.sa.sa_family == AF_INET6)
		a->u.in6.sin6_port = htons(port);
}

int sock_addr_family(const struct sock_addr *a)
{
	return a->u.sa.sa_family;
}

bool sock_addr_equal(const struct sock_addr *a, const struct sock_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_port == b->u.in4.sin_port &&
		       a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
	if (a->u.sa.sa_family == AF_INET6)
		return a->u.in6.sin6_port == b->u.in6.sin6_port &&
		       a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
		       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
	return false;
}

/* Decimal digits of v at p; returns the end. */
static char *put_uint(char *p, unsigned v)
{
	char tmp[10];
	int i = 0;

	do
		tmp[i++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

/* "a.b.c.d" at p; returns the end. inet_ntop formats IPv4 with sprintf: a tenth of a
 * passthrough connection's instructions went to formatting its addresses (bench/s6cg.sh). */
static char *put_ipv4(char *p, const unsigned char *b)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*p++ = '.';
		p = put_uint(p, b[i]);
	}
	return p;
}

/* The address (no port) into ip, NUL-terminated; returns its length, or 0 when the family
 * has none. */
static size_t addr_ip(const struct sock_addr *a, char ip[SOCK_ADDR_STRLEN])
{
	if (a->u.sa.sa_family == AF_INET)
		return (size_t)(put_ipv4(ip, (const unsigned char *)&a->u.in4.sin_addr) - ip);
	if (a->u.sa.sa_family == AF_INET6) {
		const struct in6_addr *v6 = &a->u.in6.sin6_addr;
		char *p;

		if (IN6_IS_ADDR_V4MAPPED(v6))
			return (size_t)(put_ipv4(ip, &v6->s6_addr[12]) - ip);
		if (!inet_ntop(AF_INET6, v6, ip, INET6_ADDRSTRLEN))
			return 0;
		p = ip + strlen(ip);
		if (a->u.in6.sin6_scope_id) {
			*p++ = '%';
			p = put_uint(p, (unsigned)a->u.in6.sin6_scope_id);
		}
		return (size_t)(p - ip);
	}
	return 0;
}

/* s[len] into buf[n] as snprintf would: cut to fit, NUL-terminated. */
static const char *put_out(char *buf, size_t n, const char *s, size_t len)
{
	if (n == 0)
		return buf;
	if (len >= n)
		len = n - 1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return buf;
}

const char *sock_addr_ip_str(const struct sock_addr *a, char *buf, size_t n)
{
	char ip[SOCK_ADDR_STRLEN];
	size_t len = addr_ip(a, ip);

	if (len == 0)
		return put_out(buf, n, "-", 1);
	return put_out(buf, n, ip, len);
}

const char *sock_addr_str(const struct sock_addr *a, char *buf, size_t n)
{
	char s[SOCK_ADDR_STRLEN + 8], *p = s;
	size_t len;
	bool bracket;

	bracket = a->u.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr);
	if (bracket)
		*p++ = '[';
	len = addr_ip(a, p);
	if (len == 0)
		return put_out(buf, n, "-", 1);
	p += len;
	if (bracket)
		*p++ = ']';
	*p++ = ':';
	p = put_uint(p, sock_addr_port(a));
	return put_out(buf, n, s, (size_t)(p - s));
}

int sock_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	if (fl & O_NONBLOCK)
		return 0;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int sock_set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void close_keep_errno(int fd)
{
	int e = errno;

	close(fd);
	errno = e;
}

int sock_listen(const struct sock_addr *a, int backlog, unsigned flags)
{
	int one = 1, fd;

	fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if ((flags & SOCK_REUSEPORT) &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (a->u.sa.sa_family == AF_INET6) {
		int v6only = (flags & SOCK_V6ONLY) ? 1 : 0;

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
			goto fail;
	}
	if (flags & SOCK_TRANSPARENT) {
		int lvl = a->u.sa.sa_family == AF_INET6 ? SOL_IPV6 : SOL_IP;
		int opt = a->u.sa.sa_family == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;

		if (setsockopt(fd, lvl, opt, &one, sizeof(one)) < 0)
			goto fail;
	}
	/* Accepted sockets inherit TCP_NODELAY on Linux; sock_accept sets it again anyway
	 * in case that ever changes, since a missing NODELAY costs 40 ms per response. */
	(void)sock_set_nodelay(fd);
	if (bind(fd, &a->u.sa, a->len) < 0)
		goto fail;
	if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
		goto fail;
	return fd;
fail:
	close_keep_errno(fd);
	return -1;
}

int sock_addr_in_use(const struct sock_addr *a)
{
	int one = 1, fd, rc = -1;

	fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto out;
	if (a->u.sa.sa_family == AF_INET6) {
		int v6only = 0;   /* as sock_listen binds it: dual stack */

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
			goto out;
	}
	if (bind(fd, &a->u.sa, a->len) == 0)
		rc = 0;
	else if (errno == EADDRINUSE)
		rc = 1;
out:
	close_keep_errno(fd);
	return rc;
}

int sock_accept(int lfd, struct sock_addr *peer)
{
	struct sock_addr tmp;
	struct sock_addr *p = peer ? peer : &tmp;
	int fd;

	memset(p, 0, sizeof(*p));
	p->len = sizeof(p->u);
	do
		fd = accept4(lfd, &p->u.sa, &p->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -1;
	if (p->u.sa.sa_family == AF_INET || p->u.sa.sa_family == AF_INET6)
		(void)sock_set_nodelay(fd);
	return fd;
}

bool sock_err_no_resources(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int sock_spare_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int sock_accept_drop(int lfd, int *spare)
{
	int fd, e;

	if (*spare < 0) {
		errno = EMFILE;
		return -1;
	}
	close(*spare);
	fd = sock_accept(lfd, NULL);
	e = errno;
	if (fd >= 0)
		close(fd);
	*spare = sock_spare_open();
	if (fd >= 0 || e == ECONNABORTED || e == EPROTO)
		return 0;        /* one connection left the queue either way */
	if (e == EAGAIN || e == EWOULDBLOCK)
		return 1;
	errno = e;
	return -1;
}

int sock_connect(const struct sock_addr *a, const struct sock_addr *src, int *fdp)
{
	int fd, rc;

	*fdp = -1;
	fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	(void)sock_set_nodelay(fd);
	if (src) {
		int one = 1;

		/* Let connect() pick the port so that many connections from one source
		 * address do not exhaust ephemeral ports at bind() time. */
		(void)setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, &src->u.sa, src->len) < 0)
			goto fail;
	}
	do
		rc = connect(fd, &a->u.sa, a->len);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		*fdp = fd;
		return 0;
	}
	if (errno == EINPROGRESS) {
		*fdp = fd;
		return 1;
	}
fail:
	close_keep_errno(fd);
	return -1;
}

int sock_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

int sock_local_addr(int fd, struct sock_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->len = sizeof(out->u);
	return getsockname(fd, &out->u.sa, &out->len);
}

int sock_peer_addr(int fd, struct sock_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->len = sizeof(out->u);
	return getpeername(fd, &out->u.sa, &out->len);
}

int sock_accepted_local(int fd, const struct sock_addr *listen_addr, struct sock_addr *out)
{
	const struct sockaddr *sa = &listen_addr->u.sa;
	bool known = false;

	if (sa->sa_family == AF_INET)
		known = listen_addr->u.in4.sin_addr.s_addr != htonl(INADDR_ANY) &&
		        listen_addr->u.in4.sin_port != 0;
	else if (sa->sa_family == AF_INET6)
		known = !IN6_IS_ADDR_UNSPECIFIED(&listen_addr->u.in6.sin6_addr) &&
		        listen_addr->u.in6.sin6_port != 0;
	if (!known)
		return sock_local_addr(fd, out);
	*out = *listen_addr;
	return 0;
}

int sock_original_dst(int fd, struct sock_addr *out)
{
	struct sock_addr local;

	if (sock_local_addr(fd, &local) < 0)
		return -1;
	return sock_original_dst_at(fd, &local, out);
}

int sock_original_dst_at(int fd, const struct sock_addr *local_addr, struct sock_addr *out)
{
	struct sock_addr local = *local_addr;
	int rc;

	memset(out, 0, sizeof(*out));
	if (local.u.sa.sa_family == AF_INET6 &&
	    !IN6_IS_ADDR_V4MAPPED(&local.u.in6.sin6_addr)) {
		out->len = sizeof(out->u.in6);
		rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &out->u.in6, &out->len);
	} else {
		/* IPv4, or IPv4 on a dual-stack socket: conntrack answers in IPv4 terms. */
		out->len = sizeof(out->u.in4);
		rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &out->u.in4, &out->len);
	}
	if (rc == 0 && (out->u.sa.sa_family == AF_INET || out->u.sa.sa_family == AF_INET6))
		return 0;
	/* ENOENT: no conntrack entry (not NATed); ENOPROTOOPT: nf_conntrack not loaded. */
	*out = local;
	return 1;
}
