/* Istio resources: decoding of every walkthrough document, kubectl names, each validation
 * rule with its exact message and position, Secrets, and cross-resource warnings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/resource.h"
#include "core/util.h"

/* tests/unit/test_resource.c -> tests/data/walkthrough/<name> (tests run from the repo root) */
static char *walkthrough_path(const char *name)
{
	const char *f = __FILE__;
	const char *cut = strstr(f, "unit/test_resource.c");

	return xasprintf("%.*sdata/walkthrough/%s", (int)(cut - f), f, name);
}

/* Decoded resources of one YAML text, with their stream (resources borrow its nodes). */
struct decoded {
	struct ystream s;
	struct resource r[16];
	int rc[16];
	size_t n;
	struct diags d;
};

static void decode_text(struct decoded *x, const char *file, const char *text, const char *ns)
{
	memset(x, 0, sizeof(*x));
	if (ydoc_parse(file, text, strlen(text), &x->s, &x->d) != 0) {
		diags_print(&x->d, stderr);
		fail_msg("%s does not parse", file);
	}
	assert_true(x->s.ndocs <= 16);
	for (size_t i = 0; i < x->s.ndocs; i++)
		x->rc[i] = res_decode(&x->s, &x->s.docs[i], ns, &x->r[i], &x->d);
	x->n = x->s.ndocs;
}

static void decode_file(struct decoded *x, const char *name, const char *ns)
{
	char *path = walkthrough_path(name);
	char *text;
	size_t len;

	if (file_read_all(path, &text, &len) != 0)
		fail_msg("cannot read %s", path);
	decode_text(x, name, text, ns);
	for (size_t i = 0; i < x->n; i++)
		if (x->rc[i] != 0) {
			diags_print(&x->d, stderr);
			fail_msg("%s: document %zu does not decode", name, i);
		}
	assert_int_equal(x->d.n, 0);
	free(text);
	free(path);
}

static void decoded_free(struct decoded *x)
{
	for (size_t i = 0; i < x->n; i++)
		res_free(&x->r[i]);
	ystream_free(&x->s);
	diags_free(&x->d);
}

static char *diag_line(const struct diags *d, size_t i)
{
	struct sbuf b = SBUF_INIT;

	diag_format(&d->v[i], &b);
	return sbuf_steal(&b);
}

/* Every diagnostic, in order, exactly. want is NULL-terminated. */
static void assert_diags(const struct diags *d, const char *const *want)
{
	size_t n = 0;
	bool ok = true;

	while (want[n])
		n++;
	ok = d->n == n;
	for (size_t i = 0; ok && i < n; i++) {
		char *got = diag_line(d, i);

		ok = strcmp(got, want[i]) == 0;
		free(got);
	}
	if (!ok) {
		fprintf(stderr, "got %zu diagnostics:\n", d->n);
		for (size_t i = 0; i < d->n; i++) {
			char *got = diag_line(d, i);

			fprintf(stderr, "  %s\n", got);
			free(got);
		}
		fprintf(stderr, "want %zu:\n", n);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  %s\n", want[i]);
		fail();
	}
}

/* Removes the warnings for fields accepted and not applied (KWF_UNAPPLIED; those have
 * their own test, unapplied_fields_are_warned_at_the_field) and returns how many. */
static size_t drop_unapplied(struct diags *d)
{
	size_t k = 0, n = d->n;

	for (size_t i = 0; i < n; i++) {
		struct diag *e = &d->v[i];

		if (e->level == DIAG_WARNING && strstr(e->msg, ": not applied by egressgw; ignored")) {
			free(e->file);
			free(e->msg);
			continue;
		}
		d->v[k++] = *e;
	}
	d->n = k;
	return n - k;
}

/* Decodes the single document of text (file "t.yaml") and checks the result code and
 * every diagnostic (but the not-applied warnings: these tests are about validation). On
 * failure the resource must be left zeroed. */
static void expect_decode(const char *text, const char *ns, int want_rc, const char *const *want)
{
	struct decoded x;

	decode_text(&x, "t.yaml", text, ns);
	assert_int_equal(x.n, 1);
	drop_unapplied(&x.d);
	assert_diags(&x.d, want);
	assert_int_equal(x.rc[0], want_rc);
	if (want_rc != 0) {
		static const struct resource zero;

		assert_memory_equal(&x.r[0], &zero, sizeof(zero));
	}
	decoded_free(&x);
}

#define DIAGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NO_DIAGS   ((const char *const[]){ NULL })

/* ---------------------------------------------------------------------------------
 * Kinds
 * ------------------------------------------------------------------------------- */

