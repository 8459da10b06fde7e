/* up_h2: HTTP/2 upstream connections (see up_h2.h for the design).
 *
 * Event flow: a connection's socket events reach c_on_io (connect, TLS handshake, then
 * reads fed to h2_feed). The session's callbacks only record what arrived in the stream
 * (heads and trailers as h2head.h records in uh2s.hb / uh2s.tb, DATA in uh2s.rb, flags)
 * and post the owning virtual uconn's deferred task (loop.h); that task then takes them
 * with uh2_head / uh2_peek / uh2_take / uh2_trailers. Frames queued by the request path's calls (uh2_submit,
 * uh2_send, uh2_detach, consumed windows) are written by the connection's own task,
 * so the streams of one loop iteration share one TLS write, and h2_pending_output never
 * runs inside another call chain. A connection is freed only from its own handlers
 * (c_settle), never from a call that came from the request path. */
#include "proxy/up_h2.h"
#include "proxy/istats.h"
#include "proxy/fwd_h2.h"
#include "proxy/worker.h"
#include "proxy/alog.h"
#include "proxy/pool.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h2head.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UH2_BUCKETS     64
#define UH2_ROUNDS      16
#define UH2_MAX_STREAMS 100      /* per connection while its SETTINGS are not known */
#define UH2_MAX_INTERIM 16       /* 1xx heads per response */


struct uh2c;

/* One pool key: its connections, and whether its server chose HTTP/1.1. */
struct uh2_key {
	char *key;
	size_t keylen;
	uint64_t h1_until;              /* loop ms; 0: HTTP/2 may be tried */
	struct uh2c *conns;
	struct uh2_key *next;           /* hash chain */
};

struct uh2_table {
	struct worker *w;
	struct uh2_key *b[UH2_BUCKETS];
	bool draining;
	/* Spare stream structs, each keeping its buffers' allocations: no heap call
	 * per request for them in the steady state. */
	struct uh2s *s_free;
	unsigned ns_free;
};

#define UH2_S_FREE_MAX 256

enum uh2c_state {
	C_CONNECTING,
	C_HANDSHAKE,
	C_READY,
	C_DEAD,
};

struct uh2c {
	struct loop_io io;
	struct loop_timer timer;        /* connect timeout, then idle timeout */
	struct loop_task task;          /* flush (and free, once dead) after outside work */
	struct uh2_table *t;
	struct uh2_key *k;              /* NULL once dead (unlinked) */
	struct tls_conn *tls;
	struct h2_session *s;
	enum uh2c_state state;
	bool goaway;                    /* the server said GOAWAY: no new streams */
	bool more;                      /* c_read stopped with input maybe left in OpenSSL */
	bool closing;                   /* close once the last stream is gone */
	uint32_t max_req, nreq;         /* maxRequestsPerConnection (0: any), streams carried */
	bool draining;                  /* counted in the cluster's draining gauge */
	uint64_t conn_id, ident;        /* what it was made under (pool.h) */
	char *cluster;                  /* the cluster that made it, for the gauge */
	unsigned nstreams;
	struct uh2s *streams;
	int64_t idle_ms;
	char local_s[SOCK_ADDR_STRLEN];
	struct istats_cluster *cs;      /* the opening cluster's counters, or NULL */
	struct hstats_host *hs;         /* its endpoint's counters (hstats.h), or NULL */
	struct uh2c *next, *prev;       /* in k->conns */
};

struct uh2s {
	struct uh2_table *t;
	struct uh2c *c;                 /* NULL when not on a live connection */
	struct loop_task *owner;        /* the owner's deferred task: posted on each event */
	int32_t id;                     /* > 0 once submitted */
	struct h2_request *pending;     /* the head, waiting for the connection */
	bool body_ended;                /* END_STREAM sent (or the request had no body) */
	bool resp_ended;                /* END_STREAM received: nothing more will arrive */
	bool closed;                    /* on_stream_close ran: no more calls on id */
	bool failed;
	bool fallback;
	bool reused;                    /* put on a connection that was already up */
	bool head;                      /* a HEAD request: no body whatever the head says */
	unsigned ninterim;              /* 1xx heads received */
	/* What arrived, in order: heads (h2head records, hb_off bytes taken), then the DATA
	 * payload as received (rb, rb_off bytes taken), then the trailer section (tb: one
	 * record, or empty). Each keeps its allocation across the struct's reuse. */
	struct sbuf hb, rb, tb;
	size_t hb_off, rb_off;
	struct sbuf qt;                 /* request trailers to send after the body (a record) */
	size_t unconsumed;              /* DATA bytes not yet released to the window */
	struct uh2_fail fail;
	char reason[256];
	char local_s[SOCK_ADDR_STRLEN];
	struct uh2s *next, *prev;       /* in c->streams */
};

