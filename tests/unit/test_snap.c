/* Tests for proxy/snap: Istio resources in a temporary store -> store_load -> snap_build.
 *
 * The walkthrough's own documents (tests/data/walkthrough, verbatim) in both roles, its
 * mutual-TLS half with the Secret made from the walkthrough's openssl commands, then the
 * rules one at a time: policy precedence, DestinationRule lookup order and exportTo,
 * wildcard hosts, match filtering, discovery types, SNI dispatch (real handshakes over a
 * socketpair), and configurations that must be refused. The mesh identity comes from the
 * project's CA (src/ca: ECDSA P-256, SPIFFE URI SAN). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/ca.h"
#include "config/store.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proxy/l4route.h"
#include "proxy/snap.h"

/* ---- fixtures ---- */

/* The snapshot's /config_dump (rendered on request); valid until the next call. */
static const char *dump_of(const struct snap *s)
{
	static struct sbuf b = SBUF_INIT;

	sbuf_reset(&b);
	snap_config_dump(s, &b);
	return sbuf_str(&b);
}

static char base[64];          /* per-process scratch directory */
static char gw_ident[128];     /* istio-system/istio-egressgateway-service-account */
static char sc_ident[128];     /* default/sleep */
static char certs[128];        /* the walkthrough's openssl output */

static char *wt_dir(void)
{
	/* __FILE__ is tests/unit/test_snap.c, relative to the repository root where make
	 * runs the tests. */
	static char dir[512];
	const char *slash = strrchr(__FILE__, '/');

	snprintf(dir, sizeof(dir), "%.*s/../data/walkthrough", (int)(slash - __FILE__), __FILE__);
	return dir;
}

static __attribute__((noinline)) char *slurp(const char *path)
{
	char *buf;
	size_t len;

	if (file_read_all(path, &buf, &len) < 0)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	return buf;
}

static void make_identity(struct ca *ca, const char *ns, const char *sa, const char *dir)
{
	struct ca_issue_req req = { ns, sa, NULL, 0, 3600 };
	struct ca_leaf leaf;
	struct sbuf err = SBUF_INIT;

	if (ca_issue(ca, &req, &leaf, &err) < 0 || ca_write_workload(ca, &leaf, dir, &err) < 0)
		fail_msg("identity: %s", sbuf_str(&err));
	ca_leaf_fini(&leaf);
	sbuf_free(&err);
}

static int group_setup(void **state)
{
	char cadir[128], cmd[2048];
	struct ca ca;
	struct sbuf err = SBUF_INIT;

	(void)state;
	snprintf(base, sizeof(base), "/tmp/test_snap.XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(cadir, sizeof(cadir), "%s/ca", base);
	snprintf(gw_ident, sizeof(gw_ident), "%s/gw-identity", base);
	snprintf(sc_ident, sizeof(sc_ident), "%s/sleep-identity", base);
	snprintf(certs, sizeof(certs), "%s/certs", base);
	if (ca_create(cadir, NULL, &err) < 0 || ca_load(cadir, &ca, &err) < 0) {
		fprintf(stderr, "ca: %s\n", sbuf_str(&err));
		return -1;
	}
	make_identity(&ca, "istio-system", "istio-egressgateway-service-account", gw_ident);
	make_identity(&ca, "default", "sleep", sc_ident);
	ca_fini(&ca);
	sbuf_free(&err);

	/* The walkthrough's commands, as written there. */
	snprintf(cmd, sizeof(cmd),
	         "set -e; mkdir -p %s; cd %s; exec 2>/dev/null; "
	         "openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com' -keyout example.com.key -out example.com.crt; "
	         "openssl req -out my-nginx.mesh-external.svc.cluster.local.csr -newkey rsa:2048 -nodes -keyout my-nginx.mesh-external.svc.cluster.local.key -subj \"/CN=my-nginx.mesh-external.svc.cluster.local/O=some organization\"; "
	         "openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 0 -in my-nginx.mesh-external.svc.cluster.local.csr -out my-nginx.mesh-external.svc.cluster.local.crt; "
	         "openssl req -out client.example.com.csr -newkey rsa:2048 -nodes -keyout client.example.com.key -subj \"/CN=client.example.com/O=client organization\"; "
	         "openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key -set_serial 1 -in client.example.com.csr -out client.example.com.crt",
	         certs, certs);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

/* One store and what was built from it. */
struct env {
	char root[128];
	struct store_contents contents;
	struct diags d;
	struct snap *s;
};

static int env_setup(void **state)
{
	static int seq;
	struct env *e = xcalloc(1, sizeof(*e));

	snprintf(e->root, sizeof(e->root), "%s/store%d", base, seq++);
	if (mkdir_p(e->root, 0700) < 0)
		return -1;
	*state = e;
	return 0;
}

static void env_reset(struct env *e)
{
	snap_unref(e->s);
	e->s = NULL;
	store_contents_free(&e->contents);
	diags_free(&e->d);
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	char cmd[256];

	env_reset(e);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->root);
	free(e);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(struct env *e, const char *name, const char *text)
{
	char *path = xasprintf("%s/config/%s", e->root, name);
	char *dir = xstrdup(path);

	*strrchr(dir, '/') = '\0';
	assert_int_equal(mkdir_p(dir, 0700), 0);
	assert_int_equal(file_write_atomic(path, text, strlen(text), 0600), 0);
	free(dir);
	free(path);
}

static void del(struct env *e, const char *name)
{
	char *path = xasprintf("%s/config/%s", e->root, name);

	assert_int_equal(unlink(path), 0);
	free(path);
}

/* A walkthrough file into the store; ns (when not NULL) is what `kubectl apply -n NS`
 * records: metadata.namespace. */
static void put_wt(struct env *e, const char *file, const char *ns)
{
	char *path = xasprintf("%s/%s", wt_dir(), file);
	char *text = slurp(path);

	if (ns) {
		struct sbuf b = SBUF_INIT;
		const char *m = strstr(text, "metadata:\n");

		assert_non_null(m);
		sbuf_add(&b, text, (size_t)(m - text) + strlen("metadata:\n"));
		sbuf_addf(&b, "  namespace: %s\n", ns);
		sbuf_adds(&b, m + strlen("metadata:\n"));
		put(e, file, b.s);
		sbuf_free(&b);
	} else {
		put(e, file, text);
	}
	free(text);
	free(path);
}

/* Secret ns/name with keys from files: "key=path" pairs (allocated; freed here),
 * NULL-terminated. */
static void put_secret(struct env *e, const char *ns, const char *name, const char *type, ...)
{
	struct store_secret sec = { NULL, NULL, 0 };
	struct diags d = DIAGS_INIT;
	char *kv;
	va_list ap;

	sec.type = xstrdup(type);
	va_start(ap, type);
	while ((kv = va_arg(ap, char *))) {
		const char *eq = strchr(kv, '=');
		char *key = xstrndup(kv, (size_t)(eq - kv));
		char *text = slurp(eq + 1);

		store_secret_set(&sec, key, text, strlen(text));
		free(text);
		free(key);
		free(kv);
	}
	va_end(ap);
	assert_int_equal(store_put_secret(e->root, ns, name, &sec, &d), 0);
	store_secret_free(&sec);
	diags_free(&d);
}

static const char *certp(const char *name)
{
	static char bufs[8][256];
	static int i;
	char *b = bufs[i++ % 8];

	snprintf(b, 256, "%s/%s", certs, name);
	return b;
}

static void print_diags(const struct diags *d)
{
	diags_print(d, stderr);
}

/* Loads the store and builds; expect_ok says whether a snapshot must come out. */
static struct snap *build(struct env *e, enum snap_role role, const char *ns, const char *ident,
                          bool expect_ok)
{
	static const char *gw_labels[] = { "app=istio-egressgateway", "istio=egressgateway", NULL };
	static const char *sc_labels[] = { "app=sleep", NULL };
	struct snap_params p;

	env_reset(e);
	memset(&p, 0, sizeof(p));
	p.role = role;
	p.namespace = ns;
	p.labels = role == SNAP_ROLE_GATEWAY ? gw_labels : sc_labels;
	p.identity_dir = ident;
	p.listen_address = "0.0.0.0";
	p.store_root = e->root;
	if (store_load(e->root, "default", &e->contents, &e->d) < 0) {
		print_diags(&e->d);
		fail_msg("store_load failed");
	}
	e->s = snap_build(&e->contents, &p, &e->d);
	if (expect_ok && !e->s) {
		print_diags(&e->d);
		fail_msg("snap_build failed");
	}
	if (!expect_ok && e->s)
		fail_msg("snap_build succeeded, expected an error");
	return e->s;
}

static bool diags_contain(const struct diags *d, enum diag_level lvl, const char *text)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].level == lvl && strstr(d->v[i].msg, text))
			return true;
	return false;
}

