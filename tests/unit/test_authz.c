/* AuthorizationPolicy: validation messages and positions, which policies apply to a
 * proxy, Istio's evaluation order and matching rules (authz_eval for HTTP and
 * connection-level requests), the path form check, and the cost of a decision through
 * 100 policies of 10 rules (printed, not asserted: timing depends on the machine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/resource.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "proxy/authz.h"
#include "proxy/worker.h"

struct pset {
	struct ystream s;
	struct resource r[256];
	const struct resource *rp[256];
	size_t n;
	struct diags d;
};

static void pset_load(struct pset *x, const char *text)
{
	memset(x, 0, sizeof(*x));
	if (ydoc_parse("t.yaml", text, strlen(text), &x->s, &x->d) != 0)
		fail_msg("does not parse");
	assert_true(x->s.ndocs <= 256);
	for (size_t i = 0; i < x->s.ndocs; i++) {
		if (!x->s.docs[i].root)
			continue;           /* after the last "---" */
		if (res_decode(&x->s, &x->s.docs[i], "default", &x->r[x->n], &x->d) != 0) {
			diags_print(&x->d, stderr);
			fail_msg("document %zu does not decode", i);
		}
		x->rp[x->n] = &x->r[x->n];
		x->n++;
	}
}

static void pset_free(struct pset *x)
{
	for (size_t i = 0; i < x->n; i++)
		res_free(&x->r[i]);
	ystream_free(&x->s);
	diags_free(&x->d);
}

struct hdr { const char *name, *value; };

static bool hdr_cb(void *ctx, const char *name, const char **v, size_t *vlen)
{
	for (const struct hdr *h = ctx; h && h->name; h++) {
		if (strcmp(h->name, name) == 0) {
			*v = h->value;
			*vlen = strlen(h->value);
			return true;
		}
	}
	return false;
}

static struct sock_addr peer;

static void req_init(struct authz_req *r, const char *principal, const char *host,
                     const char *method, const char *path, struct hdr *h)
{
	memset(r, 0, sizeof(*r));
	r->principal = principal;
	r->source = &peer;
	r->port = 443;
	r->sni = "edition.cnn.com";
	r->host = host;
	r->host_len = strlen(host);
	r->method = method;
	r->method_len = strlen(method);
	r->path = path;
	r->path_len = strlen(path);
	r->header = hdr_cb;
	r->header_ctx = h;
}

#define P(name, ns, body) \
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: " name \
	"\n  namespace: " ns "\nspec:\n" body "---\n"

static const char *const gw_labels[] = { "istio=egressgateway", NULL };

static void test_order_and_defaults(void **state)
{
	struct pset x;
	struct authz_params p = { "istio-system", (const char **)gw_labels };
	struct authz_result res;
	struct authz_req r;
	struct authz *a;

	(void)state;
	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	pset_load(&x,
	          P("allow-sleep", "istio-system",
	            "  action: ALLOW\n  rules:\n  - from:\n    - source:\n"
	            "        principals: [\"cluster.local/ns/default/sa/sleep\"]\n")
	          P("deny-admin", "istio-system",
	            "  action: DENY\n  rules:\n  - to:\n    - operation:\n"
	            "        paths: [\"/admin*\"]\n        methods: [\"GET\", \"POST\"]\n")
	          P("audit-all", "istio-system", "  action: AUDIT\n  rules:\n  - {}\n")
	          P("other-ns", "prod", "  action: DENY\n  rules:\n  - {}\n")
	          P("other-labels", "istio-system",
	            "  selector:\n    matchLabels:\n      app: nope\n  action: DENY\n  rules:\n"
	            "  - {}\n"));
	a = authz_build(x.rp, x.n, &p);
	assert_non_null(a);
	assert_int_equal(authz_count(a), 3);    /* other-ns and other-labels do not apply */

	req_init(&r, "cluster.local/ns/default/sa/sleep", "edition.cnn.com", "GET", "/politics",
	         NULL);
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	assert_string_equal(res.policy, "ns[istio-system]-policy[allow-sleep]-rule[0]");
	assert_string_equal(res.audit, "ns[istio-system]-policy[audit-all]-rule[0]");

	r.path = "/admin/x";
	r.path_len = 8;
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	assert_string_equal(res.details, "rbac_access_denied_matched_policy[ns[istio-system]-"
	                    "policy[deny-admin]-rule[0]]");
	r.method = "PUT";
	r.method_len = 3;
	authz_eval(a, &r, &res);
	assert_false(res.denied);           /* DENY needs both path and method */

	req_init(&r, "cluster.local/ns/default/sa/other", "edition.cnn.com", "GET", "/", NULL);
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	assert_null(res.policy);
	assert_string_equal(res.details, "rbac_access_denied_matched_policy[none]");
	/* No mesh identity: principals cannot match. */
	req_init(&r, NULL, "edition.cnn.com", "GET", "/", NULL);
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	/* No policy at all: allowed. */
	authz_eval(NULL, &r, &res);
	assert_false(res.denied);
	authz_free(a);
	pset_free(&x);
}

