/* Tests for proxy/route_fault: the redirect Location as Envoy's newUri builds it from what
 * Istio compiles (scheme, port, derivePort, the request host's port kept or dropped, IPv6
 * literals), the percentage decision at its edges, the gRPC status names and Envoy's
 * HTTP-to-gRPC mapping, and which content-types are gRPC. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/sbuf.h"
#include "proxy/route.h"
#include "proxy/route_fault.h"

static char *loc(const struct route_fault *f, const char *authority, const char *uri,
                 const char *scheme, const char *host, const char *path, uint16_t port)
{
	static struct sbuf b = SBUF_INIT;
	struct route_req rq = {
		.scheme = scheme, .scheme_len = strlen(scheme), .authority = host,
		.authority_len = strlen(host), .path = path, .path_len = strlen(path), .port = port,
	};

	sbuf_reset(&b);
	route_fault_location(f, authority, uri, &rq, &b);
	return (char *)sbuf_str(&b);
}

static void test_location(void **state)
{
	struct route_fault f = { .abort_grpc = -1 };

	(void)state;
	/* No route_fault: host and path kept, the Host's port too. */
	assert_string_equal(loc(NULL, NULL, "/new", "http", "a.test:8080", "/old?q", 80),
	                    "http://a.test:8080/new");
	assert_string_equal(loc(NULL, "b.test", NULL, "http", "a.test", "/p?q=1", 80),
	                    "http://b.test/p?q=1");
	assert_string_equal(loc(NULL, NULL, "x", "http", "a.test", "/p", 80), "http://a.test/x");
	/* scheme: the request's port stays unless it was the old scheme's default. */
	f.redir_scheme = "https";
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test:8080", "/p", 80),
	                    "https://a.test:8080/p");
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test:80", "/p", 80), "https://a.test/p");
	assert_string_equal(loc(&f, NULL, NULL, "https", "a.test:443", "/p", 443),
	                    "https://a.test:443/p");
	/* port: replaces the Host's. The scheme's default is left out: Istio compiles it to no
	 * port_redirect at all, so Envoy then keeps the Host's own port. */
	f.redir_port = 8443;
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test:8080", "/p", 80),
	                    "https://a.test:8443/p");
	f.redir_port = 443;
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test:8080", "/p", 80),
	                    "https://a.test:8080/p");
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test", "/p", 80), "https://a.test/p");
	f.redir_scheme = NULL;
	f.redir_port = 80;
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test:8080", "/p", 80),
	                    "http://a.test:8080/p");
	/* derivePort FROM_REQUEST_PORT: the port routed on. */
	f.redir_port = 0;
	f.redir_port_from_request = true;
	assert_string_equal(loc(&f, NULL, NULL, "http", "a.test", "/p", 8080),
	                    "http://a.test:8080/p");
	assert_string_equal(loc(&f, "b.test", "/q", "http", "a.test", "/p", 9000),
	                    "http://b.test:9000/q");
	/* IPv6 literals: the port after the bracket only. */
	assert_string_equal(loc(&f, NULL, NULL, "http", "[::1]:8080", "/p", 9000),
	                    "http://[::1]:9000/p");
	assert_string_equal(loc(&f, NULL, NULL, "http", "[::1]", "/p", 9000),
	                    "http://[::1]:9000/p");
}

static void test_hit(void **state)
{
	(void)state;
	assert_false(route_fault_hit(0, 0));
	assert_false(route_fault_hit(0, 999999));
	assert_true(route_fault_hit(ROUTE_FAULT_PPM, 0xffffffffu));
	assert_true(route_fault_hit(1, 0));
	assert_false(route_fault_hit(1, 1));
	assert_true(route_fault_hit(500000, 499999));
	assert_false(route_fault_hit(500000, 500000));
	assert_true(route_fault_hit(500000, 1000000));   /* rnd % 1e6 */
}

static void test_grpc(void **state)
{
	(void)state;
	assert_int_equal(route_fault_grpc_code("UNAVAILABLE"), 14);
	assert_int_equal(route_fault_grpc_code("OK"), 0);
	assert_int_equal(route_fault_grpc_code("UNAUTHENTICATED"), 16);
	assert_int_equal(route_fault_grpc_code("unavailable"), -1);
	assert_int_equal(route_fault_grpc_code(NULL), -1);
	assert_string_equal(route_fault_grpc_name(8), "RESOURCE_EXHAUSTED");
	assert_null(route_fault_grpc_name(17));
	assert_int_equal(route_fault_http_to_grpc(503), 14);
	assert_int_equal(route_fault_http_to_grpc(429), 14);
	assert_int_equal(route_fault_http_to_grpc(403), 7);
	assert_int_equal(route_fault_http_to_grpc(404), 12);
	assert_int_equal(route_fault_http_to_grpc(401), 16);
	assert_int_equal(route_fault_http_to_grpc(400), 13);
	assert_int_equal(route_fault_http_to_grpc(500), 2);
	assert_true(route_fault_is_grpc("application/grpc", 16));
	assert_true(route_fault_is_grpc("application/grpc+proto", 22));
	assert_true(route_fault_is_grpc("Application/GRPC;x=1", 20));
	assert_false(route_fault_is_grpc("application/grpc-web", 20));
	assert_false(route_fault_is_grpc("application/json", 16));
	assert_false(route_fault_is_grpc("", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_location),
		cmocka_unit_test(test_hit),
		cmocka_unit_test(test_grpc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