static void kinds_are_found_by_every_kubectl_name(void **state)
{
	static const struct {
		const char *word;
		enum res_kind kind;
	} ok[] = {
		{ "serviceentry", RES_SERVICE_ENTRY }, { "serviceentries", RES_SERVICE_ENTRY },
		{ "se", RES_SERVICE_ENTRY }, { "ServiceEntry", RES_SERVICE_ENTRY },
		{ "SE", RES_SERVICE_ENTRY }, { "serviceentries.networking.istio.io", RES_SERVICE_ENTRY },
		{ "se.networking.istio.io", RES_SERVICE_ENTRY },
		{ "serviceentry.v1beta1.networking.istio.io", RES_SERVICE_ENTRY },
		{ "gateway", RES_GATEWAY }, { "gateways", RES_GATEWAY }, { "gw", RES_GATEWAY },
		{ "Gateway", RES_GATEWAY }, { "gateways.networking.istio.io", RES_GATEWAY },
		{ "gw.networking.istio.io", RES_GATEWAY },
		{ "virtualservice", RES_VIRTUAL_SERVICE }, { "virtualservices", RES_VIRTUAL_SERVICE },
		{ "vs", RES_VIRTUAL_SERVICE }, { "VirtualService", RES_VIRTUAL_SERVICE },
		{ "virtualservices.networking.istio.io", RES_VIRTUAL_SERVICE },
		{ "vs.v1.networking.istio.io", RES_VIRTUAL_SERVICE },
		{ "destinationrule", RES_DESTINATION_RULE },
		{ "destinationrules", RES_DESTINATION_RULE }, { "dr", RES_DESTINATION_RULE },
		{ "DestinationRule", RES_DESTINATION_RULE },
		{ "destinationrules.networking.istio.io", RES_DESTINATION_RULE },
		{ "dr.v1alpha3.networking.istio.io", RES_DESTINATION_RULE },
		{ "secret", RES_SECRET }, { "secrets", RES_SECRET }, { "Secret", RES_SECRET },
		{ "ap", RES_AUTHORIZATION_POLICY }, { "authorizationpolicies", RES_AUTHORIZATION_POLICY },
		{ "AuthorizationPolicy", RES_AUTHORIZATION_POLICY },
		{ "authorizationpolicies.security.istio.io", RES_AUTHORIZATION_POLICY },
		{ "ap.v1beta1.security.istio.io", RES_AUTHORIZATION_POLICY },
		/* The Gateway API's Gateway: by its short name or its group, never bare. */
		{ "gtw", RES_K8S_GATEWAY }, { "gateways.gateway.networking.k8s.io", RES_K8S_GATEWAY },
		{ "gateway.v1.gateway.networking.k8s.io", RES_K8S_GATEWAY },
		{ "httproute", RES_HTTP_ROUTE }, { "httproutes.gateway.networking.k8s.io", RES_HTTP_ROUTE },
		{ "referencegrants", RES_REFERENCE_GRANT }, { "tlsroute", RES_TLS_ROUTE },
	};
	static const char *const bad[] = {
		"", "svc", "deployment", "gtw.networking.istio.io", "httproute.networking.istio.io",
		"secret.networking.istio.io", "gw.v2.networking.istio.io", "virtualservicess", "se.",
		"ap.networking.istio.io", "gw.security.istio.io",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		const struct res_kind_info *k = res_kind_lookup(ok[i].word);

		if (!k || k->kind != ok[i].kind)
			fail_msg("\"%s\" should name kind %d", ok[i].word, ok[i].kind);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (res_kind_lookup(bad[i]))
			fail_msg("\"%s\" should not name a kind", bad[i]);
	assert_null(res_kind_lookup(NULL));
}

static void kind_table_lists_names_and_groups(void **state)
{
	const struct res_kind_info *k;

	(void)state;
	k = res_kind_info(RES_DESTINATION_RULE);
	assert_string_equal(k->kind_name, "DestinationRule");
	assert_string_equal(k->group, "networking.istio.io");
	assert_string_equal(k->singular, "destinationrule");
	assert_string_equal(k->plural, "destinationrules");
	assert_string_equal(k->shortname, "dr");
	assert_true(k->namespaced);
	k = res_kind_info(RES_SERVICE_ENTRY);
	assert_string_equal(k->plural, "serviceentries");
	assert_string_equal(k->shortname, "se");
	k = res_kind_info(RES_SECRET);
	assert_string_equal(k->kind_name, "Secret");
	assert_string_equal(k->group, "");
	assert_null(k->shortname);
	assert_null(res_kind_info(RES_KIND_COUNT));
}

/* ---------------------------------------------------------------------------------
 * The walkthrough, document by document
 * ------------------------------------------------------------------------------- */

static void assert_pos(struct srcpos p, const char *file, int line, int col)
{
	assert_non_null(p.file);
	assert_string_equal(p.file, file);
	if (p.line != line || p.col != col)
		fail_msg("position %d:%d, want %d:%d", p.line, p.col, line, col);
}

static void walkthrough_service_entry_decodes(void **state)
{
	const char *f = "01-serviceentry-cnn.yaml";
	struct decoded x;
	const struct serviceentry *se;

	(void)state;
	decode_file(&x, f, "default");
	assert_int_equal(x.n, 1);
	assert_int_equal(x.r[0].kind, RES_SERVICE_ENTRY);
	assert_string_equal(x.r[0].api_version, "networking.istio.io/v1alpha3");
	assert_string_equal(x.r[0].name, "cnn");
	assert_string_equal(x.r[0].namespace, "default");
	assert_false(x.r[0].namespace_explicit);
	assert_string_equal(x.r[0].file, f);
	assert_int_equal(x.r[0].line, 1);
	assert_ptr_equal(x.r[0].node, x.s.docs[0].root);
	assert_string_equal(res_describe(&x.r[0]), "ServiceEntry default/cnn");
	se = x.r[0].u.se;
	assert_int_equal(se->hosts.n, 1);
	assert_string_equal(se->hosts.v[0], "edition.cnn.com");
	assert_pos(se->hosts.pos[0], f, 7, 5);
	assert_int_equal(se->ports.n, 2);
	assert_int_equal(se->ports.v[0].number, 80);
	assert_string_equal(se->ports.v[0].name, "http");
	assert_int_equal(se->ports.v[0].protocol, RES_PROTO_HTTP);
	assert_int_equal(se->ports.v[0].target_port, 0);
	assert_pos(se->ports.v[0].pos, f, 9, 5);
	assert_int_equal(se->ports.v[1].number, 443);
	assert_string_equal(se->ports.v[1].name, "https");
	assert_int_equal(se->ports.v[1].protocol, RES_PROTO_HTTPS);
	assert_pos(se->ports.v[1].pos, f, 12, 5);
	assert_int_equal(se->resolution, SE_RESOLUTION_DNS);
	assert_int_equal(se->location, SE_LOCATION_MESH_EXTERNAL);
	assert_int_equal(se->endpoints.n, 0);
	assert_int_equal(se->addresses.n, 0);
	assert_null(se->workload_selector);
	assert_pos(se->pos, f, 6, 3);
	decoded_free(&x);
}

static void walkthrough_gateway_and_sidecar_rule_for_cnn_decode(void **state)
{
	const char *f = "02-gateway-destinationrule-cnn.yaml";
	struct decoded x;
	const struct gateway *gw;
	const struct gw_server *srv;
	const struct destinationrule *dr;
	const struct dr_port_policy *pl;

	(void)state;
	decode_file(&x, f, "default");
	assert_int_equal(x.n, 2);
	assert_string_equal(res_describe(&x.r[0]), "Gateway default/istio-egressgateway");
	gw = x.r[0].u.gw;
	assert_int_equal(gw->selector.n, 1);
	assert_string_equal(res_strmap_get(&gw->selector, "istio"), "egressgateway");
	assert_int_equal(gw->servers.n, 1);
	srv = &gw->servers.v[0];
	assert_int_equal(srv->port.number, 80);
	assert_string_equal(srv->port.name, "https-port-for-tls-origination");
	/* Port number and protocol are independent: HTTPS on 80. */
	assert_int_equal(srv->port.protocol, RES_PROTO_HTTPS);
	assert_int_equal(srv->hosts.n, 1);
	assert_string_equal(srv->hosts.v[0], "edition.cnn.com");
	assert_non_null(srv->tls);
	assert_int_equal(srv->tls->mode, GW_TLS_ISTIO_MUTUAL);
	assert_null(srv->tls->credential_name);
	assert_int_equal(srv->tls->min_protocol_version, RES_TLS_AUTO);
	assert_pos(srv->pos, f, 9, 5);
	assert_pos(srv->tls->pos, f, 16, 7);

	assert_string_equal(res_describe(&x.r[1]), "DestinationRule default/egressgateway-for-cnn");
	assert_int_equal(x.r[1].line, 17);
	dr = x.r[1].u.dr;
	assert_string_equal(dr->host, "istio-egressgateway.istio-system.svc.cluster.local");
	assert_null(dr->traffic_policy);
	assert_int_equal(dr->subsets.n, 1);
	assert_string_equal(dr->subsets.v[0].name, "cnn");
	assert_int_equal(dr->subsets.v[0].labels.n, 0);
	assert_non_null(dr->subsets.v[0].traffic_policy);
	assert_int_equal(dr->subsets.v[0].traffic_policy->load_balancer->simple, DR_LB_ROUND_ROBIN);
	assert_null(dr->subsets.v[0].traffic_policy->tls);
	assert_int_equal(dr->subsets.v[0].traffic_policy->port_level_settings.n, 1);
	pl = &dr->subsets.v[0].traffic_policy->port_level_settings.v[0];
	assert_int_equal(pl->port, 80);
	assert_non_null(pl->tls);
	assert_int_equal(pl->tls->mode, DR_TLS_ISTIO_MUTUAL);
	assert_string_equal(pl->tls->sni, "edition.cnn.com");
	assert_false(pl->tls->insecure_skip_verify);
	assert_pos(pl->tls->pos, f, 33, 11);
	decoded_free(&x);
}

static void walkthrough_virtual_service_and_origination_rule_for_cnn_decode(void **state)
{
	const char *f = "03-virtualservice-destinationrule-cnn.yaml";
	struct decoded x;
	const struct virtualservice *vs;
	const struct vs_http_route *h;
	const struct destinationrule *dr;

	(void)state;
	decode_file(&x, f, "default");
	assert_int_equal(x.n, 2);
	assert_string_equal(res_describe(&x.r[0]),
	                    "VirtualService default/direct-cnn-through-egress-gateway");
	vs = x.r[0].u.vs;
	assert_int_equal(vs->hosts.n, 1);
	assert_string_equal(vs->hosts.v[0], "edition.cnn.com");
	assert_int_equal(vs->gateways.n, 2);
	assert_string_equal(vs->gateways.v[0], "istio-egressgateway");
	assert_string_equal(vs->gateways.v[1], "mesh");
	assert_int_equal(vs->http.n, 2);
	assert_int_equal(vs->tls.n, 0);
	assert_int_equal(vs->tcp.n, 0);

	h = &vs->http.v[0];
	assert_pos(h->pos, f, 12, 5);
	assert_int_equal(h->match.n, 1);
	assert_int_equal(h->match.v[0].gateways.n, 1);
	assert_string_equal(h->match.v[0].gateways.v[0], "mesh");
	assert_int_equal(h->match.v[0].port, 80);
	assert_null(h->match.v[0].uri);
	assert_int_equal(h->route.n, 1);
	assert_string_equal(h->route.v[0].destination->host,
	                    "istio-egressgateway.istio-system.svc.cluster.local");
	assert_string_equal(h->route.v[0].destination->subset, "cnn");
	assert_int_equal(h->route.v[0].destination->port, 80);
	assert_int_equal(h->route.v[0].weight, 100);
	assert_pos(h->route.v[0].pos, f, 17, 7);
	assert_pos(h->route.v[0].destination->pos, f, 18, 9);
	assert_int_equal(h->timeout_ms, 0);
	assert_null(h->retries);
	assert_null(h->redirect);

	h = &vs->http.v[1];
	assert_string_equal(h->match.v[0].gateways.v[0], "istio-egressgateway");
	assert_int_equal(h->match.v[0].port, 80);
	assert_string_equal(h->route.v[0].destination->host, "edition.cnn.com");
	assert_null(h->route.v[0].destination->subset);
	assert_int_equal(h->route.v[0].destination->port, 443);
	assert_int_equal(h->route.v[0].weight, 100);
	assert_pos(h->route.v[0].destination->pos, f, 29, 9);

	assert_string_equal(res_describe(&x.r[1]),
	                    "DestinationRule default/originate-tls-for-edition-cnn-com");
	dr = x.r[1].u.dr;
	assert_string_equal(dr->host, "edition.cnn.com");
	assert_int_equal(dr->traffic_policy->load_balancer->simple, DR_LB_ROUND_ROBIN);
	assert_int_equal(dr->traffic_policy->port_level_settings.n, 1);
	assert_int_equal(dr->traffic_policy->port_level_settings.v[0].port, 443);
	assert_int_equal(dr->traffic_policy->port_level_settings.v[0].tls->mode, DR_TLS_SIMPLE);
	assert_null(dr->traffic_policy->port_level_settings.v[0].tls->sni);
	assert_int_equal(dr->traffic_policy->port_level_settings.v[0].tls->subject_alt_names.n, 0);
	assert_pos(dr->traffic_policy->port_level_settings.v[0].tls->pos, f, 47, 9);
	decoded_free(&x);
}

static void walkthrough_gateway_and_sidecar_rule_for_nginx_decode(void **state)
{
	struct decoded x;
	const struct gw_server *srv;
	const struct dr_port_policy *pl;

	(void)state;
	decode_file(&x, "04-gateway-destinationrule-nginx.yaml", "default");
	assert_int_equal(x.n, 2);
	srv = &x.r[0].u.gw->servers.v[0];
	assert_int_equal(srv->port.number, 443);
	assert_string_equal(srv->port.name, "https");
	assert_int_equal(srv->port.protocol, RES_PROTO_HTTPS);
	assert_string_equal(srv->hosts.v[0], "my-nginx.mesh-external.svc.cluster.local");
	assert_int_equal(srv->tls->mode, GW_TLS_ISTIO_MUTUAL);
	assert_string_equal(res_describe(&x.r[1]), "DestinationRule default/egressgateway-for-nginx");
	assert_string_equal(x.r[1].u.dr->subsets.v[0].name, "nginx");
	pl = &x.r[1].u.dr->subsets.v[0].traffic_policy->port_level_settings.v[0];
	assert_int_equal(pl->port, 443);
	assert_int_equal(pl->tls->mode, DR_TLS_ISTIO_MUTUAL);
	assert_string_equal(pl->tls->sni, "my-nginx.mesh-external.svc.cluster.local");
	decoded_free(&x);
}

static void walkthrough_virtual_service_for_nginx_decodes(void **state)
{
	struct decoded x;
	const struct virtualservice *vs;

	(void)state;
	decode_file(&x, "05-virtualservice-nginx.yaml", "default");
	assert_int_equal(x.n, 1);
	vs = x.r[0].u.vs;
	assert_string_equal(vs->hosts.v[0], "my-nginx.mesh-external.svc.cluster.local");
	assert_int_equal(vs->http.n, 2);
	assert_int_equal(vs->http.v[0].match.v[0].port, 80);
	assert_string_equal(vs->http.v[0].route.v[0].destination->subset, "nginx");
	assert_int_equal(vs->http.v[0].route.v[0].destination->port, 443);
	assert_string_equal(vs->http.v[1].match.v[0].gateways.v[0], "istio-egressgateway");
	assert_int_equal(vs->http.v[1].match.v[0].port, 443);
	assert_string_equal(vs->http.v[1].route.v[0].destination->host,
	                    "my-nginx.mesh-external.svc.cluster.local");
	assert_int_equal(vs->http.v[1].route.v[0].destination->port, 443);
	assert_int_equal(vs->http.v[1].route.v[0].weight, 100);
	decoded_free(&x);
}

static void walkthrough_mutual_origination_rule_decodes_in_the_given_namespace(void **state)
{
	struct decoded x;
	const struct dr_tls *t;

	(void)state;
	/* kubectl apply -n istio-system */
	decode_file(&x, "06-destinationrule-originate-mtls-nginx.yaml", "istio-system");
	assert_int_equal(x.n, 1);
	assert_string_equal(res_describe(&x.r[0]),
	                    "DestinationRule istio-system/originate-mtls-for-nginx");
	assert_false(x.r[0].namespace_explicit);
	assert_string_equal(x.r[0].u.dr->host, "my-nginx.mesh-external.svc.cluster.local");
	t = x.r[0].u.dr->traffic_policy->port_level_settings.v[0].tls;
	assert_int_equal(t->mode, DR_TLS_MUTUAL);
	assert_string_equal(t->credential_name, "client-credential");
	assert_string_equal(t->sni, "my-nginx.mesh-external.svc.cluster.local");
	assert_int_equal(t->subject_alt_names.n, 0);   /* commented out in the walkthrough */
	assert_null(t->client_certificate);
	assert_null(t->ca_crl);
	decoded_free(&x);
}

/* The walkthrough's nginx Service and Deployment, verbatim. */
static const char nginx_service_and_deployment[] =
	"apiVersion: v1\n"
	"kind: Service\n"
	"metadata:\n"
	"  name: my-nginx\n"
	"  namespace: mesh-external\n"
	"  labels:\n"
	"    run: my-nginx\n"
	"spec:\n"
	"  ports:\n"
	"  - port: 443\n"
	"    protocol: TCP\n"
	"  selector:\n"
	"    run: my-nginx\n"
	"---\n"
	"apiVersion: apps/v1\n"
	"kind: Deployment\n"
	"metadata:\n"
	"  name: my-nginx\n"
	"  namespace: mesh-external\n"
	"spec:\n"
	"  selector:\n"
	"    matchLabels:\n"
	"      run: my-nginx\n"
	"  replicas: 1\n"
	"  template:\n"
	"    metadata:\n"
	"      labels:\n"
	"        run: my-nginx\n"
	"    spec:\n"
	"      containers:\n"
	"      - name: my-nginx\n"
	"        image: nginx\n"
	"        ports:\n"
	"        - containerPort: 443\n"
	"        volumeMounts:\n"
	"        - name: nginx-config\n"
	"          mountPath: /etc/nginx\n"
	"          readOnly: true\n"
	"        - name: nginx-server-certs\n"
	"          mountPath: /etc/nginx-server-certs\n"
	"          readOnly: true\n"
	"        - name: nginx-ca-certs\n"
	"          mountPath: /etc/nginx-ca-certs\n"
	"          readOnly: true\n"
	"      volumes:\n"
	"      - name: nginx-config\n"
	"        configMap:\n"
	"          name: nginx-configmap\n"
	"      - name: nginx-server-certs\n"
	"        secret:\n"
	"          secretName: nginx-server-certs\n"
	"      - name: nginx-ca-certs\n"
	"        secret:\n"
	"          secretName: nginx-ca-certs\n";

static void walkthrough_kubernetes_workloads_are_not_istio_configuration(void **state)
{
	struct decoded x;

	(void)state;
	decode_text(&x, "nginx.yaml", nginx_service_and_deployment, "default");
	assert_int_equal(x.n, 2);
	assert_int_equal(x.rc[0], -1);
	assert_int_equal(x.rc[1], -1);
	assert_diags(&x.d, DIAGS(
		"nginx.yaml:2:7: mesh-external/my-nginx: kind: \"Service\" is not a supported kind "
		"(want ServiceEntry, Gateway, VirtualService, DestinationRule, AuthorizationPolicy, Secret, HTTPRoute, TLSRoute, TCPRoute or ReferenceGrant)",
		"nginx.yaml:16:7: mesh-external/my-nginx: kind: \"Deployment\" is not a supported kind "
		"(want ServiceEntry, Gateway, VirtualService, DestinationRule, AuthorizationPolicy, Secret, HTTPRoute, TLSRoute, TCPRoute or ReferenceGrant)"));
	decoded_free(&x);
}

/* ---------------------------------------------------------------------------------
 * Decoded values
 * ------------------------------------------------------------------------------- */

/* Fields accepted and not applied (KWF_UNAPPLIED) warn at the field, with its path. */
static void unapplied_fields_are_warned_at_the_field(void **state)
{
	struct decoded x;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	            "spec:\n  hosts: [a.example.com]\n  http:\n"
	            "  - retries: {attempts: 2, retryRemoteLocalities: true}\n"
	            "    route: [{destination: {host: a.example.com}, headers: {request: {remove: [x]}}}]\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	/* route[0].headers is applied (src/proxy/route_hdrs.c): no warning for it. */
	assert_diags(&x.d, DIAGS(
		"t.yaml:7:28: warning: VirtualService default/vs: spec.http[0].retries."
		"retryRemoteLocalities: not applied by egressgw; ignored"));
	decoded_free(&x);
}

static void durations_are_read_as_go_durations_into_milliseconds(void **state)
{
	struct decoded x;
	const struct vs_http_route *h;
	const struct dr_traffic_policy *tp;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	            "spec:\n  hosts: [a.example.com]\n  http:\n"
	            "  - timeout: 1m30s\n    retries: {attempts: 2, perTryTimeout: 1.5s}\n"
	            "    route: [{destination: {host: a.example.com}}]\n"
	            "  - timeout: 10s\n    route: [{destination: {host: a.example.com}}]\n"
	            "  - timeout: 500ms\n    route: [{destination: {host: a.example.com}}]\n"
	            "---\n"
	            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
	            "spec:\n  host: a.example.com\n  trafficPolicy:\n"
	            "    connectionPool:\n"
	            "      tcp: {connectTimeout: 10s, idleTimeout: 0s, tcpKeepalive: {time: 1h}}\n"
	            "      http: {idleTimeout: 2h45m}\n"
	            "    outlierDetection: {interval: 1h, baseEjectionTime: 3m, consecutive5xxErrors: 0}\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	assert_int_equal(x.rc[1], 0);
	assert_int_equal(drop_unapplied(&x.d), 1);   /* tcpKeepalive */
	assert_int_equal(x.d.n, 0);
	h = x.r[0].u.vs->http.v;
	assert_int_equal(h[0].timeout_ms, 90000);
	assert_int_equal(h[0].retries->attempts, 2);
	assert_int_equal(h[0].retries->per_try_timeout_ms, 1500);
	assert_int_equal(h[1].timeout_ms, 10000);
	assert_int_equal(h[2].timeout_ms, 500);
	tp = x.r[1].u.dr->traffic_policy;
	assert_int_equal(tp->connection_pool->tcp->connect_timeout_ms, 10000);
	assert_int_equal(tp->connection_pool->tcp->idle_timeout_ms, -1);   /* "0s": disabled */
	assert_int_equal(tp->connection_pool->tcp->tcp_keepalive->time_ms, 3600000);
	assert_int_equal(tp->connection_pool->http->idle_timeout_ms, 9900000);
	assert_int_equal(tp->outlier_detection->interval_ms, 3600000);
	assert_int_equal(tp->outlier_detection->base_ejection_time_ms, 180000);
	/* A wrapper type: 0 is set (disabled), not absent. */
	assert_true(tp->outlier_detection->consecutive_5xx_errors.set);
	assert_int_equal(tp->outlier_detection->consecutive_5xx_errors.value, 0);
	assert_false(tp->outlier_detection->consecutive_gateway_errors.set);
	decoded_free(&x);
}

static void null_values_leave_fields_unset(void **state)
{
	struct decoded x;
	const struct destinationrule *dr;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
	            "metadata:\n  name: dr\n  namespace: ns1\n"
	            "spec:\n  host: a.example.com\n  trafficPolicy:\n    tls:\n"
	            "    loadBalancer: {simple: ROUND_ROBIN}\n  subsets:\n  exportTo: ~\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	assert_string_equal(x.r[0].namespace, "ns1");
	assert_true(x.r[0].namespace_explicit);
	dr = x.r[0].u.dr;
	assert_null(dr->traffic_policy->tls);
	assert_int_equal(dr->traffic_policy->load_balancer->simple, DR_LB_ROUND_ROBIN);
	assert_int_equal(dr->subsets.n, 0);
	assert_int_equal(dr->export_to.n, 0);
	decoded_free(&x);
}

static void protocols_decode_case_insensitively(void **state)
{
	struct decoded x;
	const struct serviceentry *se;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\n"
	            "spec:\n  hosts: [a.example.com]\n  resolution: DNS\n  ports:\n"
	            "  - {number: 80, name: http, protocol: http}\n"
	            "  - {number: 443, name: tls, protocol: Tls}\n"
	            "  - {number: 8080, name: grpc-web, protocol: grpc-web, targetPort: 9090}\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	se = x.r[0].u.se;
	assert_int_equal(se->ports.v[0].protocol, RES_PROTO_HTTP);
	assert_int_equal(se->ports.v[1].protocol, RES_PROTO_TLS);
	assert_int_equal(se->ports.v[2].protocol, RES_PROTO_GRPC_WEB);
	assert_int_equal(se->ports.v[2].target_port, 9090);
	assert_string_equal(res_protocol_name(RES_PROTO_GRPC_WEB), "GRPC-WEB");
	assert_string_equal(res_protocol_name(RES_PROTO_UNSET), "");
	assert_true(res_protocol_is_http(RES_PROTO_GRPC));
	assert_false(res_protocol_is_http(RES_PROTO_HTTPS));
	assert_true(res_protocol_is_tls(RES_PROTO_HTTPS));
	assert_true(res_protocol_is_tls(RES_PROTO_TLS));
	assert_false(res_protocol_is_tls(RES_PROTO_TCP));
	decoded_free(&x);
}

static void http_routes_keep_every_supported_field(void **state)
{
	struct decoded x;
	const struct vs_http_route *h;
	const struct vs_http_match *m;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	            "spec:\n  hosts: [a.example.com]\n  exportTo: [\".\"]\n  http:\n"
	            "  - name: main\n"
	            "    match:\n"
	            "    - name: m0\n"
	            "      uri: {prefix: /api}\n"
	            "      scheme: {exact: http}\n"
	            "      method: {regex: \"GET|HEAD\"}\n"
	            "      authority: {exact: a.example.com}\n"
	            "      headers: {x-user: {exact: bob}, x-any: {}}\n"
	            "      queryParams: {debug: {exact: \"1\"}}\n"
	            "      withoutHeaders: {x-skip: {prefix: skip}}\n"
	            "      sourceLabels: {app: sleep}\n"
	            "      sourceNamespace: default\n"
	            "      ignoreUriCase: true\n"
	            "    route:\n"
	            "    - destination: {host: a.example.com, subset: v1}\n"
	            "      weight: 75\n"
	            "      headers: {request: {set: {x-v: \"1\"}}}\n"
	            "    - destination: {host: a.example.com, subset: v2}\n"
	            "      weight: 25\n"
	            "    rewrite: {uri: /v2/api}\n"
	            "    retries: {attempts: 3, retryOn: \"5xx,connect-failure\", perTryTimeout: 2s}\n"
	            "    fault: {delay: {fixedDelay: 5s, percentage: {value: 0.5}}, abort: {httpStatus: 503, percentage: {value: 1}}}\n"
	            "    mirror: {host: b.example.com}\n"
	            "    mirrorPercentage: {value: 10}\n"
	            "    headers:\n"
	            "      request: {add: {x-a: b}, remove: [x-c]}\n"
	            "      response: {set: {x-d: e}}\n",
	            "default");
	if (x.rc[0] != 0)
		diags_print(&x.d, stderr);
	assert_int_equal(x.rc[0], 0);
	/* all applied (mirror and mirrorPercentage too: fwd_mirror.c) */
	assert_int_equal(drop_unapplied(&x.d), 0);
	assert_int_equal(x.d.n, 0);
	h = &x.r[0].u.vs->http.v[0];
	assert_string_equal(h->name, "main");
	m = &h->match.v[0];
	assert_string_equal(m->name, "m0");
	assert_string_equal(m->uri->prefix, "/api");
	assert_null(m->uri->exact);
	assert_string_equal(m->scheme->exact, "http");
	assert_string_equal(m->method->regex, "GET|HEAD");
	assert_string_equal(m->authority->exact, "a.example.com");
	assert_int_equal(m->headers.n, 2);
	assert_string_equal(m->headers.v[0].name, "x-user");
	assert_string_equal(m->headers.v[0].m.exact, "bob");
	assert_string_equal(m->headers.v[1].name, "x-any");
	assert_null(m->headers.v[1].m.exact);
	assert_null(m->headers.v[1].m.prefix);
	assert_string_equal(m->query_params.v[0].m.exact, "1");
	assert_string_equal(m->without_headers.v[0].m.prefix, "skip");
	assert_string_equal(res_strmap_get(&m->source_labels, "app"), "sleep");
	assert_string_equal(m->source_namespace, "default");
	assert_true(m->ignore_uri_case);
	assert_int_equal(h->route.v[0].weight, 75);
	assert_string_equal(res_strmap_get(&h->route.v[0].headers->request->set, "x-v"), "1");
	assert_string_equal(h->rewrite->uri, "/v2/api");
	assert_int_equal(h->retries->attempts, 3);
	assert_string_equal(h->retries->retry_on, "5xx,connect-failure");
	assert_int_equal(h->fault->delay->fixed_delay_ms, 5000);
	assert_true(h->fault->delay->percentage->value == 0.5);
	assert_int_equal(h->fault->abort->http_status, 503);
	assert_string_equal(h->mirror->host, "b.example.com");
	assert_true(h->mirror_percentage->value == 10.0);
	assert_string_equal(res_strmap_get(&h->headers->request->add, "x-a"), "b");
	assert_string_equal(h->headers->request->remove.v[0], "x-c");
	assert_string_equal(res_strmap_get(&h->headers->response->set, "x-d"), "e");
	assert_true(res_strlist_has(&x.r[0].u.vs->export_to, "."));
	decoded_free(&x);
}