static void c_kick(struct uh2c *c)
{
	loop_task_post(c->t->w->loop, &c->task);
}

static void s_kick(struct uh2s *s)
{
	if (s->owner)
		loop_task_post(s->t->w->loop, s->owner);
}

/* Marks s failed (the first failure wins) and wakes its owner. */
static void s_fail(struct uh2s *s, unsigned flags, const char *details, const char *reason,
                   bool retryable, bool timeout)
{
	if (s->failed || s->resp_ended)
		return;
	s->failed = true;
	snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
	s->fail.flags = flags;
	s->fail.details = details;
	s->fail.reason = s->reason;
	s->fail.retryable = retryable;
	s->fail.timeout = timeout;
	s_kick(s);
}

static void s_unlink(struct uh2s *s)
{
	struct uh2c *c = s->c;

	if (!c)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->c = NULL;
	c->nstreams--;
}

/* ---- keys ---- */

static size_t key_hash(const char *k, size_t n)
{
	return (size_t)(hash_bytes(k, n) % UH2_BUCKETS);
}

static struct uh2_key *key_get(struct uh2_table *t, const char *key, size_t keylen)
{
	size_t h = key_hash(key, keylen);
	struct uh2_key *k;

	for (k = t->b[h]; k; k = k->next)
		if (k->keylen == keylen && memcmp(k->key, key, keylen) == 0)
			return k;
	k = xcalloc(1, sizeof(*k));
	k->key = xmalloc(keylen);
	memcpy(k->key, key, keylen);
	k->keylen = keylen;
	k->next = t->b[h];
	t->b[h] = k;
	return k;
}

/* Frees k if nothing needs it (no connection, no HTTP/1.1 memory still running). */
static void key_maybe_free(struct uh2_table *t, struct uh2_key *k)
{
	struct uh2_key **pp;

	if (k->conns || (k->h1_until && k->h1_until > loop_now_ms(t->w->loop)))
		return;
	for (pp = &t->b[key_hash(k->key, k->keylen)]; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	free(k->key);
	free(k);
}

/* ---- connection ---- */

/* Ends the connection: every stream still on it fails with the reason given (streams
 * whose response is complete are left alone), the session and socket go; the struct is
 * freed by c_settle from the connection's own handler. */
static void c_fail(struct uh2c *c, unsigned flags, const char *details, const char *reason,
                   bool timeout)
{
	struct worker *w = c->t->w;
	struct uh2s *s;

	if (c->state == C_DEAD)
		return;
	/* A connection the server closed may have been idle-closed as our request went out
	 * (no GOAWAY): a stream on a connection that was already up may be retried (the
	 * request is bodiless and idempotent: st_upstream_failed decides), as a request on a
	 * stale pooled HTTP/1.1 connection is. */
	for (s = c->streams; s; s = s->next)
		s_fail(s, flags, details, reason, s->reused && (flags & ALOG_F_UC), timeout);
	if (c->s)
		h2_abort(c->s);   /* on_stream_close for open streams: already failed above */
	while ((s = c->streams) != NULL)
		s_unlink(s);
	c->state = C_DEAD;
	loop_timer_cancel(w->loop, &c->timer);
	loop_io_del(w->loop, &c->io);
	if (c->tls)
		tls_conn_free(c->tls);
	c->tls = NULL;
	close(c->io.fd);
	if (c->s)
		h2_session_free(c->s);
	c->s = NULL;
	if (c->k) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->k->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		key_maybe_free(c->t, c->k);
		c->k = NULL;
	}
	STAT_DEC(w->st.ucx_active);
	hstats_cx_close(c->hs);
	c->hs = NULL;
	if (c->draining)
		pool_draining_add(c->cluster, -1);
	c->draining = false;
	c_kick(c);
}

