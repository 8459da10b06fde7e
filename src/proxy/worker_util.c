/* worker_util: the worker's per-thread services that the connection code calls: random
 * numbers (worker_rand), the batched access log (worker_alog, worker_alog_flush) and the
 * names of TLS failure categories (stats_tls_cat_*). Apart from worker.c, which drives the
 * connections (accept, drain, ticks), so that nothing the worker calls calls back into it:
 * the proxy module's file graph has no cycle through the worker (make check). */
#include "proxy/worker.h"
#include "net/tls.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define ALOG_FLUSH_BYTES (32 * 1024)

static const char *const tls_cat_names[STATS_TLS_CATS] = {
	"other", TLS_CAT_CERT_EXPIRED, TLS_CAT_CERT_NOT_YET_VALID, TLS_CAT_UNKNOWN_CA,
	TLS_CAT_SELF_SIGNED, TLS_CAT_HOSTNAME_MISMATCH, TLS_CAT_SAN_MISMATCH, TLS_CAT_REVOKED,
	TLS_CAT_CRL_ERROR, TLS_CAT_BAD_PURPOSE, TLS_CAT_CERT_INVALID, TLS_CAT_NO_PEER_CERT,
	TLS_CAT_PEER_UNKNOWN_CA, TLS_CAT_PEER_BAD_CERT, TLS_CAT_CLIENT_CERT_REQUIRED,
	TLS_CAT_UNRECOGNIZED_NAME, TLS_CAT_PROTOCOL_VERSION, TLS_CAT_HANDSHAKE_FAILURE,
	TLS_CAT_ALPN_MISMATCH, TLS_CAT_PROTOCOL_ERROR, TLS_CAT_CONNECTION_RESET,
	TLS_CAT_CONNECTION_CLOSED, TLS_CAT_IO_ERROR, TLS_CAT_TLS_ERROR,
};

int stats_tls_cat_index(const char *cat)
{
	if (!cat)
		return 0;
	for (int i = 1; i < STATS_TLS_CATS; i++)
		if (strcmp(cat, tls_cat_names[i]) == 0)
			return i;
	return 0;
}

const char *stats_tls_cat_name(int i)
{
	return i >= 0 && i < STATS_TLS_CATS ? tls_cat_names[i] : "other";
}

uint32_t worker_rand(struct worker *w)
{
	/* xorshift64*: per worker, no shared state; not for secrets. */
	uint64_t x = w->rnd;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rnd = x;
	return (uint32_t)((x * 2685821657736338717ULL) >> 32);
}

void worker_alog_flush(struct worker *w)
{
	const char *p = w->alog.s;
	size_t n = w->alog.len;

	while (n > 0) {
		ssize_t r = write(w->proxy->alog_fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;   /* a full disk must not stop the proxy; the lines are lost */
		p += r;
		n -= (size_t)r;
	}
	sbuf_reset(&w->alog);
}

void worker_alog(struct worker *w, const struct alog_entry *e)
{
	alog_format(w->proxy->alog_format, e, &w->alog);
	/* Lines are written at once unless the worker is busy: one write per request costs
	 * a syscall, so under load they are batched until the next tick or 32 KiB. */
	if (w->alog.len >= ALOG_FLUSH_BYTES || STAT_GET(w->st.rq_active) == 0)
		worker_alog_flush(w);
}