static void test_matching(void **state)
{
	struct pset x;
	struct authz_params p = { "istio-system", NULL };
	struct hdr h_ok[] = { { "x-ticket", "T-1" }, { NULL, NULL } };
	struct hdr h_bad[] = { { "x-ticket", "U-1" }, { NULL, NULL } };
	struct authz_result res;
	struct authz_req r;
	struct authz *a;

	(void)state;
	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	pset_load(&x,
	          P("a", "istio-system",
	            "  rules:\n"
	            "  - from:\n    - source:\n        namespaces: [\"prod*\"]\n"
	            "        notPrincipals: [\"*/sa/bad\"]\n"
	            "    to:\n    - operation:\n        hosts: [\"*.cnn.com\"]\n"
	            "        ports: [\"443\"]\n"
	            "    when:\n    - key: request.headers[X-Ticket]\n      values: [\"T-*\"]\n"
	            "    - key: source.ip\n      values: [\"10.0.0.0/8\"]\n"
	            "    - key: connection.sni\n      notValues: [\"*.internal\"]\n"));
	a = authz_build(x.rp, x.n, &p);
	assert_non_null(a);
	req_init(&r, "cluster.local/ns/prod-eu/sa/api", "Edition.CNN.com:443", "GET", "/", h_ok);
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	r.header_ctx = h_bad;
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	r.header_ctx = h_ok;
	r.principal = "cluster.local/ns/prod-eu/sa/bad";
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	r.principal = "cluster.local/ns/dev/sa/api";
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	r.principal = "cluster.local/ns/prod/sa/api";
	r.port = 80;
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	r.port = 443;
	r.host = "cnn.com";
	r.host_len = 7;
	authz_eval(a, &r, &res);
	assert_true(res.denied);            /* "*.cnn.com" needs a label before .cnn.com */
	r.host = "edition.cnn.com";
	r.host_len = 15;
	assert_int_equal(sock_addr_parse("192.168.1.1:5555", &peer), 0);
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	authz_free(a);
	pset_free(&x);
}

/* The decision for principal: denied or not, by policy (NULL: none named). */
static void expect(const struct authz *a, struct authz_req *r, const char *principal,
                   bool denied, const char *policy)
{
	struct authz_result res;

	r->principal = principal;
	authz_eval(a, r, &res);
	if (res.denied != denied || (policy ? !res.policy || strcmp(res.policy, policy) != 0
	                                    : res.policy != NULL))
		fail_msg("%s: denied %d by %s, want %d by %s", principal, res.denied,
		         res.policy ? res.policy : "none", denied, policy ? policy : "none");
}

/* Rules found through the indexes and rules tried one by one decide the same, including
 * for an identity that is not of Istio's form (every rule is then tried). */