static void c_close(struct uh2c *c)
{
	c_fail(c, ALOG_F_UC, "upstream_reset_before_response_started{connection_termination}",
	       "connection closed", false);
}

/* Frees a dead connection; called at the end of its own handlers only. */
static void c_settle(struct uh2c *c)
{
	if (c->state != C_DEAD)
		return;
	loop_timer_cancel(c->t->w->loop, &c->timer);
	loop_task_cancel(c->t->w->loop, &c->task);
	free(c->cluster);
	free(c);
}

/* Idle bookkeeping after the stream count changed. */
static void c_idle_check(struct uh2c *c)
{
	if (c->nstreams > 0 || c->state == C_DEAD)
		return;
	if (c->goaway || c->closing || c->t->draining)
		c_kick(c);      /* closes from the handler */
	else if (c->state == C_READY)
		loop_timer_arm(c->t->w->loop, &c->timer, (uint64_t)c->idle_ms);
}

/* Writes what the session has queued. Returns 0, or -1 after c_fail. */
static int c_flush(struct uh2c *c)
{
	unsigned interest;
	int rc = h2_tls_flush(c->s, c->io.fd, c->tls, &interest);

	if (rc < 0) {
		c_fail(c, ALOG_F_UC, "upstream_reset_before_response_started{connection_termination}",
		       tls_conn_error(c->tls), false);
		return -1;
	}
	if (rc > 0) {
		const char *e = h2_error(c->s);

		c_fail(c, ALOG_F_UC, "upstream_reset_before_response_started{connection_termination}",
		       e && e[0] ? e : "connection ended (GOAWAY)", false);
		return -1;
	}
	loop_io_mod(c->t->w->loop, &c->io, interest);
	return 0;
}

static void c_read(struct uh2c *c)
{
	int rc = h2_tls_pump(c->s, c->io.fd, c->tls, UH2_ROUNDS, &c->more);

	if (rc == H2_PUMP_SESSION) {
		c_fail(c, ALOG_F_UC | ALOG_F_UPE,
		       "upstream_reset_before_response_started{protocol_error}", h2_error(c->s),
		       false);
		return;
	}
	if (rc != 0) {
		c_fail(c, ALOG_F_UC, "upstream_reset_before_response_started{connection_termination}",
		       rc == H2_PUMP_CLOSED ? "connection closed" : tls_conn_error(c->tls), false);
		return;
	}
	if (c->more)
		c_kick(c);
	c_flush(c);
}

/* ---- session callbacks ---- */

static void cb_response(struct h2_session *sess, void *user, int32_t id, void *su,
                        const struct h2_response *rs)
{
	struct uh2s *s = su;

	(void)user;
	if (!s)
		return;
	/* Interim heads are not flow-controlled: a server sending them without end would
	 * grow hb without bound. */
	if (rs->status < 200 && ++s->ninterim > UH2_MAX_INTERIM) {
		h2_reset_stream(sess, id, H2_PROTOCOL_ERROR);
		s_fail(s, ALOG_F_UPE, "upstream_reset_before_response_started{protocol_error}",
		       "too many interim (1xx) responses", false, false);
		return;
	}
	/* Kept as decoded (h2head.h), read back by uh2_head as the exchange's parsed head. */
	if (h2head_pack(&s->hb, rs) < 0) {
		h2_reset_stream(sess, id, H2_PROTOCOL_ERROR);
		s_fail(s, ALOG_F_UPE, "upstream_reset_before_response_started{protocol_error}",
		       "response head not representable in HTTP/1.1", false, false);
		return;
	}
	s_kick(s);
}

static void cb_data(struct h2_session *sess, void *user, int32_t id, void *su,
                    const uint8_t *data, size_t len)
{
	struct uh2s *s = su;

	(void)user;
	if (!s || s->failed) {
		h2_consume(sess, id, len);
		return;
	}
	if (len == 0)
		return;
	/* Released to the server's window once the request path has taken the bytes
	 * (uh2_take). */
	s->unconsumed += len;
	sbuf_add(&s->rb, data, len);
	s_kick(s);
}

/* The trailer section, kept as decoded for uh2_trailers; whatever framing the server
 * used (a response with content-length may carry trailers too). A section that is not
 * representable (h2head.h) is dropped, as h1_parse_trailers' caller would drop it. */