static const struct route_vhost *vhost(const struct route_table *t, const char *host)
{
	return route_vhost_find(t, host, strlen(host));
}

static const struct route_table *outbound(const struct snap *s, const char *name)
{
	for (size_t i = 0; i < s->noutbound; i++)
		if (strcmp(s->outbound[i]->name, name) == 0)
			return s->outbound[i];
	return NULL;
}

static struct cluster *cl(const struct snap *s, const char *name)
{
	struct cluster *c = snap_cluster_find(s, name);

	if (!c)
		fail_msg("no cluster %s", name);
	return c;
}

/* Clusters sorted, indexed, each found by name; route destinations linked. */
static void check_invariants(const struct snap *s)
{
	for (size_t i = 0; i < s->nclusters; i++) {
		assert_int_equal(s->clusters[i]->index, i);
		if (i)
			assert_true(strcmp(s->clusters[i - 1]->name, s->clusters[i]->name) < 0);
		assert_ptr_equal(snap_cluster_find(s, s->clusters[i]->name), s->clusters[i]);
	}
	assert_null(snap_cluster_find(s, "outbound|1||nope"));
	assert_non_null(dump_of(s));
	/* Never key material in the dump. */
	assert_null(strstr(dump_of(s), "PRIVATE KEY"));
	assert_null(strstr(dump_of(s), "BEGIN"));
}

static void load_cnn(struct env *e)
{
	put_wt(e, "01-serviceentry-cnn.yaml", NULL);
	put_wt(e, "02-gateway-destinationrule-cnn.yaml", NULL);
	put_wt(e, "03-virtualservice-destinationrule-cnn.yaml", NULL);
}

static void load_nginx(struct env *e)
{
	put_wt(e, "04-gateway-destinationrule-nginx.yaml", NULL);
	put_wt(e, "05-virtualservice-nginx.yaml", NULL);
	put_wt(e, "06-destinationrule-originate-mtls-nginx.yaml", "istio-system");
}

/* ---- the walkthrough ---- */

static void gateway_walkthrough_cnn(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct snap_listener *l;
	const struct route_vhost *vh;
	const struct cluster *c;

	load_cnn(e);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	check_invariants(s);
	assert_int_equal(s->role, SNAP_ROLE_GATEWAY);
	assert_int_equal(s->nlisteners, 1);
	l = &s->listeners[0];
	assert_string_equal(l->name, "0.0.0.0_80");
	assert_int_equal(l->port, 80);
	assert_int_equal(sock_addr_port(&l->addr), 80);
	assert_true(l->tls);
	assert_int_equal(l->nservers, 1);
	assert_ptr_equal(l->ctx, l->servers[0].ctx);
	assert_non_null(l->ctx);
	assert_string_equal(l->servers[0].gateway, "default/istio-egressgateway");
	assert_string_equal(l->servers[0].port_name, "https-port-for-tls-origination");
	assert_int_equal(l->servers[0].tls, SNAP_SRV_ISTIO_MUTUAL);
	assert_int_equal(l->servers[0].nhosts, 1);
	assert_string_equal(l->servers[0].hosts[0], "edition.cnn.com");

	assert_string_equal(l->routes->name, "http.80");
	assert_int_equal(l->routes->nvhosts, 1);
	vh = vhost(l->routes, "edition.cnn.com");
	assert_non_null(vh);
	assert_string_equal(vh->name, "edition.cnn.com:80");
	/* The mesh route is filtered out: only the gateway's route remains. */
	assert_int_equal(vh->nroutes, 1);
	assert_string_equal(vh->routes[0].vs, "default/direct-cnn-through-egress-gateway");
	assert_int_equal(vh->routes[0].nmatches, 1);
	assert_int_equal(vh->routes[0].matches[0].port, 80);
	assert_int_equal(vh->routes[0].ndests, 1);
	assert_string_equal(vh->routes[0].dests[0].cluster_name, "outbound|443||edition.cnn.com");
	assert_int_equal(vh->routes[0].dests[0].weight, 100);
	assert_non_null(vh->routes[0].file);
	assert_true(vh->routes[0].line > 0);

	c = vh->routes[0].dests[0].cluster;
	assert_ptr_equal(c, cl(s, "outbound|443||edition.cnn.com"));
	assert_int_equal(c->discovery, CLUSTER_DNS);
	assert_int_equal(c->nnames, 1);
	assert_string_equal(c->names[0].host, "edition.cnn.com");
	assert_int_equal(c->names[0].port, 443);
	assert_int_equal(c->lb, CLUSTER_LB_ROUND_ROBIN);
	assert_int_equal(c->tls_mode, CLUSTER_TLS_SIMPLE);
	assert_null(c->sni);
	assert_int_equal(c->nsans, 0);
	assert_true(c->verify_host_auto);
	assert_non_null(c->tls_ctx);          /* the system trust store */
	assert_null(c->tls_ctx_error);
	assert_int_equal(c->connect_timeout_ms, 10000);
	assert_int_equal(c->idle_timeout_ms, 3600 * 1000);

	/* The ServiceEntry's other port, plain. */
	c = cl(s, "outbound|80||edition.cnn.com");
	assert_int_equal(c->tls_mode, CLUSTER_TLS_DISABLE);
	assert_null(c->tls_ctx);
	/* The sidecar's subset cluster is not the gateway's business. */
	assert_null(snap_cluster_find(s, "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"));

	assert_non_null(strstr(dump_of(s), "\"name\": \"0.0.0.0_80\""));
	assert_non_null(strstr(dump_of(s), "\"tls_mode\": \"ISTIO_MUTUAL\""));
	assert_non_null(strstr(dump_of(s), "\"cluster\": \"outbound|443||edition.cnn.com\""));
	assert_non_null(strstr(dump_of(s), "\"discovery\": \"STRICT_DNS\""));
	assert_non_null(strstr(dump_of(s), "\"destination_rule\": \"default/originate-tls-for-edition-cnn-com\""));
}