static void secret_data_is_base64_decoded_and_string_data_wins(void **state)
{
	struct decoded x;
	const struct secret *sec;
	const struct res_secret_data *e;

	(void)state;
	decode_text(&x, "s.yaml",
	            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: client-credential\n"
	            "  namespace: istio-system\n"
	            "data:\n  tls.crt: aGVsbG8=\n  ca.crt: |\n    YWJj\n    ZGVm\n  tls.key: b2xk\n"
	            "  empty: \"\"\n"
	            "stringData:\n  tls.key: new key\n  note: plain text\n"
	            "immutable: true\n"
	            "---\n"
	            "apiVersion: v1\nkind: Secret\nmetadata: {name: other}\n"
	            "type: kubernetes.io/tls\n"
	            "stringData: {tls.crt: c, tls.key: k}\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	assert_int_equal(x.rc[1], 0);
	assert_int_equal(x.d.n, 0);
	assert_string_equal(res_describe(&x.r[0]), "Secret istio-system/client-credential");
	sec = x.r[0].u.secret;
	assert_string_equal(sec->type, "Opaque");
	assert_true(sec->immutable);
	assert_int_equal(sec->data.n, 5);
	e = res_secret_get(sec, "tls.crt");
	assert_int_equal(e->len, 5);
	assert_memory_equal(e->value, "hello", 5);
	assert_pos(e->pos, "s.yaml", 7, 12);
	e = res_secret_get(sec, "ca.crt");
	assert_int_equal(e->len, 6);
	assert_memory_equal(e->value, "abcdef", 6);
	e = res_secret_get(sec, "tls.key");
	assert_int_equal(e->len, 7);
	assert_memory_equal(e->value, "new key", 7);
	assert_int_equal(res_secret_get(sec, "empty")->len, 0);
	assert_string_equal((const char *)res_secret_get(sec, "note")->value, "plain text");
	assert_null(res_secret_get(sec, "missing"));
	assert_string_equal(x.r[1].u.secret->type, "kubernetes.io/tls");
	assert_string_equal(x.r[1].namespace, "default");
	decoded_free(&x);
}

static void unsupported_fields_do_not_make_routes_invalid(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
		"spec:\n  hosts: [a.example.com]\n  http:\n"
		"  - route: [{destination: {host: a.example.com}}]\n"
		"    delegate: {name: d}\n",
		"default", 0,
		/* directResponse and corsPolicy are applied now; delegate is not. */
		DIAGS("t.yaml:8:5: warning: VirtualService default/vs: spec.http[0].delegate: "
		      "not supported by egressgw; ignored"));
}

