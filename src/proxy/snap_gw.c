/* snap_gw: Gateway servers to listeners (gateway role).
 *
 * Istio's rules, as applied here:
 *  - a Gateway applies to this proxy when every label of its selector is among the
 *    proxy's labels (--labels), whatever the Gateway's namespace;
 *  - one listener per distinct port number, named LISTEN-ADDRESS_PORT ("0.0.0.0_80");
 *  - servers sharing a port must all use TLS or none (an error naming both Gateways);
 *    terminating and PASSTHROUGH servers may share a port (they are told apart by SNI);
 *  - a terminating server whose certificate cannot be loaded (missing credential, bad
 *    file) is left out with a warning, as Istio leaves its filter chain out; the rest of
 *    the configuration still applies;
 *  - the client's SNI picks the server: exact host first, then the longest wildcard,
 *    then "*"; no match (or no SNI and no "*" server) refuses the handshake. */
#include "proxy/snap_int.h"
#include "proxy/l4route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static const char *const snap_gw_alpn[] = { "h2", "http/1.1" };

enum snap_srv_kind {
	SNAP_K_PLAIN,
	SNAP_K_TERM,     /* TLS terminated here */
	SNAP_K_PASS,     /* TLS passed through */
	SNAP_K_TCP,      /* opaque TCP (tcp routes) */
	SNAP_K_SKIP,     /* a protocol this proxy does not serve */
};

/* One selected Gateway server, before it becomes a snap_server. */
struct snap_gsrv {
	const struct resource *gw;
	const struct gw_server *srv;
	enum snap_srv_kind kind;
	enum snap_server_tls tls;
	size_t order;            /* gateway, then server order: keeps the sort stable */
};

static enum snap_srv_kind snap_srv_classify(const struct gw_server *sv,
                                            enum snap_server_tls *tls)
{
	enum res_protocol proto = sv->port.protocol;

	*tls = SNAP_SRV_PLAIN;
	if (res_protocol_is_tls(proto)) {
		switch (sv->tls ? sv->tls->mode : GW_TLS_PASSTHROUGH) {
		case GW_TLS_SIMPLE:
			*tls = SNAP_SRV_SIMPLE;
			return SNAP_K_TERM;
		case GW_TLS_MUTUAL:
		case GW_TLS_OPTIONAL_MUTUAL:
			*tls = SNAP_SRV_MUTUAL;
			return SNAP_K_TERM;
		case GW_TLS_ISTIO_MUTUAL:
			*tls = SNAP_SRV_ISTIO_MUTUAL;
			return SNAP_K_TERM;
		case GW_TLS_PASSTHROUGH:
		case GW_TLS_AUTO_PASSTHROUGH:
		default:
			*tls = SNAP_SRV_PASSTHROUGH;
			return SNAP_K_PASS;
		}
	}
	if (res_protocol_is_http(proto))
		return SNAP_K_PLAIN;
	if (proto == RES_PROTO_TCP || proto == RES_PROTO_MONGO || proto == RES_PROTO_REDIS ||
	    proto == RES_PROTO_MYSQL) {
		*tls = SNAP_SRV_TCP;
		return SNAP_K_TCP;
	}
	return SNAP_K_SKIP;
}

