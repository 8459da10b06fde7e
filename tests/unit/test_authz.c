/* AuthorizationPolicy: validation messages and positions, which policies apply to a
 * proxy, Istio's evaluation order and matching rules (authz_eval for HTTP and
 * connection-level requests), the path form check, the indexed evaluator against the
 * one that tries every rule on random policies and requests (a differential test), and
 * the cost of a decision through 100 policies of 10 rules (printed, not asserted: timing
 * depends on the machine). */
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
#include "proxy/authz_int.h"
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

/* ---- differential: indexes against trying every rule ---- */

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
	/* xorshift64*: the same sequence on every machine, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned)((rng_state * 2685821657736338717ull) >> 33) % n;
}

static const char *pick(const char *const *v, size_t n)
{
	return v[rnd((unsigned)n)];
}

#define PICK(v) pick(v, sizeof(v) / sizeof(v[0]))

/* Few values, so that patterns overlap, nest and hit. */
static const char *const d_tds[] = { "cluster.local", "td", "c" };
static const char *const d_nss[] = { "a", "ab", "b", "prod" };
static const char *const d_sas[] = { "x", "xy", "y", "sleep" };
static const char *const d_hosts[] = { "api.cnn.com", "edition.cnn.com", "cnn.com",
                                       "api.cnn.com:80", "Edition.CNN.com:443", "x.org" };

static const char *const d_paths[] = { "/a", "/ab/c", "/b", "/", "/v1/x" };

static void rnd_principal(char *buf, size_t n)
{
	/* One pick per statement: argument order is unspecified, and the sequence must not
	 * depend on the compiler. */
	const char *td = PICK(d_tds), *ns = PICK(d_nss), *sa = PICK(d_sas);

	snprintf(buf, n, "%s/ns/%s/sa/%s", td, ns, sa);
}