static void sidecar_walkthrough_cnn(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct route_table *t;
	const struct route_vhost *vh;
	const struct cluster *c;
	const char *egw = "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local";

	load_cnn(e);
	s = build(e, SNAP_ROLE_SIDECAR, "default", sc_ident, true);
	check_invariants(s);
	assert_int_equal(s->nlisteners, 0);
	/* Port 443 of the ServiceEntry is HTTPS: no HTTP route table for it. */
	assert_int_equal(s->noutbound, 1);
	t = outbound(s, "80");
	assert_non_null(t);
	vh = vhost(t, "edition.cnn.com");
	assert_non_null(vh);
	assert_string_equal(vh->name, "edition.cnn.com:80");
	assert_int_equal(vh->nroutes, 1);
	assert_string_equal(vh->routes[0].dests[0].cluster_name, egw);
	assert_ptr_equal(vh->routes[0].dests[0].cluster, cl(s, egw));

	c = cl(s, egw);
	assert_string_equal(c->host, "istio-egressgateway.istio-system.svc.cluster.local");
	assert_string_equal(c->subset, "cnn");
	assert_int_equal(c->port, 80);
	assert_int_equal(c->discovery, CLUSTER_DNS);
	assert_string_equal(c->names[0].host, "istio-egressgateway.istio-system.svc.cluster.local");
	assert_int_equal(c->names[0].port, 80);
	assert_int_equal(c->tls_mode, CLUSTER_TLS_ISTIO_MUTUAL);
	assert_string_equal(c->sni, "edition.cnn.com");
	assert_false(c->verify_host_auto);
	assert_non_null(c->tls_ctx);
	assert_null(c->tls_ctx_error);

	/* The rule in `default` also applies to the sidecar's own edition.cnn.com clusters. */
	c = cl(s, "outbound|443||edition.cnn.com");
	assert_int_equal(c->tls_mode, CLUSTER_TLS_SIMPLE);
	assert_int_equal(cl(s, "outbound|80||edition.cnn.com")->tls_mode, CLUSTER_TLS_DISABLE);
	assert_non_null(strstr(dump_of(s), "\"role\": \"sidecar\""));
	assert_non_null(strstr(dump_of(s), "\"sni\": \"edition.cnn.com\""));
}

static void sidecar_istio_mutual_needs_identity(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct cluster *c;

	load_cnn(e);
	s = build(e, SNAP_ROLE_SIDECAR, "default", NULL, true);
	c = cl(s, "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local");
	assert_null(c->tls_ctx);
	assert_non_null(strstr(c->tls_ctx_error, "identity"));
	assert_true(diags_contain(&e->d, DIAG_WARNING, "identity"));
	assert_false(diags_has_errors(&e->d));
}

static void gateway_walkthrough_nginx_mtls(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct snap_listener *l;
	const struct route_vhost *vh;
	const struct cluster *c;
	const char *name = "outbound|443||my-nginx.mesh-external.svc.cluster.local";

	load_nginx(e);
	/* kubectl create secret -n istio-system generic client-credential
	 *   --from-file=tls.key=... --from-file=tls.crt=... --from-file=ca.crt=... */
	put_secret(e, "istio-system", "client-credential", "Opaque",
	           xasprintf("tls.key=%s", certp("client.example.com.key")),
	           xasprintf("tls.crt=%s", certp("client.example.com.crt")),
	           xasprintf("ca.crt=%s", certp("example.com.crt")), (char *)NULL);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	check_invariants(s);
	assert_int_equal(s->nlisteners, 1);
	l = &s->listeners[0];
	assert_string_equal(l->name, "0.0.0.0_443");
	assert_int_equal(l->servers[0].tls, SNAP_SRV_ISTIO_MUTUAL);
	vh = vhost(l->routes, "my-nginx.mesh-external.svc.cluster.local");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 1);
	assert_string_equal(vh->routes[0].dests[0].cluster_name, name);

	c = cl(s, name);
	assert_ptr_equal(vh->routes[0].dests[0].cluster, c);
	assert_int_equal(c->discovery, CLUSTER_DNS);
	assert_int_equal(c->tls_mode, CLUSTER_TLS_MUTUAL);
	assert_string_equal(c->sni, "my-nginx.mesh-external.svc.cluster.local");
	assert_false(c->verify_host_auto);
	assert_string_equal(c->credential, "client-credential");
	assert_null(c->tls_ctx_error);
	assert_non_null(c->tls_ctx);
	assert_non_null(strstr(dump_of(s), "\"credential\": \"client-credential\""));
	assert_non_null(strstr(dump_of(s), "\"ca\": \"kubernetes://client-credential-cacert\""));
	assert_non_null(strstr(dump_of(s), "\"client_cert\": \"kubernetes://client-credential\""));
}

static void nginx_mtls_secret_missing(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct cluster *c;

	load_nginx(e);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	c = cl(s, "outbound|443||my-nginx.mesh-external.svc.cluster.local");
	assert_int_equal(c->tls_mode, CLUSTER_TLS_MUTUAL);
	assert_null(c->tls_ctx);
	assert_non_null(c->tls_ctx_error);
	assert_non_null(strstr(c->tls_ctx_error, "secret kubernetes://client-credential not found"));
	assert_true(diags_contain(&e->d, DIAG_WARNING, "kubernetes://client-credential"));
	assert_false(diags_has_errors(&e->d));
	assert_non_null(strstr(dump_of(s), "\"error\": \"secret kubernetes://client-credential not found"));
}

static void nginx_mtls_secret_layouts(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct cluster *c;
	const char *name = "outbound|443||my-nginx.mesh-external.svc.cluster.local";

	load_nginx(e);
	/* Wrong keys: the error names the keys found. */
	put_secret(e, "istio-system", "client-credential", "Opaque",
	           xasprintf("certificate=%s", certp("client.example.com.crt")),
	           xasprintf("foo=%s", certp("client.example.com.key")), (char *)NULL);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	c = cl(s, name);
	assert_null(c->tls_ctx);
	assert_string_equal(c->tls_ctx_error, "secret kubernetes://client-credential has no "
	                    "tls.crt/tls.key or cert/key (found: certificate, foo)");

	/* Generic layout cert/key, CA in a separate NAME-cacert Secret (key cacert). */
	put_secret(e, "istio-system", "client-credential", "Opaque",
	           xasprintf("cert=%s", certp("client.example.com.crt")),
	           xasprintf("key=%s", certp("client.example.com.key")), (char *)NULL);
	put_secret(e, "istio-system", "client-credential-cacert", "Opaque",
	           xasprintf("cacert=%s", certp("example.com.crt")), (char *)NULL);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	c = cl(s, name);
	assert_null(c->tls_ctx_error);
	assert_non_null(c->tls_ctx);

	/* A NAME-cacert Secret without a CA key is an error for the cluster. */
	put_secret(e, "istio-system", "client-credential-cacert", "Opaque",
	           xasprintf("other=%s", certp("example.com.crt")), (char *)NULL);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	c = cl(s, name);
	assert_null(c->tls_ctx);
	assert_string_equal(c->tls_ctx_error, "secret kubernetes://client-credential-cacert has "
	                    "no cacert or ca.crt (found: other)");

	/* The Secret in another namespace is not the gateway's. */
	put_secret(e, "default", "other-credential", "Opaque",
	           xasprintf("tls.crt=%s", certp("client.example.com.crt")),
	           xasprintf("tls.key=%s", certp("client.example.com.key")), (char *)NULL);
	s = build(e, SNAP_ROLE_SIDECAR, "istio-system", NULL, true);
	assert_non_null(s);
}