static void test_indexes_agree_with_istio(void **state)
{
	struct pset x;
	struct authz_params p = { "istio-system", NULL };
	struct authz_req r;
	struct authz *a;

	(void)state;
	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	pset_load(&x,
	          P("deny-evil", "istio-system",
	            "  action: DENY\n  rules:\n  - from:\n    - source:\n"
	            "        principals: [\"*/ns/prod/sa/evil\"]\n")
	          P("deny-ns", "istio-system",
	            "  action: DENY\n  rules:\n  - from:\n    - source:\n"
	            "        namespaces: [\"blocked\"]\n")
	          P("allow", "istio-system",
	            "  rules:\n  - from:\n    - source:\n        principals: [\"td/ns/prod/sa/api\"]\n"
	            "  - from:\n    - source:\n        principals: [\"*/sa/evil\", \"*/sa/api\"]\n"
	            "  - from:\n    - source:\n        principals: [\"td/ns/qa/*\"]\n"));
	a = authz_build(x.rp, x.n, &p);
	req_init(&r, NULL, "h", "GET", "/", NULL);
	expect(a, &r, "cluster.local/ns/prod/sa/evil", true,
	       "ns[istio-system]-policy[deny-evil]-rule[0]");
	/* Not of Istio's form, but the suffix still matches, as Envoy's would. */
	expect(a, &r, "a/b/ns/prod/sa/evil", true, "ns[istio-system]-policy[deny-evil]-rule[0]");
	expect(a, &r, "cluster.local/ns/blocked/sa/api", true,
	       "ns[istio-system]-policy[deny-ns]-rule[0]");
	expect(a, &r, "td/ns/prod/sa/api", false, "ns[istio-system]-policy[allow]-rule[0]");
	expect(a, &r, "other/ns/dev/sa/api", false, "ns[istio-system]-policy[allow]-rule[1]");
	expect(a, &r, "td/ns/qa/sa/web", false, "ns[istio-system]-policy[allow]-rule[2]");
	expect(a, &r, "td/ns/qa2/sa/web", true, NULL);
	expect(a, &r, "other/ns/dev/sa/web", true, NULL);
	authz_free(a);
	pset_free(&x);
}

static void test_connection_level(void **state)
{
	struct pset x;
	struct authz_params p = { "istio-system", NULL };
	struct authz_result res;
	struct authz_req r;
	struct authz *a;

	(void)state;
	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	pset_load(&x,
	          P("allow-http", "istio-system",
	            "  rules:\n  - to:\n    - operation:\n        paths: [\"/ok\"]\n"
	            "  - from:\n    - source:\n        principals: [\"*/sa/tcp\"]\n"
	            "    to:\n    - operation:\n        ports: [\"443\"]\n")
	          P("deny-http", "istio-system",
	            "  action: DENY\n  rules:\n  - from:\n    - source:\n"
	            "        principals: [\"*/sa/evil\"]\n"
	            "    to:\n    - operation:\n        methods: [\"DELETE\"]\n"));
	a = authz_build(x.rp, x.n, &p);
	memset(&r, 0, sizeof(r));
	r.l4 = true;
	r.source = &peer;
	r.port = 443;
	r.sni = "edition.cnn.com";
	/* The ALLOW rule with a path never matches a connection; the one without does. */
	r.principal = "cluster.local/ns/default/sa/other";
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	r.principal = "cluster.local/ns/default/sa/tcp";
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	/* The DENY's method is ignored for a connection: evil is refused outright. */
	r.principal = "cluster.local/ns/default/sa/evil";
	authz_eval(a, &r, &res);
	assert_true(res.denied);
	assert_string_equal(res.policy, "ns[istio-system]-policy[deny-http]-rule[0]");
	/* The data path's entry takes connections too: counted, details for the log. */
	{
		struct wstats *st = xcalloc(1, sizeof(*st));
		const char *details;

		assert_int_equal(authz_request(a, &r, "10.1.2.3:5555", NULL, st, &details), 403);
		assert_string_equal(details, "rbac_access_denied_matched_policy[ns[istio-system]-"
		                    "policy[deny-http]-rule[0]]");
		r.principal = "cluster.local/ns/default/sa/tcp";
		assert_int_equal(authz_request(a, &r, "10.1.2.3:5555", NULL, st, &details), 0);
		assert_null(details);
		assert_int_equal(STAT_GET(st->rbac_denied), 1);
		assert_int_equal(STAT_GET(st->rbac_allowed), 1);
		free(st);
	}
	authz_free(a);
	pset_free(&x);
}

static void test_path_form(void **state)
{
	static const char *const good[] = { "/", "/a/b", "/a.b/c..d", "/a?x=/../", "/.well-known/x" };
	static const char *const bad[] = { "/a/../b", "/./a", "/a/..", "//a", "/a%2fb", "/%2E%2E/a",
	                                   "/a\\b", "/a/.", "/a/..?x" };

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(authz_path_normal(good[i], strlen(good[i])));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (authz_path_normal(bad[i], strlen(bad[i])))
			fail_msg("%s passed as normal", bad[i]);
}

