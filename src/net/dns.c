#include "net/dns.h"

#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"

/* The hosts file is stat()ed at most this often. */
#define DNS_HOSTS_CHECK_MS 1000

/* One c-ares socket registered with the loop. */
struct dns_sock {
	struct loop_io io;
	struct dns *d;
	struct dns_sock *next;
};

struct hosts_entry {
	char *name;              /* lower case, no trailing dot */
	struct sock_addr addr;
	size_t line;             /* order in the file: answers keep it */
};

struct dns_query {
	struct dns *d;
	void (*cb)(void *arg, const struct dns_result *res);
	void *arg;
	int family;
	bool cancelled;
	enum dns_status status;
	enum dns_source source;
	char reason[160];
	struct dns_addr *addrs;
	size_t n;
	struct dns_query *next;   /* ready list */
};

struct dns {
	struct loop *loop;
	ares_channel ch;
	bool destroying;
	bool in_submit;           /* inside ares_getaddrinfo: completions are deferred */
	struct loop_timer ares_timer;
	struct loop_timer ready_timer;
	struct dns_sock *socks;
	struct dns_query *ready_head, *ready_tail;
	size_t pending;

	char *hosts_path;
	struct stat hosts_st;
	bool hosts_loaded;
	uint64_t hosts_checked_ms;
	struct hosts_entry *hosts;
	size_t nhosts;