/* ---- DestinationRule policy ---- */

static const char *precedence_yaml =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: svc}\n"
	"spec:\n"
	"  hosts: [svc.example.com]\n"
	"  ports:\n"
	"  - {number: 80, name: http, protocol: HTTP}\n"
	"  - {number: 8443, name: http-alt, protocol: HTTP}\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: svc}\n"
	"spec:\n"
	"  host: svc.example.com\n"
	"  trafficPolicy:\n"
	"    loadBalancer: {simple: LEAST_REQUEST}\n"
	"    connectionPool:\n"
	"      tcp: {connectTimeout: 3s, maxConnections: 7}\n"
	"      http: {idleTimeout: 30s, maxRequestsPerConnection: 5, http1MaxPendingRequests: 9, h2UpgradePolicy: UPGRADE}\n"
	"    tls: {mode: SIMPLE, sni: rule}\n"
	"    portLevelSettings:\n"
	"    - port: {number: 8443}\n"
	"      tls: {mode: SIMPLE, sni: rule-port}\n"
	"  subsets:\n"
	"  - name: s1\n"
	"    labels: {v: \"1\"}\n"
	"    trafficPolicy:\n"
	"      tls: {mode: SIMPLE, sni: subset}\n"
	"      portLevelSettings:\n"
	"      - port: {number: 8443}\n"
	"        tls: {mode: SIMPLE, sni: subset-port}\n"
	"  - name: s2\n"
	"    labels: {v: \"2\"}\n"
	"    trafficPolicy:\n"
	"      loadBalancer: {simple: RANDOM}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: svc}\n"
	"spec:\n"
	"  hosts: [svc.example.com]\n"
	"  http:\n"
	"  - match: [{uri: {prefix: /a}}]\n"
	"    route: [{destination: {host: svc.example.com, subset: s1, port: {number: 80}}}]\n"
	"  - match: [{uri: {prefix: /b}}]\n"
	"    route: [{destination: {host: svc.example.com, subset: s1, port: {number: 8443}}}]\n"
	"  - match: [{uri: {prefix: /c}}]\n"
	"    route: [{destination: {host: svc.example.com, subset: s2, port: {number: 80}}}]\n"
	"  - match: [{uri: {prefix: /d}}]\n"
	"    route: [{destination: {host: svc.example.com, subset: s2, port: {number: 8443}}}]\n"
	"  - match: [{uri: {prefix: /e}}]\n"
	"    route: [{destination: {host: svc.example.com, subset: s3, port: {number: 80}}}]\n";

/* outlierDetection as Istio hands it to Envoy: the deprecated consecutiveErrors means
 * gateway errors only; unset fields take Envoy's defaults; a port-level block replaces the
 * top level's. http2MaxRequests is kept too. */
static const char *outlier_yaml =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: od}\n"
	"spec:\n"
	"  hosts: [od.example.com]\n"
	"  ports:\n"
	"  - {number: 80, name: http, protocol: HTTP}\n"
	"  - {number: 81, name: http-b, protocol: HTTP}\n"
	"  - {number: 82, name: http-c, protocol: HTTP}\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: od}\n"
	"spec:\n"
	"  host: od.example.com\n"
	"  trafficPolicy:\n"
	"    connectionPool: {http: {http2MaxRequests: 11}}\n"
	"    outlierDetection: {consecutiveErrors: 4}\n"
	"    portLevelSettings:\n"
	"    - port: {number: 81}\n"
	"      outlierDetection:\n"
	"        consecutive5xxErrors: 0\n"
	"        consecutiveGatewayErrors: 2\n"
	"        splitExternalLocalOriginErrors: true\n"
	"        consecutiveLocalOriginFailures: 3\n"
	"        interval: 2s\n"
	"        baseEjectionTime: 400s\n"
	"        maxEjectionPercent: 30\n"
	"        minHealthPercent: 20\n"
	"    - port: {number: 82}\n"
	"      outlierDetection: {}\n";

static void outlier_policy(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct cluster *c;

	put(e, "od.yaml", outlier_yaml);
	s = build(e, SNAP_ROLE_SIDECAR, "default", NULL, true);
	check_invariants(s);
	c = cl(s, "outbound|80||od.example.com");
	assert_int_equal(c->max_requests, 11);
	assert_true(c->od.on);
	assert_int_equal(c->od.consecutive_5xx, 0);
	assert_int_equal(c->od.consecutive_gateway, 4);
	assert_false(c->od.split);
	assert_int_equal(c->od.interval_ms, 10000);
	assert_int_equal(c->od.base_ejection_ms, 30000);
	assert_int_equal(c->od.max_ejection_ms, 300000);
	assert_int_equal(c->od.max_ejection_percent, 10);
	assert_int_equal(c->od.min_health_percent, 0);
	c = cl(s, "outbound|81||od.example.com");
	assert_int_equal(c->max_requests, 0);
	assert_int_equal(c->od.consecutive_5xx, 0);
	assert_int_equal(c->od.consecutive_gateway, 2);
	assert_true(c->od.split);
	assert_int_equal(c->od.consecutive_local, 3);
	assert_int_equal(c->od.interval_ms, 2000);
	assert_int_equal(c->od.base_ejection_ms, 400000);
	assert_int_equal(c->od.max_ejection_ms, 400000);
	assert_int_equal(c->od.max_ejection_percent, 30);
	assert_int_equal(c->od.min_health_percent, 20);
	/* An empty block: on, with consecutive 5xx at Envoy's 5. */
	c = cl(s, "outbound|82||od.example.com");
	assert_true(c->od.on);
	assert_int_equal(c->od.consecutive_5xx, 5);
	assert_int_equal(c->od.consecutive_gateway, 0);
}

