/* h2: HTTP/2 sessions on nghttp2 (see h2.h for the model, the limits and the API). */
#include "http/h2.h"
#include "http/h2_mem.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

/* ---- internal types ---- */

/* Token bucket in milli-tokens: rate tokens per second = rate milli-tokens per ms, so
 * refilling needs no division. */
struct ratelim {
	uint64_t mtokens;
	uint64_t last_ms;
	uint32_t rate, burst;
};

enum st_flag {
	ST_KNOWN       = 1u << 0,  /* the owner knows this stream (on_stream_close due) */
	ST_OWNER_RESET = 1u << 1,  /* h2_reset_stream was called */
	ST_BODY        = 1u << 2,  /* a data provider is attached (h2_send_data allowed) */
	ST_EOF         = 1u << 3,  /* the owner ended the body */
	ST_DEFERRED    = 1u << 4,  /* our read callback returned NGHTTP2_ERR_DEFERRED */
	ST_BLOCKED     = 1u << 5,  /* an h2_send_data was short: on_writable due */
	ST_NOTIFY      = 1u << 6,  /* queued in s->notify */
	ST_HEAD_RECV   = 1u << 7,  /* the request / final response head was received */
	ST_ANSWERED    = 1u << 8,  /* server: final response submitted */
	ST_LOCAL       = 1u << 9,  /* answered by this module (431): no owner */
	ST_OPENED      = 1u << 10, /* client: nghttp2 has opened it (HEADERS went out) */
	ST_RST_AFTER   = 1u << 11, /* RST_STREAM(NO_ERROR) once our response has gone out */
};

struct h2_stream {
	struct h2_stream *prev, *next;  /* s->live, or s->free (next only) */
	int32_t id;
	uint32_t flags;
	uint32_t empty_run;     /* consecutive empty non-final DATA frames received */
	uint32_t close_code;    /* when nonzero, reported instead of nghttp2's code */
	void *user;
	uint64_t unconsumed;    /* delivered by on_data, not yet h2_consume'd */
	/* send queue: a ring of qcap bytes, qlen used from qhead */
	uint8_t *q;
	uint32_t qcap, qhead, qlen;
	/* trailers waiting for the end of the queue: one block (nv array + strings) */
	nghttp2_nv *trailers;
	size_t ntrailers;
};

/* The header block being received. HTTP/2 forbids interleaving frames inside a header
 * block, so one per session is enough. Fields reference nghttp2's refcounted buffers. */
struct hblock {
	int32_t id;
	bool active;
	bool is_head;       /* request / response head (pseudo-fields), not trailers */
	bool too_large;
	bool has_authority, has_host, te_trailers;
	size_t size;        /* RFC 9113 header list size so far */
	struct h2_str method, scheme, authority, path, host;
	int status;
	int64_t content_length;
	struct h2_header *h;
	size_t n, cap;
	nghttp2_rcbuf **refs;
	size_t nrefs, refcap;
};

struct h2_session {
	nghttp2_session *ng;
	enum h2_role role;
	struct h2_limits lim;
	uint32_t stream_window;         /* advertised now: lim.stream_window unless capped */
	struct h2_callbacks cb;
	void *user;

	uint8_t *out;                   /* output buffer: out[off .. off + len) is pending */
	size_t out_off, out_len, out_cap;

	struct hblock hb;

	struct h2_stream *live;         /* every allocated stream */
	struct h2_stream *free;         /* recycled */
	unsigned nfree;
	uint32_t nclient_open;          /* client streams not yet closed */

	int32_t *notify;                /* stream ids due an on_writable */
	size_t nnotify, notify_cap;
	uint64_t conn_release;          /* unconsumed bytes of closed streams */

	nghttp2_nv *nv;                 /* scratch for submissions */
	size_t nv_cap;
	char *lc;                       /* lower-cased names for nv */
	size_t lc_cap;

	struct ratelim resets, empties;
	struct h2_stats stats;
	bool dead;                      /* fatal error or h2_abort: nothing more happens */
	bool ending;                    /* we decided to end (limit): input is dropped */
	bool in_output;
	char err[256];
	char lasterr[160];              /* nghttp2's last error message */
};

#define FREE_STREAMS_MAX 32
#define KEEP_QUEUE_MAX   (16 * 1024)
#define H2_MAX_WINDOW    0x7fffffffu

/* ---- small helpers ---- */