static void cb_trailers(struct h2_session *sess, void *user, int32_t id, void *su,
                        const struct h2_header *h, size_t n)
{
	struct uh2s *s = su;
	struct h2_response tr = { .status = 0, .headers = h, .nheaders = n, .content_length = -1 };

	(void)sess;
	(void)user;
	(void)id;
	if (!s || s->failed)
		return;
	sbuf_reset(&s->tb);
	(void)h2head_pack(&s->tb, &tr);
}

static void cb_end_stream(struct h2_session *sess, void *user, int32_t id, void *su)
{
	struct uh2s *s = su;

	(void)sess;
	(void)user;
	(void)id;
	if (!s || s->failed)
		return;
	s->resp_ended = true;
	s_kick(s);
}

static const char *h2_code_name(uint32_t code)
{
	switch (code) {
	case H2_NO_ERROR: return "NO_ERROR";
	case H2_PROTOCOL_ERROR: return "PROTOCOL_ERROR";
	case H2_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case H2_FLOW_CONTROL_ERROR: return "FLOW_CONTROL_ERROR";
	case H2_STREAM_CLOSED: return "STREAM_CLOSED";
	case H2_REFUSED_STREAM: return "REFUSED_STREAM";
	case H2_CANCEL: return "CANCEL";
	case H2_ENHANCE_YOUR_CALM: return "ENHANCE_YOUR_CALM";
	case H2_E_HEADERS_TOO_LARGE: return "response headers too large";
	case H2_E_SESSION_GONE: return "connection closed";
	default: return "error";
	}
}

static void cb_stream_close(struct h2_session *sess, void *user, int32_t id, void *su,
                            uint32_t code)
{
	struct uh2s *s = su;
	char reason[96];

	(void)sess;
	(void)user;
	(void)id;
	if (!s)
		return;
	s->closed = true;
	if (s->resp_ended || s->failed)
		return;
	snprintf(reason, sizeof(reason), "remote reset: %s (0x%x)", h2_code_name(code), code);
	if (code == H2_REFUSED_STREAM)
		s_fail(s, ALOG_F_UR, "upstream_reset_before_response_started{remote_refused_stream_reset}",
		       reason, true, false);
	else if (code == H2_E_HEADERS_TOO_LARGE)
		s_fail(s, ALOG_F_UPE, "upstream_reset_before_response_started{protocol_error}",
		       reason, false, false);
	else
		s_fail(s, ALOG_F_UR, "upstream_reset_before_response_started{remote_reset}",
		       reason, false, false);
}

static void cb_writable(struct h2_session *sess, void *user, int32_t id, void *su)
{
	(void)sess;
	(void)user;
	(void)id;
	if (su)
		s_kick(su);
}

static void cb_goaway(struct h2_session *sess, void *user, uint32_t code, int32_t last)
{
	struct uh2c *c = user;

	(void)sess;
	(void)code;
	(void)last;
	c->goaway = true;
	c_kick(c);
}

static const struct h2_callbacks uh2_cb = {
	.on_response = cb_response,
	.on_data = cb_data,
	.on_trailers = cb_trailers,
	.on_end_stream = cb_end_stream,
	.on_stream_close = cb_stream_close,
	.on_writable = cb_writable,
	.on_goaway = cb_goaway,
};

/* ---- connection set-up ---- */

/* Sends a head (nghttp2 copies it); returns false when the stream failed. */
static bool s_submit_head(struct uh2s *s, const struct h2_request *rq)
{
	int32_t id = h2_submit_request(s->c->s, rq, s);

	if (id < 0) {
		s_fail(s, ALOG_F_UR, "upstream_reset_before_response_started{remote_refused_stream_reset}",
		       "no new stream allowed on the connection", true, false);
		return false;
	}
	s->id = id;
	return true;
}

/* Sends the head that waited for the connection. */
static bool s_submit(struct uh2s *s)
{
	struct h2_request *rq = s->pending;
	bool ok;

	s->pending = NULL;
	ok = s_submit_head(s, rq);
	free(rq);
	return ok;
}