static void policy_precedence(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct cluster *c;
	const struct route_vhost *vh;

	put(e, "svc.yaml", precedence_yaml);
	s = build(e, SNAP_ROLE_SIDECAR, "default", NULL, true);
	check_invariants(s);

	/* Rule top level. */
	c = cl(s, "outbound|80||svc.example.com");
	assert_string_equal(c->sni, "rule");
	assert_int_equal(c->lb, CLUSTER_LB_LEAST_REQUEST);
	assert_int_equal(c->connect_timeout_ms, 3000);
	assert_int_equal(c->max_connections, 7);
	assert_int_equal(c->idle_timeout_ms, 30000);
	assert_int_equal(c->max_requests_per_conn, 5);
	assert_int_equal(c->max_pending, 9);
	assert_true(c->h2_upstream);
	assert_false(c->verify_host_auto);
	/* Rule port level: replaces the top level wholly (defaults, not inheritance). */
	c = cl(s, "outbound|8443||svc.example.com");
	assert_string_equal(c->sni, "rule-port");
	assert_int_equal(c->lb, CLUSTER_LB_ROUND_ROBIN);
	assert_int_equal(c->connect_timeout_ms, 10000);
	assert_int_equal(c->idle_timeout_ms, 3600 * 1000);
	assert_false(c->h2_upstream);
	/* Subset over rule, per group. */
	c = cl(s, "outbound|80|s1|svc.example.com");
	assert_string_equal(c->sni, "subset");
	assert_int_equal(c->lb, CLUSTER_LB_LEAST_REQUEST);
	assert_int_equal(c->connect_timeout_ms, 3000);
	/* Subset port level over everything, all groups. */
	c = cl(s, "outbound|8443|s1|svc.example.com");
	assert_string_equal(c->sni, "subset-port");
	assert_int_equal(c->lb, CLUSTER_LB_ROUND_ROBIN);
	assert_int_equal(c->connect_timeout_ms, 10000);
	c = cl(s, "outbound|80|s2|svc.example.com");
	assert_string_equal(c->sni, "rule");
	assert_int_equal(c->lb, CLUSTER_LB_RANDOM);
	assert_int_equal(c->connect_timeout_ms, 3000);
	c = cl(s, "outbound|8443|s2|svc.example.com");
	assert_string_equal(c->sni, "rule-port");
	assert_int_equal(c->lb, CLUSTER_LB_RANDOM);
	assert_int_equal(c->connect_timeout_ms, 10000);
	/* An undefined subset: no cluster, the route keeps its name (503 NC at runtime). */
	assert_null(snap_cluster_find(s, "outbound|80|s3|svc.example.com"));
	assert_true(diags_contain(&e->d, DIAG_WARNING, "subset \"s3\""));
	vh = vhost(outbound(s, "80"), "svc.example.com");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 5);
	assert_string_equal(vh->routes[4].dests[0].cluster_name, "outbound|80|s3|svc.example.com");
	assert_null(vh->routes[4].dests[0].cluster);
	assert_non_null(strstr(dump_of(s), "\"cluster_missing\": true"));
	/* Both ports carry the VirtualService. */
	assert_non_null(vhost(outbound(s, "8443"), "svc.example.com"));
}

static char *dr_yaml(const char *name, const char *ns, const char *host, const char *sni,
                     const char *export_to)
{
	return xasprintf("apiVersion: networking.istio.io/v1beta1\n"
	                 "kind: DestinationRule\n"
	                 "metadata: {name: %s, namespace: %s}\n"
	                 "spec:\n"
	                 "  host: \"%s\"\n"
	                 "%s%s%s"
	                 "  trafficPolicy:\n"
	                 "    tls: {mode: SIMPLE, sni: %s}\n",
	                 name, ns, host, export_to ? "  exportTo: [\"" : "",
	                 export_to ? export_to : "", export_to ? "\"]\n" : "", sni);
}

static void put_dr(struct env *e, const char *file, const char *name, const char *ns,
                   const char *host, const char *sni, const char *export_to)
{
	char *y = dr_yaml(name, ns, host, sni, export_to);

	put(e, file, y);
	free(y);
}

static const char *lookup_sni(struct env *e)
{
	const struct snap *s = build(e, SNAP_ROLE_SIDECAR, "ns1", NULL, true);
	const struct cluster *c = cl(s, "outbound|80||api.ns2.svc.cluster.local");

	return c->tls_mode == CLUSTER_TLS_DISABLE ? "none" : c->sni;
}

static void dr_lookup_order(void **state)
{
	struct env *e = *state;

	put(e, "vs.yaml",
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: VirtualService\n"
	    "metadata: {name: api, namespace: ns1}\n"
	    "spec:\n"
	    "  hosts: [api.ns2.svc.cluster.local]\n"
	    "  http:\n"
	    "  - match: [{port: 80}]\n"
	    "    route: [{destination: {host: api.ns2.svc.cluster.local, port: {number: 80}}}]\n");
	put_dr(e, "dr-proxy.yaml", "dr-proxy", "ns1", "api.ns2.svc.cluster.local", "proxy", NULL);
	/* A short name is the rule's namespace's service. */
	put_dr(e, "dr-host.yaml", "dr-host", "ns2", "api", "host", NULL);
	put_dr(e, "dr-root.yaml", "dr-root", "istio-system", "*.svc.cluster.local", "root", NULL);
	assert_string_equal(lookup_sni(e), "proxy");
	del(e, "dr-proxy.yaml");
	assert_string_equal(lookup_sni(e), "host");
	/* exportTo "." keeps it to its own namespace: the root rule applies. */
	put_dr(e, "dr-host.yaml", "dr-host", "ns2", "api", "host", ".");
	assert_string_equal(lookup_sni(e), "root");
	/* ... exported to ns1 by name, it is visible again. */
	put_dr(e, "dr-host.yaml", "dr-host", "ns2", "api", "host", "ns1");
	assert_string_equal(lookup_sni(e), "host");
	del(e, "dr-host.yaml");
	del(e, "dr-root.yaml");
	assert_string_equal(lookup_sni(e), "none");
	/* Most specific host within a namespace: exact, then the longest wildcard. */
	put_dr(e, "w1.yaml", "w1", "ns1", "*.svc.cluster.local", "short-wild", NULL);
	put_dr(e, "w2.yaml", "w2", "ns1", "*.ns2.svc.cluster.local", "long-wild", NULL);
	assert_string_equal(lookup_sni(e), "long-wild");
	put_dr(e, "w3.yaml", "w3", "ns1", "api.ns2.svc.cluster.local", "exact", NULL);
	assert_string_equal(lookup_sni(e), "exact");
	/* A rule in the proxy's namespace wins over a more specific one elsewhere. */
	del(e, "w3.yaml");
	put_dr(e, "w4.yaml", "w4", "ns2", "api.ns2.svc.cluster.local", "host-exact", NULL);
	assert_string_equal(lookup_sni(e), "long-wild");
}

/* ---- gateway routing ---- */

static const char *wild_yaml =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw}\n"
	"spec:\n"
	"  selector: {istio: egressgateway}\n"
	"  servers:\n"
	"  - port: {number: 8080, name: http, protocol: HTTP}\n"
	"    hosts: [\"*.example.com\", \"other/x.example.org\", \"./self.example.net\"]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: single}\n"
	"spec:\n"
	"  hosts: [single.example.com]\n"
	"  ports: [{number: 9090, name: http, protocol: HTTP}]\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: a1}\n"
	"spec:\n"
	"  hosts: [API.example.com, x.example.org, self.example.net]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - name: single\n"
	"    match: [{uri: {prefix: /single}}]\n"
	"    route: [{destination: {host: single.example.com}}]\n"
	"  - name: backend\n"
	"    timeout: 2s\n"
	"    route: [{destination: {host: backend.example.com}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: a2}\n"
	"spec:\n"
	"  hosts: [\"*.example.com\"]\n"
	"  gateways: [gw]\n"
	"  http:\n"
	"  - route: [{destination: {host: wild.example.com, port: {number: 80}}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: b, namespace: other}\n"
	"spec:\n"
	"  hosts: [x.example.org]\n"
	"  gateways: [default/gw]\n"
	"  http:\n"
	"  - route: [{destination: {host: other.example.com, port: {number: 80}}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: b2, namespace: other}\n"
	"spec:\n"
	"  hosts: [\"*\"]\n"
	"  gateways: [default/gw]\n"
	"  http:\n"
	"  - route: [{destination: {host: other.example.com, port: {number: 80}}}]\n";