void h2_limits_default(struct h2_limits *l)
{
	l->max_concurrent_streams = 100;
	l->max_header_list = 60 * 1024;
	l->max_continuations = 8;
	l->max_outbound_control = 1000;
	l->max_outbound_frames = 10000;
	l->reset_rate = 200;
	l->reset_burst = 1000;
	l->max_empty_frames = 16;
	l->empty_rate = 100;
	l->empty_burst = 1000;
	l->stream_window = 256 * 1024;
	/* max_concurrent_streams x stream_window: streams whose readers stall (each holding
	 * its stream window) never use up the connection's window, which would starve every
	 * other stream on it; memory stays bounded by the stream windows. */
	l->connection_window = 100 * 256 * 1024;
	l->stream_send_buffer = 64 * 1024;
	l->output_buffer = 64 * 1024;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void rl_init(struct ratelim *r, uint32_t rate, uint32_t burst)
{
	r->rate = rate;
	r->burst = burst;
	r->mtokens = (uint64_t)burst * 1000;
	r->last_ms = now_ms();
}

/* Takes one token; false when the bucket is empty. */
static bool rl_take(struct ratelim *r)
{
	uint64_t t = now_ms();
	uint64_t max = (uint64_t)r->burst * 1000;

	if (t > r->last_ms) {
		r->mtokens += (t - r->last_ms) * r->rate;
		if (r->mtokens > max)
			r->mtokens = max;
		r->last_ms = t;
	}
	if (r->mtokens < 1000)
		return false;
	r->mtokens -= 1000;
	return true;
}

static bool str_eq_ci(const char *a, size_t alen, const char *b, size_t blen)
{
	return h1_name_eq(a, alen, b, blen);
}

static bool name_is(struct h2_str n, const char *lit)
{
	size_t l = strlen(lit);

	return n.len == l && memcmp(n.p, lit, l) == 0;
}

static void set_err(struct h2_session *s, const char *fmt, const char *detail)
{
	if (s->err[0])
		return;
	snprintf(s->err, sizeof(s->err), fmt, detail ? detail : "");
}

/* One of our limits was passed: GOAWAY(ENHANCE_YOUR_CALM), then the session ends. */
static void calm_down(struct h2_session *s, const char *why)
{
	if (s->ending)
		return;
	s->ending = true;
	set_err(s, "%s", why);
	nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
}

static void die(struct h2_session *s, const char *why, int rv)
{
	char b[160];

	snprintf(b, sizeof(b), "%s: %s", why, nghttp2_strerror(rv));
	set_err(s, "%s", b);
	s->dead = true;
}

/* ---- streams ---- */

static struct h2_stream *stream_new(struct h2_session *s)
{
	struct h2_stream *st = s->free;

	if (st) {
		s->free = st->next;
		s->nfree--;
		uint8_t *q = st->q;
		uint32_t qcap = st->qcap;
		memset(st, 0, sizeof(*st));
		st->q = q;
		st->qcap = qcap;
	} else {
		st = xcalloc(1, sizeof(*st));
	}
	st->next = s->live;
	if (s->live)
		s->live->prev = st;
	s->live = st;
	return st;
}

static void stream_release(struct h2_session *s, struct h2_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		s->live = st->next;
	if (st->next)
		st->next->prev = st->prev;
	free(st->trailers);
	st->trailers = NULL;
	if (s->role == H2_CLIENT && s->nclient_open > 0)
		s->nclient_open--;
	if (s->nfree >= FREE_STREAMS_MAX) {
		free(st->q);
		free(st);
		return;
	}
	if (st->qcap > KEEP_QUEUE_MAX) {
		free(st->q);
		st->q = NULL;
		st->qcap = 0;
	}
	st->id = 0;
	st->prev = NULL;
	st->next = s->free;
	s->free = st;
	s->nfree++;
}

/* The stream struct for id, or NULL. nghttp2's stream map first; a client request not yet
 * sent has no nghttp2 stream, so the live list is searched for those. */
static struct h2_stream *stream_get(struct h2_session *s, int32_t id)
{
	struct h2_stream *st;

	if (id <= 0)
		return NULL;
	st = nghttp2_session_get_stream_user_data(s->ng, id);
	if (st && st->id == id)
		return st;
	if (s->role != H2_CLIENT)
		return NULL;
	for (st = s->live; st; st = st->next)
		if (st->id == id && !(st->flags & ST_OPENED))
			return st;
	return NULL;
}

/* Tells the owner a stream it knows is gone, and recycles it. */
static void stream_close(struct h2_session *s, struct h2_stream *st, uint32_t code)
{
	s->conn_release += st->unconsumed;
	st->unconsumed = 0;
	if ((st->flags & ST_KNOWN) && s->cb.on_stream_close)
		s->cb.on_stream_close(s, s->user, st->id, st->user,
		                      st->close_code ? st->close_code : code);
	if (nghttp2_session_get_stream_user_data(s->ng, st->id) == st)
		nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
	stream_release(s, st);
}

/* ---- send queue (ring) ---- */

static void q_grow(struct h2_stream *st, uint32_t need, uint32_t bound)
{
	uint32_t cap = st->qcap ? st->qcap : 4096;
	uint8_t *nq;

	while (cap < need)
		cap *= 2;
	if (cap > bound)
		cap = bound;
	if (cap <= st->qcap)
		return;
	nq = xmalloc(cap);
	if (st->qlen) {
		uint32_t first = st->qcap - st->qhead;

		if (first > st->qlen)
			first = st->qlen;
		memcpy(nq, st->q + st->qhead, first);
		memcpy(nq + first, st->q, st->qlen - first);
	}
	free(st->q);
	st->q = nq;
	st->qcap = cap;
	st->qhead = 0;
}

static void q_push(struct h2_stream *st, const uint8_t *p, uint32_t n, uint32_t bound)
{
	uint32_t tail, first;

	if (n == 0)
		return;
	if (st->qlen + n > st->qcap)
		q_grow(st, st->qlen + n, bound);
	tail = st->qhead + st->qlen;
	if (tail >= st->qcap)
		tail -= st->qcap;
	first = st->qcap - tail;
	if (first > n)
		first = n;
	memcpy(st->q + tail, p, first);
	memcpy(st->q, p + first, n - first);
	st->qlen += n;
}

static void q_pop(struct h2_stream *st, uint8_t *dst, uint32_t n)
{
	uint32_t first = st->qcap - st->qhead;

	if (first > n)
		first = n;
	memcpy(dst, st->q + st->qhead, first);
	memcpy(dst + first, st->q, n - first);
	st->qhead += n;
	if (st->qhead >= st->qcap)
		st->qhead -= st->qcap;
	st->qlen -= n;
	if (st->qlen == 0)
		st->qhead = 0;
}

/* ---- output buffer ---- */

static uint8_t *out_reserve(struct h2_session *s, size_t n)
{
	if (s->out_off + s->out_len + n > s->out_cap && s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, s->out_len);
		s->out_off = 0;
	}
	if (s->out_len + n > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 4096;

		while (cap < s->out_len + n)
			cap *= 2;
		s->out = xrealloc(s->out, cap);
		s->out_cap = cap;
	}
	return s->out + s->out_off + s->out_len;
}

static void out_append(struct h2_session *s, const uint8_t *p, size_t n)
{
	memcpy(out_reserve(s, n), p, n);
	s->out_len += n;
}

/* ---- header fields for submission ---- */

static bool needs_lower(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 'A' && p[i] <= 'Z')
			return true;
	return false;
}

/* Header names never indexed by HPACK (RFC 7541 7.1.3): credentials, and values made
 * anew for every request (x-request-id, trace context). Indexing one of those inserts an
 * entry no later request can use, and in a 4,096-byte table that evicts the entries that
 * repeat (:authority, user-agent...) every few dozen requests, so they are sent literal
 * again: the proxy's deflater and the peer's inflater pay for both. */
static bool sensitive(const char *lc, size_t n)
{
	switch (n) {
	case 11:
		return memcmp(lc, "traceparent", 11) == 0 || memcmp(lc, "x-b3-spanid", 11) == 0;
	case 12:
		return memcmp(lc, "x-request-id", 12) == 0 || memcmp(lc, "x-b3-traceid", 12) == 0;
	case 13:
		return memcmp(lc, "authorization", 13) == 0;
	case 19:
		return memcmp(lc, "proxy-authorization", 19) == 0;
	default:
		return false;
	}
}

/* Makes room for npseudo + n entries in s->nv and the lower-cased names in s->lc. */
static void nv_prepare(struct h2_session *s, size_t npseudo, const struct h2_header *h,
                       size_t n)
{
	size_t need = 0;

	if (s->nv_cap < npseudo + n) {
		s->nv_cap = npseudo + n + 8;
		free(s->nv);
		s->nv = xmalloc(s->nv_cap * sizeof(*s->nv));
	}
	for (size_t i = 0; i < n; i++)
		need += h[i].name.len;
	if (s->lc_cap < need) {
		s->lc_cap = need + 256;
		free(s->lc);
		s->lc = xmalloc(s->lc_cap);
	}
}