static void empty_documents_are_not_resources(void **state)
{
	struct decoded x;

	(void)state;
	decode_text(&x, "t.yaml", "---\n# nothing\n---\nkind: Secret\n", "default");
	assert_int_equal(x.n, 2);
	assert_int_equal(x.rc[0], -1);
	assert_diags(&x.d, DIAGS(
		"t.yaml:1: empty document: nothing to apply",
		"t.yaml:4:1: Secret default/(unnamed): missing required field \"apiVersion\"",
		"t.yaml:4:1: Secret default/(unnamed): missing required field \"metadata\""));
	decoded_free(&x);
}

static void host_patterns_match_like_istio(void **state)
{
	(void)state;
	assert_true(res_host_matches("edition.cnn.com", "Edition.CNN.com"));
	assert_true(res_host_matches("*.cnn.com", "edition.cnn.com"));
	assert_true(res_host_matches("*.cnn.com", "*.edition.cnn.com"));
	assert_true(res_host_matches("*", "anything.example"));
	assert_false(res_host_matches("*.cnn.com", "cnn.com"));
	assert_false(res_host_matches("edition.cnn.com", "*.cnn.com"));
	assert_false(res_host_matches("*.edition.cnn.com", "*.cnn.com"));
	assert_false(res_host_matches(NULL, "a"));
}

/* ---------------------------------------------------------------------------------
 * Cross-resource warnings
 * ------------------------------------------------------------------------------- */

struct set {
	struct decoded parts[8];
	size_t nparts;
	struct resource *all[32];
	size_t n;
};

static void set_add(struct set *st, struct decoded *x)
{
	for (size_t i = 0; i < x->n; i++)
		if (x->rc[i] == 0)
			st->all[st->n++] = &x->r[i];
}

static void set_add_file(struct set *st, const char *name, const char *ns)
{
	struct decoded *x = &st->parts[st->nparts++];

	decode_file(x, name, ns);
	set_add(st, x);
}

static void set_add_text(struct set *st, const char *file, const char *text, const char *ns)
{
	struct decoded *x = &st->parts[st->nparts++];

	decode_text(x, file, text, ns);
	if (x->d.nerrors) {
		diags_print(&x->d, stderr);
		fail_msg("%s does not decode", file);
	}
	set_add(st, x);
}

static void set_free(struct set *st)
{
	for (size_t i = 0; i < st->nparts; i++)
		decoded_free(&st->parts[i]);
}

static const char client_credential[] =
	"apiVersion: v1\nkind: Secret\nmetadata:\n  name: client-credential\n"
	"  namespace: istio-system\n"
	"data: {tls.crt: Y2VydA==, tls.key: a2V5, ca.crt: Y2E=}\n";

static void walkthrough_references_all_resolve(void **state)
{
	struct set a, b;
	struct diags d = DIAGS_INIT;

	(void)state;
	memset(&a, 0, sizeof(a));
	set_add_file(&a, "01-serviceentry-cnn.yaml", "default");
	set_add_file(&a, "02-gateway-destinationrule-cnn.yaml", "default");
	set_add_file(&a, "03-virtualservice-destinationrule-cnn.yaml", "default");
	res_check_refs(a.all, a.n, &d);
	assert_diags(&d, NO_DIAGS);
	set_free(&a);

	memset(&b, 0, sizeof(b));
	set_add_file(&b, "04-gateway-destinationrule-nginx.yaml", "default");
	set_add_file(&b, "05-virtualservice-nginx.yaml", "default");
	set_add_file(&b, "06-destinationrule-originate-mtls-nginx.yaml", "istio-system");
	res_check_refs(b.all, b.n, &d);
	/* Before `kubectl create secret ... client-credential`: */
	assert_diags(&d, DIAGS(
		"06-destinationrule-originate-mtls-nginx.yaml:14:9: warning: DestinationRule "
		"istio-system/originate-mtls-for-nginx: spec.trafficPolicy.portLevelSettings[0].tls."
		"credentialName: no Secret named \"client-credential\" in any namespace (the proxy "
		"reads it from its own namespace)"));
	diags_free(&d);
	set_add_text(&b, "secret.yaml", client_credential, "default");
	res_check_refs(b.all, b.n, &d);
	assert_diags(&d, NO_DIAGS);
	set_free(&b);
}

static void references_that_do_not_resolve_are_warnings_at_the_reference(void **state)
{
	struct set st;
	struct diags d = DIAGS_INIT;

	(void)state;
	memset(&st, 0, sizeof(st));
	set_add_file(&st, "01-serviceentry-cnn.yaml", "default");
	set_add_file(&st, "02-gateway-destinationrule-cnn.yaml", "default");
	set_add_text(&st, "vs.yaml",
	             "apiVersion: networking.istio.io/v1\n"
	             "kind: VirtualService\n"
	             "metadata: {name: refs}\n"
	             "spec:\n"
	             "  hosts: [edition.cnn.com]\n"
	             "  gateways: [istio-egressgateway, missing-gw, istio-system/istio-egressgateway,\n"
	             "             istio-egressgateway.default, mesh]\n"
	             "  http:\n"
	             "  - match:\n"
	             "    - gateways: [other/gw]\n"
	             "    route:\n"
	             "    - destination:\n"
	             "        host: istio-egressgateway.istio-system.svc.cluster.local\n"
	             "        subset: v9\n"
	             "    - destination: {host: edition.cnn.com, port: {number: 8443}}\n"
	             "      weight: 10\n"
	             "    - destination: {host: reviews, subset: v1}\n"
	             "    - destination: {host: unknown.example.com, port: {number: 1}}\n",
	             "default");
	set_add_text(&st, "dr.yaml",
	             "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	             "metadata: {name: reviews, namespace: default}\n"
	             "spec:\n  host: reviews.default.svc.cluster.local\n  subsets: [{name: v1}]\n",
	             "default");
	res_check_refs(st.all, st.n, &d);
	assert_diags(&d, DIAGS(
		"vs.yaml:6:35: warning: VirtualService default/refs: spec.gateways[1]: Gateway "
		"\"default/missing-gw\" not found",
		"vs.yaml:6:47: warning: VirtualService default/refs: spec.gateways[2]: Gateway "
		"\"istio-system/istio-egressgateway\" not found",
		"vs.yaml:10:18: warning: VirtualService default/refs: spec.http[0].match[0].gateways[0]: "
		"Gateway \"other/gw\" not found",
		"vs.yaml:13:9: warning: VirtualService default/refs: spec.http[0].route[0].destination."
		"subset: subset \"v9\" of host \"istio-egressgateway.istio-system.svc.cluster.local\" is "
		"not defined by any DestinationRule",
		"vs.yaml:15:20: warning: VirtualService default/refs: spec.http[0].route[1].destination."
		"port.number: port 8443 is not declared by the ServiceEntry for host \"edition.cnn.com\" "
		"(ServiceEntry default/cnn declares 80, 443)"));
	diags_free(&d);
	set_free(&st);
}

