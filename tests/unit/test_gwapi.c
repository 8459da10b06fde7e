/* Gateway API: decoding of the kinds and their translation into Istio Gateways and
 * VirtualServices (config/res_gwapi.h): selector, servers, element-wise PathPrefix,
 * hostname intersection, weights, status conditions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/res_gwapi.h"
#include "config/resource.h"
#include "core/util.h"

struct decoded {
	struct ystream s;
	struct resource r[16];
	const struct resource *p[16];
	size_t n;
	struct diags d;
};

static void decode_ok(struct decoded *x, const char *text)
{
	memset(x, 0, sizeof(*x));
	assert_int_equal(ydoc_parse("t.yaml", text, strlen(text), &x->s, &x->d), 0);
	for (size_t i = 0; i < x->s.ndocs; i++) {
		if (res_decode(&x->s, &x->s.docs[i], "default", &x->r[i], &x->d) != 0) {
			diags_print(&x->d, stderr);
			fail_msg("document %zu does not decode", i);
		}
		x->p[i] = &x->r[i];
	}
	x->n = x->s.ndocs;
}

static void decoded_free(struct decoded *x)
{
	for (size_t i = 0; i < x->n; i++)
		res_free(&x->r[i]);
	ystream_free(&x->s);
	diags_free(&x->d);
}

static const struct resource *find(const struct gwapi_xlate *x, enum res_kind k, const char *name)
{
	for (size_t i = 0; i < x->nres; i++)
		if (x->res[i].kind == k && strcmp(x->res[i].name, name) == 0)
			return &x->res[i];
	return NULL;
}

static const char gw_and_routes[] =
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: Gateway\n"
	"metadata: {name: egw, namespace: gwns}\n"
	"spec:\n"
	"  gatewayClassName: istio\n"
	"  listeners:\n"
	"  - {name: http, hostname: '*.example.com', port: 80, protocol: HTTP,\n"
	"     allowedRoutes: {namespaces: {from: All}}}\n"
	"  - {name: web, port: 8080, protocol: HTTP}\n"
	"---\n"
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: HTTPRoute\n"
	"metadata: {name: r1, namespace: app}\n"
	"spec:\n"
	"  parentRefs: [{name: egw, namespace: gwns, sectionName: http}]\n"
	"  hostnames: [a.example.com, other.test]\n"
	"  rules:\n"
	"  - matches:\n"
	"    - path: {type: PathPrefix, value: /api/}\n"
	"      headers: [{name: X-Env, value: prod}]\n"
	"      method: POST\n"
	"    backendRefs:\n"
	"    - {kind: Hostname, group: networking.istio.io, name: a.example.com, port: 443,\n"
	"       weight: 3}\n"
	"    - {name: svc, port: 80}\n"
	"    timeouts: {request: 2s}\n"
	"---\n"
	"apiVersion: gateway.networking.k8s.io/v1\n"
	"kind: HTTPRoute\n"
	"metadata: {name: r2, namespace: app}\n"
	"spec:\n"
	"  parentRefs: [{name: egw, namespace: gwns, sectionName: web}]\n"
	"  rules: [{backendRefs: [{name: svc, port: 80}]}]\n";

static void gateway_becomes_an_istio_gateway_selected_by_the_gateway_name_label(void **state)
{
	struct decoded x;
	struct gwapi_xlate t;
	const struct resource *g;
	const struct gateway *gw;

	(void)state;
	decode_ok(&x, gw_and_routes);
	assert_int_equal(gwapi_translate(x.p, x.n, &t, &x.d), 0);
	g = find(&t, RES_GATEWAY, "egw" GWAPI_GW_SUFFIX);
	assert_non_null(g);
	assert_true(gwapi_is_translated_gateway(g));
	assert_string_equal(g->namespace, "gwns");
	gw = g->u.gw;
	assert_int_equal(gw->selector.n, 1);
	assert_string_equal(gw->selector.v[0].key, "gateway.networking.k8s.io/gateway-name");
	assert_string_equal(gw->selector.v[0].value, "egw");
	assert_int_equal(gw->servers.n, 2);
	assert_int_equal(gw->servers.v[0].port.number, 80);
	assert_int_equal(gw->servers.v[0].port.protocol, RES_PROTO_HTTP);
	assert_string_equal(gw->servers.v[0].hosts.v[0], "*/*.example.com");
	assert_string_equal(gw->servers.v[1].hosts.v[0], "gwns/*");   /* from: Same */
	gwapi_xlate_free(&t);
	decoded_free(&x);
}