static void nv_set(nghttp2_nv *nv, const char *name, size_t nlen, const char *value,
                   size_t vlen)
{
	nv->name = (uint8_t *)(uintptr_t)name;
	nv->namelen = nlen;
	nv->value = (uint8_t *)(uintptr_t)value;
	nv->valuelen = vlen;
	nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* Fields never sent in HTTP/2 whatever the owner passes (RFC 9113 8.2.2): a peer running
 * nghttp2 would reset the stream for them. Pseudo-fields come only from the head struct;
 * Host only when :authority is set (a request that has both must keep them equal, the
 * simplest way is to send one). name is lower-case. */
static bool forbidden_field(const char *name, size_t len, struct h2_str v, bool drop_host)
{
	if (len == 0 || name[0] == ':')
		return true;
	switch (len) {
	case 2:
		return memcmp(name, "te", 2) == 0 && !str_eq_ci(v.p, v.len, "trailers", 8);
	case 4:
		return drop_host && memcmp(name, "host", 4) == 0;
	case 7:
		return memcmp(name, "upgrade", 7) == 0;
	case 10:
		return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
	case 16:
		return memcmp(name, "proxy-connection", 16) == 0;
	case 17:
		return memcmp(name, "transfer-encoding", 17) == 0;
	default:
		return false;
	}
}

/* Appends h[0 .. n) to s->nv at index at, names lower-cased into s->lc (nv_prepare first),
 * without the forbidden fields. Returns the new count. */
static size_t nv_fill(struct h2_session *s, size_t at, const struct h2_header *h, size_t n,
                      bool drop_host)
{
	char *lc = s->lc;

	for (size_t i = 0; i < n; i++) {
		const char *name = h[i].name.p;
		size_t nl = h[i].name.len;

		if (needs_lower(name, nl)) {
			for (size_t k = 0; k < nl; k++)
				lc[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32
				                                                   : name[k]);
			name = lc;
			lc += nl;
		}
		if (forbidden_field(name, nl, h[i].value, drop_host))
			continue;
		nv_set(&s->nv[at], name, nl, h[i].value.p, h[i].value.len);
		if (sensitive(name, nl))
			s->nv[at].flags = NGHTTP2_NV_FLAG_NO_INDEX;
		at++;
	}
	return at;
}

/* ---- nghttp2 callbacks: receiving ---- */

static void hb_clear(struct hblock *hb)
{
	for (size_t i = 0; i < hb->nrefs; i++)
		nghttp2_rcbuf_decref(hb->refs[i]);
	hb->nrefs = 0;
	hb->n = 0;
	hb->active = false;
	hb->is_head = false;
	hb->too_large = false;
	hb->has_authority = hb->has_host = hb->te_trailers = false;
	hb->size = 0;
	hb->method = hb->scheme = hb->authority = hb->path = hb->host = (struct h2_str){ 0 };
	hb->status = 0;
	hb->content_length = -1;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct h2_session *s = ud;
	struct hblock *hb = &s->hb;
	int32_t id = frame->hd.stream_id;
	struct h2_stream *st;

	hb_clear(hb);
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	hb->id = id;
	hb->active = true;
	if (s->role == H2_SERVER && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		st = stream_new(s);
		st->id = id;
		nghttp2_session_set_stream_user_data(ng, id, st);
		hb->is_head = true;
	} else if (s->role == H2_CLIENT) {
		st = stream_get(s, id);
		hb->is_head = st && !(st->flags & ST_HEAD_RECV);
	}
	return 0;
}

static void hb_ref(struct hblock *hb, nghttp2_rcbuf *name, nghttp2_rcbuf *value)
{
	if (hb->nrefs + 2 > hb->refcap) {
		hb->refcap = hb->refcap ? hb->refcap * 2 : 64;
		hb->refs = xrealloc(hb->refs, hb->refcap * sizeof(*hb->refs));
	}
	nghttp2_rcbuf_incref(name);
	nghttp2_rcbuf_incref(value);
	hb->refs[hb->nrefs++] = name;
	hb->refs[hb->nrefs++] = value;
}

static int64_t parse_u63(struct h2_str v)
{
	int64_t n = 0;

	if (v.len == 0 || v.len > 18)
		return -1;
	for (size_t i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		n = n * 10 + (v.p[i] - '0');
	}
	return n;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                     nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
	struct h2_session *s = ud;
	struct hblock *hb = &s->hb;
	nghttp2_vec nb = nghttp2_rcbuf_get_buf(name);
	nghttp2_vec vb = nghttp2_rcbuf_get_buf(value);
	struct h2_str n = { (const char *)nb.base, nb.len };
	struct h2_str v = { (const char *)vb.base, vb.len };

	if (!hb->active || hb->id != frame->hd.stream_id)
		return 0;
	/* Counted before anything is kept: an HPACK bomb (small block, huge decoded list)
	 * costs counting only. */
	hb->size += nb.len + vb.len + 32;
	if (hb->size > s->lim.max_header_list)
		hb->too_large = true;
	if (hb->too_large)
		return 0;
	hb_ref(hb, name, value);
	if (hb->is_head && n.len > 0 && n.p[0] == ':') {
		if (name_is(n, ":method"))
			hb->method = v;
		else if (name_is(n, ":scheme"))
			hb->scheme = v;
		else if (name_is(n, ":authority"))
			hb->authority = v, hb->has_authority = true;
		else if (name_is(n, ":path"))
			hb->path = v;
		else if (name_is(n, ":status"))
			hb->status = (int)parse_u63(v);
		return 0;
	}
	if (hb->is_head && name_is(n, "host")) {
		hb->host = v;
		hb->has_host = true;
		return 0;
	}
	if (hb->is_head && name_is(n, "te")) {
		hb->te_trailers = true;  /* nghttp2 allows only "trailers" */
		return 0;
	}
	if (hb->is_head && name_is(n, "content-length"))
		hb->content_length = parse_u63(v);
	if (hb->n == hb->cap) {
		hb->cap = hb->cap ? hb->cap * 2 : 32;
		hb->h = xrealloc(hb->h, hb->cap * sizeof(*hb->h));
	}
	hb->h[hb->n].name = n;
	hb->h[hb->n].value = v;
	hb->n++;
	return 0;
}

/* A field nghttp2 would drop silently (bad characters, surrounding whitespace): reset the
 * stream instead, a proxy must not forward a request that differs from what was sent. */
static int on_invalid_header(nghttp2_session *ng, const nghttp2_frame *frame,
                             nghttp2_rcbuf *name, nghttp2_rcbuf *value, uint8_t flags,
                             void *ud)
{
	return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* Server: answers a request whose head was too large with 431, without the owner. When
 * the request body is still coming, RST_STREAM(NO_ERROR) follows the response (RFC 9113
 * 8.1) so the client stops sending it; not before: nghttp2 drops a response queued behind
 * a reset. The body bytes that arrive meanwhile are released unread. */
static void answer_431(struct h2_session *s, struct h2_stream *st, bool end_stream)
{
	nghttp2_nv nv[1];

	st->flags |= ST_LOCAL | ST_ANSWERED;
	if (!end_stream)
		st->flags |= ST_RST_AFTER;
	nv_set(&nv[0], ":status", 7, "431", 3);
	nghttp2_submit_response(s->ng, st->id, nv, 1, NULL);
}

static void deliver_request(struct h2_session *s, struct h2_stream *st, bool end_stream)
{
	struct hblock *hb = &s->hb;
	struct h2_request rq;

	st->flags |= ST_HEAD_RECV;
	if (hb->too_large) {
		answer_431(s, st, end_stream);
		return;
	}
	/* RFC 9113 8.3.1: Host and :authority must agree; a proxy routing on one and
	 * forwarding the other would be a request smuggling vector. */
	if (hb->has_authority && hb->has_host &&
	    !str_eq_ci(hb->authority.p, hb->authority.len, hb->host.p, hb->host.len)) {
		nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	rq.method = hb->method;
	rq.scheme = hb->scheme;
	rq.authority = hb->has_authority ? hb->authority : hb->host;
	rq.path = hb->path;
	rq.headers = hb->h;
	rq.nheaders = hb->n;
	rq.content_length = hb->content_length;
	rq.te_trailers = hb->te_trailers;
	rq.end_stream = end_stream;
	st->flags |= ST_KNOWN;
	s->stats.streams++;
	if (s->cb.on_request)
		s->cb.on_request(s, s->user, st->id, &rq);
}

static void deliver_response(struct h2_session *s, struct h2_stream *st, bool end_stream)
{
	struct hblock *hb = &s->hb;
	struct h2_response rs;

	if (hb->too_large) {
		st->close_code = H2_E_HEADERS_TOO_LARGE;
		nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
		st->flags |= ST_OWNER_RESET;
		return;
	}
	if (hb->status >= 200)
		st->flags |= ST_HEAD_RECV;
	rs.status = hb->status;
	rs.headers = hb->h;
	rs.nheaders = hb->n;
	rs.content_length = hb->content_length;
	rs.end_stream = end_stream;
	if (s->cb.on_response && !(st->flags & ST_OWNER_RESET))
		s->cb.on_response(s, s->user, st->id, st->user, &rs);
}

static void deliver_trailers(struct h2_session *s, struct h2_stream *st)
{
	struct hblock *hb = &s->hb;

	if (!(st->flags & ST_KNOWN) || (st->flags & ST_OWNER_RESET))
		return;
	if (hb->too_large) {
		st->close_code = H2_E_HEADERS_TOO_LARGE;
		nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id,
		                          s->role == H2_SERVER ? NGHTTP2_PROTOCOL_ERROR
		                                               : NGHTTP2_CANCEL);
		st->flags |= ST_OWNER_RESET;
		return;
	}
	if (s->cb.on_trailers)
		s->cb.on_trailers(s, s->user, st->id, st->user, hb->h, hb->n);
}

static void owner_end_stream(struct h2_session *s, struct h2_stream *st)
{
	if (st && (st->flags & ST_KNOWN) && !(st->flags & ST_OWNER_RESET) &&
	    s->cb.on_end_stream)
		s->cb.on_end_stream(s, s->user, st->id, st->user);
}

static void on_headers_frame(struct h2_session *s, const nghttp2_frame *frame)
{
	struct hblock *hb = &s->hb;
	int32_t id = frame->hd.stream_id;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
	struct h2_stream *st = stream_get(s, id);

	if (!hb->active || hb->id != id || !st) {
		hb_clear(hb);
		return;
	}
	if (hb->is_head && s->role == H2_SERVER)
		deliver_request(s, st, end);
	else if (hb->is_head)
		deliver_response(s, st, end);
	else
		deliver_trailers(s, st);
	hb_clear(hb);
	if (end && !(st->flags & ST_LOCAL))
		owner_end_stream(s, st);
}

static void on_data_frame(struct h2_session *s, const nghttp2_frame *frame)
{
	struct h2_stream *st = stream_get(s, frame->hd.stream_id);
	size_t payload = frame->hd.length - frame->data.padlen;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (payload == 0 && !end) {
		s->stats.empty_frames++;
		if (!rl_take(&s->empties))
			calm_down(s, "empty DATA frame flood (session rate)");
		else if (st && ++st->empty_run > s->lim.max_empty_frames)
			calm_down(s, "empty DATA frame flood (consecutive on one stream)");
	} else if (st && payload > 0) {
		st->empty_run = 0;
	}
	if (end && st && !(st->flags & ST_LOCAL))
		owner_end_stream(s, st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct h2_session *s = ud;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		on_headers_frame(s, frame);
		break;
	case NGHTTP2_DATA:
		on_data_frame(s, frame);
		break;
	case NGHTTP2_RST_STREAM:
		s->stats.resets_recv++;
		if (s->role == H2_SERVER && !rl_take(&s->resets))
			calm_down(s, "stream reset flood (Rapid Reset)");
		break;
	case NGHTTP2_GOAWAY:
		s->stats.goaway_recv = true;
		s->stats.goaway_recv_code = frame->goaway.error_code;
		if (s->cb.on_goaway)
			s->cb.on_goaway(s, s->user, frame->goaway.error_code,
			                frame->goaway.last_stream_id);
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
	struct h2_session *s = ud;
	struct h2_stream *st = stream_get(s, id);

	if (!st || !(st->flags & ST_KNOWN) || (st->flags & (ST_OWNER_RESET | ST_LOCAL)) ||
	    s->dead) {
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	st->unconsumed += len;
	if (s->cb.on_data)
		s->cb.on_data(s, s->user, id, st->user, data, len);
	else
		h2_consume(s, id, len);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
	struct h2_session *s = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	/* A stream refused while its header block was being received (nghttp2 reset it):
	 * no HEADERS frame_recv will end the block here. */
	if (s->hb.active && s->hb.id == id)
		hb_clear(&s->hb);
	if (st && st->id == id)
		stream_close(s, st, code);
	return 0;
}

/* ---- nghttp2 callbacks: sending ---- */

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct h2_session *s = ud;
	struct h2_stream *st;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
		if (!st)
			break;
		if (s->role == H2_CLIENT && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			st->flags |= ST_OPENED;
		if ((st->flags & ST_RST_AFTER) &&
		    nghttp2_session_get_stream_remote_close(ng, st->id) == 0) {
			st->flags &= ~ST_RST_AFTER;
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
		}
		break;
	case NGHTTP2_RST_STREAM:
		s->stats.resets_sent++;
		st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
		/* Resets the peer provoked (bad headers, refused streams, flow-control errors)
		 * count like the ones it sends: an attacker can make us reset in a loop too. */
		if (s->role == H2_SERVER && !(st && (st->flags & (ST_OWNER_RESET | ST_LOCAL))) &&
		    !rl_take(&s->resets))
			calm_down(s, "stream reset flood (resets caused by the peer)");
		break;
	case NGHTTP2_GOAWAY:
		s->stats.goaway_sent = true;
		s->stats.goaway_code = frame->goaway.error_code;
		if (frame->goaway.error_code != NGHTTP2_NO_ERROR && !s->err[0])
			set_err(s, "GOAWAY sent: %s", s->lasterr[0] ? s->lasterr
			                                             : nghttp2_http2_strerror(
			                                                   frame->goaway.error_code));
		break;
	default:
		break;
	}
	return 0;
}

/* A request that never left (GOAWAY received, session ending): nghttp2 opened no stream,
 * so on_stream_close will not come; the owner still hears about it. */
static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                             void *ud)
{
	struct h2_session *s = ud;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || s->role != H2_CLIENT ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	for (st = s->live; st; st = st->next)
		if (st->id == frame->hd.stream_id && !(st->flags & ST_OPENED))
			break;
	if (st)
		stream_close(s, st, NGHTTP2_REFUSED_STREAM);
	return 0;
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
	struct h2_stream *st = source->ptr;
	size_t n = st->qlen < length ? st->qlen : length;

	if (n == 0 && !(st->flags & ST_EOF)) {
		st->flags |= ST_DEFERRED;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (n > 0)
		*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == st->qlen && (st->flags & ST_EOF)) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		st->flags &= ~ST_BODY;
		if (st->trailers) {
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			if (nghttp2_submit_trailer(ng, id, st->trailers, st->ntrailers) != 0)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
			free(st->trailers);
			st->trailers = NULL;
		}
	}
	(void)buf;
	(void)ud;
	return (ssize_t)n;
}

/* NO_COPY: the DATA frame goes straight from the stream queue into the output buffer. */
static int send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *ud)
{
	struct h2_session *s = ud;
	struct h2_stream *st = source->ptr;
	uint8_t *p = out_reserve(s, 9 + length);

	memcpy(p, framehd, 9);
	q_pop(st, p + 9, (uint32_t)length);
	s->out_len += 9 + length;
	if ((st->flags & ST_BLOCKED) && !(st->flags & ST_NOTIFY) &&
	    st->qlen <= s->lim.stream_send_buffer / 2) {
		st->flags = (st->flags & ~ST_BLOCKED) | ST_NOTIFY;
		if (s->nnotify == s->notify_cap) {
			s->notify_cap = s->notify_cap ? s->notify_cap * 2 : 16;
			s->notify = xrealloc(s->notify, s->notify_cap * sizeof(*s->notify));
		}
		s->notify[s->nnotify++] = st->id;
	}
	return s->out_len >= s->lim.output_buffer ? NGHTTP2_ERR_PAUSE : 0;
}

