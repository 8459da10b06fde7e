/* fwd_io: the request path's buffers and socket I/O (part of the fwd module, see fwd_int.h).
 *
 * Connections' input and output buffers come from a per-thread cache of size classes
 * (buf_alloc / buf_release, see "I/O buffers" below); struct iobuf is an output queue
 * (iob_*: append text, numbers and header fields); io_read / io_write move bytes between a
 * buffer and a socket or its TLS session with one set of return codes for both. Also the
 * small helpers every part of the request path uses: spans to C strings, the request's
 * header lookup (req_header), x-request-id generation, and the chunked trailer relay.
 * Nothing here knows about requests, routes or connections' state: it calls no other
 * fwd_* file. */
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/worker.h"
#include "proxy/fwd.h"
#include "proxy/cbreak.h"
#include "proxy/pool.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "net/dns.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---- */

/* ---- I/O buffers ----
 * Connections take their buffers when they turn busy and give them back when they go idle
 * (an idle connection keeps none: scenario 4's memory); a buffer grows by doubling from
 * FWD_BUF_INIT. Through malloc that was a malloc and a free per buffer per request, and
 * glibc trimming the thread's arena (madvise, then page faults: 6% of the CPU with 16 KiB
 * responses, whose head and body outgrow one buffer) every few requests. Each worker
 * thread keeps free buffers of the smallest sizes instead (FWD_BUF_MIN, doubling, up to
 * four times FWD_BUF_INIT), up to FWD_BUF_CACHE_BYTES. Sockets start at FWD_BUF_INIT; an
 * HTTP/2 stream's virtual connection starts its input at FWD_BUF_MIN (it holds one request
 * head, and a thousand open streams should not hold 16 MiB of mostly empty buffers).
 * FWD_BUF_CACHE_BYTES is 4 MiB: at 1 MiB, scenario 1's 50 keep-alive connections (each
 * giving back 16 KiB each way between two requests) overflowed it, and the buffers it then
 * freed brought glibc's arena trimming back (190-300 madvise calls in a 3 s run, strace -k:
 * free from iob_free in d_process; none at 4 MiB). At most FWD_BUF_CACHE_SLOTS per class.
 * The cache is thread-local rather than in struct worker because buffers are taken and
 * given back deep in the I/O helpers, which know only the buffer; a thread that never
 * called fwd_buf_cache_start (the main thread freeing connections at shutdown) keeps no
 * cache and frees as malloc would. */
#define FWD_BUF_CLASSES     6                  /* FWD_BUF_MIN << 0 .. 5 (2 KiB .. 64 KiB) */
#define FWD_BUF_CACHE_BYTES (4 * 1024 * 1024)
#define FWD_BUF_CACHE_SLOTS 512                /* per class */

/* Under AddressSanitizer a cached buffer is poisoned, so that a use after buf_release is
 * still reported as it would be after free(). The free buffers are listed in arrays, not
 * linked through their own first bytes, for the same reason. */
#if defined(__SANITIZE_ADDRESS__)
#define FWD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FWD_ASAN 1
#endif
#endif
#ifdef FWD_ASAN
#include <sanitizer/asan_interface.h>
#define buf_poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define buf_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define buf_poison(p, n)   ((void)(p), (void)(n))
#define buf_unpoison(p, n) ((void)(p), (void)(n))
#endif

static _Thread_local struct {
	void *free[FWD_BUF_CLASSES][FWD_BUF_CACHE_SLOTS];
	unsigned n[FWD_BUF_CLASSES];
	size_t bytes;
	bool on;
} buf_cache;

void fwd_buf_cache_start(void)
{
	buf_cache.on = true;
}

void fwd_buf_cache_stop(void)
{
	for (int c = 0; c < FWD_BUF_CLASSES; c++) {
		while (buf_cache.n[c]) {
			void *p = buf_cache.free[c][--buf_cache.n[c]];

			buf_unpoison(p, (size_t)FWD_BUF_MIN << c);
			free(p);
		}
	}
	buf_cache.bytes = 0;
	buf_cache.on = false;
}

/* The cache's class for a buffer of cap bytes, or -1 when such buffers are not cached. */
static int buf_class(size_t cap)
{
	if (cap < FWD_BUF_MIN || cap > ((size_t)FWD_BUF_MIN << (FWD_BUF_CLASSES - 1)) ||
	    (cap & (cap - 1)))
		return -1;
	return __builtin_ctzll((unsigned long long)(cap / FWD_BUF_MIN));
}

/* A buffer of cap bytes (any size; cached sizes come from the cache when it has one). */
static void *buf_alloc(size_t cap)
{
	int c = buf_class(cap);
	void *p;

	if (c < 0 || !buf_cache.n[c])
		return xmalloc(cap);
	p = buf_cache.free[c][--buf_cache.n[c]];
	buf_cache.bytes -= cap;
	buf_unpoison(p, cap);
	return p;
}