/* A pattern from a value: exact, "prefix*" or "*suffix" cut anywhere, or "*". */
static void rnd_pattern(struct sbuf *y, const char *v, bool lower)
{
	size_t len = strlen(v), cut = 1 + rnd((unsigned)len);
	char tmp[128];

	snprintf(tmp, sizeof(tmp), "%s", v);
	if (lower)
		for (char *q = tmp; *q; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
	switch (rnd(8)) {
	case 0: case 1: case 2:
		sbuf_addf(y, "\"%s\"", tmp);
		break;
	case 3: case 4:
		sbuf_addf(y, "\"%.*s*\"", (int)cut, tmp);
		break;
	case 5: case 6:
		sbuf_addf(y, "\"*%s\"", tmp + len - cut);
		break;
	default:
		sbuf_adds(y, "\"*\"");
		break;
	}
}

enum vkind { V_PRINCIPAL, V_NS, V_HOST, V_SA, V_PATH };

static void rnd_list(struct sbuf *y, const char *indent, const char *field, enum vkind k)
{
	unsigned n = 1 + rnd(3);
	char v[128];

	sbuf_addf(y, "%s%s: [", indent, field);
	for (unsigned i = 0; i < n; i++) {
		if (i)
			sbuf_adds(y, ", ");
		switch (k) {
		case V_PRINCIPAL:
			rnd_principal(v, sizeof(v));
			rnd_pattern(y, v, false);
			break;
		case V_NS:
			rnd_pattern(y, PICK(d_nss), false);
			break;
		case V_HOST:
			rnd_pattern(y, PICK(d_hosts), true);
			break;
		case V_SA: {
			const char *ns = PICK(d_nss), *sa = PICK(d_sas);

			sbuf_addf(y, "\"%s/%s\"", ns, sa);
			break;
		}
		case V_PATH:
			rnd_pattern(y, PICK(d_paths), false);
			break;
		}
	}
	sbuf_adds(y, "]\n");
}

static void rnd_source(struct sbuf *y)
{
	const char *in = "        ";
	bool any = false, sas = rnd(4) == 0;

	sbuf_adds(y, "    - source:\n");
	while (!any) {
		if (sas) {
			/* Istio refuses them beside principals or namespaces, not-lists too. */
			rnd_list(y, in, rnd(3) ? "serviceAccounts" : "notServiceAccounts", V_SA);
			if (rnd(3) == 0)
				sbuf_addf(y, "%sipBlocks: [\"10.0.0.0/8\"]\n", in);
			return;
		}
		if (rnd(3)) {
			if (rnd(2)) {
				rnd_list(y, in, "principals", V_PRINCIPAL);
				any = true;
			}
			if (rnd(3) == 0) {
				rnd_list(y, in, "namespaces", V_NS);
				any = true;
			}
		}
		if (rnd(4) == 0) {
			rnd_list(y, in, "notPrincipals", V_PRINCIPAL);
			any = true;
		}
		if (rnd(5) == 0) {
			rnd_list(y, in, "notNamespaces", V_NS);
			any = true;
		}
		if (rnd(6) == 0) {
			sbuf_addf(y, "%sipBlocks: [\"%s\"]\n", in, rnd(2) ? "10.0.0.0/8" : "192.168.0.1");
			any = true;
		}
	}
}

static void rnd_operation(struct sbuf *y)
{
	const char *in = "        ";
	bool any = false;

	sbuf_adds(y, "    - operation:\n");
	while (!any) {
		if (rnd(2)) {
			rnd_list(y, in, "hosts", V_HOST);
			any = true;
		}
		if (rnd(5) == 0) {
			rnd_list(y, in, "notHosts", V_HOST);
			any = true;
		}
		if (rnd(4) == 0) {
			sbuf_addf(y, "%sports: [\"%s\"]\n", in, rnd(2) ? "443" : "80");
			any = true;
		}
		if (rnd(4) == 0) {
			sbuf_addf(y, "%smethods: [\"%s\"]\n", in, rnd(2) ? "GET" : "POST");
			any = true;
		}
		if (rnd(3) == 0) {
			rnd_list(y, in, "paths", V_PATH);
			any = true;
		}
		if (rnd(6) == 0) {
			rnd_list(y, in, "notPaths", V_PATH);
			any = true;
		}
	}
}

static const char *const d_snis[] = { "edition.cnn.com", "Edition.CNN.com", "api.cnn.com",
                                      "x.org" };

static void rnd_when(struct sbuf *y)
{
	char v[128];

	switch (rnd(5)) {
	case 0:
		sbuf_addf(y, "    - key: request.headers[x-a]\n      values: [\"%s\"]\n",
		          rnd(2) ? "1" : "2*");
		break;
	case 1:
		sbuf_addf(y, "    - key: source.namespace\n      %s: [",
		          rnd(3) ? "values" : "notValues");
		rnd_pattern(y, PICK(d_nss), false);
		sbuf_adds(y, "]\n");
		break;
	case 2:
		rnd_principal(v, sizeof(v));
		sbuf_addf(y, "    - key: source.principal\n      %s: [",
		          rnd(2) ? "values" : "notValues");
		rnd_pattern(y, v, false);
		sbuf_adds(y, "]\n");
		break;
	default:
		sbuf_addf(y, "    - key: connection.sni\n      %s: [",
		          rnd(4) ? "values" : "notValues");
		v[0] = (char)rnd(2);               /* as written, or in lower case */
		rnd_pattern(y, PICK(d_snis), v[0]);
		sbuf_adds(y, "]\n");
		break;
	}
}

static void rnd_policies(struct sbuf *y)
{
	static const char *const actions[] = { "ALLOW", "ALLOW", "DENY", "AUDIT" };
	unsigned npol = 1 + rnd(8);

	for (unsigned i = 0; i < npol; i++) {
		unsigned nrules = rnd(5);
		bool dry = rnd(6) == 0;
		const char *action = PICK(actions);

		sbuf_addf(y, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		          "metadata:\n  name: p%u\n  namespace: istio-system\n%s"
		          "spec:\n  action: %s\n", i,
		          dry ? "  annotations:\n    istio.io/dry-run: \"true\"\n" : "", action);
		if (nrules)
			sbuf_adds(y, "  rules:\n");
		for (unsigned k = 0; k < nrules; k++) {
			unsigned nf = rnd(3), nt = rnd(3), nw = rnd(3) == 0 ? 1 + rnd(2) : 0;

			sbuf_adds(y, "  -");
			if (!nf && !nt && !nw) {
				sbuf_adds(y, " {}\n");
				continue;
			}
			sbuf_adds(y, "\n");
			if (nf)
				sbuf_adds(y, "    from:\n");
			for (unsigned f = 0; f < nf; f++)
				rnd_source(y);
			if (nt)
				sbuf_adds(y, "    to:\n");
			for (unsigned o = 0; o < nt; o++)
				rnd_operation(y);
			if (nw)
				sbuf_adds(y, "    when:\n");
			for (unsigned w = 0; w < nw; w++)
				rnd_when(y);
		}
		sbuf_adds(y, "---\n");
	}
}

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void test_index_differential(void **state)
{
	static const char *const others[] = { "spiffe-less", "td/ns/a/sa/x/extra", "a/b/ns/prod/sa/x",
	                                      "cluster.local/ns//sa/x" };
	static const char *const methods[] = { "GET", "POST", "PUT" };
	struct hdr h1[] = { { "x-a", "1" }, { NULL, NULL } };
	struct hdr h2[] = { { "x-a", "2z" }, { NULL, NULL } };
	struct authz_params p = { "istio-system", NULL };
	size_t decisions = 0, denied = 0, by_rule = 0;

	(void)state;
	rng_state = 0x9e3779b97f4a7c15ull;
	for (int trial = 0; trial < 1500; trial++) {
		struct sbuf y = SBUF_INIT;
		struct pset *x = xcalloc(1, sizeof(*x));
		struct authz *a;

		rnd_policies(&y);
		pset_load(x, sbuf_str(&y));
		a = authz_build(x->rp, x->n, &p);
		for (int q = 0; q < 60; q++) {
			struct authz_result want, got;
			struct authz_req r;
			char principal[128];
			unsigned pk = rnd(10);
			const char *other = PICK(others), *host, *method, *path, *src;
			struct hdr *h;

			rnd_principal(principal, sizeof(principal));
			host = PICK(d_hosts);
			method = PICK(methods);
			path = PICK(d_paths);
			h = rnd(3) == 0 ? NULL : rnd(2) ? h1 : h2;
			req_init(&r, pk == 0 ? NULL : pk == 1 ? other : principal, host, method, path, h);
			src = rnd(2) ? "10.1.2.3:5555" : "192.168.0.1:5555";
			assert_int_equal(sock_addr_parse(src, &peer), 0);
			r.port = rnd(2) ? 443 : 80;
			r.l4 = rnd(4) == 0;
			r.sni = rnd(5) == 0 ? NULL : PICK(d_snis);
			authz_eval_scan(a, &r, &want);
			authz_eval(a, &r, &got);
			if (want.denied != got.denied || !str_same(want.policy, got.policy) ||
			    !str_same(want.details, got.details) || !str_same(want.audit, got.audit) ||
			    want.shadow != got.shadow || want.shadow_denied != got.shadow_denied ||
			    !str_same(want.shadow_policy, got.shadow_policy))
				fail_msg("trial %d: %s %s %.*s%s: scan says denied %d by %s (audit %s, shadow "
				         "%d by %s), indexes say denied %d by %s (audit %s, shadow %d by %s)"
				         "\n%s", trial, r.principal ? r.principal : "(none)",
				         r.l4 ? "connection" : r.method, (int)r.host_len, r.host,
				         r.path, want.denied, want.policy ? want.policy : "-",
				         want.audit ? want.audit : "-", want.shadow_denied,
				         want.shadow_policy ? want.shadow_policy : "-", got.denied,
				         got.policy ? got.policy : "-", got.audit ? got.audit : "-",
				         got.shadow_denied, got.shadow_policy ? got.shadow_policy : "-",
				         sbuf_str(&y));
			decisions++;
			denied += want.denied;
			by_rule += want.policy != NULL;
		}
		authz_free(a);
		pset_free(x);
		free(x);
		sbuf_free(&y);
	}
	/* The generator must exercise both outcomes, and rules that decide. */
	printf("authz differential: %zu decisions agree (%zu denied, %zu decided by a rule)\n",
	       decisions, denied, by_rule);
	assert_true(denied > decisions / 10 && denied < decisions * 9 / 10);
	assert_true(by_rule > decisions / 10);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Nanoseconds per decision of r by eval: the fastest of 5 batches of iters / 5 (on a
 * shared machine a batch that was preempted says nothing about the code). */
static double cost_ns(void (*eval)(const struct authz *, const struct authz_req *,
                                   struct authz_result *),
                      const struct authz *a, const struct authz_req *r, bool denied, int iters)
{
	struct authz_result res;
	double best = 0;

	for (int b = 0; b < 5; b++) {
		uint64_t t0 = now_ns();
		double ns;

		for (int i = 0; i < iters / 5; i++)
			eval(a, r, &res);
		ns = (double)(now_ns() - t0) / (iters / 5);
		assert_int_equal(res.denied, denied);
		if (b == 0 || ns < best)
			best = ns;
	}
	return best;
}

/* 100 ALLOW policies of 10 rules each, none matching until the last rule of the last
 * policy: the worst case for an allowed request (every candidate rule is tried), and a
 * request that no rule admits. Printed beside the cost of trying every rule
 * (authz_eval_scan), the straightforward evaluator. Each rule's principals (or namespaces)
 * are made from fmt with the policy and rule numbers; a fmt that uses neither gives every
 * rule the same pattern, and the rules' distinct hosts must then do the narrowing.
 * principal is the request's, one that rule 9 of policy 99 admits. */
static void cost_run(const char *field, const char *fmt, const char *principal)
{
	struct authz_params p = { "istio-system", NULL };
	struct sbuf y = SBUF_INIT;
	struct hdr h[] = { { "x-team", "payments" }, { NULL, NULL } };
	struct authz_result res;
	struct authz_req r;
	struct authz *a;
	struct pset *x = xcalloc(1, sizeof(*x));
	char v1[96], v2[96];
	double hit, miss, scan;

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
	req_init(&r, principal, "api999.example.com", "GET", "/v1/pay", h);
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	assert_string_equal(res.policy, "ns[istio-system]-policy[p099]-rule[9]");
	hit = cost_ns(authz_eval, a, &r, false, 20000);
	scan = cost_ns(authz_eval_scan, a, &r, false, 2000);
	r.principal = "cluster.local/ns/nobody/sa/none";
	r.host = "api-none.example.com";
	r.host_len = strlen(r.host);
	miss = cost_ns(authz_eval, a, &r, true, 20000);
	printf("authz: 100 policies x 10 rules, %s \"%s\": last rule matches %.0f ns (every rule "
	       "tried: %.0f ns), none matches %.0f ns\n", field, fmt, hit, scan, miss);
	/* The target (issue 18) is 2 us; a loaded machine slows everything, so the bound
	 * asserted is looser, and still far below trying every rule. */
	assert_true(hit < 20000 && miss < 20000);
	authz_free(a);
	pset_free(x);
	free(x);
	sbuf_free(&y);
}

/* A gateway's PASSTHROUGH port decides connections by SNI: 100 ALLOW policies of 10 rules
 * each admitting one name (`when: connection.sni`), the connection for the last one. */
static void cost_sni(void)
{
	struct authz_params p = { "istio-system", NULL };
	struct sbuf y = SBUF_INIT;
	struct authz_result res;
	struct authz_req r;
	struct authz *a;
	struct pset *x = xcalloc(1, sizeof(*x));
	double hit, miss, scan;

	assert_int_equal(sock_addr_parse("10.1.2.3:5555", &peer), 0);
	for (int i = 0; i < 100; i++) {
		sbuf_addf(&y, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		          "metadata:\n  name: p%03d\n  namespace: istio-system\nspec:\n  rules:\n", i);
		for (int k = 0; k < 10; k++)
			sbuf_addf(&y, "  - when:\n    - key: connection.sni\n"
			          "      values: [\"site%d.example.com\", \"*.site%d.example.org\"]\n",
			          i * 10 + k, i * 10 + k);
		sbuf_adds(&y, "---\n");
	}
	pset_load(x, sbuf_str(&y));
	a = authz_build(x->rp, x->n, &p);
	memset(&r, 0, sizeof(r));
	r.l4 = true;
	r.source = &peer;
	r.port = 443;
	r.sni = "Site999.example.com";
	authz_eval(a, &r, &res);
	assert_false(res.denied);
	assert_string_equal(res.policy, "ns[istio-system]-policy[p099]-rule[9]");
	hit = cost_ns(authz_eval, a, &r, false, 20000);
	scan = cost_ns(authz_eval_scan, a, &r, false, 2000);
	r.sni = "nobody.example.com";
	miss = cost_ns(authz_eval, a, &r, true, 20000);
	printf("authz: 100 policies x 10 rules, connection.sni \"site%%d.example.com\", a "
	       "connection: last rule matches %.0f ns (every rule tried: %.0f ns), none matches "
	       "%.0f ns\n", hit, scan, miss);
	assert_true(hit < 20000 && miss < 20000);
	authz_free(a);
	pset_free(x);
	free(x);
	sbuf_free(&y);
}

static void test_cost_100_policies_10_rules(void **state)
{
	(void)state;
	cost_run("principals", "cluster.local/ns/team%d-%d/sa/svc",
	         "cluster.local/ns/team99-9/sa/svc");
	cost_run("namespaces", "team%d-%d", "cluster.local/ns/team99-9/sa/svc");
	/* Trust-domain-agnostic patterns (suffixes naming a namespace). */
	cost_run("principals", "*/ns/team%d-%d/sa/svc", "cluster.local/ns/team99-9/sa/svc");
	/* Prefixes naming a whole namespace, and prefixes that stop inside it. */
	cost_run("principals", "cluster.local/ns/team%d-%d/*", "cluster.local/ns/team99-9/sa/svc");
	cost_run("principals", "cluster.local/ns/team%d-%d*", "cluster.local/ns/team99-9/sa/svc");
	/* Suffixes naming no namespace: the service account anywhere. */
	cost_run("principals", "*/sa/svc%d-%d", "cluster.local/ns/team99-9/sa/svc99-9");
	cost_run("namespaces", "*am%d-%d", "cluster.local/ns/team99-9/sa/svc");
	cost_run("namespaces", "team%d-%d*", "cluster.local/ns/team99-9/sa/svc");
	/* One pattern for every rule: the hosts narrow. */
	cost_run("principals", "cluster.local/ns/*", "cluster.local/ns/team99-9/sa/svc");
	cost_run("principals", "*", "cluster.local/ns/team99-9/sa/svc");
	cost_run("namespaces", "*", "cluster.local/ns/team99-9/sa/svc");
	/* No positive source at all: the hosts narrow. */
	cost_run("notPrincipals", "cluster.local/ns/bad%d-%d/sa/svc",
	         "cluster.local/ns/team99-9/sa/svc");
	cost_sni();
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
		cmocka_unit_test(test_index_differential),
		cmocka_unit_test(test_cost_100_policies_10_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