static int on_error(nghttp2_session *ng, int lib_error_code, const char *msg, size_t len,
                    void *ud)
{
	struct h2_session *s = ud;

	snprintf(s->lasterr, sizeof(s->lasterr), "%.*s", (int)len, msg);
	return 0;
}

/* ---- session ---- */

static void sanitize_limits(struct h2_limits *l)
{
	struct h2_limits d;

	h2_limits_default(&d);
#define DEF(f) if (l->f == 0) l->f = d.f
	DEF(max_concurrent_streams);
	DEF(max_header_list);
	DEF(max_continuations);
	DEF(max_outbound_control);
	DEF(max_outbound_frames);
	DEF(reset_rate);
	DEF(reset_burst);
	DEF(max_empty_frames);
	DEF(empty_rate);
	DEF(empty_burst);
	DEF(stream_window);
	DEF(connection_window);
	DEF(stream_send_buffer);
	DEF(output_buffer);
#undef DEF
	if (l->stream_window > H2_MAX_WINDOW)
		l->stream_window = H2_MAX_WINDOW;
	if (l->connection_window > H2_MAX_WINDOW)
		l->connection_window = H2_MAX_WINDOW;
	if (l->stream_send_buffer > (1u << 30))
		l->stream_send_buffer = 1u << 30;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback2(cbs, on_header);
	nghttp2_session_callbacks_set_on_invalid_header_callback2(cbs, on_invalid_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_send_data_callback(cbs, send_data);
	nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
	return cbs;
}

static nghttp2_option *make_options(const struct h2_limits *l)
{
	nghttp2_option *opt;

	if (nghttp2_option_new(&opt) != 0)
		return NULL;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_no_closed_streams(opt, 1);
	nghttp2_option_set_max_outbound_ack(opt, l->max_outbound_control);
	nghttp2_option_set_max_continuations(opt, l->max_continuations);
	/* Backstop only: ours counts more (peer-provoked resets too) and acts first. */
	nghttp2_option_set_stream_reset_rate_limit(opt, 2 * (uint64_t)l->reset_burst,
	                                           2 * (uint64_t)l->reset_rate);
	nghttp2_option_set_peer_max_concurrent_streams(opt, l->max_concurrent_streams);
	return opt;
}

static int submit_settings(struct h2_session *s)
{
	nghttp2_settings_entry iv[6];
	size_t n = 0;
	int rv;

	iv[n++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		                            s->lim.max_concurrent_streams };
	iv[n++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
		                            s->lim.stream_window };
	iv[n++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		                            s->lim.max_header_list };
	iv[n++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 };
	if (s->role == H2_CLIENT)
		iv[n++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 };
	rv = nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, n);
	s->stream_window = s->lim.stream_window;
	if (rv == 0 && s->lim.connection_window > 65535)
		rv = nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
		                                           (int32_t)s->lim.connection_window);
	return rv;
}