/* ---------------------------------------------------------------------------------
 * Validation rules: each with its exact messages and positions
 * ------------------------------------------------------------------------------- */

static void unknown_kinds_are_rejected_with_the_supported_list(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: apps/v1\n"
		"kind: Deployment\n"
		"metadata:\n"
		"  name: my-nginx\n"
		"  namespace: mesh-external\n"
		"spec: {}\n",
		"default", -1,
		DIAGS("t.yaml:2:7: mesh-external/my-nginx: kind: \"Deployment\" is not a supported kind (want ServiceEntry, Gateway, VirtualService, DestinationRule, AuthorizationPolicy, Secret, HTTPRoute, TLSRoute, TCPRoute or ReferenceGrant)"));
}

static void api_version_must_be_one_of_the_kind(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v2\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  servers: []\n",
		"default", -1,
		DIAGS("t.yaml:1:13: Gateway default/gw: apiVersion: \"networking.istio.io/v2\" is not a version of Gateway (want networking.istio.io/v1alpha3, networking.istio.io/v1beta1, networking.istio.io/v1)",
		      "t.yaml:6:12: Gateway default/gw: spec.servers: must not be empty"));
}

static void kind_is_required_to_decode(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: v1\n"
		"metadata: {}\n",
		"default", -1,
		DIAGS("t.yaml:1:1: default/(unnamed): missing required field \"kind\""));
}

static void document_must_be_a_map(void **state)
{
	(void)state;
	expect_decode(
		"- apiVersion: v1\n",
		"default", -1,
		DIAGS("t.yaml:1:1: document: want a Kubernetes object (a map), got a list"));
}

static void metadata_name_and_namespace_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: Originate_TLS\n"
		"  namespace: Istio-System\n"
		"  labels:\n"
		"    app/x/y: ok\n"
		"    version: \"v1.0-\"\n"
		"spec:\n"
		"  host: a.example.com\n",
		"default", -1,
		DIAGS("t.yaml:5:14: DestinationRule Istio-System/Originate_TLS: metadata.namespace: invalid namespace \"Istio-System\": must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
		      "t.yaml:7:5: DestinationRule Istio-System/Originate_TLS: metadata.labels[\"app/x/y\"]: invalid label key \"app/x/y\": want [prefix/]name, name at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
		      "t.yaml:8:14: DestinationRule Istio-System/Originate_TLS: metadata.labels[\"version\"]: invalid label value \"v1.0-\": want at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
		      "t.yaml:4:9: DestinationRule Istio-System/Originate_TLS: metadata.name: invalid name \"Originate_TLS\": must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"));
}

static void gateway_names_must_be_dns_labels(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: egress.gateway\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 80, name: http, protocol: HTTP}\n"
		"    hosts: [\"*\"]\n",
		"default", -1,
		DIAGS("t.yaml:4:9: Gateway default/egress.gateway: metadata.name: invalid gateway name \"egress.gateway\": Gateway names must be DNS-1123 labels (lowercase letters, digits and '-', at most 63)"));
}

static void unknown_fields_are_errors_with_a_suggestion(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    tls:\n"
		"      mdoe: SIMPLE\n"
		"      sni_name: x\n"
		"      credential_name: c\n"
		"  subset:\n"
		"  - name: v1\n"
		"specs: {}\n",
		"default", -1,
		DIAGS("t.yaml:14:1: DestinationRule default/dr: specs: unknown field (did you mean \"spec\"?)",
		      "t.yaml:9:7: DestinationRule default/dr: spec.trafficPolicy.tls.mdoe: unknown field (did you mean \"mode\"?)",
		      "t.yaml:10:7: DestinationRule default/dr: spec.trafficPolicy.tls.sni_name: unknown field",
		      "t.yaml:11:7: DestinationRule default/dr: spec.trafficPolicy.tls.credential_name: unknown field (did you mean \"credentialName\"?)",
		      "t.yaml:12:3: DestinationRule default/dr: spec.subset: unknown field (did you mean \"subsets\"?)"));
}

static void server_set_metadata_and_status_are_accepted(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"  uid: 5e0c2c6e\n"
		"  resourceVersion: \"1234\"\n"
		"  generation: 2\n"
		"  creationTimestamp: \"2024-06-05T12:46:28Z\"\n"
		"  annotations:\n"
		"    kubectl.kubernetes.io/last-applied-configuration: \"{}\"\n"
		"spec:\n"
		"  host: a.example.com\n"
		"status: {}\n",
		"default", 0,
		NO_DIAGS);
}

static void strings_integers_and_booleans_are_not_interchangeable(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  subsets:\n"
		"  - name: 1\n"
		"    labels: {version: 2}\n"
		"  trafficPolicy:\n"
		"    connectionPool:\n"
		"      tcp: {maxConnections: \"100\"}\n"
		"    portLevelSettings:\n"
		"    - port: {number: \"443\"}\n"
		"      tls: {mode: SIMPLE, sni: true, insecureSkipVerify: \"true\"}\n",
		"default", -1,
		DIAGS("t.yaml:8:11: DestinationRule default/dr: spec.subsets[0].name: want a string, got 1 (write \"1\" to make it a string)",
		      "t.yaml:9:23: DestinationRule default/dr: spec.subsets[0].labels[\"version\"]: want a string, got 2 (write \"2\" to make it a string)",
		      "t.yaml:12:29: DestinationRule default/dr: spec.trafficPolicy.connectionPool.tcp.maxConnections: want an integer, got string \"100\"",
		      "t.yaml:14:22: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0].port.number: want an integer, got string \"443\"",
		      "t.yaml:15:32: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0].tls.sni: want a string, got boolean true (write \"true\" to make it a string)",
		      "t.yaml:15:58: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0].tls.insecureSkipVerify: want a boolean (true or false), got string \"true\""));
}

static void lists_and_maps_must_have_the_right_shape(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: edition.cnn.com\n"
		"  ports: {number: 80}\n"
		"  resolution: [DNS]\n",
		"default", -1,
		DIAGS("t.yaml:6:10: ServiceEntry default/se: spec.hosts: want a list, got string \"edition.cnn.com\"",
		      "t.yaml:7:10: ServiceEntry default/se: spec.ports: want a list, got a map",
		      "t.yaml:8:15: ServiceEntry default/se: spec.resolution: want a string, got a list",
		      "t.yaml:6:10: ServiceEntry default/se: spec.hosts: must not be empty"));
}

static void null_values_mean_not_set(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    tls:\n"
		"    loadBalancer: {simple: ROUND_ROBIN}\n"
		"  subsets:\n"
		"  exportTo: ~\n",
		"default", 0,
		NO_DIAGS);
}

static void enum_values_are_case_sensitive(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    loadBalancer: {simple: round_robin}\n"
		"    tls: {mode: simple}\n",
		"default", -1,
		DIAGS("t.yaml:8:28: DestinationRule default/dr: spec.trafficPolicy.loadBalancer.simple: unknown value \"round_robin\" (want UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)",
		      "t.yaml:9:17: DestinationRule default/dr: spec.trafficPolicy.tls.mode: unknown value \"simple\" (want DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)"));
}

static void port_protocols_are_case_insensitive_but_must_be_known(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  ports:\n"
		"  - {number: 80, name: http, protocol: http}\n"
		"  - {number: 81, name: web, protocol: HTTPX}\n"
		"  resolution: DNS\n",
		"default", -1,
		DIAGS("t.yaml:9:39: ServiceEntry default/se: spec.ports[1].protocol: unknown protocol \"HTTPX\" (want HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, HTTP_PROXY, MONGO, REDIS, MYSQL, TCP, TLS, UDP)"));
}

static void port_numbers_must_be_in_range(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  ports:\n"
		"  - {number: 0, name: zero, protocol: HTTP}\n"
		"  - {number: 65536, name: big, protocol: HTTP, targetPort: -1}\n"
		"  resolution: DNS\n",
		"default", -1,
		DIAGS("t.yaml:8:14: ServiceEntry default/se: spec.ports[0].number: port number 0 must be in the range 1..65535",
		      "t.yaml:9:14: ServiceEntry default/se: spec.ports[1].number: port number 65536 must be in the range 1..65535",
		      "t.yaml:9:60: ServiceEntry default/se: spec.ports[1].targetPort: port number -1 must be in the range 1..65535"));
}

static void weights_must_not_be_negative(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n"
		"      weight: -5\n"
		"    - destination: {host: b.example.com}\n"
		"      weight: 105\n",
		"default", -1,
		DIAGS("t.yaml:10:15: VirtualService default/vs: spec.http[0].route[0].weight: must not be negative (got -5)"));
}

static void a_split_with_zero_total_weight_is_rejected(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n"
		"    - destination: {host: b.example.com}\n"
		"  tcp:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n"
		"      weight: 0\n"
		"    - destination: {host: b.example.com}\n"
		"      weight: 0\n",
		"default", -1,
		DIAGS("t.yaml:9:5: VirtualService default/vs: spec.http[0].route: total destination weight = 0",
		      "t.yaml:13:5: VirtualService default/vs: spec.tcp[0].route: total destination weight = 0"));
}

static void weights_are_relative_and_need_not_sum_to_100(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n"
		"      weight: 60\n"
		"    - destination: {host: b.example.com}\n"
		"      weight: 60\n",
		"default", 0,
		NO_DIAGS);
}

static void service_entry_hosts_must_be_names(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [\"*\", bad_host.example.com, a.123, \"foo*.example.com\", \"*.ok.example.com\"]\n"
		"  resolution: NONE\n",
		"default", -1,
		DIAGS("t.yaml:6:11: ServiceEntry default/se: spec.hosts[0]: invalid host *: a ServiceEntry host cannot be the full wildcard",
		      "t.yaml:6:16: ServiceEntry default/se: spec.hosts[1]: domain name \"bad_host.example.com\" invalid (label \"bad_host\" invalid)",
		      "t.yaml:6:38: ServiceEntry default/se: spec.hosts[2]: domain name \"a.123\" invalid (top level domain \"123\" cannot be all-numeric)",
		      "t.yaml:6:45: ServiceEntry default/se: spec.hosts[3]: domain name \"foo*.example.com\" invalid (label \"foo*\" invalid)"));
}