static int snap_gsrv_cmp(const void *a, const void *b)
{
	const struct snap_gsrv *x = a, *y = b;

	if (x->srv->port.number != y->srv->port.number)
		return x->srv->port.number < y->srv->port.number ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int snap_tls_version(enum res_tls_version v)
{
	switch (v) {
	case RES_TLSV1_0:
		return TLS_V1_0;
	case RES_TLSV1_1:
		return TLS_V1_1;
	case RES_TLSV1_2:
		return TLS_V1_2;
	case RES_TLSV1_3:
		return TLS_V1_3;
	case RES_TLS_AUTO:
	default:
		return 0;
	}
}

static void snap_pem_secret(struct tls_pem *pem, const unsigned char *data, size_t len,
                            const char *label)
{
	if (!data)
		return;
	pem->data = (const char *)data;
	pem->len = len;
	pem->label = label;
}

/* A server's certificate, key (and for MUTUAL its CA and CRL) from the files the Gateway
 * names (serverCertificate, privateKey, caCertificates, caCrl), listed in the secret
 * cache as Istio names file certificates: file-cert:CERT~KEY, file-root:CA. */
static int snap_server_files(struct snap_b *b, const struct snap_gsrv *g,
                             struct tls_server_params *sp, struct snap_server *out,
                             struct sbuf *err)
{
	const struct gw_tls *t = g->srv->tls;
	char digest[SECRET_DIGEST_HEX], *res;

	if (!t->server_certificate || !t->private_key) {
		sbuf_adds(err, "no serverCertificate/privateKey and no credentialName");
		return -1;
	}
	res = xasprintf("file-cert:%s~%s", t->server_certificate, t->private_key);
	secret_cache_file(b->secrets, res, false, t->server_certificate, t->private_key,
	                  digest);
	free(res);
	sp->cert.file = t->server_certificate;
	sp->key.file = t->private_key;
	if (g->tls == SNAP_SRV_MUTUAL) {
		sp->client_ca.file = t->ca_certificates;
		sp->crl.file = t->ca_crl;
		if (t->ca_certificates) {
			res = xasprintf("file-root:%s", t->ca_certificates);
			secret_cache_file(b->secrets, res, true, t->ca_certificates, NULL, digest);
			free(res);
		}
	}
	out->tls_source = xasprintf("file:%s", t->server_certificate);
	return 0;
}

/* Builds the server's TLS context. Returns 0, or -1 with the reason in err. */
static int snap_server_ctx(struct snap_b *b, const struct snap_gsrv *g, struct snap_server *out,
                           struct sbuf *err)
{
	const struct gw_tls *t = g->srv->tls;
	struct tls_server_params sp;
	struct tls_identity_files idf;
	struct snap_cred cred;
	struct sbuf ciphers = SBUF_INIT;
	int rc = -1;

	memset(&sp, 0, sizeof(sp));
	if (g->tls == SNAP_SRV_ISTIO_MUTUAL) {
		if (!b->p->identity_dir) {
			sbuf_adds(err, "ISTIO_MUTUAL needs the workload identity (--identity)");
			goto out;
		}
		tls_identity_files(b->p->identity_dir, &idf, &sp.cert, &sp.key, &sp.client_ca);
		out->tls_source = xasprintf("identity:%s", b->p->identity_dir);
	} else if (t->credential_name) {
		bool mutual = g->tls == SNAP_SRV_MUTUAL;
		const struct secret_version *v;

		if (snap_cred_load(b, t->credential_name,
		                   SECRET_USE_CERT | (mutual ? SECRET_USE_CA | SECRET_NEED_CA : 0),
		                   &cred, err) < 0)
			goto out;
		v = cred.v;
		snap_pem_secret(&sp.cert, v->cert, v->cert_len, cred.cert_label);
		snap_pem_secret(&sp.key, v->key, v->key_len, cred.cert_label);
		if (mutual) {
			snap_pem_secret(&sp.client_ca, v->ca, v->ca_len, cred.ca_label);
			snap_pem_secret(&sp.crl, v->crl, v->crl_len, cred.crl_label);
		}
		out->tls_source = xasprintf("kubernetes://%s", t->credential_name);
	} else if (snap_server_files(b, g, &sp, out, err) < 0) {
		goto out;
	}
	if (g->tls == SNAP_SRV_MUTUAL) {
		if (!sp.client_ca.file && !sp.client_ca.data) {
			sbuf_adds(err, "MUTUAL needs caCertificates or a CA (ca.crt/cacert) in the "
			               "credential");
			goto out;
		}
		sp.optional_client_cert = t->mode == GW_TLS_OPTIONAL_MUTUAL;
	}
	if (t) {
		sp.client_sans = (const char *const *)t->subject_alt_names.v;
		sp.nclient_sans = t->subject_alt_names.n;
		sp.min_version = snap_tls_version(t->min_protocol_version);
		sp.max_version = snap_tls_version(t->max_protocol_version);
		for (size_t i = 0; i < t->cipher_suites.n; i++) {
			if (i)
				sbuf_addc(&ciphers, ':');
			sbuf_adds(&ciphers, t->cipher_suites.v[i]);
		}
		if (ciphers.len)
			sp.ciphers = ciphers.s;
	}
	/* Without HTTP/2 only "http/1.1" is offered (the tail of the list). */
	sp.alpn = b->p->http2 ? snap_gw_alpn : snap_gw_alpn + 1;
	sp.nalpn = b->p->http2 ? ARRAY_SIZE(snap_gw_alpn) : 1;
	out->ctx = tls_server_ctx_new(&sp, err);
	if (out->ctx)
		rc = 0;
out:
	sbuf_free(&ciphers);
	return rc;
}

static void snap_server_fini(struct snap_server *sv)
{
	free(sv->gateway);
	free(sv->port_name);
	for (size_t i = 0; i < sv->nhosts; i++)
		free(sv->hosts[i]);
	free(sv->hosts);
	for (size_t i = 0; i < sv->nallowed_sans; i++)
		free(sv->allowed_sans[i]);
	free(sv->allowed_sans);
	free(sv->tls_source);
	tls_ctx_unref(sv->ctx);
	memset(sv, 0, sizeof(*sv));
}

/* Fills out from g. Returns 0, or -1 when the server is left out (warning given). */
static int snap_server_build(struct snap_b *b, const struct snap_gsrv *g, struct snap_server *out)
{
	const struct gw_server *sv = g->srv;
	struct sbuf err = SBUF_INIT;
	char id[300];

	memset(out, 0, sizeof(*out));
	out->gateway = xstrdup(snap_res_id(g->gw, id, sizeof(id)));
	out->port_name = xstrdup(sv->port.name ? sv->port.name : "");
	out->tls = g->tls;
	out->hosts = xcalloc(sv->hosts.n + 1, sizeof(*out->hosts));
	for (size_t i = 0; i < sv->hosts.n; i++) {
		const char *h = sv->hosts.v[i], *slash = strchr(h, '/');

		out->hosts[out->nhosts] = xstrdup(slash ? slash + 1 : h);
		snap_lower(out->hosts[out->nhosts++]);
	}
	if (sv->tls) {
		out->https_redirect = sv->tls->https_redirect;
		out->allowed_sans = xcalloc(sv->tls->subject_alt_names.n + 1,
		                            sizeof(*out->allowed_sans));
		for (size_t i = 0; i < sv->tls->subject_alt_names.n; i++)
			out->allowed_sans[out->nallowed_sans++] =
				xstrdup(sv->tls->subject_alt_names.v[i]);
	}
	/* Istio's SNI-DNAT: outbound_.PORT_.SUBSET_.HOST names the cluster (l4fwd.c). */
	if (g->kind == SNAP_K_PASS && sv->tls && sv->tls->mode == GW_TLS_AUTO_PASSTHROUGH)
		out->auto_sni = true;
	out->term_l4 = g->kind == SNAP_K_TERM && sv->port.protocol == RES_PROTO_TLS;
	if (g->kind != SNAP_K_TERM)
		return 0;
	if (g->kind != SNAP_K_TERM)
		return 0;
	if (snap_server_ctx(b, g, out, &err) == 0) {
		sbuf_free(&err);
		return 0;
	}
	diag_warn(b->d, sv->pos.file, sv->pos.line, sv->pos.col,
	          "Gateway %s: server on port %u (%s) left out: %s", id, sv->port.number,
	          sv->hosts.n ? sv->hosts.v[0] : "", sbuf_str(&err));
	sbuf_free(&err);
	snap_server_fini(out);
	return -1;
}

size_t snap_server_sni_score(const struct snap_server *sv, const char *sni)
{
	size_t best = 0;

	for (size_t j = 0; j < sv->nhosts; j++) {
		const char *h = sv->hosts[j];
		size_t score;

		if (!tls_host_match(h, sni))
			continue;
		if (strcmp(h, "*") == 0)
			score = 1;
		else if (h[0] == '*')
			score = 2 + strlen(h);
		else
			score = (size_t)-1;
		if (score > best)
			best = score;
	}
	return best;
}

/* SNI dispatch: the most specific server host wins (exact, longest wildcard, "*"). Runs
 * on worker threads; reads only the immutable listener. */
static struct tls_ctx *snap_sni_select(const char *sni, void *arg)
{
	const struct snap_listener *l = arg;
	struct tls_ctx *best = NULL;
	size_t best_score = 0;

	for (size_t i = 0; i < l->nservers; i++) {
		const struct snap_server *sv = &l->servers[i];
		size_t score;

		if (!sv->ctx)
			continue;
		score = snap_server_sni_score(sv, sni);
		if (score > best_score) {
			best_score = score;
			best = sv->ctx;
		}
	}
	return best;
}

/* A port of PASSTHROUGH servers only is routed by SNI, a port of TCP servers at accept,
 * a port of both PASSTHROUGH and terminating servers by a peek at the ClientHello. */
static void snap_l4_mode(struct snap_b *b, struct snap_listener *l)
{
	bool pass = false, term = false, tcp = false;

	for (size_t i = 0; i < l->nservers; i++) {
		pass |= l->servers[i].tls == SNAP_SRV_PASSTHROUGH;
		tcp |= l->servers[i].tls == SNAP_SRV_TCP;
		term |= l->servers[i].ctx != NULL;
	}
	(void)b;
	if (tcp)
		l->l4_mode = SNAP_L4_TCP;
	else if (pass)
		l->l4_mode = term ? SNAP_L4_PEEK : SNAP_L4_SNI;
}

static const char *snap_kind_name(const struct snap_gsrv *g)
{
	return g->kind == SNAP_K_PLAIN ? "plain text" : g->kind == SNAP_K_TCP ? "TCP" : "TLS";
}

/* Builds the listener for servers g[0..n) (same port). Returns 1 if built, 0 if every
 * server was left out, -1 on a configuration error. */
static int snap_listener_build(struct snap_b *b, const struct snap_gsrv *g, size_t n,
                               struct snap_listener *l)
{
	const char *addr = b->p->listen_address ? b->p->listen_address : "0.0.0.0";
	const struct resource **kgw = xcalloc(n, sizeof(*kgw));
	const struct gw_server **ksrv = xcalloc(n, sizeof(*ksrv));
	uint16_t port = (uint16_t)g[0].srv->port.number;
	int rc = -1;

	memset(l, 0, sizeof(*l));
	for (size_t i = 1; i < n; i++) {
		if ((g[i].kind == SNAP_K_PLAIN) != (g[0].kind == SNAP_K_PLAIN) ||
		    (g[i].kind == SNAP_K_TCP) != (g[0].kind == SNAP_K_TCP)) {
			char a[300], c[300];
			const struct srcpos *pos = &g[i].srv->pos;

			diag_err(b->d, pos->file, pos->line, pos->col,
			         "Gateway %s: server on port %u is %s but Gateway %s serves %s on the "
			         "same port: servers sharing a port must all use TLS or none (and TCP "
			         "servers share a port only with TCP servers)",
			         snap_res_id(g[i].gw, a, sizeof(a)), port, snap_kind_name(&g[i]),
			         snap_res_id(g[0].gw, c, sizeof(c)), snap_kind_name(&g[0]));
			goto out;
		}
	}
	l->port = port;
	l->name = xasprintf("%s_%u", addr, port);
	if (sock_addr_from_ip(addr, port, &l->addr) < 0) {
		diag_err(b->d, NULL, 0, 0, "listen address \"%s\" is not an IP address", addr);
		goto out;
	}
	/* Terminating servers first, so that servers[0] carries the listener's context
	 * whenever there is one; then the others, each group in Gateway order. */
	l->servers = xcalloc(n, sizeof(*l->servers));
	for (size_t k = 0; k < 2 * n; k++) {
		size_t i = k % n;
		struct snap_server *sv = &l->servers[l->nservers];

		if ((k < n) != (g[i].kind == SNAP_K_TERM))
			continue;
		if (snap_server_build(b, &g[i], sv) < 0)
			continue;
		kgw[l->nservers] = g[i].gw;
		ksrv[l->nservers] = g[i].srv;
		l->nservers++;
		if (sv->ctx && !l->ctx) {
			l->tls = true;
			l->ctx = sv->ctx;
		}
	}
	if (l->nservers == 0) {
		diag_warn(b->d, NULL, 0, 0, "listener %s not created: every server on port %u was "
		          "left out", l->name, port);
		rc = 0;
		goto out;
	}
	snap_l4_mode(b, l);
	snap_gw_routes(b, l, kgw, ksrv);
	snap_l4_gw(b, l, kgw, ksrv);
	rc = 1;
out:
	free(kgw);
	free(ksrv);
	return rc;
}

/* The ISTIO_MUTUAL context a plain HTTP listener accepts the mesh's mutual TLS with
 * (snap.h: mesh_ctx). Without it a sidecar's automatic mutual TLS would fail: logged. */
static void snap_mesh_ctx(struct snap_b *b, struct snap_listener *l)
{
	struct tls_server_params sp;
	struct tls_identity_files idf;
	struct sbuf err = SBUF_INIT;

	if (l->tls || !b->p->identity_dir)
		return;
	for (size_t i = 0; i < l->nservers; i++)
		if (l->servers[i].tls != SNAP_SRV_PLAIN)
			return;
	memset(&sp, 0, sizeof(sp));
	tls_identity_files(b->p->identity_dir, &idf, &sp.cert, &sp.key, &sp.client_ca);
	sp.alpn = b->p->http2 ? snap_gw_alpn : snap_gw_alpn + 1;
	sp.nalpn = b->p->http2 ? ARRAY_SIZE(snap_gw_alpn) : 1;
	l->mesh_ctx = tls_server_ctx_new(&sp, &err);
	if (!l->mesh_ctx)
		diag_warn(b->d, NULL, 0, 0, "listener %s: no mesh mutual TLS (ISTIO_MUTUAL) for "
		          "sidecars: %s; it serves plain HTTP only", l->name, sbuf_str(&err));
	sbuf_free(&err);
}

static void snap_listener_discard(struct snap_listener *l)
{
	for (size_t i = 0; i < l->nservers; i++)
		snap_server_fini(&l->servers[i]);
	free(l->servers);
	route_table_free(l->routes);
	l4_table_free(l->l4);
	free(l->name);
	memset(l, 0, sizeof(*l));
}

int snap_gw_listeners(struct snap_b *b)
{
	struct snap *s = b->s;
	struct snap_gsrv *g;
	size_t ng = 0, total = 0, order = 0;
	int rc = 0;

	b->selgw = xcalloc(b->ngw + 1, sizeof(*b->selgw));
	for (size_t i = 0; i < b->ngw; i++) {
		if (!snap_labels_match(b, &b->gw[i]->u.gw->selector))
			continue;
		b->selgw[b->nselgw++] = b->gw[i];
		total += b->gw[i]->u.gw->servers.n;
	}
	g = xcalloc(total + 1, sizeof(*g));
	for (size_t i = 0; i < b->nselgw; i++) {
		const struct gateway *gw = b->selgw[i]->u.gw;

		for (size_t j = 0; j < gw->servers.n; j++) {
			struct snap_gsrv *x = &g[ng];
			char id[300];

			x->gw = b->selgw[i];
			x->srv = &gw->servers.v[j];
			x->order = order++;
			x->kind = snap_srv_classify(x->srv, &x->tls);
			if (x->kind == SNAP_K_SKIP) {
				diag_warn(b->d, x->srv->pos.file, x->srv->pos.line, x->srv->pos.col,
				          "Gateway %s: server on port %u: protocol %s is not served "
				          "(HTTP, HTTPS, TLS and TCP are); server ignored",
				          snap_res_id(x->gw, id, sizeof(id)), x->srv->port.number,
				          res_protocol_name(x->srv->port.protocol));
				continue;
			}
			ng++;
		}
	}
	qsort(g, ng, sizeof(*g), snap_gsrv_cmp);

	s->listeners = xcalloc(ng + 1, sizeof(*s->listeners));
	for (size_t i = 0; i < ng;) {
		size_t j = i;
		int r;

		while (j < ng && g[j].srv->port.number == g[i].srv->port.number)
			j++;
		r = snap_listener_build(b, &g[i], j - i, &s->listeners[s->nlisteners]);
		if (r < 0) {
			snap_listener_discard(&s->listeners[s->nlisteners]);
			rc = -1;
			break;
		}
		if (r > 0)
			s->nlisteners++;
		else
			snap_listener_discard(&s->listeners[s->nlisteners]);
		i = j;
	}
	free(g);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < s->nlisteners; i++)
		snap_mesh_ctx(b, &s->listeners[i]);
	/* The listeners array is final now: the SNI callbacks may point into it. */
	for (size_t i = 0; i < s->nlisteners; i++)
		if (s->listeners[i].ctx)
			tls_server_set_sni(s->listeners[i].ctx, snap_sni_select, &s->listeners[i]);
	return 0;
}