static void c_ready(struct uh2c *c)
{
	struct worker *w = c->t->w;
	struct uh2s *s;

	if (tls_conn_resumed(c->tls))
		STAT_INC(w->st.ucx_tls_resumed);
	else
		STAT_INC(w->st.ucx_tls_full);
	if (c->cs)
		STAT_INC(c->cs->ssl_handshake);
	loop_timer_cancel(w->loop, &c->timer);
	{
		const char *alpn = tls_conn_alpn(c->tls);

		if (!alpn || strcmp(alpn, "h2") != 0) {
			/* The server speaks HTTP/1.1: remember it, send the waiting requests that
			 * way (none of them was sent), and drop this connection. */
			STAT_INC(w->st.ucx_h2_fallback);
			if (c->k)
				c->k->h1_until = loop_now_ms(w->loop) + UH2_H1_MEMORY_MS;
			for (s = c->streams; s; s = s->next) {
				s->fallback = true;
				s_kick(s);
			}
			while ((s = c->streams) != NULL)
				s_unlink(s);
			c_close(c);
			return;
		}
	}
	c->s = h2_session_new(H2_CLIENT, NULL, &uh2_cb, c);
	if (!c->s) {
		c_fail(c, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
		       "out of memory", false);
		return;
	}
	STAT_INC(w->st.ucx_h2);
	c->state = C_READY;
	for (s = c->streams; s; s = s->next) {
		memcpy(s->local_s, c->local_s, sizeof(s->local_s));
		if (s->pending)
			s_submit(s);
		s_kick(s);
	}
	if (c_flush(c) == 0)
		c_idle_check(c);    /* every request may have gone while it connected */
}

static void c_handshake(struct uh2c *c)
{
	struct worker *w = c->t->w;
	int rc = tls_handshake(c->tls);

	if (rc == TLS_WANT_READ) {
		loop_io_mod(w->loop, &c->io, LOOP_READ);
		return;
	}
	if (rc == TLS_WANT_WRITE) {
		loop_io_mod(w->loop, &c->io, LOOP_READ | LOOP_WRITE);
		return;
	}
	if (rc < 0) {
		int cat = stats_tls_cat_index(tls_conn_category(c->tls));

		STAT_INC(w->st.ucx_tls_fail[cat]);
		if (c->cs)
			STAT_INC(c->cs->ssl_fail[cat]);
		c_fail(c, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
		       tls_conn_error(c->tls), false);
		return;
	}
	c_ready(c);
}

static void c_connected(struct uh2c *c)
{
	struct worker *w = c->t->w;
	struct sock_addr la;

	if (sock_connect_result(c->io.fd) < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(w->st.ucx_connect_fail);
		if (c->cs)
			STAT_INC(c->cs->cx_connect_fail);
		c_fail(c, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
		       reason, false);
		return;
	}
	if (sock_local_addr(c->io.fd, &la) == 0)
		sock_addr_str(&la, c->local_s, sizeof(c->local_s));
	c->state = C_HANDSHAKE;
	c_handshake(c);
}

static void c_on_io(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct uh2c *c = container_of(io, struct uh2c, io);

	(void)loop;
	switch (c->state) {
	case C_CONNECTING:
		if (ev & (LOOP_WRITE | LOOP_ERROR))
			c_connected(c);
		break;
	case C_HANDSHAKE:
		c_handshake(c);
		break;
	case C_READY:
		c_read(c);
		break;
	case C_DEAD:
		break;
	}
	c_settle(c);
}

static void c_on_task(struct loop *loop, struct loop_task *t)
{
	struct uh2c *c = container_of(t, struct uh2c, task);

	(void)loop;
	if (c->state == C_READY) {
		if (c->nstreams == 0 && (c->goaway || c->closing || c->t->draining))
			c_close(c);
		else if (c->more)
			c_read(c);      /* also flushes */
		else
			c_flush(c);     /* frames queued by the request path's calls: no read to waste */
	}
	c_settle(c);
}

static void c_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct uh2c *c = container_of(t, struct uh2c, timer);
	struct worker *w = c->t->w;

	(void)loop;
	if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
		STAT_INC(w->st.ucx_connect_timeout);
		c_fail(c, ALOG_F_UF, "upstream_reset_before_response_started{connection_timeout}",
		       "connection timeout", true);
	} else if (c->state == C_READY && c->nstreams == 0) {
		c_close(c);     /* idle timeout */
	}
	c_settle(c);
}

