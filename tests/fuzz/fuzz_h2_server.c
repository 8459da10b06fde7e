/* libFuzzer harness: an HTTP/2 server session (src/http/h2.c) fed arbitrary frames.
 *
 * The input follows the client connection preface (added here, so the fuzzer spends its
 * time on frames). The first byte chooses how the rest is split into h2_feed calls and
 * how much output the "socket" takes per round, so partial writes and every frame split
 * are explored. The owner answers every request (streaming the request body back and
 * consuming only what it queued, like the proxy), sometimes resets or sends trailers.
 * Checks: no memory error (ASan), the output buffer stays bounded, every stream the owner
 * saw is closed exactly once, h2_abort leaves nothing behind, each request head made into
 * the request path's parsed head (h2_request_msg) stays inside its storage. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2.h"
#include "http/h2_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXS 256

struct fz {
	struct h2_session *s;
	int32_t ids[MAXS];
	int n;
	int opened, closed;
	unsigned mode;
};

static void fz_trap(void)
{
	__builtin_trap();
}

static void on_request(struct h2_session *s, void *user, int32_t id,
                       const struct h2_request *rq)
{
	struct fz *f = user;
	struct h2_header h[] = { { { "x-len", 5 }, { rq->path.p, rq->path.len } } };
	struct h2_response rs = { .status = 200, .headers = h, .nheaders = 1 };
	struct h2_request *copy = h2_request_dup(rq);
	static struct h1_msg m;
	char *buf = malloc(h2_request_msg_size(copy) + 1);
	const char *reason = NULL;

	/* The head as the gateway's request path gets it (h2_req.c): every span inside
	 * what h2_request_msg_size promised, a reason with every refusal. */
	if (h2_request_msg(copy, buf, &m, &reason) == 0) {
		if (m.head_len > h2_request_msg_size(copy) || m.nheaders > H1_MAX_HEADERS)
			fz_trap();
		for (unsigned i = 0; i < m.nheaders; i++)
			if (m.headers[i].value.off + m.headers[i].value.len > m.head_len)
				fz_trap();
	} else if (!reason) {
		fz_trap();
	}
	free(buf);
	free(copy);
	f->opened++;
	if (f->n < MAXS)
		f->ids[f->n++] = id;
	h2_stream_set_user(s, id, f);
	if ((f->mode + (unsigned)id) % 7 == 0) {
		h2_reset_stream(s, id, 8);
		return;
	}
	rs.end_stream = rq->end_stream && (id % 3 == 0);
	h2_submit_response(s, id, &rs);
	if (!rs.end_stream && rq->end_stream)
		h2_send_data(s, id, "ok", 2, true);
}

static void on_data(struct h2_session *s, void *user, int32_t id, void *su,
                    const uint8_t *d, size_t len)
{
	ssize_t n = h2_send_data(s, id, d, len, false);

	h2_consume(s, id, n > 0 ? (size_t)n : 0);
}

static void on_end(struct h2_session *s, void *user, int32_t id, void *su)
{
	struct h2_header t[] = { { { "x-t", 3 }, { "1", 1 } } };

	if (id % 5 == 1)
		h2_submit_trailers(s, id, t, 1);
	else
		h2_send_data(s, id, NULL, 0, true);
}

static void on_close(struct h2_session *s, void *user, int32_t id, void *su, uint32_t code)
{
	struct fz *f = user;

	if (su != f)
		fz_trap();
	f->closed++;
}

static const struct h2_callbacks cb = {
	.on_request = on_request,
	.on_data = on_data,
	.on_end_stream = on_end,
	.on_stream_close = on_close,
};

static void drain(struct fz *f, size_t take)
{
	const uint8_t *p;
	size_t n = h2_pending_output(f->s, &p);

	/* output_buffer (4096 here) plus one frame at most */
	if (n > 4096 + 16384 + 9 + 70000)
		fz_trap();
	h2_output_consumed(f->s, n < take ? n : take);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct h2_limits lim;
	struct fz f;
	size_t step, take, off = 0;

	if (size < 1)
		return 0;
	memset(&f, 0, sizeof(f));
	f.mode = data[0];
	step = 1 + (size_t)(data[0] & 0x0f) * 97;
	take = (data[0] & 0x10) ? 1000 : (size_t)-1;
	data++;
	size--;
	h2_limits_default(&lim);
	lim.output_buffer = 4096;
	lim.stream_send_buffer = 1024;
	lim.max_concurrent_streams = 16;
	f.s = h2_session_new(H2_SERVER, &lim, &cb, &f);
	if (!f.s)
		fz_trap();
	if (h2_feed(f.s, preface, 24) != 0)
		fz_trap();
	while (off < size && !h2_done(f.s)) {
		size_t n = size - off < step ? size - off : step;

		if (h2_feed(f.s, data + off, n) < 0)
			break;
		off += n;
		drain(&f, take);
	}
	for (int i = 0; i < 8 && !h2_done(f.s); i++)
		drain(&f, (size_t)-1);
	h2_abort(f.s);
	if (f.closed != f.opened)
		fz_trap();
	h2_session_free(f.s);
	return 0;
}