/* Decodes one policy; asserts the result and that some diagnostic at line:col says
 * `want` (NULL: no diagnostic at all). */
static void check_decode(const char *spec, int rc_want, int line, int col, const char *want)
{
	char *text = xasprintf("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\n"
	                       "metadata:\n  name: p\n  namespace: istio-system\n%s", spec);
	struct ystream s;
	struct resource r;
	struct diags d = DIAGS_INIT;
	bool found = false;
	int rc;

	memset(&s, 0, sizeof(s));
	assert_int_equal(ydoc_parse("t.yaml", text, strlen(text), &s, &d), 0);
	rc = res_decode(&s, &s.docs[0], "default", &r, &d);
	for (size_t i = 0; i < d.n; i++)
		found |= want && d.v[i].line == line && d.v[i].col == col && strstr(d.v[i].msg, want);
	if (rc != rc_want || (want ? !found : d.n != 0)) {
		diags_print(&d, stderr);
		fail_msg("rc %d (want %d), no diagnostic %d:%d \"%s\"", rc, rc_want, line, col,
		         want ? want : "");
	}
	if (rc == 0)
		res_free(&r);
	ystream_free(&s);
	diags_free(&d);
	free(text);
}

static void test_validation(void **state)
{
	(void)state;
	/* No spec and spec {}: allow nothing, valid. */
	check_decode("", 0, 0, 0, NULL);
	check_decode("spec: {}\n", 0, 0, 0, NULL);
	check_decode("spec:\n  selector:\n    matchLabels: {app: x}\n"
	             "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n",
	             -1, 7, 3, "only one of targetRefs or workloadSelector can be set");
	check_decode("spec:\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n"
	             "  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n",
	             -1, 7, 3, "only one of targetRef or targetRefs can be set");
	check_decode("spec:\n  targetRefs:\n  - {kind: Service, name: s}\n", 0, 8, 5,
	             "selects waypoint proxies");
	check_decode("spec:\n  targetRefs:\n  - {kind: Deployment, group: apps, name: s}\n", -1, 8, 5,
	             "targetRef must be to a Gateway");
	check_decode("spec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, "
	             "name: g, namespace: other}\n", -1, 8, 75, "cross namespace referencing");
	check_decode("spec:\n  action: DENY\n  provider: {name: x}\n", -1, 8, 13,
	             "provider must not be set for DENY action");
	check_decode("spec:\n  action: ALOW\n", -1, 7, 11, "unknown value \"ALOW\"");
	check_decode("spec:\n  rules:\n  - from:\n    - {}\n", -1, 9, 7, "`from.source` must not be nil");
	check_decode("spec:\n  rules:\n  - from:\n    - source: {}\n", -1, 9, 15,
	             "`from.source` must not be empty");
	check_decode("spec:\n  rules:\n  - to:\n    - operation: {}\n", -1, 9, 18,
	             "`to.operation` must not be empty");
	check_decode("spec:\n  rules:\n  - from:\n    - source:\n        principals: [\"\"]\n", -1,
	             10, 22, "empty value not allowed");
	check_decode("spec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"10.0.0.0/33\"]\n",
	             -1, 10, 20, "not a valid IP address or CIDR block");
	check_decode("spec:\n  rules:\n  - from:\n    - source:\n        serviceAccounts: [sleep]\n",
	             -1, 10, 27, "want NAMESPACE/NAME");
	check_decode("spec:\n  rules:\n  - from:\n    - source:\n        serviceAccounts: [default/s]\n"
	             "        principals: [a]\n", -1, 10, 9,
	             "serviceAccounts cannot be set with principals or namespaces");
	check_decode("spec:\n  rules:\n  - when:\n    - key: source.ip\n", -1, 9, 7,
	             "at least one of values or notValues must be set for key source.ip");
	check_decode("spec:\n  rules:\n  - when:\n    - values: [a]\n", -1, 9, 7,
	             "missing required field \"key\"");
	check_decode("spec:\n  rules:\n  - when:\n    - key: destination.port\n      values: [\"0\"]\n",
	             -1, 10, 16, "invalid port \"0\"");
	check_decode("spec:\n  rules:\n  - when:\n    - key: request.headers[]\n      values: [a]\n",
	             -1, 9, 12, "unsupported key");
	check_decode("spec:\n  rules:\n  - when:\n    - key: request.headers[x-a]\n      values: [\"*\"]\n",
	             0, 0, 0, NULL);
	check_decode("spec:\n  rules:\n  - to:\n    - operation:\n        notPaths: [\"/a/{**}\"]\n", -1,
	             10, 20, "path templates");
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 100 ALLOW policies of 10 rules each, none matching until the last rule of the last
 * policy: the worst case for an allowed request (every candidate rule is tried). With
 * exact principals the principal index narrows the candidates; with namespaces every
 * rule is tried. */
static void cost_run(const char *field, const char *fmt)
{
	struct authz_params p = { "istio-system", NULL };
	struct sbuf y = SBUF_INIT;
	struct hdr h[] = { { "x-team", "payments" }, { NULL, NULL } };
	struct authz_result res;
	struct authz_req r;
	struct authz *a;
	struct pset *x = xcalloc(1, sizeof(*x));
	const int iters = 20000;
	uint64_t t0, t1;
	char v1[96], v2[96];

	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	for (int i = 0; i < 100; i++) {
		sbuf_addf(&y, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		          "metadata:\n  name: p%03d\n  namespace: istio-system\nspec:\n  rules:\n", i);
		for (int k = 0; k < 10; k++) {
			snprintf(v1, sizeof(v1), fmt, i, k);
			snprintf(v2, sizeof(v2), fmt, i + 1000, k);
			sbuf_addf(&y, "  - from:\n    - source:\n        %s: [\"%s\", \"%s\"]\n"
			          "    to:\n    - operation:\n        hosts: [\"api%d.example.com\", "
			          "\"*.svc%d.example.org\"]\n        methods: [\"GET\", \"POST\"]\n"
			          "        paths: [\"/v1/*\"]\n"
			          "    when:\n    - key: request.headers[x-team]\n      values: [\"payments\"]\n",
			          field, v1, v2, i * 10 + k, k);
		}
		sbuf_adds(&y, "---\n");
	}
	pset_load(x, sbuf_str(&y));
	a = authz_build(x->rp, x->n, &p);
	assert_int_equal(authz_count(a), 100);
	req_init(&r, "cluster.local/ns/team99-9/sa/svc", "api999.example.com", "GET", "/v1/pay", h);
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	assert_string_equal(res.policy, "ns[istio-system]-policy[p099]-rule[9]");
	t0 = now_ns();
	for (int i = 0; i < iters; i++)
		authz_eval(a, &r, &res);
	t1 = now_ns();
	assert_false(res.denied);
	printf("authz: 100 policies x 10 rules by %s (\"%s\"), last rule matches: %.0f ns per "
	       "request\n", field, fmt, (double)(t1 - t0) / iters);
	r.principal = "cluster.local/ns/nobody/sa/none";
	t0 = now_ns();
	for (int i = 0; i < iters; i++)
		authz_eval(a, &r, &res);
	t1 = now_ns();
	assert_true(res.denied);
	printf("authz: 100 policies x 10 rules by %s (\"%s\"), no rule matches: %.0f ns per "
	       "request\n", field, fmt, (double)(t1 - t0) / iters);
	authz_free(a);
	pset_free(x);
	free(x);
	sbuf_free(&y);
}

static void test_cost_100_policies_10_rules(void **state)
{
	(void)state;
	cost_run("principals", "cluster.local/ns/team%d-%d/sa/svc");
	cost_run("namespaces", "team%d-%d");
	/* Trust-domain-agnostic patterns are indexed by the namespace they name. */
	cost_run("principals", "*/ns/team%d-%d/sa/svc");
	/* So are prefixes naming a whole namespace. */
	cost_run("principals", "cluster.local/ns/team%d-%d/*");
	/* Prefixes that stop inside the namespace confine nothing: every rule is tried. */
	cost_run("principals", "cluster.local/ns/team%d-%d*");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_defaults),
		cmocka_unit_test(test_matching),
		cmocka_unit_test(test_indexes_agree_with_istio),
		cmocka_unit_test(test_connection_level),
		cmocka_unit_test(test_path_form),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_cost_100_policies_10_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