/* Gives back p (NULL allowed), a buffer of cap bytes from buf_alloc or buf_grow. */
void buf_release(void *p, size_t cap)
{
	int c = buf_class(cap);

	if (!p)
		return;
	if (c < 0 || !buf_cache.on || buf_cache.n[c] >= FWD_BUF_CACHE_SLOTS ||
	    buf_cache.bytes + cap > FWD_BUF_CACHE_BYTES) {
		free(p);
		return;
	}
	buf_poison(p, cap);
	buf_cache.free[c][buf_cache.n[c]++] = p;
	buf_cache.bytes += cap;
}

void *fwd_buf_get(size_t cap)
{
	return buf_alloc(cap);
}

void fwd_buf_put(void *p, size_t cap)
{
	buf_release(p, cap);
}

/* p (cap bytes, NULL allowed) replaced by a buffer of ncap bytes holding its first keep
 * bytes (keep <= ncap); p is given back. */
void *buf_grow(void *p, size_t cap, const void *keep_from, size_t keep, size_t ncap)
{
	void *np = buf_alloc(ncap);

	if (keep)
		memcpy(np, keep_from, keep);
	buf_release(p, cap);
	return np;
}

void iob_append(struct iobuf *b, const void *p, size_t n)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		if (b->off > 0 && b->len - b->off + n <= b->cap) {
			memmove(b->p, b->p + b->off, b->len - b->off);
		} else {
			size_t cap = b->cap ? b->cap : FWD_BUF_INIT;

			while (cap < b->len - b->off + n)
				cap *= 2;
			/* b->p is NULL before the first growth: no offset on it (UB). */
			b->p = buf_grow(b->p, b->cap, b->p ? b->p + b->off : NULL, b->len - b->off,
			                cap);
			b->cap = cap;
		}
		b->len -= b->off;
		b->off = 0;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

size_t iob_used(const struct iobuf *b)
{
	return b->len - b->off;
}

void iob_free(struct iobuf *b)
{
	buf_release(b->p, b->cap);
	memset(b, 0, sizeof(*b));
}

/* Heads are built straight into the output buffers, piece by piece: no printf on the
 * request path (it was a tenth of the CPU per request). */

void iob_adds(struct iobuf *b, const char *s)
{
	iob_append(b, s, strlen(s));
}

/* Writes v in decimal at out (room for 20 digits); returns the length. */
size_t u64_dec(char *out, uint64_t v)
{
	char t[20];
	size_t n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	return n;
}

void iob_addu(struct iobuf *b, uint64_t v)
{
	char t[20];

	iob_append(b, t, u64_dec(t, v));
}

/* "name: value\r\n" lines of a head. */
void iob_field(struct iobuf *b, const char *name, size_t nlen, const char *v,
               size_t vlen)
{
	iob_append(b, name, nlen);
	IOB_LIT(b, ": ");
	iob_append(b, v, vlen);
	IOB_LIT(b, "\r\n");
}

void iob_field_s(struct iobuf *b, const char *name, const char *v)
{
	iob_field(b, name, strlen(name), v, strlen(v));
}

void iob_field_u(struct iobuf *b, const char *name, uint64_t v)
{
	iob_adds(b, name);
	IOB_LIT(b, ": ");
	iob_addu(b, v);
	IOB_LIT(b, "\r\n");
}

/* Writes buffered bytes. Returns 0 when everything was written or the socket is full
 * (*blocked set), -1 on error. */
int io_write(int fd, struct tls_conn *tls, struct iobuf *b, bool *blocked)
{
	*blocked = false;
	while (iob_used(b) > 0) {
		ssize_t n;

		if (tls) {
			n = tls_write(tls, b->p + b->off, iob_used(b));
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
				*blocked = true;
				return 0;
			}
		} else {
			n = write(fd, b->p + b->off, iob_used(b));
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*blocked = true;
				return 0;
			}
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	/* Idle connections should not keep big buffers: give back what grew past the default. */
	if (b->cap > FWD_BUF_INIT * 4) {
		buf_release(b->p, b->cap);
		b->p = NULL;
		b->cap = 0;
	}
	return 0;
}

/* One read from the transport into p[0 .. n): bytes (> 0), 0 at EOF, < 0 (not -2) on
 * error, -2 when nothing is available now; *drained as io_read says. */
static ssize_t io_read_once(int fd, struct tls_conn *tls, char *p, size_t n, bool *drained)
{
	ssize_t r;

	if (tls) {
		r = tls_read(tls, p, n);
		if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
			return -2;
		if (drained && r > 0 && tls_read_drained(tls))
			*drained = true;
		return r;
	}
	do {
		r = read(fd, p, n);
	} while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -2;
	if (drained && r > 0 && (size_t)r < n)
		*drained = true;
	return r;
}

/* Reads into a growable input buffer. Returns bytes read (> 0), 0 on EOF, -1 on error,
 * -2 when nothing is available now. *drained (may be NULL) is set when a plain socket
 * gave less than asked: it is empty now, and reading again would only find EAGAIN (the
 * level-triggered loop says when more comes). */