static void route_becomes_a_virtual_service_with_istios_meaning(void **state)
{
	struct decoded x;
	struct gwapi_xlate t;
	const struct resource *r;
	const struct virtualservice *vs;
	const struct vs_http_route *hr;
	const struct gwapi_route_status *st;

	(void)state;
	decode_ok(&x, gw_and_routes);
	gwapi_translate(x.p, x.n, &t, &x.d);
	r = find(&t, RES_VIRTUAL_SERVICE, "r1-0" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	vs = r->u.vs;
	/* other.test is outside the listener's *.example.com. */
	assert_int_equal(vs->hosts.n, 1);
	assert_string_equal(vs->hosts.v[0], "a.example.com");
	assert_string_equal(vs->gateways.v[0], "gwns/egw" GWAPI_GW_SUFFIX);
	assert_int_equal(vs->http.n, 1);
	hr = &vs->http.v[0];
	assert_string_equal(hr->name, "app.r1.0");
	assert_int_equal(hr->timeout_ms, 2000);
	/* PathPrefix /api/: exact /api or prefix /api/, each with the header and method,
	 * restricted to the listener's port by sectionName. */
	assert_int_equal(hr->match.n, 2);
	assert_string_equal(hr->match.v[0].uri->exact, "/api");
	assert_string_equal(hr->match.v[1].uri->prefix, "/api/");
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(hr->match.v[i].port, 80);
		assert_string_equal(hr->match.v[i].headers.v[0].name, "x-env");
		assert_string_equal(hr->match.v[i].headers.v[0].m.exact, "prod");
		assert_string_equal(hr->match.v[i].method->exact, "POST");
	}
	assert_int_equal(hr->route.n, 2);
	assert_string_equal(hr->route.v[0].destination->host, "a.example.com");
	assert_int_equal(hr->route.v[0].destination->port, 443);
	assert_int_equal(hr->route.v[0].weight, 3);
	assert_string_equal(hr->route.v[1].destination->host, "svc.app.svc.cluster.local");
	assert_int_equal(hr->route.v[1].weight, 1);
	st = gwapi_route_status(&t, x.p[1]);
	assert_non_null(st);
	assert_true(st->parents[0].accepted.status);
	assert_true(st->parents[0].resolved.status);

	/* r2: the "web" listener only takes routes of its own namespace. */
	assert_null(find(&t, RES_VIRTUAL_SERVICE, "r2-0" GWAPI_GW_SUFFIX));
	st = gwapi_route_status(&t, x.p[2]);
	assert_false(st->parents[0].accepted.status);
	assert_string_equal(st->parents[0].accepted.reason, "NotAllowedByListeners");
	assert_int_equal(gwapi_gateway_status(&t, x.p[0])->attached[0], 1);
	assert_int_equal(gwapi_gateway_status(&t, x.p[0])->attached[1], 0);
	gwapi_xlate_free(&t);
	decoded_free(&x);
}