struct h2_session *h2_session_new(enum h2_role role, const struct h2_limits *limits,
                                  const struct h2_callbacks *cb, void *user)
{
	struct h2_session *s = xcalloc(1, sizeof(*s));
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	int rv;

	s->role = role;
	if (limits)
		s->lim = *limits;
	else
		h2_limits_default(&s->lim);
	sanitize_limits(&s->lim);
	if (cb)
		s->cb = *cb;
	s->user = user;
	s->hb.content_length = -1;
	rl_init(&s->resets, s->lim.reset_rate, s->lim.reset_burst);
	rl_init(&s->empties, s->lim.empty_rate, s->lim.empty_burst);
	cbs = make_callbacks();
	opt = make_options(&s->lim);
	if (!cbs || !opt)
		goto fail;
	if (role == H2_SERVER)
		rv = nghttp2_session_server_new3(&s->ng, cbs, s, opt, h2_mem());
	else
		rv = nghttp2_session_client_new3(&s->ng, cbs, s, opt, h2_mem());
	if (rv != 0)
		goto fail;
	if (submit_settings(s) != 0)
		goto fail;
	s->out_cap = s->lim.output_buffer + 16384 + 1024;
	s->out = xmalloc(s->out_cap);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	return s;
fail:
	nghttp2_option_del(opt);
	if (cbs)
		nghttp2_session_callbacks_del(cbs);
	if (s->ng)
		nghttp2_session_del(s->ng);
	free(s);
	return NULL;
}

static void free_stream_list(struct h2_stream *st)
{
	while (st) {
		struct h2_stream *next = st->next;

		free(st->q);
		free(st->trailers);
		free(st);
		st = next;
	}
}

void h2_session_free(struct h2_session *s)
{
	if (!s)
		return;
	hb_clear(&s->hb);
	nghttp2_session_del(s->ng);
	free_stream_list(s->live);
	free_stream_list(s->free);
	free(s->hb.h);
	free(s->hb.refs);
	free(s->notify);
	free(s->nv);
	free(s->lc);
	free(s->out);
	free(s);
}

/* Gives back to the connection window what closed streams left unconsumed. */
static void release_conn(struct h2_session *s)
{
	if (s->conn_release == 0 || s->dead)
		return;
	while (s->conn_release > 0) {
		size_t n = s->conn_release > H2_MAX_WINDOW ? H2_MAX_WINDOW
		                                           : (size_t)s->conn_release;

		if (nghttp2_session_consume_connection(s->ng, n) != 0)
			break;
		s->conn_release -= n;
	}
	s->conn_release = 0;
}