static void gateway_server_hosts_take_an_optional_namespace(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  selector: {istio: egressgateway}\n"
		"  servers:\n"
		"  - port: {number: 80, name: http, protocol: HTTP}\n"
		"    hosts: [edition.cnn.com, \"default/*.cnn.com\", \"./x.example.com\", \"*/y.example.com\", \"Bad_NS/a.example.com\", short, \"/x.com\", \"*.*.x.com\", \"10.0.0.1\"]\n",
		"default", -1,
		DIAGS("t.yaml:9:89: Gateway default/gw: spec.servers[0].hosts[4]: invalid namespace value \"Bad_NS\" in host \"Bad_NS/a.example.com\" (want \"*\", \".\" or a namespace name)",
		      "t.yaml:9:113: Gateway default/gw: spec.servers[0].hosts[5]: short names (non FQDN) are not allowed: \"short\"",
		      "t.yaml:9:120: Gateway default/gw: spec.servers[0].hosts[6]: config namespace and dnsName in host entry cannot be empty",
		      "t.yaml:9:130: Gateway default/gw: spec.servers[0].hosts[7]: domain name \"*.*.x.com\" invalid (label \"*\" invalid)"));
}

static void mesh_virtual_services_cannot_use_the_full_wildcard(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [\"*\", a.example.com, \"*.example.com\"]\n"
		"  http:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:6:11: VirtualService default/vs: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"));
}

static void gateway_references_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  gateways: [mesh, istio-system/egress, \"ns/\", \"istio-egressgateway.istio-system\", \"Bad/GW_1\"]\n"
		"  http:\n"
		"  - match:\n"
		"    - gateways: [\"*\"]\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:7:41: VirtualService default/vs: spec.gateways[2]: config namespace and gateway name cannot be empty",
		      "t.yaml:7:48: warning: VirtualService default/vs: spec.gateways[3]: using legacy gatewayName format \"istio-egressgateway.istio-system\"; prefer the <namespace>/<name> format: \"istio-system/istio-egressgateway\"",
		      "t.yaml:7:84: VirtualService default/vs: spec.gateways[4]: invalid value for gateway name: \"GW_1\"",
		      "t.yaml:10:18: VirtualService default/vs: spec.http[0].match[0].gateways[0]: invalid gateway name: domain name \"*\" invalid (label \"*\" invalid)"));
}

static void label_keys_and_values_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  selector:\n"
		"    istio: egressgateway\n"
		"    \"-bad\": x\n"
		"    example.com/app: \"has space\"\n"
		"    a/b/c: y\n"
		"  servers:\n"
		"  - port: {number: 80, name: http, protocol: HTTP}\n"
		"    hosts: [\"*\"]\n",
		"default", -1,
		DIAGS("t.yaml:8:5: Gateway default/gw: spec.selector[\"-bad\"]: invalid label key \"-bad\": want [prefix/]name, name at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
		      "t.yaml:9:22: Gateway default/gw: spec.selector[\"example.com/app\"]: invalid label value \"has space\": want at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
		      "t.yaml:10:5: Gateway default/gw: spec.selector[\"a/b/c\"]: invalid label key \"a/b/c\": want [prefix/]name, name at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
		      "t.yaml:10:12: Gateway default/gw: spec.selector[\"a/b/c\"]: want a string, got boolean y (write \"y\" to make it a string)"));
}

static void workload_selectors_reject_wildcards(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  workloadSelector:\n"
		"    matchLabels: {app: \"*\"}\n",
		"default", -1,
		DIAGS("t.yaml:8:24: DestinationRule default/dr: spec.workloadSelector.matchLabels[\"app\"]: wildcard is not supported in selector: \"*\""));
}

static void durations_must_be_at_least_a_millisecond_with_ms_precision(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - timeout: 500us\n"
		"    retries: {attempts: 3, perTryTimeout: 1500us}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - timeout: \"10 s\"\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - timeout: 10\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - timeout: -1s\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:8:14: VirtualService default/vs: spec.http[0].timeout: duration must be at least 1ms (got \"500us\")",
		      "t.yaml:9:43: VirtualService default/vs: spec.http[0].retries.perTryTimeout: only durations to ms precision are supported (got \"1500us\")",
		      "t.yaml:12:14: VirtualService default/vs: spec.http[1].timeout: invalid duration \"10 s\" (want a number with a unit: h, m, s, ms, us, ns, e.g. \"1m30s\")",
		      "t.yaml:15:14: VirtualService default/vs: spec.http[2].timeout: want a duration such as \"10s\" or \"500ms\", got 10",
		      "t.yaml:18:14: VirtualService default/vs: spec.http[3].timeout: duration must be at least 1ms (got \"-1s\")"));
}

static void mutual_origination_needs_a_client_certificate(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    tls:\n"
		"      mode: MUTUAL\n"
		"  subsets:\n"
		"  - name: v1\n"
		"    trafficPolicy:\n"
		"      tls: {mode: MUTUAL, clientCertificate: /etc/certs/cert.pem}\n",
		"default", -1,
		DIAGS("t.yaml:9:7: DestinationRule default/dr: spec.trafficPolicy.tls: mode MUTUAL requires clientCertificate and privateKey, or credentialName",
		      "t.yaml:13:12: DestinationRule default/dr: spec.subsets[0].trafficPolicy.tls: mode MUTUAL requires a privateKey with clientCertificate"));
}

static void credential_name_excludes_files_and_crl(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    portLevelSettings:\n"
		"    - port:\n"
		"        number: 443\n"
		"      tls:\n"
		"        mode: MUTUAL\n"
		"        credentialName: client-credential\n"
		"        caCertificates: /etc/ca.pem\n"
		"        caCrl: /etc/crl.pem\n",
		"default", -1,
		DIAGS("t.yaml:14:25: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0].tls.caCertificates: cannot be set together with credentialName (the credential supplies the certificates, CA and CRL)",
		      "t.yaml:15:16: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0].tls.caCrl: cannot be set together with credentialName (the credential supplies the certificates, CA and CRL)"));
}

static void insecure_skip_verify_excludes_verification_settings(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    tls:\n"
		"      mode: SIMPLE\n"
		"      insecureSkipVerify: true\n"
		"      caCertificates: /etc/ca.pem\n"
		"      subjectAltNames: [a.example.com]\n",
		"default", -1,
		DIAGS("t.yaml:10:27: DestinationRule default/dr: spec.trafficPolicy.tls.insecureSkipVerify: cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is true"));
}

static void istio_mutual_origination_ignores_file_settings(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    tls:\n"
		"      mode: ISTIO_MUTUAL\n"
		"      clientCertificate: /etc/cert.pem\n",
		"default", 0,
		DIAGS("t.yaml:9:7: warning: DestinationRule default/dr: spec.trafficPolicy.tls: mode ISTIO_MUTUAL does not use clientCertificate, privateKey, caCertificates, caCrl or credentialName; they are ignored"));
}

static void gateway_tls_settings_must_match_the_port_and_mode(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 443, name: https, protocol: HTTPS}\n"
		"    hosts: [a.example.com]\n"
		"  - port: {number: 8443, name: mtls, protocol: HTTPS}\n"
		"    hosts: [b.example.com]\n"
		"    tls: {mode: ISTIO_MUTUAL, credentialName: cred, serverCertificate: /c.pem}\n"
		"  - port: {number: 9443, name: simple, protocol: TLS}\n"
		"    hosts: [c.example.com]\n"
		"    tls: {mode: SIMPLE, caCrl: /crl.pem, serverCertificate: /c.pem}\n"
		"  - port: {number: 10443, name: mutual, protocol: HTTPS}\n"
		"    hosts: [d.example.com]\n"
		"    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}\n"
		"  - port: {number: 8080, name: tcp, protocol: TCP}\n"
		"    hosts: [e.example.com]\n"
		"    tls: {mode: SIMPLE, credentialName: x}\n"
		"  - port: {number: 11443, name: versions, protocol: HTTPS}\n"
		"    hosts: [f.example.com]\n"
		"    tls: {mode: SIMPLE, credentialName: x, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}\n",
		"default", -1,
		DIAGS("t.yaml:7:5: Gateway default/gw: spec.servers[0].tls: server must have TLS settings for HTTPS/TLS protocols",
		      "t.yaml:11:72: Gateway default/gw: spec.servers[1].tls.serverCertificate: must not be set with mode ISTIO_MUTUAL (the proxy uses its mesh certificate)",
		      "t.yaml:11:47: Gateway default/gw: spec.servers[1].tls.credentialName: must not be set with mode ISTIO_MUTUAL (the proxy uses its mesh certificate)",
		      "t.yaml:14:32: Gateway default/gw: spec.servers[2].tls.caCrl: CRL is not supported with SIMPLE TLS",
		      "t.yaml:14:10: Gateway default/gw: spec.servers[2].tls: mode SIMPLE requires a privateKey with serverCertificate",
		      "t.yaml:17:10: Gateway default/gw: spec.servers[3].tls: mode MUTUAL requires caCertificates (the client CA bundle), or credentialName",
		      "t.yaml:20:10: Gateway default/gw: spec.servers[4].tls: server cannot have TLS settings for non HTTPS/TLS ports",
		      "t.yaml:23:64: Gateway default/gw: spec.servers[5].tls.minProtocolVersion: TLSV1_3 is higher than maxProtocolVersion TLSV1_2"));
}

static void gateway_http_servers_may_only_redirect_to_https(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 80, name: http, protocol: HTTP}\n"
		"    hosts: [a.example.com]\n"
		"    tls: {httpsRedirect: true}\n"
		"  - port: {number: 8080, name: tcp, protocol: TCP}\n"
		"    hosts: [b.example.com]\n"
		"    tls: {httpsRedirect: true, mode: PASSTHROUGH}\n",
		"default", -1,
		DIAGS("t.yaml:12:10: Gateway default/gw: spec.servers[1].tls: server cannot have TLS settings for non HTTPS/TLS ports",
		      "t.yaml:12:26: warning: Gateway default/gw: spec.servers[1].tls.httpsRedirect: tls.httpsRedirect should only be used with http servers"));
}

static void gateway_servers_need_port_hosts_and_unique_port_names(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 443}\n"
		"  - hosts: [a.example.com]\n"
		"  - port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n"
		"    hosts: [b.example.com]\n"
		"  - port: {number: 81, name: http, protocol: HTTP}\n"
		"    hosts: [c.example.com]\n",
		"default", -1,
		DIAGS("t.yaml:7:5: Gateway default/gw: spec.servers[0]: missing required field \"hosts\"",
		      "t.yaml:7:11: Gateway default/gw: spec.servers[0].port: missing required field \"protocol\"",
		      "t.yaml:7:11: Gateway default/gw: spec.servers[0].port: missing required field \"name\"",
		      "t.yaml:8:5: Gateway default/gw: spec.servers[1]: missing required field \"port\"",
		      "t.yaml:9:64: Gateway default/gw: spec.servers[2].port.targetPort: targetPort has no impact on Gateways",
		      "t.yaml:11:30: Gateway default/gw: spec.servers[3].port.name: port names in servers must be unique: duplicate name http"));
}

static void gateways_need_servers(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: Gateway\n"
		"metadata:\n"
		"  name: gw\n"
		"spec:\n"
		"  selector: {istio: egressgateway}\n",
		"default", -1,
		DIAGS("t.yaml:6:3: Gateway default/gw: spec: missing required field \"servers\""));
}

