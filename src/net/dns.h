/* dns: asynchronous name resolution on a worker's event loop.
 *
 * Order: an IP literal answers itself; then the hosts file (/etc/hosts format, given
 * with --hosts-file), which is re-read when it changes (checked at most once a second);
 * then DNS through c-ares, whose sockets and timeouts are driven by the struct loop (no
 * thread, no blocking). c-ares' own hosts-file lookup is off so that the hosts file is
 * the one the operator named.
 *
 * Every answer carries all A and AAAA addresses (IPv4 first, in the order received, then
 * IPv6) with their TTLs (seconds). Local answers (literal, hosts file) have ttl 0:
 * "no TTL; refresh on your own schedule".
 *
 * Callbacks always run later, from the loop (never inside dns_resolve), so a caller may
 * resolve while holding half-built state. A callback may call dns_resolve and dns_cancel,
 * but not dns_free. A struct dns belongs to one loop thread and must be freed before its
 * loop. */
#ifndef EGRESS_NET_DNS_H
#define EGRESS_NET_DNS_H

#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "net/loop.h"
#include "net/sock.h"

struct dns;
struct dns_query;

enum dns_status {
	DNS_OK,
	DNS_NXDOMAIN,     /* the name does not exist */
	DNS_NODATA,       /* the name exists but has no address of the family asked */
	DNS_TIMEOUT,      /* no answer from any server in time */
	DNS_SERVFAIL,     /* server failure or refusal, or no server reachable (c-ares
	                   * cannot tell these apart) */
	DNS_BADNAME,      /* not a valid DNS name */
	DNS_ERROR,        /* anything else (no servers, connection refused, out of memory) */
};

struct dns_addr {
	struct sock_addr addr;   /* port 0: the caller sets it */
	uint32_t ttl;            /* seconds; 0 for local answers */
};

enum dns_source {
	DNS_SRC_LITERAL,
	DNS_SRC_HOSTS,
	DNS_SRC_DNS,
};

struct dns_result {
	enum dns_status status;
	/* One line, for logs and the admin page: "NXDOMAIN", "timeout (Timeout while
	 * contacting DNS servers)", ... ; "" on success. */
	const char *reason;
	enum dns_source source;
	const struct dns_addr *addrs;   /* n entries (0 unless DNS_OK) */
	size_t n;
};

/* Status as a short stable token: "ok", "nxdomain", "nodata", "timeout", "servfail",
 * "badname", "error". */
const char *dns_status_str(enum dns_status s);

struct dns_opts {
	const char *hosts_file;   /* NULL: no hosts file (pass "/etc/hosts" to use it) */
	int timeout_ms;           /* per try; 0 = c-ares default (from resolv.conf) */
	int tries;                /* 0 = c-ares default */
	const char *servers;      /* "IP[:PORT],..." overriding resolv.conf; NULL = keep */
};

/* Creates a resolver on loop. opts may be NULL. Returns NULL with a reason in err
 * (c-ares initialisation failed, or the hosts file cannot be read). */
struct dns *dns_new(struct loop *loop, const struct dns_opts *opts, struct sbuf *err);
/* Frees the resolver. Queries still pending are dropped without calling back. */
void dns_free(struct dns *d);

/* Sets the DNS servers: comma-separated "IP", "IP:PORT" or "[IPv6]:PORT" (for tests,
 * "127.0.0.1:5353"). Returns 0, or -1 with a reason in err. */
int dns_set_servers(struct dns *d, const char *csv, struct sbuf *err);

/* Resolves name (a trailing dot is accepted). family: AF_UNSPEC (A and AAAA), AF_INET or
 * AF_INET6. cb(arg, result) runs exactly once, later, from the loop, unless the query is
 * cancelled first; result and its addrs are valid only during the call. The returned
 * handle is valid until the callback starts or dns_cancel is called. Never fails. */
struct dns_query *dns_resolve(struct dns *d, const char *name, int family,
                              void (*cb)(void *arg, const struct dns_result *res), void *arg);
/* Cancels: cb will not be called. Only before the callback has started. */
void dns_cancel(struct dns_query *q);

/* Synchronous local part only (IP literal, then hosts file): returns 0 with *out filled
 * (addrs point into storage of the resolver, valid until the next call on d), or 1 when
 * the name needs DNS. */
int dns_resolve_local(struct dns *d, const char *name, int family, struct dns_result *out);

/* Number of queries waiting (for tests and stats). */
size_t dns_pending(const struct dns *d);

#endif
