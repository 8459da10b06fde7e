/* Tests for proxy/l4route: address prefixes, and the lookup of tls:/tcp: routes on tables
 * built by hand: SNI with wildcards, port, destinationSubnets, tls before tcp, first hit
 * wins, a route without matches, and destinations picked by weight; and the compiler
 * (snap_l4.c) through snap_build on a store: istio.io's "Egress Gateways" HTTPS YAML in
 * both roles, match.gateways overriding the VirtualService's, sourceLabels decided per
 * proxy, sourceSubnet matched against the source address, a gateway tcp: route without
 * matches. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config/store.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "proxy/l4route.h"
#include "proxy/snap.h"

/* The snapshot's /config_dump (rendered on request); valid until the next call. */
static const char *dump_of(const struct snap *s)
{
	static struct sbuf b = SBUF_INIT;

	sbuf_reset(&b);
	snap_config_dump(s, &b);
	return sbuf_str(&b);
}

static void test_cidr(void **state)
{
	struct l4_cidr c;
	struct sock_addr a;

	(void)state;
	assert_int_equal(l4_cidr_parse("10.0.0.0/8", &c), 0);
	assert_int_equal(sock_addr_from_ip("10.200.3.4", 443, &a), 0);
	assert_true(l4_cidr_contains(&c, &a));
	assert_int_equal(sock_addr_from_ip("11.0.0.1", 443, &a), 0);
	assert_false(l4_cidr_contains(&c, &a));
	/* Bits that do not fall on a byte boundary. */
	assert_int_equal(l4_cidr_parse("192.168.4.0/22", &c), 0);
	assert_int_equal(sock_addr_from_ip("192.168.7.255", 1, &a), 0);
	assert_true(l4_cidr_contains(&c, &a));
	assert_int_equal(sock_addr_from_ip("192.168.8.0", 1, &a), 0);
	assert_false(l4_cidr_contains(&c, &a));
	/* A bare address is a /32; another family never matches. */
	assert_int_equal(l4_cidr_parse("127.0.0.5", &c), 0);
	assert_int_equal(c.bits, 32);
	assert_int_equal(sock_addr_from_ip("::1", 1, &a), 0);
	assert_false(l4_cidr_contains(&c, &a));
	assert_int_equal(l4_cidr_parse("2001:db8::/32", &c), 0);
	assert_int_equal(sock_addr_from_ip("2001:db8:1::7", 1, &a), 0);
	assert_true(l4_cidr_contains(&c, &a));
	assert_int_equal(l4_cidr_parse("0.0.0.0/0", &c), 0);
	assert_int_equal(sock_addr_from_ip("8.8.8.8", 1, &a), 0);
	assert_true(l4_cidr_contains(&c, &a));
	/* An IPv4 peer on a dual-stack listener (::ffff:a.b.c.d) is matched as IPv4. */
	assert_int_equal(l4_cidr_parse("10.0.0.0/8", &c), 0);
	assert_int_equal(sock_addr_from_ip("::ffff:10.1.2.3", 1, &a), 0);
	assert_true(l4_cidr_contains(&c, &a));
	assert_int_equal(sock_addr_from_ip("::ffff:11.1.2.3", 1, &a), 0);
	assert_false(l4_cidr_contains(&c, &a));
	assert_int_equal(sock_addr_from_ip("::10.1.2.3", 1, &a), 0);     /* not mapped */
	assert_false(l4_cidr_contains(&c, &a));
	/* Not prefixes. */
	assert_int_equal(l4_cidr_parse("10.0.0.0/33", &c), -1);
	assert_int_equal(l4_cidr_parse("10.0.0.0/", &c), -1);
	assert_int_equal(l4_cidr_parse("host.example/8", &c), -1);
	assert_int_equal(l4_cidr_parse("", &c), -1);
}

/* A route with one match (hosts NULL-terminated; port; subnet or NULL) to one cluster. */
static void add_route(struct l4_table *t, bool tls, const char *const *hosts, uint16_t port,
                      const char *subnet, const char *cluster)
{
	struct l4_route *r;
	struct l4_match *m;

	t->routes = xrealloc(t->routes, (t->nroutes + 1) * sizeof(*t->routes));
	r = &t->routes[t->nroutes++];
	memset(r, 0, sizeof(*r));
	r->tls = tls;
	r->vs = xstrdup("default/vs");
	if (hosts || port || subnet) {
		r->matches = xcalloc(1, sizeof(*r->matches));
		r->nmatches = 1;
		m = &r->matches[0];
		m->port = port;
		m->hosts = xcalloc(8, sizeof(*m->hosts));
		for (size_t i = 0; hosts && hosts[i]; i++)
			m->hosts[m->nhosts++] = xstrdup(hosts[i]);
		if (subnet) {
			m->subnets = xcalloc(1, sizeof(*m->subnets));
			assert_int_equal(l4_cidr_parse(subnet, &m->subnets[0]), 0);
			m->nsubnets = 1;
		}
	}
	r->dests = xcalloc(1, sizeof(*r->dests));
	r->dests[0].cluster_name = xstrdup(cluster);
	r->dests[0].weight = 100;
	r->ndests = 1;
	r->total_weight = 100;
}