static void mesh_route_on_a_service_entry_is_exported_as_istio_scopes_it(void **state)
{
	struct decoded x;
	struct gwapi_xlate t;
	const struct resource *r;

	(void)state;
	decode_ok(&x,
	          "apiVersion: networking.istio.io/v1\n"
	          "kind: ServiceEntry\n"
	          "metadata: {name: cnn}\n"
	          "spec: {hosts: [edition.cnn.com], ports: [{number: 80, name: http, protocol: HTTP}]}\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1\n"
	          "kind: HTTPRoute\n"
	          "metadata: {name: mine}\n"
	          "spec:\n"
	          "  parentRefs: [{kind: ServiceEntry, group: networking.istio.io, name: cnn, port: 80}]\n"
	          "  rules: [{backendRefs: [{name: gw-istio, port: 80}]}]\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1\n"
	          "kind: HTTPRoute\n"
	          "metadata: {name: theirs, namespace: other}\n"
	          "spec:\n"
	          "  parentRefs: [{kind: ServiceEntry, group: networking.istio.io, name: cnn,\n"
	          "                namespace: default}]\n"
	          "  rules: [{backendRefs: [{name: gw-istio, port: 80}]}]\n");
	gwapi_translate(x.p, x.n, &t, &x.d);
	r = find(&t, RES_VIRTUAL_SERVICE, "mine-0" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	assert_string_equal(r->u.vs->hosts.v[0], "edition.cnn.com");
	assert_string_equal(r->u.vs->gateways.v[0], "mesh");
	assert_string_equal(r->u.vs->export_to.v[0], "*");       /* producer route */
	assert_int_equal(r->u.vs->http.v[0].match.n, 1);           /* port only */
	assert_int_equal(r->u.vs->http.v[0].match.v[0].port, 80);
	assert_null(r->u.vs->http.v[0].match.v[0].uri);
	r = find(&t, RES_VIRTUAL_SERVICE, "theirs-0" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	assert_string_equal(r->u.vs->export_to.v[0], ".");       /* consumer route */
	assert_string_equal(r->u.vs->http.v[0].route.v[0].destination->host,
	                    "gw-istio.other.svc.cluster.local");
	gwapi_xlate_free(&t);
	decoded_free(&x);
}

static void istio_gateway_and_gateway_api_gateway_are_different_kinds(void **state)
{
	struct decoded x;

	(void)state;
	decode_ok(&x,
	          "apiVersion: networking.istio.io/v1\n"
	          "kind: Gateway\n"
	          "metadata: {name: g}\n"
	          "spec: {selector: {istio: egressgateway}, servers: [{port: {number: 80, name: h,"
	          " protocol: HTTP}, hosts: ['*']}]}\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1beta1\n"
	          "kind: Gateway\n"
	          "metadata: {name: g}\n"
	          "spec: {gatewayClassName: istio, listeners: [{name: h, port: 80, protocol: HTTP}]}\n");
	assert_int_equal(x.r[0].kind, RES_GATEWAY);
	assert_int_equal(x.r[1].kind, RES_K8S_GATEWAY);
	assert_string_equal(x.r[1].u.kgw->listeners.v[0].name, "h");
	decoded_free(&x);
}

/* TLSRoute -> tls: routes (sniHosts = route hostnames intersected with the listener's,
 * port from sectionName, weights), TCPRoute -> tcp:; the servers TLS PASSTHROUGH and TCP;
 * a route attaches only to listeners of its protocol. */
static void tls_and_tcp_routes_become_tls_and_tcp_routes(void **state)
{
	struct decoded x;
	struct gwapi_xlate t;
	const struct resource *r;
	const struct gateway *gw;
	const struct vs_tls_route *tr;

	(void)state;
	decode_ok(&x,
	          "apiVersion: gateway.networking.k8s.io/v1\n"
	          "kind: Gateway\n"
	          "metadata: {name: egw}\n"
	          "spec:\n"
	          "  gatewayClassName: istio\n"
	          "  listeners:\n"
	          "  - {name: tls, hostname: '*.example.com', port: 443, protocol: TLS,\n"
	          "     tls: {mode: Passthrough}}\n"
	          "  - {name: tcp, port: 9000, protocol: TCP}\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
	          "kind: TLSRoute\n"
	          "metadata: {name: t}\n"
	          "spec:\n"
	          "  parentRefs: [{name: egw, sectionName: tls}]\n"
	          "  hostnames: [a.example.com, other.test]\n"
	          "  rules:\n"
	          "  - backendRefs:\n"
	          "    - {kind: Hostname, group: networking.istio.io, name: a.example.com, port: 443,\n"
	          "       weight: 3}\n"
	          "    - {name: b, port: 443}\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
	          "kind: TCPRoute\n"
	          "metadata: {name: c}\n"
	          "spec:\n"
	          "  parentRefs: [{name: egw, port: 9000}]\n"
	          "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n"
	          "---\n"
	          "apiVersion: gateway.networking.k8s.io/v1\n"
	          "kind: HTTPRoute\n"
	          "metadata: {name: h}\n"
	          "spec:\n"
	          "  parentRefs: [{name: egw}]\n"
	          "  rules: [{backendRefs: [{name: b, port: 80}]}]\n");
	gwapi_translate(x.p, x.n, &t, &x.d);
	r = find(&t, RES_GATEWAY, "egw" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	gw = r->u.gw;
	assert_int_equal(gw->servers.n, 2);
	assert_int_equal(gw->servers.v[0].port.protocol, RES_PROTO_TLS);
	assert_non_null(gw->servers.v[0].tls);
	assert_int_equal(gw->servers.v[0].tls->mode, GW_TLS_PASSTHROUGH);
	assert_null(gw->servers.v[0].tls->credential_name);
	assert_int_equal(gw->servers.v[1].port.protocol, RES_PROTO_TCP);
	assert_null(gw->servers.v[1].tls);

	r = find(&t, RES_VIRTUAL_SERVICE, "t-0" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	assert_int_equal(r->u.vs->http.n, 0);
	assert_int_equal(r->u.vs->tls.n, 1);
	tr = &r->u.vs->tls.v[0];
	assert_int_equal(tr->match.n, 1);
	assert_int_equal(tr->match.v[0].port, 443);
	assert_int_equal(tr->match.v[0].sni_hosts.n, 1);          /* other.test is not *.example.com */
	assert_string_equal(tr->match.v[0].sni_hosts.v[0], "a.example.com");
	assert_int_equal(tr->route.n, 2);
	assert_string_equal(tr->route.v[0].destination->host, "a.example.com");
	assert_int_equal(tr->route.v[0].weight, 3);
	assert_string_equal(tr->route.v[1].destination->host, "b.default.svc.cluster.local");
	assert_int_equal(tr->route.v[1].weight, 1);

	r = find(&t, RES_VIRTUAL_SERVICE, "c-0" GWAPI_GW_SUFFIX);
	assert_non_null(r);
	assert_int_equal(r->u.vs->tls.n, 0);
	assert_int_equal(r->u.vs->tcp.n, 1);
	assert_int_equal(r->u.vs->tcp.v[0].match.v[0].port, 9000);
	assert_string_equal(r->u.vs->tcp.v[0].route.v[0].destination->host,
	                    "db.default.svc.cluster.local");
	assert_int_equal(r->u.vs->tcp.v[0].route.v[0].destination->port, 5432);

	/* An HTTPRoute has no HTTP listener on this Gateway: not accepted, not compiled. */
	assert_null(find(&t, RES_VIRTUAL_SERVICE, "h-0" GWAPI_GW_SUFFIX));
	assert_false(gwapi_route_status(&t, x.p[3])->parents[0].accepted.status);
	assert_string_equal(gwapi_route_status(&t, x.p[3])->parents[0].accepted.reason,
	                    "NotAllowedByListeners");
	gwapi_xlate_free(&t);
	decoded_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gateway_becomes_an_istio_gateway_selected_by_the_gateway_name_label),
		cmocka_unit_test(route_becomes_a_virtual_service_with_istios_meaning),
		cmocka_unit_test(mesh_route_on_a_service_entry_is_exported_as_istio_scopes_it),
		cmocka_unit_test(istio_gateway_and_gateway_api_gateway_are_different_kinds),
		cmocka_unit_test(tls_and_tcp_routes_become_tls_and_tcp_routes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