/* A new connection for k. Returns NULL with errno when the socket cannot be made. */
static struct uh2c *c_new(struct uh2_table *t, struct uh2_key *k, const struct uh2_target *tg)
{
	struct worker *w = t->w;
	struct uh2c *c;
	int fd, rc;

	rc = sock_connect(tg->ep, NULL, &fd);
	if (rc < 0)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->t = t;
	c->k = k;
	/* Wait for the first writable event even when connect() completed at once: the
	 * handshake then never runs (and fails) inside uh2_attach's caller. */
	c->state = C_CONNECTING;
	c->idle_ms = tg->idle_timeout_ms > 0 ? tg->idle_timeout_ms : 3600 * 1000;
	c->conn_id = tg->conn_id;
	c->ident = tg->ident;
	c->max_req = tg->max_req;
	c->cluster = xstrdup(tg->cluster ? tg->cluster : "-");
	c->tls = tls_client_new(tg->ctx, fd, tg->sni, tg->names);
	tls_client_resume(c->tls, w->sess, tg->ep);
	loop_io_init(&c->io, fd, c_on_io);
	loop_timer_init(&c->timer, c_on_timer);
	loop_task_init(&c->task, c_on_task);
	loop_io_add(w->loop, &c->io, LOOP_READ | LOOP_WRITE);
	loop_timer_arm(w->loop, &c->timer,
	               (uint64_t)(tg->connect_timeout_ms > 0 ? tg->connect_timeout_ms : 10000));
	c->next = k->conns;
	if (k->conns)
		k->conns->prev = c;
	k->conns = c;
	STAT_INC(w->st.ucx_total);
	STAT_INC(w->st.ucx_active);
	c->cs = tg->stats;
	if (c->cs)
		STAT_INC(c->cs->cx_total);
	c->hs = hstats_cx_open_addr(istats_hosts(w->istats), tg->cluster, tg->ep);
	return c;
}

/* A connection of k that can take one more stream, or NULL. */
static struct uh2c *c_pick(struct uh2_key *k)
{
	for (struct uh2c *c = k->conns; c; c = c->next) {
		if (c->state == C_DEAD || c->goaway || c->closing)
			continue;
		if (c->state == C_READY ? h2_streams_available(c->s) > 0
		                        : c->nstreams < UH2_MAX_STREAMS)
			return c;
	}
	return NULL;
}

/* ---- API ---- */

static struct uh2s *s_get(struct uh2_table *t)
{
	struct uh2s *s = t->s_free;
	struct sbuf hb, rb, tb, qt;

	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->t = t;
		return s;
	}
	t->s_free = s->next;
	t->ns_free--;
	hb = s->hb;
	rb = s->rb;
	tb = s->tb;
	qt = s->qt;
	memset(s, 0, sizeof(*s));
	s->hb = hb;
	s->rb = rb;
	s->tb = tb;
	s->qt = qt;
	s->t = t;
	return s;
}

static void s_free_bufs(struct uh2s *s)
{
	sbuf_free(&s->hb);
	sbuf_free(&s->rb);
	sbuf_free(&s->tb);
	sbuf_free(&s->qt);
}

/* The table outlives every stream (the worker's connections are closed before it is
 * freed), so a detached stream can go back to it. */
static void s_put(struct uh2s *s)
{
	struct uh2_table *t = s->t;

	if (t->ns_free >= UH2_S_FREE_MAX || s->rb.cap > 65536 || s->hb.cap > 65536 ||
	    s->tb.cap > 65536 || s->qt.cap > 65536) {
		s_free_bufs(s);
		free(s);
		return;
	}
	sbuf_reset(&s->hb);
	sbuf_reset(&s->rb);
	sbuf_reset(&s->tb);
	sbuf_reset(&s->qt);
	s->next = t->s_free;
	t->s_free = s;
	t->ns_free++;
}

struct uh2_table *uh2_table_new(struct worker *w)
{
	struct uh2_table *t = xcalloc(1, sizeof(*t));

	t->w = w;
	return t;
}