static void gateway_wildcard_hosts(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct route_table *t;
	const struct route_vhost *vh;

	put(e, "wild.yaml", wild_yaml);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", NULL, true);
	check_invariants(s);
	assert_int_equal(s->nlisteners, 1);
	assert_false(s->listeners[0].tls);
	assert_null(s->listeners[0].ctx);
	assert_int_equal(s->listeners[0].servers[0].tls, SNAP_SRV_PLAIN);
	t = s->listeners[0].routes;
	assert_string_equal(t->name, "http.8080");

	vh = vhost(t, "api.example.com");
	assert_non_null(vh);
	assert_string_equal(vh->name, "api.example.com:8080");
	assert_string_equal(vh->domains[0], "api.example.com");
	assert_int_equal(vh->nroutes, 2);
	assert_string_equal(vh->routes[0].name, "single");
	/* No port: the ServiceEntry's only port, else the listener's. */
	assert_string_equal(vh->routes[0].dests[0].cluster_name, "outbound|9090||single.example.com");
	assert_string_equal(vh->routes[1].dests[0].cluster_name, "outbound|8080||backend.example.com");
	assert_int_equal(vh->routes[1].timeout_ms, 2000);
	assert_int_equal(cl(s, "outbound|8080||backend.example.com")->discovery, CLUSTER_DNS);

	/* "*" of VirtualService b2 narrows to the server's "*.example.com" and merges after
	 * a2, in (namespace, name) order. */
	vh = vhost(t, "foo.example.com");
	assert_non_null(vh);
	assert_string_equal(vh->domains[0], "*.example.com");
	assert_int_equal(vh->nroutes, 2);
	assert_string_equal(vh->routes[0].vs, "default/a2");
	assert_string_equal(vh->routes[1].vs, "other/b2");

	/* "other/x.example.org" admits only VirtualServices of namespace other. */
	vh = vhost(t, "x.example.org");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 2);
	assert_string_equal(vh->routes[0].vs, "other/b");
	assert_string_equal(vh->routes[1].vs, "other/b2");
	/* "./self.example.net" admits only the Gateway's namespace (default). */
	vh = vhost(t, "self.example.net");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 2);
	assert_string_equal(vh->routes[0].vs, "default/a1");
	assert_null(vhost(t, "nothing.test"));
	assert_null(vhost(t, "example.com"));
}

static const char *filter_yaml =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw1}\n"
	"spec:\n"
	"  selector: {istio: egressgateway}\n"
	"  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw2}\n"
	"spec:\n"
	"  selector: {app: istio-egressgateway}\n"
	"  servers: [{port: {number: 81, name: http2, protocol: HTTP}, hosts: [\"*\"]}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: Gateway\n"
	"metadata: {name: gw3}\n"
	"spec:\n"
	"  selector: {istio: ingressgateway}\n"
	"  servers: [{port: {number: 82, name: http3, protocol: HTTP}, hosts: [\"*\"]}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: vs}\n"
	"spec:\n"
	"  hosts: [h.example.com]\n"
	"  gateways: [gw1, gw2, mesh]\n"
	"  http:\n"
	"  - name: only-gw2\n"
	"    match: [{gateways: [gw2], uri: {prefix: /x}}]\n"
	"    route: [{destination: {host: a.example.com, port: {number: 80}}}]\n"
	"  - name: only-81\n"
	"    match: [{port: 81}]\n"
	"    route: [{destination: {host: a.example.com, port: {number: 80}}}]\n"
	"  - name: only-sleep\n"
	"    match: [{sourceLabels: {app: sleep}}]\n"
	"    route: [{destination: {host: a.example.com, port: {number: 80}}}]\n"
	"  - name: gateway-labels\n"
	"    match: [{sourceLabels: {istio: egressgateway}, uri: {exact: /y}, headers: {X-Test: {prefix: t}}}]\n"
	"    route: [{destination: {host: a.example.com, port: {number: 80}}, weight: 30},\n"
	"            {destination: {host: b.example.com, port: {number: 80}}, weight: 70}]\n"
	"  - name: redirect\n"
	"    match: [{uri: {exact: /old}}]\n"
	"    redirect: {uri: /new, authority: new.example.com}\n"
	"  - name: catch-all\n"
	"    rewrite: {uri: /v2}\n"
	"    route: [{destination: {host: a.example.com, port: {number: 80}}}]\n";

static void match_filtering(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct route_vhost *vh;
	const struct route *r;

	put(e, "f.yaml", filter_yaml);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", NULL, true);
	check_invariants(s);
	/* gw3's selector does not match this proxy. */
	assert_int_equal(s->nlisteners, 2);
	assert_string_equal(s->listeners[0].name, "0.0.0.0_80");
	assert_string_equal(s->listeners[1].name, "0.0.0.0_81");

	vh = vhost(s->listeners[0].routes, "h.example.com");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 3);
	assert_string_equal(vh->routes[0].name, "gateway-labels");
	assert_string_equal(vh->routes[1].name, "redirect");
	assert_string_equal(vh->routes[2].name, "catch-all");
	r = &vh->routes[0];
	assert_int_equal(r->ndests, 2);
	assert_int_equal(r->dests[0].weight, 30);
	assert_int_equal(r->dests[1].weight, 70);
	assert_int_equal(r->total_weight, 100);
	assert_int_equal(r->matches[0].uri.kind, SM_EXACT);
	assert_string_equal(r->matches[0].uri.s, "/y");
	assert_int_equal(r->matches[0].nheaders, 1);
	assert_string_equal(r->matches[0].headers[0].name, "x-test");
	assert_int_equal(r->matches[0].headers[0].m.kind, SM_PREFIX);
	r = &vh->routes[1];
	assert_int_equal(r->redirect_code, 301);
	assert_string_equal(r->redirect_uri, "/new");
	assert_string_equal(r->redirect_authority, "new.example.com");
	assert_int_equal(r->ndests, 0);
	r = &vh->routes[2];
	assert_int_equal(r->nmatches, 0);
	assert_string_equal(r->rewrite_uri, "/v2");

	vh = vhost(s->listeners[1].routes, "h.example.com");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 5);
	assert_string_equal(vh->routes[0].name, "only-gw2");
	assert_string_equal(vh->routes[1].name, "only-81");
	assert_string_equal(vh->routes[2].name, "gateway-labels");

	/* The sidecar (labels app=sleep) sees the mesh side: port-81 and sourceLabels
	 * routes only where they apply. */
	s = build(e, SNAP_ROLE_SIDECAR, "default", NULL, true);
	assert_int_equal(s->noutbound, 1);
	vh = vhost(outbound(s, "81"), "h.example.com");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 4);
	assert_string_equal(vh->routes[0].name, "only-81");
	assert_string_equal(vh->routes[1].name, "only-sleep");
}

static void selector_mismatch_no_listener(void **state)
{
	struct env *e = *state;
	const struct snap *s;

	load_cnn(e);
	put(e, "gw-other.yaml",
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: Gateway\n"
	    "metadata: {name: ingress}\n"
	    "spec:\n"
	    "  selector: {istio: ingressgateway}\n"
	    "  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n");
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	assert_int_equal(s->nlisteners, 1);
	assert_string_equal(s->listeners[0].name, "0.0.0.0_80");
	del(e, "02-gateway-destinationrule-cnn.yaml");
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	assert_int_equal(s->nlisteners, 0);
	/* The ServiceEntry's clusters are still there. */
	assert_non_null(snap_cluster_find(s, "outbound|443||edition.cnn.com"));
}

