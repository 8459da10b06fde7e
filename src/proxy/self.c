/* self: the process's own sockets, which no upstream connection may reach.
 *
 * An application behind the sidecar names its destinations: a CONNECT to the capture
 * listener nests a tunnel in a tunnel (two descriptors per level, without end), and a
 * proxy request to the admin address hands the application the proxy's configuration.
 * Every upstream connection (HTTP, HTTP/2, tunnels) is checked here just before it is
 * made; a redirected connection whose original destination is one of these sockets is
 * closed when accepted.
 *
 * "Reaches" is what the kernel would do: the same address and port; for a socket bound to
 * the wildcard address, any loopback address or address of the host's interfaces on that
 * port; 0.0.0.0 and :: connect to the local host; an IPv4-mapped IPv6 address is its
 * IPv4 address. The host's addresses are read once at start (getifaddrs). */
#include "proxy/worker.h"
#include "core/util.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* a as the kernel would route it: mapped IPv4 as IPv4, unspecified as loopback. */
static void self_norm(const struct sock_addr *a, struct sock_addr *out)
{
	*out = *a;
	if (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
		memset(out, 0, sizeof(*out));
		out->u.in4.sin_family = AF_INET;
		out->u.in4.sin_port = a->u.in6.sin6_port;
		memcpy(&out->u.in4.sin_addr, &a->u.in6.sin6_addr.s6_addr[12], 4);
	}
	if (out->u.sa.sa_family == AF_INET && out->u.in4.sin_addr.s_addr == htonl(INADDR_ANY))
		out->u.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (out->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&out->u.in6.sin6_addr))
		out->u.in6.sin6_addr = in6addr_loopback;
}

static bool self_is_wildcard(const struct sock_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
	return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
}

static bool self_is_loopback(const struct sock_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return (ntohl(a->u.in4.sin_addr.s_addr) >> 24) == 127;
	return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
}

static bool self_same_ip(const struct sock_addr *a, const struct sock_addr *b)
{
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return false;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
	return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
}

void proxy_self_add(struct proxy *p, const struct sock_addr *a)
{
	if (p->nself < PROXY_MAX_SELF)
		p->self[p->nself++] = *a;
	if (p->local_ips)
		return;
	/* The host's addresses, for sockets bound to the wildcard address. */
	{
		struct ifaddrs *ifs = NULL;
		size_t n = 0;

		if (getifaddrs(&ifs) < 0)
			return;
		for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
			if (i->ifa_addr && (i->ifa_addr->sa_family == AF_INET ||
			                    i->ifa_addr->sa_family == AF_INET6))
				n++;
		p->local_ips = xcalloc(n + 1, sizeof(*p->local_ips));
		for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
			struct sock_addr *s = &p->local_ips[p->nlocal_ips];

			if (!i->ifa_addr)
				continue;
			if (i->ifa_addr->sa_family == AF_INET)
				memcpy(&s->u.in4, i->ifa_addr, sizeof(s->u.in4));
			else if (i->ifa_addr->sa_family == AF_INET6)
				memcpy(&s->u.in6, i->ifa_addr, sizeof(s->u.in6));
			else
				continue;
			p->nlocal_ips++;
		}
		freeifaddrs(ifs);
	}
}

bool proxy_is_self(const struct proxy *p, const struct sock_addr *a)
{
	struct sock_addr n;
	uint16_t port;

	if (p->nself == 0)
		return false;
	self_norm(a, &n);
	port = sock_addr_port(&n);
	for (size_t i = 0; i < p->nself; i++) {
		const struct sock_addr *s = &p->self[i];

		if (sock_addr_port(s) != port)
			continue;
		if (self_same_ip(&n, s))
			return true;
		if (!self_is_wildcard(s))
			continue;
		if (self_is_loopback(&n))
			return true;
		for (size_t k = 0; k < p->nlocal_ips; k++)
			if (self_same_ip(&n, &p->local_ips[k]))
				return true;
	}
	return false;
}