int h2_feed(struct h2_session *s, const void *data, size_t len)
{
	ssize_t rv;

	if (s->dead)
		return -1;
	if (s->ending)
		return 0;
	rv = nghttp2_session_mem_recv(s->ng, data, len);
	if (rv < 0) {
		if (rv == NGHTTP2_ERR_FLOODED)
			die(s, "peer flood: too many queued SETTINGS/PING acknowledgements", (int)rv);
		else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
			/* nghttp2 stops before touching any state for this; the output side is
			 * intact, so the peer still gets a GOAWAY. No input is read again. */
			calm_down(s, "too many CONTINUATION frames (max_continuations)");
		else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
			die(s, "not an HTTP/2 client preface", (int)rv);
		else
			die(s, "HTTP/2 input", (int)rv);
		return s->dead ? -1 : 0;
	}
	if (nghttp2_session_get_outbound_queue_size(s->ng) > s->lim.max_outbound_frames) {
		set_err(s, "%s", "outbound frame queue flood (the peer does not read)");
		s->dead = true;
		return -1;
	}
	release_conn(s);
	return 0;
}

static void fill_output(struct h2_session *s)
{
	while (!s->dead && s->out_len < s->lim.output_buffer) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(s->ng, &d);

		if (n < 0) {
			die(s, "HTTP/2 output", (int)n);
			break;
		}
		if (n == 0)
			break;
		out_append(s, d, (size_t)n);
	}
}

static void run_notify(struct h2_session *s)
{
	size_t n = s->nnotify;

	for (size_t i = 0; i < n && !s->dead; i++) {
		struct h2_stream *st = stream_get(s, s->notify[i]);

		if (!st || !(st->flags & ST_NOTIFY))
			continue;
		st->flags &= ~ST_NOTIFY;
		if (s->cb.on_writable)
			s->cb.on_writable(s, s->user, st->id, st->user);
	}
	s->nnotify = 0;
}

size_t h2_pending_output(struct h2_session *s, const uint8_t **p)
{
	if (!s->in_output && !s->dead) {
		s->in_output = true;
		for (int round = 0; round < 2; round++) {
			fill_output(s);
			if (s->nnotify == 0)
				break;
			run_notify(s);
		}
		s->in_output = false;
		release_conn(s);
	}
	*p = s->out + s->out_off;
	return s->out_len;
}

void h2_output_consumed(struct h2_session *s, size_t n)
{
	if (n > s->out_len)
		n = s->out_len;
	s->out_off += n;
	s->out_len -= n;
	if (s->out_len == 0)
		s->out_off = 0;
}

bool h2_want_read(const struct h2_session *s)
{
	return !s->dead && !s->ending && nghttp2_session_want_read(s->ng);
}

bool h2_want_write(const struct h2_session *s)
{
	return s->out_len > 0 || (!s->dead && nghttp2_session_want_write(s->ng));
}

bool h2_done(const struct h2_session *s)
{
	if (s->dead)
		return true;
	return s->out_len == 0 && !nghttp2_session_want_read(s->ng) &&
	       !nghttp2_session_want_write(s->ng);
}

const char *h2_error(const struct h2_session *s)
{
	return s->err;
}

bool h2_header_block_pending(const struct h2_session *s)
{
	return s->hb.active;
}

const struct h2_stats *h2_stats(const struct h2_session *s)
{
	return &s->stats;
}

void h2_abort(struct h2_session *s)
{
	struct h2_stream *st;

	if (!s->err[0])
		set_err(s, "%s", "session aborted");
	s->dead = true;
	while ((st = s->live) != NULL) {
		st->close_code = H2_E_SESSION_GONE;
		stream_close(s, st, H2_E_SESSION_GONE);
	}
}

/* ---- streams: API ---- */

static int attach_body(struct h2_stream *st, nghttp2_data_provider *prd)
{
	prd->source.ptr = st;
	prd->read_callback = data_read;
	st->flags |= ST_BODY;
	return 0;
}

int h2_submit_response(struct h2_session *s, int32_t id, const struct h2_response *rs)
{
	struct h2_stream *st;
	nghttp2_data_provider prd;
	char status[4];
	size_t n;
	int rv;

	if (s->dead || s->role != H2_SERVER || rs->status < 100 || rs->status > 999 ||
	    rs->status == 101)
		return -1;
	st = stream_get(s, id);
	if (!st || !(st->flags & ST_KNOWN) || (st->flags & (ST_ANSWERED | ST_OWNER_RESET)))
		return -1;
	snprintf(status, sizeof(status), "%03d", rs->status);
	nv_prepare(s, 1, rs->headers, rs->nheaders);
	nv_set(&s->nv[0], ":status", 7, status, 3);
	n = nv_fill(s, 1, rs->headers, rs->nheaders, true);
	if (rs->status < 200)
		return nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, id, NULL, s->nv, n,
		                              NULL) == 0 ? 0 : -1;
	if (!rs->end_stream)
		attach_body(st, &prd);
	rv = nghttp2_submit_response(s->ng, id, s->nv, n, rs->end_stream ? NULL : &prd);
	if (rv != 0) {
		st->flags &= ~ST_BODY;
		return -1;
	}
	st->flags |= ST_ANSWERED;
	return 0;
}

int32_t h2_submit_request(struct h2_session *s, const struct h2_request *rq,
                          void *stream_user)
{
	struct h2_stream *st;
	nghttp2_data_provider prd;
	size_t n = 0;
	int32_t id;

	if (s->dead || s->ending || s->role != H2_CLIENT ||
	    !nghttp2_session_check_request_allowed(s->ng))
		return -1;
	st = stream_new(s);
	s->nclient_open++;   /* stream_release gives it back, also on failure below */
	nv_prepare(s, 4, rq->headers, rq->nheaders);
	nv_set(&s->nv[n++], ":method", 7, rq->method.p, rq->method.len);
	if (rq->scheme.len)
		nv_set(&s->nv[n++], ":scheme", 7, rq->scheme.p, rq->scheme.len);
	if (rq->authority.len)
		nv_set(&s->nv[n++], ":authority", 10, rq->authority.p, rq->authority.len);
	if (rq->path.len)
		nv_set(&s->nv[n++], ":path", 5, rq->path.p, rq->path.len);
	n = nv_fill(s, n, rq->headers, rq->nheaders, rq->authority.len > 0);
	if (!rq->end_stream)
		attach_body(st, &prd);
	id = nghttp2_submit_request(s->ng, NULL, s->nv, n, rq->end_stream ? NULL : &prd, st);
	if (id < 0) {
		stream_release(s, st);
		return -1;
	}
	st->id = id;
	st->user = stream_user;
	st->flags |= ST_KNOWN;
	s->stats.streams++;
	return id;
}

static void resume(struct h2_session *s, struct h2_stream *st)
{
	if (st->flags & ST_DEFERRED) {
		st->flags &= ~ST_DEFERRED;
		nghttp2_session_resume_data(s->ng, st->id);
	}
}

ssize_t h2_send_data(struct h2_session *s, int32_t id, const void *data, size_t len,
                     bool end_stream)
{
	struct h2_stream *st;
	size_t space, take;

	if (s->dead)
		return -1;
	st = stream_get(s, id);
	if (!st || !(st->flags & ST_BODY) || (st->flags & (ST_EOF | ST_OWNER_RESET)))
		return -1;
	space = s->lim.stream_send_buffer - st->qlen;
	take = len < space ? len : space;
	q_push(st, data, (uint32_t)take, s->lim.stream_send_buffer);
	if (take < len)
		st->flags |= ST_BLOCKED;
	else if (end_stream)
		st->flags |= ST_EOF;
	if (take > 0 || (st->flags & ST_EOF))
		resume(s, st);
	return (ssize_t)take;
}

