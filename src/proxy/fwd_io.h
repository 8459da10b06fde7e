/* fwd_io: buffers, output queues and socket/TLS I/O of the request path (fwd_io.c). */
#ifndef EGRESS_PROXY_FWD_IO_H
#define EGRESS_PROXY_FWD_IO_H

#include "proxy/fwd_int.h"

#define FWD_BUF_MIN 2048        /* the smallest buffer class (see "I/O buffers" in fwd_io.c) */
#define IOB_LIT(b, lit) iob_append((b), (lit), sizeof(lit) - 1)

void buf_release(void *p, size_t cap);
void *buf_grow(void *p, size_t cap, const void *keep_from, size_t keep, size_t ncap);
void iob_append(struct iobuf *b, const void *p, size_t n);
size_t iob_used(const struct iobuf *b);
void iob_free(struct iobuf *b);
void iob_adds(struct iobuf *b, const char *s);
size_t u64_dec(char *out, uint64_t v);
/* n lower-case hex digits of v (its low 4n bits), without a NUL. Inline: the request id
 * (six calls) and the pool key (one) are made on every request. */
static inline void hex_put(char *out, uint64_t v, int n)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = n - 1; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
}
void iob_addu(struct iobuf *b, uint64_t v);
void iob_field(struct iobuf *b, const char *name, size_t nlen, const char *v,
               size_t vlen);
void iob_field_s(struct iobuf *b, const char *name, const char *v);
void iob_field_u(struct iobuf *b, const char *name, uint64_t v);
int io_write(int fd, struct tls_conn *tls, struct iobuf *b, bool *blocked);
ssize_t io_read(int fd, struct tls_conn *tls, char **buf, size_t *len, size_t *cap,
                size_t max, bool *drained);
bool tls_wait(struct loop *loop, struct loop_io *io, int rc);
struct alog_str span_str(const char *buf, struct h1_span s);
struct alog_str cstr(const char *s);
struct alog_str req_header(const struct stream *st, const char *name);
/* The router's header look-up (struct route_req's header, ctx a struct req_hdr_ctx): a
 * field of a parsed request head m whose spans point into buf. The core's route and the
 * mirror's (fwd_mirror.c) both use it. */
struct req_hdr_ctx {
	const struct h1_msg *m;
	const char *buf;
};
bool req_header_cb(void *ctx, const char *name, const char **v, size_t *vlen);
void gen_request_id(struct worker *w, char *out);
void chunked_relay(struct iobuf *out, const char *p, size_t used, int rc,
                   struct h1_span tr, bool keep_trailers);

#endif