void uh2_table_free(struct uh2_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < UH2_BUCKETS; i++) {
		struct uh2_key *k, *next;

		for (k = t->b[i]; k; k = next) {
			next = k->next;
			/* Kept by key_maybe_free while its connections close: freed here. */
			k->h1_until = UINT64_MAX;
			while (k->conns) {
				struct uh2c *c = k->conns;

				c_close(c);     /* unlinks c from k */
				c_settle(c);
			}
			free(k->key);
			free(k);
		}
	}
	while (t->s_free) {
		struct uh2s *s = t->s_free;

		t->s_free = s->next;
		s_free_bufs(s);
		free(s);
	}
	free(t);
}

void uh2_drain(struct uh2_table *t)
{
	t->draining = true;
	for (size_t i = 0; i < UH2_BUCKETS; i++)
		for (struct uh2_key *k = t->b[i]; k; k = k->next)
			for (struct uh2c *c = k->conns; c; c = c->next) {
				c->closing = true;
				c_kick(c);
			}
}

void uh2_sweep(struct uh2_table *t, const struct pool_live *live)
{
	for (size_t i = 0; i < UH2_BUCKETS; i++)
		for (struct uh2_key *k = t->b[i]; k; k = k->next)
			for (struct uh2c *c = k->conns; c; c = c->next) {
				if (c->state == C_DEAD || c->closing ||
				    pool_live_ok(live, c->conn_id, c->ident))
					continue;
				c->closing = true;
				if (c->nstreams > 0) {
					c->draining = true;
					pool_draining_add(c->cluster, 1);
				}
				/* Idle: closed by the kick. Connecting with nothing waiting: closed
				 * there too once it is ready (c_idle_check). */
				c_kick(c);
			}
}

struct uh2s *uh2_attach(struct uh2_table *t, struct loop_task *owner, const char *key, size_t keylen,
                        const struct uh2_target *tg, bool *reused)
{
	struct worker *w = t->w;
	struct uh2_key *k = key_get(t, key, keylen);
	struct uh2s *s;
	struct uh2c *c;

	*reused = false;
	if (k->h1_until) {
		if (k->h1_until > loop_now_ms(w->loop))
			return NULL;
		k->h1_until = 0;
	}
	s = s_get(t);
	s->owner = owner;
	c = c_pick(k);
	if (!c) {
		c = c_new(t, k, tg);
		if (!c) {
			char reason[128];

			snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
			STAT_INC(w->st.ucx_connect_fail);
			if (tg->stats)
				STAT_INC(tg->stats->cx_connect_fail);
			s_fail(s, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
			       reason, false, false);
			key_maybe_free(t, k);
			return s;
		}
	} else {
		*reused = c->state == C_READY;
	}
	s->reused = *reused;
	s->c = c;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->nstreams++;
	/* maxRequestsPerConnection counts streams, as Envoy's HTTP/2 pool does: the one that
	 * reaches it is the last; the connection closes once its streams are gone. */
	if (c->max_req && ++c->nreq >= c->max_req)
		c->closing = true;
	if (c->state == C_READY) {
		loop_timer_cancel(w->loop, &c->timer);
		memcpy(s->local_s, c->local_s, sizeof(s->local_s));
	}
	return s;
}

void uh2_detach(struct uh2s *s, bool complete)
{
	struct uh2c *c = s->c;

	if (c) {
		if (c->s && s->id > 0) {
			h2_stream_set_user(c->s, s->id, NULL);
			/* A stream still open (the client went away, the route timed out, the
			 * response ended before our request body): cancel it at the server. One
			 * whose exchange is complete by its framing may still wait for the server's
			 * END_STREAM (an empty DATA frame, a 204 without it): left to end by itself,
			 * since servers count client resets against Rapid Reset limits. */
			if (!s->closed && !(s->resp_ended && s->body_ended) &&
			    !(complete && s->body_ended))
				h2_reset_stream(c->s, s->id, H2_CANCEL);
			if (s->unconsumed)
				h2_consume(c->s, s->id, s->unconsumed);
		}
		s_unlink(s);
		c_kick(c);
		c_idle_check(c);
	}
	free(s->pending);
	s_put(s);
}

void uh2_submit(struct uh2s *s, const struct h2_request *rq)
{
	s->body_ended = rq->end_stream;
	s->head = rq->method.len == 4 && memcmp(rq->method.p, "HEAD", 4) == 0;
	if (s->failed)
		return;
	/* On a ready connection the head goes to nghttp2 at once; only a head that waits
	 * for its connection is copied (one malloc per request before). */
	if (s->c && s->c->state == C_READY) {
		if (s_submit_head(s, rq))
			c_kick(s->c);
		return;
	}
	s->pending = h2_request_dup(rq);
}