	struct dns_addr *local;   /* storage for dns_resolve_local */
	size_t nlocal, caplocal;
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_init_once(void)
{
	ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

const char *dns_status_str(enum dns_status s)
{
	switch (s) {
	case DNS_OK:       return "ok";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_NODATA:   return "nodata";
	case DNS_TIMEOUT:  return "timeout";
	case DNS_SERVFAIL: return "servfail";
	case DNS_BADNAME:  return "badname";
	default:           return "error";
	}
}

/* ---- hosts file ---- */

static void hosts_clear(struct dns *d)
{
	for (size_t i = 0; i < d->nhosts; i++)
		free(d->hosts[i].name);
	free(d->hosts);
	d->hosts = NULL;
	d->nhosts = 0;
}

/* Copies name lower-cased without a trailing dot into out (size n). False if too long. */
static bool norm_name(const char *name, char *out, size_t n)
{
	size_t l = strlen(name);

	if (l && name[l - 1] == '.')
		l--;
	if (l >= n)
		return false;
	for (size_t i = 0; i < l; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[l] = '\0';
	return true;
}

static int hosts_cmp(const void *a, const void *b)
{
	const struct hosts_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* The first entry named nm in the sorted table, or d->nhosts. */
static size_t hosts_first(const struct dns *d, const char *nm)
{
	size_t lo = 0, hi = d->nhosts;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(d->hosts[mid].name, nm) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int hosts_load(struct dns *d, struct sbuf *err)
{
	char *text, *line, *save = NULL;
	size_t cap = 0;
	struct stat st;

	if (stat(d->hosts_path, &st) < 0 || file_read_all(d->hosts_path, &text, NULL) < 0) {
		if (err)
			sbuf_addf(err, "hosts file %s: %s", d->hosts_path, strerror(errno));
		return -1;
	}
	hosts_clear(d);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *hash = strchr(line, '#'), *tok, *ts = NULL;
		struct sock_addr a;

		if (hash)
			*hash = '\0';
		tok = strtok_r(line, " \t\r", &ts);
		if (!tok || sock_addr_from_ip(tok, 0, &a) < 0)
			continue;
		while ((tok = strtok_r(NULL, " \t\r", &ts)) != NULL) {
			char nm[256];

			if (!norm_name(tok, nm, sizeof(nm)) || !nm[0])
				continue;
			if (d->nhosts == cap) {
				cap = cap ? cap * 2 : 32;
				d->hosts = xrealloc(d->hosts, cap * sizeof(*d->hosts));
			}
			d->hosts[d->nhosts].name = xstrdup(nm);
			d->hosts[d->nhosts].addr = a;
			d->hosts[d->nhosts].line = d->nhosts;
			d->nhosts++;
		}
	}
	free(text);
	/* Sorted by name (then file order) so that a look-up is a binary search: a
	 * configuration of N names resolves in N log N, not N times the file. */
	if (d->nhosts > 1)
		qsort(d->hosts, d->nhosts, sizeof(*d->hosts), hosts_cmp);
	d->hosts_st = st;
	d->hosts_loaded = true;
	return 0;
}

/* Re-reads the hosts file when it changed; keeps the old table if it became unreadable. */
static void hosts_refresh(struct dns *d)
{
	struct stat st;
	uint64_t now = loop_now_ms(d->loop);

	if (!d->hosts_path || now - d->hosts_checked_ms < DNS_HOSTS_CHECK_MS)
		return;
	d->hosts_checked_ms = now;
	if (stat(d->hosts_path, &st) < 0)
		return;
	if (st.st_ino == d->hosts_st.st_ino && st.st_size == d->hosts_st.st_size &&
	    st.st_mtim.tv_sec == d->hosts_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == d->hosts_st.st_mtim.tv_nsec)
		return;
	(void)hosts_load(d, NULL);
}

static void local_push(struct dns *d, const struct sock_addr *a)
{
	if (d->nlocal == d->caplocal) {
		d->caplocal = d->caplocal ? d->caplocal * 2 : 8;
		d->local = xrealloc(d->local, d->caplocal * sizeof(*d->local));
	}
	d->local[d->nlocal].addr = *a;
	d->local[d->nlocal].ttl = 0;
	d->nlocal++;
}

int dns_resolve_local(struct dns *d, const char *name, int family, struct dns_result *out)
{
	struct sock_addr a;
	char nm[256];
	size_t first;

	memset(out, 0, sizeof(*out));
	out->reason = "";
	d->nlocal = 0;
	if (sock_addr_from_ip(name, 0, &a) == 0) {
		out->source = DNS_SRC_LITERAL;
		if (family != AF_UNSPEC && family != sock_addr_family(&a)) {
			out->status = DNS_NODATA;
			out->reason = "NODATA (IP literal of the other family)";
			return 0;
		}
		local_push(d, &a);
		out->addrs = d->local;
		out->n = 1;
		return 0;
	}
	hosts_refresh(d);
	if (!d->nhosts || !norm_name(name, nm, sizeof(nm)))
		return 1;
	first = hosts_first(d, nm);
	/* IPv4 first, then IPv6, each in file order. */
	for (int pass = 0; pass < 2; pass++) {
		int fam = pass == 0 ? AF_INET : AF_INET6;

		if (family != AF_UNSPEC && family != fam)
			continue;
		for (size_t i = first; i < d->nhosts && strcmp(d->hosts[i].name, nm) == 0; i++)
			if (sock_addr_family(&d->hosts[i].addr) == fam)
				local_push(d, &d->hosts[i].addr);
	}
	if (d->nlocal == 0)
		return 1;
	out->source = DNS_SRC_HOSTS;
	out->addrs = d->local;
	out->n = d->nlocal;
	return 0;
}

/* ---- completion ---- */

static void query_free(struct dns_query *q)
{
	free(q->addrs);
	free(q);
}

static void query_deliver(struct dns_query *q)
{
	struct dns_result r = {
		.status = q->status,
		.reason = q->reason,
		.source = q->source,
		.addrs = q->addrs,
		.n = q->n,
	};

	q->d->pending--;
	if (!q->cancelled)
		q->cb(q->arg, &r);
	query_free(q);
}

static void ready_push(struct dns *d, struct dns_query *q)
{
	q->next = NULL;
	if (d->ready_tail)
		d->ready_tail->next = q;
	else
		d->ready_head = q;
	d->ready_tail = q;
	if (!loop_timer_armed(&d->ready_timer))
		loop_timer_arm(d->loop, &d->ready_timer, 0);
}

static void ready_timer_cb(struct loop *loop, struct loop_timer *t)
{
	struct dns *d = (struct dns *)((char *)t - offsetof(struct dns, ready_timer));
	struct dns_query *q = d->ready_head, *next;

	(void)loop;
	/* Take the list: callbacks that resolve again append to a fresh one. */
	d->ready_head = d->ready_tail = NULL;
	for (; q; q = next) {
		next = q->next;
		query_deliver(q);
	}
}

/* ---- c-ares plumbing ---- */

static void ares_rearm(struct dns *d)
{
	struct timeval tv, *tvp;

	if (d->destroying)
		return;
	tvp = ares_timeout(d->ch, NULL, &tv);
	if (!tvp) {
		loop_timer_cancel(d->loop, &d->ares_timer);
		return;
	}
	loop_timer_arm(d->loop, &d->ares_timer,
	               (uint64_t)tvp->tv_sec * 1000u + ((uint64_t)tvp->tv_usec + 999u) / 1000u);
}

static void ares_timer_cb(struct loop *loop, struct loop_timer *t)
{
	struct dns *d = (struct dns *)((char *)t - offsetof(struct dns, ares_timer));

	(void)loop;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	ares_rearm(d);
}

static void sock_io_cb(struct loop *loop, struct loop_io *io, unsigned revents)
{
	struct dns_sock *s = (struct dns_sock *)((char *)io - offsetof(struct dns_sock, io));
	struct dns *d = s->d;
	int fd = io->fd;

	(void)loop;
	/* s may be freed inside ares_process_fd (c-ares closes the socket): not used after. */
	ares_process_fd(d->ch, (revents & (LOOP_READ | LOOP_ERROR)) ? fd : ARES_SOCKET_BAD,
	                (revents & LOOP_WRITE) ? fd : ARES_SOCKET_BAD);
	ares_rearm(d);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock **pp = &d->socks, *s;
	unsigned interest = (readable ? LOOP_READ : 0u) | (writable ? LOOP_WRITE : 0u);

	while (*pp && (*pp)->io.fd != fd)
		pp = &(*pp)->next;
	s = *pp;
	if (!interest) {
		if (s) {
			loop_io_del(d->loop, &s->io);
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->d = d;
		loop_io_init(&s->io, fd, sock_io_cb);
		s->next = d->socks;
		d->socks = s;
		/* A failure here leaves the query to time out through ares_timer. */
		(void)loop_io_add(d->loop, &s->io, interest);
		return;
	}
	(void)loop_io_mod(d->loop, &s->io, interest);
}

static void set_failure(struct dns_query *q, int status)
{
	const char *tok;

	switch (status) {
	case ARES_ENOTFOUND:
		q->status = DNS_NXDOMAIN;
		tok = "NXDOMAIN";
		break;
	case ARES_ENODATA:
		q->status = DNS_NODATA;
		tok = "NODATA";
		break;
	case ARES_ETIMEOUT:
		q->status = DNS_TIMEOUT;
		tok = "timeout";
		break;
	case ARES_ESERVFAIL:
	case ARES_EREFUSED:
		q->status = DNS_SERVFAIL;
		tok = status == ARES_EREFUSED ? "REFUSED" : "SERVFAIL";
		break;
	case ARES_ECONNREFUSED:
		/* c-ares 1.18 moves on to the next server after SERVFAIL/REFUSED and reports
		 * this when none is left, the same as when none could be reached. */
		q->status = DNS_SERVFAIL;
		tok = "SERVFAIL, REFUSED or unreachable";
		break;
	case ARES_EBADNAME:
		q->status = DNS_BADNAME;
		tok = "bad name";
		break;
	default:
		q->status = DNS_ERROR;
		tok = "error";
		break;
	}
	snprintf(q->reason, sizeof(q->reason), "%s (%s)", tok, ares_strerror(status));
}

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_query *q = arg;
	struct dns *d = q->d;
	uint32_t cname_ttl = UINT32_MAX;
	size_t cap = 0;

	(void)timeouts;
	if (d->destroying) {
		if (res)
			ares_freeaddrinfo(res);
		d->pending--;
		query_free(q);
		return;
	}
	q->source = DNS_SRC_DNS;
	if (status == ARES_SUCCESS && res) {
		/* An address reached through CNAMEs lives no longer than the shortest link. */
		for (struct ares_addrinfo_cname *c = res->cnames; c; c = c->next)
			if (c->ttl >= 0 && (uint32_t)c->ttl < cname_ttl)
				cname_ttl = (uint32_t)c->ttl;
		for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next)
			cap++;
		q->addrs = xcalloc(cap ? cap : 1, sizeof(*q->addrs));
		for (int pass = 0; pass < 2; pass++) {
			int fam = pass == 0 ? AF_INET : AF_INET6;

			for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next) {
				struct dns_addr *a;
				uint32_t ttl;
				bool dup = false;

				if (n->ai_family != fam || (q->family != AF_UNSPEC && q->family != fam))
					continue;
				if ((size_t)n->ai_addrlen > sizeof(q->addrs[0].addr.u))
					continue;
				a = &q->addrs[q->n];
				memset(a, 0, sizeof(*a));
				memcpy(&a->addr.u, n->ai_addr, n->ai_addrlen);
				a->addr.len = n->ai_addrlen;
				sock_addr_set_port(&a->addr, 0);
				for (size_t i = 0; i < q->n && !dup; i++)
					dup = sock_addr_equal(&q->addrs[i].addr, &a->addr);
				if (dup)
					continue;
				ttl = n->ai_ttl > 0 ? (uint32_t)n->ai_ttl : 0;
				a->ttl = ttl < cname_ttl ? ttl : cname_ttl;
				q->n++;
			}
		}
		if (q->n == 0) {
			q->status = DNS_NODATA;
			snprintf(q->reason, sizeof(q->reason), "NODATA (no address of the family asked)");
		} else {
			q->status = DNS_OK;
			q->reason[0] = '\0';
		}
	} else {
		set_failure(q, status);
	}
	if (res)
		ares_freeaddrinfo(res);
	if (d->in_submit)
		ready_push(d, q);
	else
		query_deliver(q);
}

/* ---- public ---- */

struct dns *dns_new(struct loop *loop, const struct dns_opts *opts, struct sbuf *err)
{
	struct ares_options ao;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS, rc;
	struct dns *d;
	char lookups[] = "b";     /* DNS only: our hosts file is consulted before c-ares */

	pthread_once(&ares_once, ares_init_once);
	if (ares_init_rc != ARES_SUCCESS) {
		if (err)
			sbuf_addf(err, "c-ares: %s", ares_strerror(ares_init_rc));
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->loop = loop;
	loop_timer_init(&d->ares_timer, ares_timer_cb);
	loop_timer_init(&d->ready_timer, ready_timer_cb);
	memset(&ao, 0, sizeof(ao));
	ao.sock_state_cb = sock_state_cb;
	ao.sock_state_cb_data = d;
	ao.lookups = lookups;
	if (opts && opts->timeout_ms > 0) {
		ao.timeout = opts->timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (opts && opts->tries > 0) {
		ao.tries = opts->tries;
		mask |= ARES_OPT_TRIES;
	}
	rc = ares_init_options(&d->ch, &ao, mask);
	if (rc != ARES_SUCCESS) {
		if (err)
			sbuf_addf(err, "c-ares: %s", ares_strerror(rc));
		free(d);
		return NULL;
	}
	if (opts && opts->servers && dns_set_servers(d, opts->servers, err) < 0)
		goto fail;
	if (opts && opts->hosts_file) {
		d->hosts_path = xstrdup(opts->hosts_file);
		if (hosts_load(d, err) < 0)
			goto fail;
		d->hosts_checked_ms = loop_now_ms(loop);
	}
	return d;
fail:
	dns_free(d);
	return NULL;
}

void dns_free(struct dns *d)
{
	struct dns_query *q, *next;

	if (!d)
		return;
	d->destroying = true;
	ares_destroy(d->ch);       /* pending queries call gai_cb, which frees them */
	while (d->socks) {
		struct dns_sock *s = d->socks;

		d->socks = s->next;
		loop_io_del(d->loop, &s->io);
		free(s);
	}
	for (q = d->ready_head; q; q = next) {
		next = q->next;
		query_free(q);
	}
	loop_timer_cancel(d->loop, &d->ares_timer);
	loop_timer_cancel(d->loop, &d->ready_timer);
	hosts_clear(d);
	free(d->hosts_path);
	free(d->local);
	free(d);
}

int dns_set_servers(struct dns *d, const char *csv, struct sbuf *err)
{
	int rc = ares_set_servers_ports_csv(d->ch, csv);

	if (rc != ARES_SUCCESS) {
		if (err)
			sbuf_addf(err, "DNS servers \"%s\": %s", csv, ares_strerror(rc));
		return -1;
	}
	return 0;
}

struct dns_query *dns_resolve(struct dns *d, const char *name, int family,
                              void (*cb)(void *arg, const struct dns_result *res), void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	struct ares_addrinfo_hints hints;
	struct dns_result local;
	size_t len = strlen(name);

	q->d = d;
	q->cb = cb;
	q->arg = arg;
	q->family = family;
	d->pending++;
	if (dns_resolve_local(d, name, family, &local) == 0) {
		q->status = local.status;
		q->source = local.source;
		snprintf(q->reason, sizeof(q->reason), "%s", local.reason);
		q->n = local.n;
		q->addrs = xcalloc(local.n ? local.n : 1, sizeof(*q->addrs));
		if (local.n)
			memcpy(q->addrs, local.addrs, local.n * sizeof(*q->addrs));
		ready_push(d, q);
		return q;
	}
	if (len == 0 || len > 254 || (len == 254 && name[253] != '.')) {
		q->status = DNS_BADNAME;
		q->source = DNS_SRC_DNS;
		snprintf(q->reason, sizeof(q->reason), "bad name (empty or longer than 253)");
		ready_push(d, q);
		return q;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	/* NOSORT: RFC 6724 sorting connect()s a UDP socket per address to learn source
	 * addresses; a proxy balancing over all addresses does not need that order. */
	hints.ai_flags = ARES_AI_NOSORT;
	d->in_submit = true;
	ares_getaddrinfo(d->ch, name, NULL, &hints, gai_cb, q);
	d->in_submit = false;
	ares_rearm(d);
	return q;
}

void dns_cancel(struct dns_query *q)
{
	if (q)
		q->cancelled = true;
}

size_t dns_pending(const struct dns *d)
{
	return d->pending;
}