static void tls_and_plain_on_one_port(void **state)
{
	struct env *e = *state;

	load_cnn(e);
	put(e, "gw-plain.yaml",
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: Gateway\n"
	    "metadata: {name: plain80, namespace: istio-system}\n"
	    "spec:\n"
	    "  selector: {istio: egressgateway}\n"
	    "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n");
	assert_null(build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, false));
	assert_true(diags_has_errors(&e->d));
	assert_true(diags_contain(&e->d, DIAG_ERROR, "default/istio-egressgateway"));
	assert_true(diags_contain(&e->d, DIAG_ERROR, "istio-system/plain80"));
	assert_true(diags_contain(&e->d, DIAG_ERROR, "TLS or none"));
}

/* ---- gateway servers ---- */

static void gateway_credential_servers(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct snap_listener *l;

	put(e, "gw.yaml",
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: Gateway\n"
	    "metadata: {name: gw}\n"
	    "spec:\n"
	    "  selector: {istio: egressgateway}\n"
	    "  servers:\n"
	    "  - port: {number: 443, name: https, protocol: HTTPS}\n"
	    "    hosts: [my-nginx.mesh-external.svc.cluster.local]\n"
	    "    tls: {mode: SIMPLE, credentialName: nginx-server-certs, minProtocolVersion: TLSV1_3}\n"
	    "  - port: {number: 443, name: https-b, protocol: HTTPS}\n"
	    "    hosts: [b.example.com]\n"
	    "    tls: {mode: MUTUAL, credentialName: missing-cred}\n"
	    "  - port: {number: 8443, name: https-c, protocol: HTTPS}\n"
	    "    hosts: [c.example.com]\n"
	    "    tls: {mode: SIMPLE, credentialName: missing-cred}\n"
	    "  - port: {number: 9443, name: tls-d, protocol: TLS}\n"
	    "    hosts: [d.example.com]\n"
	    "    tls: {mode: PASSTHROUGH}\n");
	/* kubectl create -n istio-system secret tls nginx-server-certs --key ... --cert ... */
	put_secret(e, "istio-system", "nginx-server-certs", "kubernetes.io/tls",
	           xasprintf("tls.key=%s", certp("my-nginx.mesh-external.svc.cluster.local.key")),
	           xasprintf("tls.crt=%s", certp("my-nginx.mesh-external.svc.cluster.local.crt")),
	           (char *)NULL);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", NULL, true);
	check_invariants(s);
	assert_false(diags_has_errors(&e->d));
	/* 443 keeps the server whose credential exists; 8443 lost its only server. */
	assert_int_equal(s->nlisteners, 2);
	l = &s->listeners[0];
	assert_string_equal(l->name, "0.0.0.0_443");
	assert_int_equal(l->nservers, 1);
	assert_int_equal(l->servers[0].tls, SNAP_SRV_SIMPLE);
	assert_string_equal(l->servers[0].tls_source, "kubernetes://nginx-server-certs");
	assert_non_null(l->ctx);
	assert_true(diags_contain(&e->d, DIAG_WARNING, "secret kubernetes://missing-cred not found"));
	assert_true(diags_contain(&e->d, DIAG_WARNING, "listener 0.0.0.0_8443 not created"));
	l = &s->listeners[1];
	assert_string_equal(l->name, "0.0.0.0_9443");
	assert_false(l->tls);
	assert_null(l->ctx);
	assert_int_equal(l->servers[0].tls, SNAP_SRV_PASSTHROUGH);
	/* Served by SNI (tls: routes; none here, so every connection is refused). */
	assert_int_equal(l->l4_mode, SNAP_L4_SNI);
	assert_non_null(l->l4);
	assert_int_equal(l->l4->nroutes, 0);
	assert_false(diags_contain(&e->d, DIAG_WARNING, "not served"));
}

/* Drives both ends of a handshake over a socketpair. Returns 0 if both completed. */
static int handshake(struct tls_conn *c, struct tls_conn *sv)
{
	int rc = -1, rs = -1;

	for (int i = 0; i < 200; i++) {
		rc = tls_handshake(c);
		rs = tls_handshake(sv);
		if (rc == -1 || rs == -1)
			return -1;
		if (rc == 0 && rs == 0)
			return 0;
	}
	return -1;
}

/* Connects with SNI sni; returns the server context SNI dispatch chose, or NULL if the
 * handshake failed. */
static struct tls_ctx *sni_connect(struct tls_ctx *listener_ctx, struct tls_ctx *client_ctx,
                                   const char *sni)
{
	int fds[2];
	struct tls_conn *c, *sv;
	struct tls_ctx *chosen = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	assert_int_equal(sock_set_nonblock(fds[0]), 0);
	assert_int_equal(sock_set_nonblock(fds[1]), 0);
	c = tls_client_new(client_ctx, fds[0], sni, NULL);
	sv = tls_server_new(listener_ctx, fds[1]);
	if (handshake(c, sv) == 0)
		chosen = tls_conn_ctx(sv);
	tls_conn_free(c);
	tls_conn_free(sv);
	close(fds[0]);
	close(fds[1]);
	return chosen;
}

static void gateway_sni_dispatch(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct snap_listener *l;
	struct tls_client_params cp;
	struct tls_identity_files idf;
	struct tls_ctx *cctx, *a = NULL, *wild = NULL;
	struct sbuf err = SBUF_INIT;

	put(e, "gws.yaml",
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: Gateway\n"
	    "metadata: {name: wild}\n"
	    "spec:\n"
	    "  selector: {istio: egressgateway}\n"
	    "  servers:\n"
	    "  - port: {number: 443, name: https-wild, protocol: HTTPS}\n"
	    "    hosts: [\"*.example.com\"]\n"
	    "    tls: {mode: ISTIO_MUTUAL}\n"
	    "---\n"
	    "apiVersion: networking.istio.io/v1beta1\n"
	    "kind: Gateway\n"
	    "metadata: {name: exact}\n"
	    "spec:\n"
	    "  selector: {istio: egressgateway}\n"
	    "  servers:\n"
	    "  - port: {number: 443, name: https-a, protocol: HTTPS}\n"
	    "    hosts: [\"default/a.example.com\"]\n"
	    "    tls:\n"
	    "      mode: ISTIO_MUTUAL\n"
	    "      subjectAltNames: [spiffe://cluster.local/ns/default/sa/sleep]\n");
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	check_invariants(s);
	assert_int_equal(s->nlisteners, 1);
	l = &s->listeners[0];
	assert_int_equal(l->nservers, 2);
	/* Gateways in name order: "exact" before "wild". */
	assert_string_equal(l->servers[0].gateway, "default/exact");
	assert_string_equal(l->servers[0].hosts[0], "a.example.com");
	assert_int_equal(l->servers[0].nallowed_sans, 1);
	assert_ptr_equal(l->ctx, l->servers[0].ctx);
	a = l->servers[0].ctx;
	wild = l->servers[1].ctx;

	/* A sidecar's client: its workload certificate, the mesh root. */
	memset(&cp, 0, sizeof(cp));
	tls_identity_files(sc_ident, &idf, &cp.cert, &cp.key, &cp.ca);
	cctx = tls_client_ctx_new(&cp, &err);
	if (!cctx)
		fail_msg("client ctx: %s", sbuf_str(&err));
	assert_ptr_equal(sni_connect(l->ctx, cctx, "a.example.com"), a);
	assert_ptr_equal(sni_connect(l->ctx, cctx, "b.example.com"), wild);
	assert_ptr_equal(sni_connect(l->ctx, cctx, "A.EXAMPLE.COM"), a);
	assert_null(sni_connect(l->ctx, cctx, "b.example.org"));
	assert_null(sni_connect(l->ctx, cctx, NULL));
	tls_ctx_unref(cctx);
	sbuf_free(&err);
}