static void required_fields_of_each_kind_are_reported_together(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  gateways: [mesh]\n",
		"default", -1,
		DIAGS("t.yaml:6:3: VirtualService default/vs: spec: missing required field \"hosts\"",
		      "t.yaml:6:3: VirtualService default/vs: spec: http, tcp or tls must be provided in virtual service"));
}

static void service_entries_need_hosts(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  ports: [{number: 80, protocol: HTTP}]\n",
		"default", -1,
		DIAGS("t.yaml:6:11: ServiceEntry default/se: spec.ports[0]: missing required field \"name\"",
		      "t.yaml:6:3: ServiceEntry default/se: spec: missing required field \"hosts\""));
}

static void destination_rules_need_a_host(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  subsets:\n"
		"  - labels: {version: v1}\n"
		"  - name: Bad_Subset\n"
		"  trafficPolicy: {}\n",
		"default", -1,
		DIAGS("t.yaml:7:5: DestinationRule default/dr: spec.subsets[0]: missing required field \"name\"",
		      "t.yaml:8:11: DestinationRule default/dr: spec.subsets[1].name: subset name is invalid: \"Bad_Subset\" (want a DNS-1123 label: letters, digits and '-', at most 63 characters)",
		      "t.yaml:9:18: DestinationRule default/dr: spec.trafficPolicy: traffic policy must have at least one field",
		      "t.yaml:6:3: DestinationRule default/dr: spec: missing required field \"host\""));
}

static void routes_need_destinations_with_hosts(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - route:\n"
		"    - weight: 100\n"
		"    - destination: {subset: v1, port: {}}\n"
		"  - match: [{uri: {prefix: /x}}]\n"
		"  tls:\n"
		"  - route: []\n",
		"default", -1,
		DIAGS("t.yaml:9:7: VirtualService default/vs: spec.http[0].route[0]: missing required field \"destination\"",
		      "t.yaml:10:39: VirtualService default/vs: spec.http[0].route[1].destination.port: missing required field \"number\"",
		      "t.yaml:10:20: VirtualService default/vs: spec.http[0].route[1].destination: missing required field \"host\"",
		      "t.yaml:11:5: VirtualService default/vs: spec.http[1]: missing required field \"route\"",
		      "t.yaml:13:5: VirtualService default/vs: spec.tls[0]: missing required field \"match\"",
		      "t.yaml:13:12: VirtualService default/vs: spec.tls[0].route: must not be empty"));
}

static void dns_resolution_needs_fully_qualified_hosts(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [\"*.example.com\", api.example.com]\n"
		"  ports:\n"
		"  - {number: 443, name: tls, protocol: TLS}\n"
		"  - {number: 5432, name: db, protocol: TCP}\n"
		"  resolution: DNS\n",
		"default", -1,
		DIAGS("t.yaml:6:11: ServiceEntry default/se: spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS",
		      "t.yaml:9:40: ServiceEntry default/se: spec.ports[1].protocol: multiple hosts provided with non-HTTP, non-TLS ports"));
}

static void static_endpoints_must_be_ips_on_declared_ports(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [api.example.com]\n"
		"  ports:\n"
		"  - {number: 443, name: https, protocol: HTTPS}\n"
		"  - {number: 443, name: https, protocol: HTTPS}\n"
		"  resolution: STATIC\n"
		"  endpoints:\n"
		"  - address: api.example.com\n"
		"    ports: {https: 8443, admin: 9000}\n"
		"  - address: 10.0.0.1\n"
		"    labels: {version: v1}\n",
		"default", -1,
		DIAGS("t.yaml:9:25: ServiceEntry default/se: spec.ports[1].name: service entry port name \"https\" already defined",
		      "t.yaml:9:14: ServiceEntry default/se: spec.ports[1].number: service entry port 443 already defined",
		      "t.yaml:12:14: ServiceEntry default/se: spec.endpoints[0].address: endpoint address \"api.example.com\" is not a valid IP address (resolution STATIC)",
		      "t.yaml:13:26: ServiceEntry default/se: spec.endpoints[0].ports[\"admin\"]: endpoint port 9000 (admin) is not defined by the service entry"));
}

static void none_resolution_takes_no_endpoints(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1alpha3\n"
		"kind: ServiceEntry\n"
		"metadata:\n"
		"  name: se\n"
		"spec:\n"
		"  hosts: [api.example.com]\n"
		"  addresses: [10.0.0.0/8, 300.1.1.1]\n"
		"  resolution: NONE\n"
		"  endpoints:\n"
		"  - address: 10.0.0.1\n",
		"default", -1,
		DIAGS("t.yaml:7:27: ServiceEntry default/se: spec.addresses[1]: \"300.1.1.1\" is not a valid IP address or CIDR block",
		      "t.yaml:10:3: ServiceEntry default/se: spec.endpoints: no endpoints should be provided for resolution type NONE"));
}

static void http_route_actions_must_not_conflict(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n"
		"    redirect: {uri: /new}\n"
		"    rewrite: {uri: /x}\n"
		"  - redirect: {redirectCode: 200, scheme: ftp}\n"
		"  - rewrite: {}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - fault: {}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - fault: {abort: {httpStatus: 700, percentage: {value: 150}}, delay: {exponentialDelay: 1s}}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:10:15: VirtualService default/vs: spec.http[0].redirect: HTTP route cannot contain both route and redirect",
		      "t.yaml:10:15: VirtualService default/vs: spec.http[0].redirect: HTTP route rule cannot contain both rewrite and redirect",
		      "t.yaml:12:30: VirtualService default/vs: spec.http[1].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx",
		      "t.yaml:12:43: VirtualService default/vs: spec.http[1].redirect.scheme: invalid redirect scheme, must be \"http\" or \"https\"",
		      "t.yaml:13:14: VirtualService default/vs: spec.http[2].rewrite: rewrite must specify at least one of uri, uriRegexRewrite or authority",
		      "t.yaml:16:12: VirtualService default/vs: spec.http[3].fault: HTTP fault injection must have an abort and/or a delay",
		      "t.yaml:19:58: VirtualService default/vs: spec.http[4].fault.abort.percentage.value: must be between 0 and 100 (got 150)",
		      "t.yaml:19:33: VirtualService default/vs: spec.http[4].fault.abort.httpStatus: HTTP status 700 is not in range 200-599",
		      "t.yaml:19:91: VirtualService default/vs: spec.http[4].fault.delay.exponentialDelay: exponentialDelay not supported yet"));
}

/* directResponse: bytes are base64 decoded at decode time (NULs kept); a delay or abort
 * without a percentage never fires (Istio's API) and says so; percent is deprecated. */
static void direct_responses_and_fault_percentages(void **state)
{
	struct decoded x;
	const struct vs_http_route *h;

	(void)state;
	decode_text(&x, "t.yaml",
	            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	            "spec:\n  hosts: [a.example.com]\n  http:\n"
	            "  - directResponse: {status: 200, body: {bytes: AAFiaW4=}}\n"
	            "  - fault: {delay: {fixedDelay: 1s}, abort: {httpStatus: 503}}\n"
	            "    route: [{destination: {host: a.example.com}}]\n"
	            "  - fault: {delay: {fixedDelay: 1s, percent: 5}}\n"
	            "    route: [{destination: {host: a.example.com}}]\n",
	            "default");
	assert_int_equal(x.rc[0], 0);
	assert_diags(&x.d, DIAGS(
		"t.yaml:8:20: warning: VirtualService default/vs: spec.http[1].fault.delay: no "
		"percentage: no request will be delayed (Istio's default; percentage.value: 100 "
		"delays all)",
		"t.yaml:8:45: warning: VirtualService default/vs: spec.http[1].fault.abort: no "
		"percentage: no request will be aborted (Istio's default; percentage.value: 100 "
		"aborts all)",
		"t.yaml:10:46: warning: VirtualService default/vs: spec.http[2].fault.delay.percent: "
		"using deprecated setting \"percent\", use \"percentage\" instead"));
	h = &x.r[0].u.vs->http.v[0];
	assert_int_equal(h->direct_response->status, 200);
	assert_int_equal(h->direct_response->body->bytes_len, 5);
	assert_memory_equal(h->direct_response->body->bytes, "\0\1bin", 5);
	decoded_free(&x);
}

static void retry_policies_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - retries: {perTryTimeout: 2s, retryOn: \"5xx,gateway-error,503,bogus\"}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:8:43: VirtualService default/vs: spec.http[0].retries.retryOn: \"bogus\" is not a valid retryOn policy",
		      "t.yaml:8:14: VirtualService default/vs: spec.http[0].retries.attempts: http retry policy configured when attempts are set to 0 (disabled)"));
}

static void header_operations_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [a.example.com]\n"
		"  http:\n"
		"  - headers:\n"
		"      request:\n"
		"        set: {\":path\": /x, host: b.example.com, x-ok: \"100%%\"}\n"
		"        add: {x-bad: \"50% off\"}\n"
		"      response:\n"
		"        remove: [Host, \":status\"]\n"
		"    rewrite: {authority: c.example.com}\n"
		"    match:\n"
		"    - headers: {\"bad header\": {exact: x}, \":authority\": {prefix: \"\"}}\n"
		"      withoutHeaders: {x-gone: {}}\n"
		"      uri: {prefix: \"\"}\n"
		"      method: {exact: GET, regex: \"G.*\"}\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:10:15: VirtualService default/vs: spec.http[0].headers.request.set[\":path\"]: invalid header \":path\": header cannot have \":\" prefix",
		      "t.yaml:11:22: VirtualService default/vs: spec.http[0].headers.request.add[\"x-bad\"]: header value \"50% off\" is invalid: '%' must start a %VARIABLE% or be written as %%",
		      "t.yaml:13:18: VirtualService default/vs: spec.http[0].headers.response.remove[0]: invalid header \"Host\": cannot set Host header",
		      "t.yaml:13:24: VirtualService default/vs: spec.http[0].headers.response.remove[1]: invalid header \":status\": header cannot have \":\" prefix",
		      "t.yaml:16:17: VirtualService default/vs: spec.http[0].match[0].headers[\"bad header\"]: header name bad header is not a valid header name",
		      "t.yaml:16:66: VirtualService default/vs: spec.http[0].match[0].headers[\":authority\"].prefix: prefix string match should not be empty",
		      "t.yaml:19:15: VirtualService default/vs: spec.http[0].match[0].method: only one of exact, prefix or regex may be set",
		      "t.yaml:9:7: VirtualService default/vs: spec.http[0].headers: authority header cannot be set multiple times: have \"c.example.com\", attempting to set \"b.example.com\""));
}

static void tls_routes_match_sni_within_the_hosts(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [\"*.example.com\"]\n"
		"  gateways: [mesh]\n"
		"  tls:\n"
		"  - match:\n"
		"    - sniHosts: [a.example.com, other.org]\n"
		"      port: 443\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - match:\n"
		"    - port: 443\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n"
		"  - route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:15:7: VirtualService default/vs: spec.tls[1].match[0]: missing required field \"sniHosts\"",
		      "t.yaml:18:5: VirtualService default/vs: spec.tls[2]: missing required field \"match\"",
		      "t.yaml:10:33: VirtualService default/vs: spec.tls[0].match[0].sniHosts[1]: SNI host \"other.org\" is not a compatible subset of any of the virtual service hosts: [*.example.com]"));
}