size_t h2_send_space(struct h2_session *s, int32_t id)
{
	struct h2_stream *st = s->dead ? NULL : stream_get(s, id);

	if (!st || !(st->flags & ST_BODY) || (st->flags & ST_EOF))
		return 0;
	return s->lim.stream_send_buffer - st->qlen;
}

int h2_submit_trailers(struct h2_session *s, int32_t id, const struct h2_header *h, size_t n)
{
	struct h2_stream *st;
	size_t bytes = n * sizeof(nghttp2_nv);
	char *p;

	if (s->dead || n == 0)
		return -1;
	st = stream_get(s, id);
	if (!st || !(st->flags & ST_BODY) || (st->flags & (ST_EOF | ST_OWNER_RESET)))
		return -1;
	for (size_t i = 0; i < n; i++)
		bytes += h[i].name.len + h[i].value.len;
	st->trailers = xmalloc(bytes);
	st->ntrailers = n;
	p = (char *)(st->trailers + n);
	for (size_t i = 0; i < n; i++) {
		char *name = p, *value = p + h[i].name.len;

		for (size_t k = 0; k < h[i].name.len; k++) {
			char c = h[i].name.p[k];

			name[k] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
		}
		memcpy(value, h[i].value.p, h[i].value.len);
		nv_set(&st->trailers[i], name, h[i].name.len, value, h[i].value.len);
		p = value + h[i].value.len;
	}
	st->flags |= ST_EOF;
	resume(s, st);
	return 0;
}

int h2_consume(struct h2_session *s, int32_t id, size_t n)
{
	struct h2_stream *st;

	if (s->dead)
		return 0;
	st = stream_get(s, id);
	if (st && (st->flags & ST_KNOWN)) {
		if (n > st->unconsumed)
			n = st->unconsumed;
		st->unconsumed -= n;
		if (n && nghttp2_session_consume(s->ng, id, n) != 0)
			return -1;
	}
	release_conn(s);
	return 0;
}

int h2_reset_stream(struct h2_session *s, int32_t id, uint32_t code)
{
	struct h2_stream *st;

	if (s->dead)
		return -1;
	st = stream_get(s, id);
	if (!st)
		return -1;
	if (st->flags & ST_OWNER_RESET)
		return 0;
	st->flags |= ST_OWNER_RESET;
	st->flags &= ~(ST_BLOCKED | ST_NOTIFY);
	if (!st->close_code)
		st->close_code = code ? code : NGHTTP2_CANCEL;
	/* The unconsumed bytes will never be forwarded: give them back now. */
	if (st->unconsumed) {
		nghttp2_session_consume(s->ng, id, st->unconsumed);
		st->unconsumed = 0;
	}
	return nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, id, code) == 0 ? 0 : -1;
}

void *h2_stream_user(struct h2_session *s, int32_t id)
{
	struct h2_stream *st = stream_get(s, id);

	return st ? st->user : NULL;
}

int h2_stream_set_user(struct h2_session *s, int32_t id, void *user)
{
	struct h2_stream *st = stream_get(s, id);

	if (!st)
		return -1;
	st->user = user;
	return 0;
}

int h2_cap_stream_window(struct h2_session *s, uint32_t cap)
{
	nghttp2_settings_entry iv;

	iv = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
		                       cap < s->lim.stream_window ? cap : s->lim.stream_window };
	if (iv.value == s->stream_window)
		return 0;
	if (s->dead || nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, &iv, 1) != 0)
		return -1;
	s->stream_window = iv.value;
	return 0;
}

int h2_shutdown_notice(struct h2_session *s)
{
	if (s->dead || s->role != H2_SERVER)
		return -1;
	return nghttp2_submit_shutdown_notice(s->ng) == 0 ? 0 : -1;
}

int h2_goaway(struct h2_session *s, uint32_t code)
{
	int rv;

	if (s->dead)
		return -1;
	if (code == NGHTTP2_NO_ERROR)
		rv = nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
		                           nghttp2_session_get_last_proc_stream_id(s->ng),
		                           NGHTTP2_NO_ERROR, NULL, 0);
	else
		rv = nghttp2_session_terminate_session(s->ng, code);
	return rv == 0 ? 0 : -1;
}

uint32_t h2_streams_available(const struct h2_session *s)
{
	uint32_t peer;

	if (s->dead || s->ending || s->role != H2_CLIENT ||
	    !nghttp2_session_check_request_allowed(s->ng))
		return 0;
	peer = nghttp2_session_get_remote_settings(s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	if (peer > s->lim.max_concurrent_streams)
		peer = s->lim.max_concurrent_streams;
	return peer > s->nclient_open ? peer - s->nclient_open : 0;
}

/* ---- heads ---- */

static size_t heads_size(const struct h2_header *h, size_t n)
{
	size_t b = 0;

	for (size_t i = 0; i < n; i++)
		b += h[i].name.len + h[i].value.len + 2;
	return b;
}

static struct h2_str copy_str(char **p, struct h2_str v)
{
	struct h2_str r = { *p, v.len };

	if (v.len)
		memcpy(*p, v.p, v.len);
	(*p)[v.len] = '\0';
	*p += v.len + 1;
	return r;
}

static struct h2_header *copy_headers(char **p, struct h2_header *dst,
                                      const struct h2_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		dst[i].name = copy_str(p, h[i].name);
		dst[i].value = copy_str(p, h[i].value);
	}
	return dst;
}

struct h2_request *h2_request_dup(const struct h2_request *rq)
{
	size_t hsz = rq->nheaders * sizeof(struct h2_header);
	size_t sz = sizeof(*rq) + hsz + heads_size(rq->headers, rq->nheaders) +
	            rq->method.len + rq->scheme.len + rq->authority.len + rq->path.len + 4;
	struct h2_request *c = xmalloc(sz);
	struct h2_header *h = (struct h2_header *)(c + 1);
	char *p = (char *)h + hsz;

	*c = *rq;
	c->method = copy_str(&p, rq->method);
	c->scheme = copy_str(&p, rq->scheme);
	c->authority = copy_str(&p, rq->authority);
	c->path = copy_str(&p, rq->path);
	c->headers = copy_headers(&p, h, rq->headers, rq->nheaders);
	return c;
}

struct h2_response *h2_response_dup(const struct h2_response *rs)
{
	size_t hsz = rs->nheaders * sizeof(struct h2_header);
	size_t sz = sizeof(*rs) + hsz + heads_size(rs->headers, rs->nheaders);
	struct h2_response *c = xmalloc(sz);
	struct h2_header *h = (struct h2_header *)(c + 1);
	char *p = (char *)h + hsz;

	*c = *rs;
	c->headers = copy_headers(&p, h, rs->headers, rs->nheaders);
	return c;
}

static struct h2_str span(const char *buf, struct h1_span sp)
{
	return (struct h2_str){ buf + sp.off, sp.len };
}