/* src_ip: the connection's source (sourceSubnet), or NULL. */
static const char *lookup_from(const struct l4_table *t, const char *sni, const char *host,
                               uint16_t port, const char *dst_ip, const char *src_ip)
{
	struct l4_req q = { .sni = sni, .host = host, .port = port };
	struct sock_addr a, src;
	const struct l4_route *r;

	if (dst_ip) {
		assert_int_equal(sock_addr_from_ip(dst_ip, port, &a), 0);
		q.dst = &a;
	}
	if (src_ip) {
		assert_int_equal(sock_addr_from_ip(src_ip, 40000, &src), 0);
		q.src = &src;
	}
	r = l4_lookup(t, &q);
	return r ? r->dests[0].cluster_name : NULL;
}

static const char *lookup(const struct l4_table *t, const char *sni, const char *host,
                          uint16_t port, const char *dst_ip)
{
	return lookup_from(t, sni, host, port, dst_ip, NULL);
}

static void test_lookup(void **state)
{
	struct l4_table *t = xcalloc(1, sizeof(*t));
	static const char *const cnn[] = { "edition.cnn.com", NULL };
	static const char *const wiki[] = { "*.wikipedia.org", NULL };
	static const char *const echo[] = { "tcp-echo.test", NULL };

	(void)state;
	t->name = xstrdup("mesh");
	/* In table order a tcp route comes first: tls routes are still tried first. */
	add_route(t, false, echo, 9000, NULL, "tcp-echo");
	add_route(t, true, cnn, 443, NULL, "gw-cnn");
	add_route(t, true, wiki, 0, NULL, "gw-wiki");
	add_route(t, false, NULL, 0, "10.1.0.0/16", "subnet");
	add_route(t, true, cnn, 0, NULL, "cnn-any-port");

	assert_string_equal(lookup(t, "edition.cnn.com", "edition.cnn.com", 443, NULL), "gw-cnn");
	/* Another port: the later route without a port. */
	assert_string_equal(lookup(t, "edition.cnn.com", "edition.cnn.com", 8443, NULL),
	                    "cnn-any-port");
	/* Wildcards cover one or more labels, not the bare domain. */
	assert_string_equal(lookup(t, "en.wikipedia.org", NULL, 443, NULL), "gw-wiki");
	assert_string_equal(lookup(t, "a.b.wikipedia.org", NULL, 443, NULL), "gw-wiki");
	assert_null(lookup(t, "wikipedia.org", NULL, 443, NULL));
	/* No SNI: no tls route; tcp routes by host and by destination address. */
	assert_null(lookup(t, NULL, "edition.cnn.com", 443, NULL));
	assert_string_equal(lookup(t, NULL, "tcp-echo.test", 9000, NULL), "tcp-echo");
	assert_null(lookup(t, NULL, "tcp-echo.test", 9001, NULL));
	assert_string_equal(lookup(t, NULL, NULL, 5432, "10.1.2.3"), "subnet");
	assert_null(lookup(t, NULL, NULL, 5432, "10.2.2.3"));
	/* A TLS connection no tls route takes may still be a tcp route's. */
	assert_string_equal(lookup(t, "other.example", "tcp-echo.test", 9000, NULL), "tcp-echo");
	assert_true(l4_table_has_port(t, 443));
	l4_table_free(t);

	/* A gateway tcp route without matches takes everything; an empty table nothing. */
	t = xcalloc(1, sizeof(*t));
	assert_null(lookup(t, NULL, NULL, 9000, NULL));
	assert_false(l4_table_has_port(t, 9000));
	add_route(t, false, NULL, 0, NULL, "all");
	assert_string_equal(lookup(t, NULL, NULL, 9000, NULL), "all");
	assert_true(l4_table_has_port(t, 1));
	l4_table_free(t);
	assert_null(l4_lookup(NULL, &(struct l4_req){ 0 }));
}

static void test_weights(void **state)
{
	struct route_dest d[3] = {
		{ .cluster_name = "a", .weight = 80 },
		{ .cluster_name = "b", .weight = 20 },
		{ .cluster_name = "c", .weight = 0 },
	};
	unsigned n[3] = { 0 };

	(void)state;
	for (uint32_t r = 0; r < 1000; r++)
		n[route_pick_weighted(d, 3, 100, r * 2654435761u) - d]++;
	assert_in_range(n[0], 750, 850);
	assert_in_range(n[1], 150, 250);
	assert_int_equal(n[2], 0);
	assert_null(route_pick_weighted(d, 0, 0, 1));
	/* All weights 0 (a single destination given none): the first. */
	assert_ptr_equal(route_pick_weighted(d + 2, 1, 0, 7), d + 2);
}