static void subsets_and_policies_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    connectionPool: {}\n"
		"    outlierDetection: {maxEjectionPercent: 150, consecutiveLocalOriginFailures: 3, consecutiveErrors: 5}\n"
		"    portLevelSettings:\n"
		"    - port: {number: 80}\n"
		"    - loadBalancer: {simple: RANDOM}\n"
		"  subsets:\n"
		"  - name: v1\n"
		"  - name: v1\n"
		"    trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}\n",
		"default", -1,
		DIAGS("t.yaml:8:21: DestinationRule default/dr: spec.trafficPolicy.connectionPool: connection pool must have at least one field",
		      "t.yaml:9:44: DestinationRule default/dr: spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100 (got 150)",
		      "t.yaml:9:81: DestinationRule default/dr: spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
		      "t.yaml:9:103: warning: DestinationRule default/dr: spec.trafficPolicy.outlierDetection.consecutiveErrors: outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
		      "t.yaml:11:7: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[0]: port traffic policy must have at least one field",
		      "t.yaml:12:7: DestinationRule default/dr: spec.trafficPolicy.portLevelSettings[1]: missing required field \"port\"",
		      "t.yaml:16:44: DestinationRule default/dr: spec.subsets[1].trafficPolicy.connectionPool.http: useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
		      "t.yaml:15:11: DestinationRule default/dr: spec.subsets[1].name: duplicate subset names: v1"));
}

static void export_to_values_are_checked(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  exportTo: [\".\", default, \"*\", Bad_NS, \"~\"]\n",
		"default", -1,
		DIAGS("t.yaml:7:33: DestinationRule default/dr: spec.exportTo[3]: invalid exportTo value \"Bad_NS\" (want \".\", \"*\" or a namespace name)",
		      "t.yaml:7:41: DestinationRule default/dr: spec.exportTo[4]: invalid exportTo value \"~\" (want \".\", \"*\" or a namespace name)",
		      "t.yaml:7:19: DestinationRule default/dr: spec.exportTo[1]: duplicate entries in exportTo: . and current namespace default",
		      "t.yaml:7:13: DestinationRule default/dr: spec.exportTo: cannot have both public (*) and non-public exportTo values for a resource",
		      "t.yaml:7:13: DestinationRule default/dr: spec.exportTo: cannot export service entry to no one (~) and someone"));
}

static void unsupported_istio_fields_are_warned_about_and_ignored(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1beta1\n"
		"kind: DestinationRule\n"
		"metadata:\n"
		"  name: dr\n"
		"spec:\n"
		"  host: a.example.com\n"
		"  trafficPolicy:\n"
		"    loadBalancer:\n"
		"      localityLbSetting: {enabled: true}\n",
		"default", 0,
		DIAGS("t.yaml:9:7: warning: DestinationRule default/dr: spec.trafficPolicy.loadBalancer.localityLbSetting: not supported by egressgw; ignored"));
}

static void secret_values_that_are_not_base64_name_the_key_only(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata:\n"
		"  name: cred\n"
		"  namespace: istio-system\n"
		"type: kubernetes.io/tls\n"
		"data:\n"
		"  tls.crt: aGVsbG8=\n"
		"  ca.crt: \"c2VjcmV0!c2VjcmV0\"\n"
		"  bad key: eA==\n"
		"  short: eA=\n",
		"default", -1,
		DIAGS("t.yaml:9:11: Secret istio-system/cred: data[\"ca.crt\"]: value is not valid base64 (first bad character at offset 8)",
		      "t.yaml:10:3: Secret istio-system/cred: data[\"bad key\"]: invalid key \"bad key\": must consist of letters, digits, '-', '_' or '.' (at most 253)",
		      "t.yaml:11:10: Secret istio-system/cred: data[\"short\"]: value is not valid base64 (first bad character at offset 3)",
		      "t.yaml:8:3: Secret istio-system/cred: data[\"tls.key\"]: required for type kubernetes.io/tls"));
}

static void tls_secrets_need_a_certificate_and_a_key(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: v1\n"
		"kind: Secret\n"
		"metadata:\n"
		"  name: cred\n"
		"  namespace: istio-system\n"
		"type: kubernetes.io/tls\n"
		"data:\n"
		"  tls.crt: aGVsbG8=\n"
		"extra: 1\n",
		"default", -1,
		DIAGS("t.yaml:9:1: Secret istio-system/cred: extra: unknown field",
		      "t.yaml:8:3: Secret istio-system/cred: data[\"tls.key\"]: required for type kubernetes.io/tls"));
}

static void gateway_virtual_services_accept_auto_passthrough_sni_hosts(void **state)
{
	(void)state;
	expect_decode(
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata:\n"
		"  name: vs\n"
		"spec:\n"
		"  hosts: [\"outbound_.443_._.a.example.com\", outbound_, \"outbound_.x_._.a.example.com\"]\n"
		"  gateways: [istio-system/gw]\n"
		"  tls:\n"
		"  - match:\n"
		"    - sniHosts: [\"outbound_.443_._.a.example.com\"]\n"
		"    route:\n"
		"    - destination: {host: a.example.com}\n",
		"default", -1,
		DIAGS("t.yaml:6:45: VirtualService default/vs: spec.hosts[1]: invalid auto-generated SNI "
		      "host (want outbound_.<PORT>_._.<HOSTNAME>)",
		      "t.yaml:6:56: VirtualService default/vs: spec.hosts[2]: invalid auto-generated SNI "
		      "host (want outbound_.<PORT>_._.<HOSTNAME>)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(kinds_are_found_by_every_kubectl_name),
		cmocka_unit_test(kind_table_lists_names_and_groups),
		cmocka_unit_test(walkthrough_service_entry_decodes),
		cmocka_unit_test(walkthrough_gateway_and_sidecar_rule_for_cnn_decode),
		cmocka_unit_test(walkthrough_virtual_service_and_origination_rule_for_cnn_decode),
		cmocka_unit_test(walkthrough_gateway_and_sidecar_rule_for_nginx_decode),
		cmocka_unit_test(walkthrough_virtual_service_for_nginx_decodes),
		cmocka_unit_test(walkthrough_mutual_origination_rule_decodes_in_the_given_namespace),
		cmocka_unit_test(walkthrough_kubernetes_workloads_are_not_istio_configuration),
		cmocka_unit_test(durations_are_read_as_go_durations_into_milliseconds),
		cmocka_unit_test(null_values_leave_fields_unset),
		cmocka_unit_test(protocols_decode_case_insensitively),
		cmocka_unit_test(http_routes_keep_every_supported_field),
		cmocka_unit_test(unapplied_fields_are_warned_at_the_field),
		cmocka_unit_test(secret_data_is_base64_decoded_and_string_data_wins),
		cmocka_unit_test(unsupported_fields_do_not_make_routes_invalid),
		cmocka_unit_test(empty_documents_are_not_resources),
		cmocka_unit_test(host_patterns_match_like_istio),
		cmocka_unit_test(walkthrough_references_all_resolve),
		cmocka_unit_test(references_that_do_not_resolve_are_warnings_at_the_reference),
		cmocka_unit_test(unknown_kinds_are_rejected_with_the_supported_list),
		cmocka_unit_test(api_version_must_be_one_of_the_kind),
		cmocka_unit_test(kind_is_required_to_decode),
		cmocka_unit_test(document_must_be_a_map),
		cmocka_unit_test(metadata_name_and_namespace_are_checked),
		cmocka_unit_test(gateway_names_must_be_dns_labels),
		cmocka_unit_test(unknown_fields_are_errors_with_a_suggestion),
		cmocka_unit_test(server_set_metadata_and_status_are_accepted),
		cmocka_unit_test(strings_integers_and_booleans_are_not_interchangeable),
		cmocka_unit_test(lists_and_maps_must_have_the_right_shape),
		cmocka_unit_test(null_values_mean_not_set),
		cmocka_unit_test(enum_values_are_case_sensitive),
		cmocka_unit_test(port_protocols_are_case_insensitive_but_must_be_known),
		cmocka_unit_test(port_numbers_must_be_in_range),
		cmocka_unit_test(weights_must_not_be_negative),
		cmocka_unit_test(a_split_with_zero_total_weight_is_rejected),
		cmocka_unit_test(weights_are_relative_and_need_not_sum_to_100),
		cmocka_unit_test(service_entry_hosts_must_be_names),
		cmocka_unit_test(gateway_server_hosts_take_an_optional_namespace),
		cmocka_unit_test(mesh_virtual_services_cannot_use_the_full_wildcard),
		cmocka_unit_test(gateway_references_are_checked),
		cmocka_unit_test(label_keys_and_values_are_checked),
		cmocka_unit_test(workload_selectors_reject_wildcards),
		cmocka_unit_test(durations_must_be_at_least_a_millisecond_with_ms_precision),
		cmocka_unit_test(mutual_origination_needs_a_client_certificate),
		cmocka_unit_test(credential_name_excludes_files_and_crl),
		cmocka_unit_test(insecure_skip_verify_excludes_verification_settings),
		cmocka_unit_test(istio_mutual_origination_ignores_file_settings),
		cmocka_unit_test(gateway_tls_settings_must_match_the_port_and_mode),
		cmocka_unit_test(gateway_http_servers_may_only_redirect_to_https),
		cmocka_unit_test(gateway_servers_need_port_hosts_and_unique_port_names),
		cmocka_unit_test(gateways_need_servers),
		cmocka_unit_test(required_fields_of_each_kind_are_reported_together),
		cmocka_unit_test(service_entries_need_hosts),
		cmocka_unit_test(destination_rules_need_a_host),
		cmocka_unit_test(routes_need_destinations_with_hosts),
		cmocka_unit_test(dns_resolution_needs_fully_qualified_hosts),
		cmocka_unit_test(static_endpoints_must_be_ips_on_declared_ports),
		cmocka_unit_test(none_resolution_takes_no_endpoints),
		cmocka_unit_test(http_route_actions_must_not_conflict),
		cmocka_unit_test(direct_responses_and_fault_percentages),
		cmocka_unit_test(retry_policies_are_checked),
		cmocka_unit_test(header_operations_are_checked),
		cmocka_unit_test(tls_routes_match_sni_within_the_hosts),
		cmocka_unit_test(subsets_and_policies_are_checked),
		cmocka_unit_test(export_to_values_are_checked),
		cmocka_unit_test(unsupported_istio_fields_are_warned_about_and_ignored),
		cmocka_unit_test(secret_values_that_are_not_base64_name_the_key_only),
		cmocka_unit_test(tls_secrets_need_a_certificate_and_a_key),
		cmocka_unit_test(gateway_virtual_services_accept_auto_passthrough_sni_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
