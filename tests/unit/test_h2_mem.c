/* Tests for http/h2_mem: blocks of every class and big ones hold what was written, a freed
 * block comes back for the next allocation of its class only while the thread's cache is
 * on, realloc keeps the contents across classes, calloc zeroes, and a real nghttp2 session
 * pair runs on the allocator. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/h2.h"
#include "http/h2_mem.h"

static void test_classes_and_big_blocks(void **state)
{
	nghttp2_mem *m = h2_mem();
	size_t sizes[] = { 0, 1, 31, 32, 33, 100, 1000, 4096, 4097, 70000 };
	void *p[sizeof(sizes) / sizeof(sizes[0])];

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = m->malloc(sizes[i], m->mem_user_data);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 16, 0);
		memset(p[i], (int)i, sizes[i]);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t k = 0; k < sizes[i]; k++)
			assert_int_equal(((unsigned char *)p[i])[k], i);
		m->free(p[i], m->mem_user_data);
	}
	m->free(NULL, m->mem_user_data);
}

static void test_cache_reuses_only_when_on(void **state)
{
	nghttp2_mem *m = h2_mem();
	void *a, *b, *big, *big2;

	(void)state;
	h2_mem_cache_start();
	a = m->malloc(100, NULL);
	m->free(a, NULL);
	b = m->malloc(120, NULL);            /* same class (128): the cached block */
	assert_ptr_equal(a, b);
	m->free(b, NULL);
	b = m->malloc(300, NULL);            /* another class: not that block */
	assert_ptr_not_equal(a, b);
	m->free(b, NULL);
	big = m->malloc(10000, NULL);        /* above the classes: never cached */
	m->free(big, NULL);
	big2 = m->malloc(64, NULL);
	m->free(big2, NULL);
	h2_mem_cache_stop();                 /* frees the cache: ASan/LSan check it */
}

static void test_realloc_and_calloc(void **state)
{
	nghttp2_mem *m = h2_mem();
	unsigned char *p, *z;

	(void)state;
	h2_mem_cache_start();
	p = m->realloc(NULL, 20, NULL);
	for (int i = 0; i < 20; i++)
		p[i] = (unsigned char)i;
	p = m->realloc(p, 30, NULL);         /* fits its 32-byte class: same block */
	p = m->realloc(p, 5000, NULL);       /* to a big block */
	for (int i = 0; i < 20; i++)
		assert_int_equal(p[i], i);
	memset(p + 20, 0xab, 4980);
	p = m->realloc(p, 40, NULL);         /* back down to a class */
	for (int i = 0; i < 20; i++)
		assert_int_equal(p[i], i);
	m->free(p, NULL);
	z = m->calloc(10, 37, NULL);
	for (int i = 0; i < 370; i++)
		assert_int_equal(z[i], 0);
	m->free(z, NULL);
	assert_null(m->calloc(SIZE_MAX / 2, 4, NULL));
	h2_mem_cache_stop();
}

/* ---- a client and a server session on the allocator, one exchange ---- */

struct side {
	struct h2_session *s;
	int got_request, got_response, got_end;
};

static void on_request(struct h2_session *s, void *user, int32_t id, const struct h2_request *rq)
{
	struct side *sd = user;
	struct h2_header h = { { "x-a", 3 }, { "b", 1 } };
	struct h2_response rs = { .status = 200, .headers = &h, .nheaders = 1,
	                          .content_length = -1, .end_stream = true };

	(void)rq;
	sd->got_request++;
	assert_int_equal(h2_submit_response(s, id, &rs), 0);
}

static void on_response(struct h2_session *s, void *user, int32_t id, void *su,
                        const struct h2_response *rs)
{
	struct side *sd = user;

	(void)s;
	(void)id;
	(void)su;
	assert_int_equal(rs->status, 200);
	sd->got_response++;
}

static void on_end(struct h2_session *s, void *user, int32_t id, void *su)
{
	(void)s;
	(void)id;
	(void)su;
	((struct side *)user)->got_end++;
}

static void pump(struct h2_session *from, struct h2_session *to)
{
	const uint8_t *p;
	size_t n;

	while ((n = h2_pending_output(from, &p)) > 0) {
		assert_int_equal(h2_feed(to, p, n), 0);
		h2_output_consumed(from, n);
	}
}

static void test_sessions_on_the_allocator(void **state)
{
	struct h2_callbacks scb = { .on_request = on_request };
	struct h2_callbacks ccb = { .on_response = on_response, .on_end_stream = on_end };
	struct side srv = { 0 }, cli = { 0 };
	struct h2_request rq = { .method = { "GET", 3 }, .scheme = { "https", 5 },
	                         .authority = { "a.test", 6 }, .path = { "/", 1 },
	                         .content_length = -1, .end_stream = true };

	(void)state;
	h2_mem_cache_start();
	srv.s = h2_session_new(H2_SERVER, NULL, &scb, &srv);
	cli.s = h2_session_new(H2_CLIENT, NULL, &ccb, &cli);
	assert_non_null(srv.s);
	assert_non_null(cli.s);
	for (int i = 0; i < 50; i++) {
		assert_true(h2_submit_request(cli.s, &rq, NULL) > 0);
		for (int k = 0; k < 3; k++) {
			pump(cli.s, srv.s);
			pump(srv.s, cli.s);
		}
	}
	assert_int_equal(srv.got_request, 50);
	assert_int_equal(cli.got_response, 50);
	assert_int_equal(cli.got_end, 50);
	h2_session_free(cli.s);
	h2_session_free(srv.s);
	h2_mem_cache_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_and_big_blocks),
		cmocka_unit_test(test_cache_reuses_only_when_on),
		cmocka_unit_test(test_realloc_and_calloc),
		cmocka_unit_test(test_sessions_on_the_allocator),
	};

	return cmocka_run_group_tests_name("h2_mem", tests, NULL, NULL);
}