ssize_t io_read(int fd, struct tls_conn *tls, char **buf, size_t *len, size_t *cap,
                size_t max, bool *drained)
{
	ssize_t n;

	if (drained)
		*drained = false;
	if (!*buf) {
		/* No buffer (an idle connection keeps none): read into the stack first, so that
		 * the read that finds nothing (the common one after a response) allocates
		 * nothing either. */
		char tmp[4096];

		n = io_read_once(fd, tls, tmp, sizeof(tmp), drained);
		if (n <= 0)
			return n;
		*cap = FWD_BUF_INIT < max ? FWD_BUF_INIT : max;
		*buf = buf_alloc(*cap);
		memcpy(*buf, tmp, (size_t)n);
		*len = (size_t)n;
		return n;
	}
	if (*cap - *len < 4096) {
		size_t ncap = *cap ? *cap * 2 : FWD_BUF_INIT;

		if (ncap > max)
			ncap = max;
		if (ncap <= *len)
			return -3;      /* full */
		*buf = buf_grow(*buf, *cap, *buf, *len, ncap);
		*cap = ncap;
	}
	n = io_read_once(fd, tls, *buf + *len, *cap - *len, drained);
	if (n > 0)
		*len += (size_t)n;
	return n;
}

/* A handshake step that must wait: registers the direction OpenSSL asked for (reads stay
 * on) and returns true. Any other rc (done or failed) returns false. */
bool tls_wait(struct loop *loop, struct loop_io *io, int rc)
{
	if (rc == TLS_WANT_READ)
		loop_io_mod(loop, io, LOOP_READ);
	else if (rc == TLS_WANT_WRITE)
		loop_io_mod(loop, io, LOOP_READ | LOOP_WRITE);
	else
		return false;
	return true;
}

struct alog_str span_str(const char *buf, struct h1_span s)
{
	struct alog_str a = { buf + s.off, s.len };

	return a;
}

struct alog_str cstr(const char *s)
{
	struct alog_str a = { s, s ? strlen(s) : 0 };

	return a;
}

/* Value of the first header named name in the request, as an alog_str. */
bool req_header_cb(void *ctx, const char *name, const char **v, size_t *vlen)
{
	struct req_hdr_ctx *hc = ctx;
	int i = h1_header_find(hc->m, hc->buf, name, 0);

	if (i < 0)
		return false;
	*v = hc->buf + hc->m->headers[i].value.off;
	*vlen = hc->m->headers[i].value.len;
	return true;
}

struct alog_str req_header(const struct stream *st, const char *name)
{
	int i = h1_header_find(&st->req, st->d->in, name, 0);

	if (i < 0)
		return cstr(NULL);
	return span_str(st->d->in, st->req.headers[i].value);
}

void gen_request_id(struct worker *w, char *out)
{
	uint32_t r[4];

	for (int i = 0; i < 4; i++)
		r[i] = worker_rand(w);
	/* RFC 4122 version 4 layout, as Envoy generates x-request-id:
	 * %08x-%04x-4%03x-%04x-%04x%08x of r[0], r[1] >> 16, r[1] & 0xfff,
	 * (r[2] >> 16 & 0x3fff) | 0x8000, r[2] & 0xffff, r[3]. */
	hex_put(out, r[0], 8);
	out[8] = '-';
	hex_put(out + 9, r[1] >> 16, 4);
	out[13] = '-';
	out[14] = '4';
	hex_put(out + 15, r[1] & 0xfff, 3);
	out[18] = '-';
	hex_put(out + 19, (r[2] >> 16 & 0x3fff) | 0x8000, 4);
	out[23] = '-';
	hex_put(out + 24, r[2] & 0xffff, 4);
	hex_put(out + 28, r[3], 8);
	out[36] = '\0';
}

/* ---- chunked bodies ---- */

/* Relays the bytes one h1_chunked_feed call consumed (p[0 .. used), result rc, trailer
 * section span tr) unchanged, except the trailer section. Without keep_trailers its fields
 * are dropped and only its final CRLF is kept: Envoy's HTTP/1 codec drops trailers unless
 * enable_trailers is set (Istio does not set it). With keep_trailers (the response's
 * receiver asked for them with TE: trailers, or is an HTTP/2 stream: gRPC's grpc-status
 * and grpc-message travel there) the fields are relayed, minus those that must never be
 * acted on as trailers (framing, hop-by-hop, Host: RFC 9110 section 6.5.1). */
void chunked_relay(struct iobuf *out, const char *p, size_t used, int rc,
                   struct h1_span tr, bool keep_trailers)
{
	struct h1_header f[H1_MAX_HEADERS];
	unsigned n = 0;

	if (rc != H1_OK || used == 0) {
		if (used)
			iob_append(out, p, used);
		return;
	}
	iob_append(out, p, tr.off);
	if (keep_trailers && tr.len > 2 &&
	    h1_parse_trailers(p + tr.off, tr.len, f, H1_MAX_HEADERS, &n) == 0) {
		const char *b = p + tr.off;

		for (unsigned i = 0; i < n; i++) {
			if ((f[i].flags & H1_HF_DROP) || f[i].id == H1_H_HOST ||
			    f[i].id == H1_H_TRAILER)
				continue;
			iob_field(out, b + f[i].name.off, f[i].name.len, b + f[i].value.off,
			          f[i].value.len);
		}
	}
	iob_append(out, "\r\n", 2);
}