/* ---- the compiler, through snap_build ---- */

static const char page_yaml[] =
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: ServiceEntry\n"
	"metadata: {name: cnn}\n"
	"spec:\n"
	"  hosts: [edition.cnn.com]\n"
	"  ports: [{number: 443, name: tls, protocol: TLS}]\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: Gateway\n"
	"metadata: {name: istio-egressgateway}\n"
	"spec:\n"
	"  selector: {istio: egressgateway}\n"
	"  servers:\n"
	"  - port: {number: 443, name: tls, protocol: TLS}\n"
	"    hosts: [edition.cnn.com]\n"
	"    tls: {mode: PASSTHROUGH}\n"
	"  - port: {number: 9000, name: tcp, protocol: TCP}\n"
	"    hosts: [\"*\"]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: DestinationRule\n"
	"metadata: {name: egressgateway-for-cnn}\n"
	"spec:\n"
	"  host: istio-egressgateway.istio-system.svc.cluster.local\n"
	"  subsets: [{name: cnn}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1alpha3\n"
	"kind: VirtualService\n"
	"metadata: {name: direct-cnn-through-egress-gateway}\n"
	"spec:\n"
	"  hosts: [edition.cnn.com]\n"
	"  gateways: [istio-egressgateway]\n"
	"  tls:\n"
	"  - match: [{gateways: [mesh], port: 443, sniHosts: [edition.cnn.com]}]\n"
	"    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local,\n"
	"             subset: cnn, port: {number: 443}}}]\n"
	"  - match: [{gateways: [istio-egressgateway], port: 443, sniHosts: [edition.cnn.com]}]\n"
	"    route: [{destination: {host: edition.cnn.com}}]\n"
	"  - match: [{gateways: [mesh], sniHosts: [edition.cnn.com], sourceLabels: {app: other}}]\n"
	"    route: [{destination: {host: nowhere.example, port: {number: 443}}}]\n"
	"  tcp:\n"
	"  - match: [{gateways: [mesh], port: 5432, sourceSubnet: 10.0.0.0/8}]\n"
	"    route: [{destination: {host: db.example, port: {number: 5432}}}]\n"
	"  - route: [{destination: {host: edition.cnn.com, port: {number: 443}}}]\n";

static struct snap *build_page(enum snap_role role, struct diags *d,
                               struct store_contents *sc)
{
	static const char *gw_labels[] = { "istio=egressgateway", NULL };
	static const char *sc_labels[] = { "app=sleep", NULL };
	char root[] = "/tmp/test_l4route.XXXXXX";
	char *path, *cmd;
	struct snap_params p;
	struct snap *s;

	assert_non_null(mkdtemp(root));
	path = xasprintf("%s/config/page.yaml", root);
	cmd = xasprintf("%s/config", root);
	assert_int_equal(mkdir_p(cmd, 0700), 0);
	assert_int_equal(file_write_atomic(path, page_yaml, strlen(page_yaml), 0600), 0);
	assert_int_equal(store_load(root, "default", sc, d), 0);
	memset(&p, 0, sizeof(p));
	p.role = role;
	p.namespace = role == SNAP_ROLE_GATEWAY ? "istio-system" : "default";
	p.labels = role == SNAP_ROLE_GATEWAY ? gw_labels : sc_labels;
	p.listen_address = "127.0.0.1";
	p.store_root = root;
	s = snap_build(sc, &p, d);
	if (!s)
		diags_print(d, stderr);
	assert_non_null(s);
	free(path);
	free(cmd);
	cmd = xasprintf("rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	return s;
}

static bool warned(const struct diags *d, const char *text)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].level == DIAG_WARNING && strstr(d->v[i].msg, text))
			return true;
	return false;
}