/* ---- sidecar: default routes and discovery ---- */

static const char *discovery_yaml =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: static-se}\n"
	"spec:\n"
	"  hosts: [static.internal]\n"
	"  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 9000}]\n"
	"  resolution: STATIC\n"
	"  endpoints:\n"
	"  - address: 127.0.0.2\n"
	"  - address: 127.0.0.3\n"
	"    ports: {http: 9001}\n"
	"    weight: 3\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: none-se}\n"
	"spec:\n"
	"  hosts: [\"*.wild.test\"]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: NONE\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: dns-se}\n"
	"spec:\n"
	"  hosts: [dns.test]\n"
	"  ports:\n"
	"  - {number: 80, name: http, protocol: HTTP}\n"
	"  - {number: 443, name: tls, protocol: TLS}\n"
	"  resolution: DNS\n"
	"  endpoints:\n"
	"  - address: a.dns.test\n"
	"  - address: b.dns.test\n"
	"    ports: {http: 8081}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: rr-se}\n"
	"spec:\n"
	"  hosts: [rr.test]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: DNS_ROUND_ROBIN\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: hidden, namespace: elsewhere}\n"
	"spec:\n"
	"  hosts: [hidden.test]\n"
	"  exportTo: [\".\"]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: DNS\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: dns}\n"
	"spec:\n"
	"  hosts: [dns.test]\n"
	"  http:\n"
	"  - route: [{destination: {host: rr.test}}]\n";

static void sidecar_defaults_and_discovery(void **state)
{
	struct env *e = *state;
	const struct snap *s;
	const struct route_table *t;
	const struct route_vhost *vh;
	const struct cluster *c;
	const struct cluster_eps *eps;

	put(e, "d.yaml", discovery_yaml);
	s = build(e, SNAP_ROLE_SIDECAR, "default", NULL, true);
	check_invariants(s);
	assert_int_equal(s->noutbound, 2);
	assert_string_equal(s->outbound[0]->name, "80");
	assert_string_equal(s->outbound[1]->name, "8080");

	t = outbound(s, "80");
	vh = vhost(t, "dns.test");
	assert_non_null(vh);
	assert_int_equal(vh->nroutes, 1);
	assert_string_equal(vh->routes[0].vs, "default/dns");
	assert_string_equal(vh->routes[0].dests[0].cluster_name, "outbound|80||rr.test");
	vh = vhost(t, "rr.test");
	assert_non_null(vh);
	assert_string_equal(vh->routes[0].name, "default");
	assert_null(vh->routes[0].vs);
	vh = vhost(t, "x.wild.test");
	assert_non_null(vh);
	assert_string_equal(vh->name, "*.wild.test:80");
	assert_string_equal(vh->routes[0].dests[0].cluster_name, "outbound|80||*.wild.test");
	assert_null(vhost(t, "hidden.test"));          /* exportTo "." elsewhere */
	assert_null(vhost(t, "static.internal"));
	vh = vhost(outbound(s, "8080"), "static.internal");
	assert_non_null(vh);
	assert_string_equal(vh->routes[0].dests[0].cluster_name, "outbound|8080||static.internal");

	c = cl(s, "outbound|8080||static.internal");
	assert_int_equal(c->discovery, CLUSTER_STATIC);
	eps = cluster_eps_load(c);
	assert_non_null(eps);
	assert_int_equal(eps->n, 2);
	assert_string_equal(eps->v[0].str, "127.0.0.2:9000");
	assert_int_equal(eps->v[0].weight, 1);
	assert_string_equal(eps->v[1].str, "127.0.0.3:9001");
	assert_int_equal(eps->v[1].weight, 3);

	c = cl(s, "outbound|80||*.wild.test");
	assert_int_equal(c->discovery, CLUSTER_ORIGINAL_DST);
	assert_int_equal(c->lb, CLUSTER_LB_PASSTHROUGH);

	c = cl(s, "outbound|80||dns.test");
	assert_int_equal(c->discovery, CLUSTER_DNS);
	assert_int_equal(c->nnames, 2);
	assert_string_equal(c->names[0].host, "a.dns.test");
	assert_int_equal(c->names[0].port, 80);
	assert_string_equal(c->names[1].host, "b.dns.test");
	assert_int_equal(c->names[1].port, 8081);
	c = cl(s, "outbound|443||dns.test");
	assert_int_equal(c->names[1].port, 443);

	c = cl(s, "outbound|80||rr.test");
	assert_int_equal(c->discovery, CLUSTER_DNS_ROUND_ROBIN);
	assert_string_equal(c->names[0].host, "rr.test");
	assert_null(snap_cluster_find(s, "outbound|80||hidden.test"));
	assert_non_null(strstr(dump_of(s), "\"address\": \"127.0.0.3:9001\""));
	assert_non_null(strstr(dump_of(s), "\"discovery\": \"LOGICAL_DNS\""));
}

/* ---- misc ---- */

static void refcount_and_versions(void **state)
{
	struct env *e = *state;
	struct snap *s;
	uint64_t v1;

	load_cnn(e);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	v1 = s->version;
	assert_ptr_equal(snap_ref(s), s);
	snap_unref(s);                  /* still held by e */
	assert_int_equal(atomic_load(&s->refs), 1);
	s = build(e, SNAP_ROLE_GATEWAY, "istio-system", gw_ident, true);
	assert_true(s->version > v1);
	snap_unref(NULL);
}

static void json_writer(void **state)
{
	struct sbuf out = SBUF_INIT;
	struct snap_json j;

	(void)state;
	snap_json_init(&j, &out);
	snap_json_obj_begin(&j, NULL);
	snap_json_str(&j, "s", "a\"b\\c\n\x01");
	snap_json_int(&j, "n", -5);
	snap_json_arr_begin(&j, "empty");
	snap_json_arr_end(&j);
	snap_json_arr_begin(&j, "l");
	snap_json_bool(&j, NULL, true);
	snap_json_null(&j, NULL);
	snap_json_str(&j, NULL, NULL);
	snap_json_arr_end(&j);
	snap_json_obj_end(&j);
	assert_string_equal(out.s,
		"{\n"
		"  \"s\": \"a\\\"b\\\\c\\n\\u0001\",\n"
		"  \"n\": -5,\n"
		"  \"empty\": [],\n"
		"  \"l\": [\n"
		"    true,\n"
		"    null,\n"
		"    null\n"
		"  ]\n"
		"}");
	sbuf_free(&out);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(gateway_walkthrough_cnn),
		T(sidecar_walkthrough_cnn),
		T(sidecar_istio_mutual_needs_identity),
		T(gateway_walkthrough_nginx_mtls),
		T(nginx_mtls_secret_missing),
		T(nginx_mtls_secret_layouts),
		T(policy_precedence),
		T(outlier_policy),
		T(dr_lookup_order),
		T(gateway_wildcard_hosts),
		T(match_filtering),
		T(selector_mismatch_no_listener),
		T(tls_and_plain_on_one_port),
		T(gateway_credential_servers),
		T(gateway_sni_dispatch),
		T(sidecar_defaults_and_discovery),
		T(refcount_and_versions),
		cmocka_unit_test(json_writer),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