static struct h2_str lit(const char *s)
{
	return (struct h2_str){ s, strlen(s) };
}

/* Copies the fields of m that HTTP/2 may carry; returns the count. */
static size_t fields_from_h1(const struct h1_msg *m, const char *buf, struct h2_header *out)
{
	size_t n = 0;

	for (unsigned i = 0; i < m->nheaders; i++) {
		const struct h1_header *hd = &m->headers[i];

		if ((hd->flags & H1_HF_DROP) || hd->id == H1_H_HOST)
			continue;
		out[n].name = span(buf, hd->name);
		out[n].value = span(buf, hd->value);
		n++;
	}
	return n;
}

static size_t add_content_length(struct h2_from_h1 *c, size_t n, uint64_t len)
{
	int w = snprintf(c->cl, sizeof(c->cl), "%llu", (unsigned long long)len);

	c->hdrs[n].name = lit("content-length");
	c->hdrs[n].value = (struct h2_str){ c->cl, (size_t)w };
	return n + 1;
}

int h2_request_from_h1(const struct h1_msg *m, const char *buf, const char *scheme,
                       struct h2_from_h1 *c)
{
	struct h2_request *rq = &c->rq;
	size_t n;

	memset(rq, 0, sizeof(*rq));
	c->path_alloc = NULL;
	rq->method = span(buf, m->method);
	rq->content_length = -1;
	if (m->target_form == H1_TF_AUTHORITY) {
		rq->authority = span(buf, m->target);
	} else {
		if (m->target_form == H1_TF_ABSOLUTE) {
			rq->scheme = span(buf, m->scheme);
			rq->authority = span(buf, m->authority);
			rq->path = span(buf, m->path);
			if (rq->path.len == 0) {
				rq->path = lit("/");
			} else if (rq->path.p[0] == '?') {
				c->path_alloc = xasprintf("/%.*s", (int)rq->path.len, rq->path.p);
				rq->path = lit(c->path_alloc);
			}
		} else {
			rq->scheme = lit(scheme ? scheme : "http");
			rq->path = span(buf, m->target);
		}
		if (rq->authority.len == 0 && m->host_idx >= 0)
			rq->authority = span(buf, m->headers[m->host_idx].value);
	}
	if (rq->authority.len == 0) {
		h2_from_h1_fini(c);
		return -1;
	}
	n = fields_from_h1(m, buf, c->hdrs);
	if (m->has_te_trailers) {
		c->hdrs[n].name = lit("te");
		c->hdrs[n].value = lit("trailers");
		n++;
		rq->te_trailers = true;
	}
	if (m->body == H1_BODY_LENGTH) {
		n = add_content_length(c, n, m->content_length);
		rq->content_length = (int64_t)m->content_length;
	}
	rq->headers = c->hdrs;
	rq->nheaders = n;
	rq->end_stream = m->body == H1_BODY_NONE ||
	                 (m->body == H1_BODY_LENGTH && m->content_length == 0);
	return 0;
}

int h2_response_from_h1(const struct h1_msg *m, const char *buf, struct h2_from_h1 *c)
{
	struct h2_response *rs = &c->rs;
	size_t n;

	memset(rs, 0, sizeof(*rs));
	c->path_alloc = NULL;
	if (m->status == 101 || m->status < 100 || m->status > 999)
		return -1;
	rs->status = m->status;
	rs->content_length = -1;
	n = fields_from_h1(m, buf, c->hdrs);
	if (m->body == H1_BODY_LENGTH ||
	    (m->body == H1_BODY_NONE && h1_header_find(m, buf, "content-length", 0) >= 0)) {
		n = add_content_length(c, n, m->content_length);
		rs->content_length = (int64_t)m->content_length;
	}
	rs->headers = c->hdrs;
	rs->nheaders = n;
	rs->end_stream = m->body == H1_BODY_NONE ||
	                 (m->body == H1_BODY_LENGTH && m->content_length == 0);
	return 0;
}

void h2_from_h1_fini(struct h2_from_h1 *c)
{
	free(c->path_alloc);
	c->path_alloc = NULL;
}

/* No CR, LF or NUL: what would split or end an HTTP/1.1 line. */
static bool safe_value(struct h2_str v)
{
	for (size_t i = 0; i < v.len; i++)
		if (v.p[i] == '\r' || v.p[i] == '\n' || v.p[i] == '\0')
			return false;
	return true;
}

/* Visible ASCII only (method, path, authority, field names). */
static bool safe_token(struct h2_str v, bool allow_colon)
{
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.p[i];

		if (c <= 0x20 || c >= 0x7f || (c == ':' && !allow_colon))
			return false;
	}
	return true;
}

/* Fields HTTP/2 forbids or that the caller frames itself: never copied to HTTP/1.1. */
static bool h1_skip(struct h2_str n)
{
	static const char *const skip[] = {
		"content-length", "host", "te", "connection", "keep-alive",
		"proxy-connection", "transfer-encoding", "upgrade",
	};

	for (size_t i = 0; i < ARRAY_SIZE(skip); i++)
		if (str_eq_ci(n.p, n.len, skip[i], strlen(skip[i])))
			return true;
	return false;
}

static bool is_cookie(struct h2_str n)
{
	return str_eq_ci(n.p, n.len, "cookie", 6);
}

static bool fields_safe(const struct h2_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].name.len == 0 || !safe_token(h[i].name, false) || !safe_value(h[i].value))
			return false;
	return true;
}

static void fields_to_h1(const struct h2_header *h, size_t n, struct sbuf *out)
{
	bool cookie_done = false;

	for (size_t i = 0; i < n; i++) {
		if (h1_skip(h[i].name))
			continue;
		if (is_cookie(h[i].name)) {
			if (cookie_done)
				continue;
			/* RFC 9113 8.2.3: crumbs are joined with "; " for HTTP/1.1. */
			cookie_done = true;
			sbuf_adds(out, "cookie: ");
			sbuf_add(out, h[i].value.p, h[i].value.len);
			for (size_t k = i + 1; k < n; k++) {
				if (!is_cookie(h[k].name))
					continue;
				sbuf_adds(out, "; ");
				sbuf_add(out, h[k].value.p, h[k].value.len);
			}
			sbuf_adds(out, "\r\n");
			continue;
		}
		sbuf_add(out, h[i].name.p, h[i].name.len);
		sbuf_adds(out, ": ");
		sbuf_add(out, h[i].value.p, h[i].value.len);
		sbuf_adds(out, "\r\n");
	}
}

int h2_response_to_h1(const struct h2_response *rs, struct sbuf *out)
{
	if (rs->status < 100 || rs->status > 999 || !fields_safe(rs->headers, rs->nheaders))
		return -1;
	sbuf_addf(out, "HTTP/1.1 %d %s\r\n", rs->status, h1_status_reason(rs->status));
	fields_to_h1(rs->headers, rs->nheaders, out);
	return 0;
}

int h2_preface_check(const void *buf, size_t len)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	size_t n = len < 24 ? len : 24;

	if (memcmp(buf, preface, n) != 0)
		return H2_PREFACE_NO;
	return len >= 24 ? H2_PREFACE_YES : H2_PREFACE_MORE;
}