/* Istio's AUTO_PASSTHROUGH SNIs: outbound_.PORT_.SUBSET_.HOST. */
static void test_auto_sni(void **state)
{
	char sub[64], host[64];
	uint16_t port = 0;

	(void)state;
	assert_int_equal(l4_auto_sni_parse("outbound_.443_._.Edition.CNN.com", &port, sub,
	                                   sizeof(sub), host, sizeof(host)), 0);
	assert_int_equal(port, 443);
	assert_string_equal(sub, "");
	assert_string_equal(host, "edition.cnn.com");
	assert_int_equal(l4_auto_sni_parse("outbound_.9080_.v1_.reviews.default.svc.cluster.local",
	                                   &port, sub, sizeof(sub), host, sizeof(host)), 0);
	assert_int_equal(port, 9080);
	assert_string_equal(sub, "v1");
	assert_string_equal(host, "reviews.default.svc.cluster.local");
	assert_int_equal(l4_auto_sni_parse("edition.cnn.com", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse("outbound_.0_._.x", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse("outbound_.70000_._.x", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse("outbound_.443_._.", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse("outbound_.443_.v1", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse("inbound_.443_._.x", &port, sub, sizeof(sub), host,
	                                   sizeof(host)), -1);
	assert_int_equal(l4_auto_sni_parse(NULL, &port, sub, sizeof(sub), host, sizeof(host)), -1);
	/* A host longer than the buffer is refused, never cut. */
	assert_int_equal(l4_auto_sni_parse("outbound_.443_._.a-very-long-host-name-indeed", &port,
	                                   sub, sizeof(sub), host, 8), -1);
}

static void test_compile_sidecar(void **state)
{
	struct diags d = { 0 };
	struct store_contents sc;
	struct snap *s;
	const struct l4_table *t;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	s = build_page(SNAP_ROLE_SIDECAR, &d, &sc);
	t = s->mesh_l4;
	/* tls[0] (match.gateways [mesh] although the VirtualService names only the Gateway);
	 * tls[1] is the gateway's, tls[2] is for app=other (this proxy is app=sleep); tcp[0]
	 * names mesh; tcp[1] has no match and the VirtualService is not bound to mesh. */
	assert_int_equal(t->nroutes, 2);
	assert_true(t->routes[0].tls);
	assert_int_equal(t->routes[0].index, 0);
	assert_string_equal(t->routes[0].matches[0].hosts[0], "edition.cnn.com");
	assert_int_equal(t->routes[0].matches[0].port, 443);
	assert_string_equal(t->routes[0].dests[0].cluster_name,
	                    "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local");
	assert_non_null(t->routes[0].dests[0].cluster);
	assert_null(t->routes[0].refuse);
	/* tcp[0]: sourceSubnet is applied (the connection's source), not refused. */
	assert_false(t->routes[1].tls);
	assert_null(t->routes[1].refuse);
	assert_true(t->routes[1].matches[0].has_src);
	assert_false(warned(&d, "sourceSubnet"));
	assert_string_equal(lookup_from(t, NULL, "edition.cnn.com", 5432, NULL, "10.9.8.7"),
	                    "outbound|5432||db.example");
	assert_null(lookup_from(t, NULL, "edition.cnn.com", 5432, NULL, "127.0.0.1"));
	assert_null(lookup_from(t, NULL, "edition.cnn.com", 5432, NULL, NULL));
	assert_string_equal(lookup(t, "edition.cnn.com", "edition.cnn.com", 443, NULL),
	                    "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local");
	assert_null(lookup(t, "edition.cnn.com", "edition.cnn.com", 8443, NULL));
	snap_unref(s);
	store_contents_free(&sc);
	diags_free(&d);
}

static void test_compile_gateway(void **state)
{
	struct diags d = { 0 };
	struct store_contents sc;
	struct snap *s;
	const struct snap_listener *l443 = NULL, *l9000 = NULL;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	s = build_page(SNAP_ROLE_GATEWAY, &d, &sc);
	for (size_t i = 0; i < s->nlisteners; i++) {
		if (s->listeners[i].port == 443)
			l443 = &s->listeners[i];
		if (s->listeners[i].port == 9000)
			l9000 = &s->listeners[i];
	}
	assert_non_null(l443);
	assert_non_null(l9000);
	assert_int_equal(l443->l4_mode, SNAP_L4_SNI);
	assert_false(l443->tls);
	/* tls[1] only; its destination without a port takes the ServiceEntry's only one. */
	assert_int_equal(l443->l4->nroutes, 1);
	assert_int_equal(l443->l4->routes[0].index, 1);
	assert_string_equal(l443->l4->routes[0].dests[0].cluster_name,
	                    "outbound|443||edition.cnn.com");
	/* The TCP port: tcp[1], no match, takes everything. */
	assert_int_equal(l9000->l4_mode, SNAP_L4_TCP);
	assert_int_equal(l9000->l4->nroutes, 1);
	assert_int_equal(l9000->l4->routes[0].nmatches, 0);
	assert_string_equal(lookup(l9000->l4, NULL, NULL, 9000, NULL),
	                    "outbound|443||edition.cnn.com");
	assert_null(s->mesh_l4);
	assert_non_null(strstr(dump_of(s), "\"l4_mode\": \"SNI\""));
	snap_unref(s);
	store_contents_free(&sc);
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_weights),
		cmocka_unit_test(test_auto_sni),
		cmocka_unit_test(test_compile_sidecar),
		cmocka_unit_test(test_compile_gateway),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