bool uh2_ready(const struct uh2s *s)
{
	return s->id > 0 || s->failed;
}

void uh2_trailers_out(struct uh2s *s, const struct h2_header *h, size_t n)
{
	struct h2_response tr = { .status = 0, .headers = h, .nheaders = n, .content_length = -1 };

	sbuf_reset(&s->qt);
	if (n && (!h2head_fields_ok(h, n) || h2head_pack(&s->qt, &tr) < 0))
		sbuf_reset(&s->qt);
}

/* The body ends with the kept trailer fields (uh2_trailers_out) as trailing HEADERS, or,
 * should the session refuse them, with an empty DATA frame. */
static void s_send_trailers(struct uh2s *s)
{
	struct h1_msg m;
	struct h2_header h[H1_MAX_HEADERS];
	size_t len;
	const char *b = h2head_data(s->qt.s, &len);

	h2head_fill(s->qt.s, H1_M_OTHER, &m);
	for (unsigned i = 0; i < m.nheaders; i++)
		h[i] = (struct h2_header){ { b + m.headers[i].name.off, m.headers[i].name.len },
		                           { b + m.headers[i].value.off, m.headers[i].value.len } };
	if (h2_submit_trailers(s->c->s, s->id, h, m.nheaders) < 0)
		(void)h2_send_data(s->c->s, s->id, "", 0, true);
	sbuf_reset(&s->qt);
}

size_t uh2_send(struct uh2s *s, const void *p, size_t n, bool end)
{
	ssize_t w;
	bool tr = s->qt.len > 0;

	if (s->failed || s->closed || s->body_ended || !s->c)
		return n;        /* nowhere to go: dropped (the stream reports its end) */
	if (s->id <= 0)
		return 0;
	w = h2_send_data(s->c->s, s->id, p, n, end && !tr);
	if (w < 0)
		return n;
	if ((size_t)w == n && end) {
		if (tr)
			s_send_trailers(s);
		s->body_ended = true;
	}
	if (w > 0 || end)
		c_kick(s->c);
	return (size_t)w;
}

int uh2_head(struct uh2s *s, int req_method, struct h1_msg *m, char *out, size_t *room)
{
	const char *rec, *data;
	size_t n;

	if (s->fallback)
		return UH2_FALLBACK;
	if (s->hb_off == s->hb.len)
		return s->failed ? -1 : 1;
	rec = s->hb.s + s->hb_off;
	data = h2head_data(rec, &n);
	if (*room < n) {
		*room = n;
		return 2;
	}
	memcpy(out, data, n);
	h2head_fill(rec, req_method, m);
	s->hb_off += h2head_size(rec);
	if (s->hb_off == s->hb.len) {
		sbuf_reset(&s->hb);
		s->hb_off = 0;
	}
	return 0;
}

ssize_t uh2_peek(const struct uh2s *s, const char **p)
{
	size_t avail = s->rb.len - s->rb_off;

	if (s->fallback)
		return UH2_FALLBACK;
	if (avail == 0) {
		if (s->resp_ended)
			return 0;
		return s->failed ? -1 : -2;
	}
	*p = s->rb.s + s->rb_off;
	return (ssize_t)avail;
}

void uh2_take(struct uh2s *s, size_t n)
{
	s->rb_off += n;
	if (s->rb_off < s->rb.len)
		return;
	sbuf_reset(&s->rb);
	s->rb_off = 0;
	/* Released to the server's window once the request path has taken the bytes: a
	 * slow client back-pressures the upstream by its window. */
	if (s->unconsumed && s->c && s->c->s && s->id > 0 && !s->closed) {
		h2_consume(s->c->s, s->id, s->unconsumed);
		c_kick(s->c);
	}
	s->unconsumed = 0;
}

const void *uh2_trailers(const struct uh2s *s)
{
	return s->resp_ended && s->tb.len ? s->tb.s : NULL;
}

const struct uh2_fail *uh2_failure(const struct uh2s *s)
{
	return &s->fail;
}

const char *uh2_local(const struct uh2s *s)
{
	return s->local_s;
}
