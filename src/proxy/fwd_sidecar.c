/* fwd_sidecar: the sidecar's side of the request path (part of the fwd module, see
 * fwd_int.h): what a captured connection is (d_sniff: HTTP/1.1, HTTP/2 with prior
 * knowledge, d_start_h2c, or TLS/TCP handed to l4fwd.c and tunnel.c: d_tcp_handoff,
 * d_gw_sni_handoff), and where a request goes (the original destination or the
 * authority's port, st_sidecar_connect; a passthrough name's DNS lookup, st_on_dns). */
#include "proxy/fwd_sidecar.h"
#include "proxy/fwd_conn.h"
#include "proxy/fwd_io.h"
#include "proxy/fwd_int.h"
#include "proxy/worker.h"
#include "proxy/cbreak.h"
#include "proxy/fwd_h2.h"
#include "proxy/l4fwd.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/tunnel.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "http/h1.h"
#include "http/h2.h"
#include "net/dns.h"
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The port a sidecar request is routed on: the original destination's when the
 * connection was redirected, else the authority's (the URL's for a proxy request, Host's
 * otherwise), else the scheme's default. */
uint16_t st_sidecar_port(const struct stream *st)
{
	const struct dconn *d = st->d;
	const char *b = d->in;
	struct h1_span a;
	char host[256];
	uint16_t port, dflt = 80;

	if (st->req.target_form == H1_TF_ABSOLUTE) {
		a = st->req.authority;
		if (st->req.scheme.len == 5 && h1_name_eq(b + st->req.scheme.off, 5, "https", 5))
			dflt = 443;
	} else if (d->redirected) {
		return sock_addr_port(&d->odst);
	} else if (st->req.host_idx >= 0) {
		a = st->req.headers[st->req.host_idx].value;
	} else {
		return dflt;
	}
	if (sidecar_split_authority(b + a.off, a.len, host, sizeof(host), &port, dflt) < 0)
		return dflt;
	return port;
}

/* The request leaves this connection's HTTP processing without a log line of its own
 * (a tunnel takes over and logs it). */
void st_detach(struct stream *st)
{
	struct worker *w = st->d->w;

	loop_timer_cancel(w->loop, &st->timeout);
	st_cb_end(st);
	st->active = false;
	STAT_DEC(w->st.rq_active);
	if (st->snap) {
		snap_unref(st->snap);
		st->snap = NULL;
	}
}

/* Gives the downstream socket and its registration to a tunnel; the connection is freed
 * at the next settle point without closing it. */
static void d_handoff(struct dconn *d, struct tun_req *r)
{
	r->fd = d->io.fd;
	r->reg = d->io.registered ? &d->io : NULL;
	d->dead = true;
	tun_start(d->w, r);
	d->io.fd = -1;
	loop_io_forget(d->w->loop, &d->io);   /* if the tunnel could not take it over */
}

/* d_handoff for a connection that was never HTTP: what it sent so far goes first, and
 * its log line starts at accept. */
static void d_handoff_read(struct dconn *d, struct tun_req *r)
{
	r->local_s = d->local_s;
	r->remote_s = d->remote_s;
	r->initial = d->in;
	r->ninitial = d->in_len;
	r->start_wall_ms = d->accept_wall_ms;
	r->start_ms = d->accept_ms;
	d_handoff(d, r);
}

/* The cluster of the ServiceEntry whose addresses cover dst, or NULL. */
static struct cluster *snap_addr_cluster(const struct snap *s, const struct sock_addr *dst)
{
	const struct snap_addr *a = snap_addr_find(s, dst);

	return a ? a->cl : NULL;
}

/* A redirected connection that is not HTTP (a TLS ClientHello, whose SNI is given, or
 * anything else): the tls:/tcp: routes bound to "mesh" first (l4fwd.c), else the cluster
 * of the ServiceEntry whose addresses cover its original destination, else an opaque
 * tunnel to the cluster of its SNI and original port when the registry has one, else as
 * the outbound traffic policy says; then the AuthorizationPolicies decide it as a
 * connection. A connection made to the capture port directly has no destination to pass
 * it to: it is closed. */
void d_tcp_handoff(struct dconn *d, const char *sni, enum sni_status sst)
{
	struct worker *w = d->w;
	struct tun_req r;
	struct l4_req q;
	char ip[SOCK_ADDR_STRLEN];
	uint16_t port = sock_addr_port(&d->odst);

	d->sniffing = false;
	if (!d->redirected) {
		log_debug("fwd", "%s: not HTTP and not redirected: no destination; closing",
		          d->remote_s);
		d->dead = true;
		return;
	}
	memset(&r, 0, sizeof(r));
	r.snap = w->snap;
	memset(&q, 0, sizeof(q));
	q.sni = sni && sni[0] ? sni : NULL;
	q.host = q.sni ? q.sni : sock_addr_ip_str(&d->odst, ip, sizeof(ip));
	q.port = port;
	q.dst = &d->odst;
	q.src = &d->remote;
	if (l4_route_sidecar(w, w->snap, &q, sst, &r) == 0) {
		/* A ServiceEntry address before the SNI: Istio's listener for that IP:port wins
		 * over the port's wildcard one, where the SNI is looked at. */
		r.cl = snap_addr_cluster(w->snap, &d->odst);
		if (!r.cl && q.sni)
			r.cl = sidecar_tcp_cluster(w->snap, sni, port);
		if (!r.cl)
			r.cl = w->proxy->outbound_policy == PROXY_REGISTRY_ONLY
			       ? &sidecar_blackhole_cluster : &sidecar_passthrough_cluster;
	}
	l4_authz(w, w->snap, &q, &d->remote, d->remote_s, d_principal(d), &r);
	r.dst = &d->odst;
	r.sni = sni;
	d_handoff_read(d, &r);
}

/* A connection on a gateway PASSTHROUGH port, once its ClientHello is read (or is not
 * one): routed by the listener's tls: routes (l4fwd.c), refused when none matches, then
 * decided by the AuthorizationPolicies on its SNI (no client certificate: the TLS is the
 * application's). */
void d_gw_sni_handoff(struct dconn *d, const char *sni, enum sni_status sst)
{
	struct tun_req r;
	struct l4_req q;

	d->sniffing = false;
	memset(&r, 0, sizeof(r));
	memset(&q, 0, sizeof(q));
	q.sni = sst == SNI_OK ? sni : NULL;
	q.host = q.sni;
	q.port = d->lst->port;
	q.dst = &d->local;
	q.src = &d->remote;
	r.snap = d->snap;
	l4_route_gateway(d->w, d->lst, &q, sst, &r);
	l4_authz(d->w, d->snap, &q, &d->remote, d->remote_s, NULL, &r);
	r.sni = q.sni;
	d_handoff_read(d, &r);
}

/* Classifies the first bytes of a capture-listener connection, or reads the ClientHello
 * on a gateway PASSTHROUGH port. Returns 0 when it is HTTP (go on parsing), 1 when more
 * bytes are needed or the connection was handed to a tunnel. */
/* A plain connection whose client opened with the HTTP/2 preface (prior knowledge, as
 * gRPC clients do on plaintext): the same server session as ALPN h2 on TLS, fed what was
 * read while sniffing. */
static void d_start_h2c(struct dconn *d)
{
	d->sniffing = false;
	loop_timer_cancel(d->w->loop, &d->timer);
	d->h2c = h2d_new(d->w, d, &d->io, NULL);
	if (!d->h2c || h2d_input(d->h2c, d->in, d->in_len) < 0)
		d->dead = true;
	buf_release(d->in, d->in_cap);
	d->in = NULL;
	d->in_cap = d->in_len = d->in_pos = 0;
}

int d_sniff(struct dconn *d)
{
	const struct snap_addr *a = d->redirected ? snap_addr_find(d->w->snap, &d->odst) : NULL;
	char sni[256];
	enum sni_status sst;

	if (!d->sidecar) {
		sst = sni_read((const unsigned char *)d->in, d->in_len, sni, sizeof(sni));
		if (sst == SNI_NEED_MORE)
			return 1;
		d_gw_sni_handoff(d, sni, sst);
		return 1;
	}

	if (a && a->opaque) {
		/* A ServiceEntry address on a TCP port: opaque, whatever the bytes look like. */
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);
		return 1;
	}
	switch (h2_preface_check(d->in, d->in_len)) {
	case H2_PREFACE_MORE:
		return 1;
	case H2_PREFACE_YES:
		d_start_h2c(d);
		return 1;
	default:
		break;
	}
	switch (sidecar_classify(d->in, d->in_len)) {
	case SIDECAR_NEED_MORE:
		return 1;
	case SIDECAR_PROTO_HTTP:
		d->sniffing = false;
		return 0;
	case SIDECAR_PROTO_TLS:
		sst = sni_read((const unsigned char *)d->in, d->in_len, sni, sizeof(sni));
		if (sst == SNI_NEED_MORE)
			return 1;
		d_tcp_handoff(d, sst == SNI_OK ? sni : NULL, sst);
		return 1;
	case SIDECAR_PROTO_OPAQUE:
	default:
		if (!d->redirected) {
			/* Made to the capture port directly: an HTTP proxy client, whose malformed
			 * request line the parser answers with its 400 (there is nowhere to tunnel
			 * it to). */
			d->sniffing = false;
			return 0;
		}
		d_tcp_handoff(d, NULL, SNI_NOT_TLS);
		return 1;
	}
}

/* CONNECT host:port at the sidecar: a tunnel to the registry's cluster for host:port,
 * else as the outbound traffic policy says. */
void st_sidecar_connect(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	const char *b = d->in;
	struct tun_req r;
	struct l4_req q;
	struct sock_addr ip;
	char host[256], authority[300], ua[256];
	struct alog_str uas = req_header(st, "user-agent");
	uint16_t port;

	if (sidecar_split_authority(b + st->req.target.off, st->req.target.len, host, sizeof(host),
	                            &port, 0) < 0 || port == 0) {
		st->resp_close = true;
		fwd_down->local_reply(st, 400, ALOG_F_DPE, "http1.invalid_url", "CONNECT needs host:port");
		return;
	}
	memset(&r, 0, sizeof(r));
	memset(&q, 0, sizeof(q));
	/* The CONNECT host stands for the SNI the client is about to send: a tls: route to
	 * the egress gateway takes it there, and the gateway routes on the real SNI. */
	q.sni = q.host = host;
	q.port = port;
	q.src = &d->remote;
	if (sock_addr_from_ip(host, port, &ip) == 0)
		q.dst = &ip;
	if (l4_route_sidecar(w, st->snap, &q, SNI_OK, &r) == 0) {
		r.cl = sidecar_tcp_cluster(st->snap, host, port);
		/* CONNECT to an IP: the ServiceEntry whose addresses cover it. */
		if (!r.cl && q.dst)
			r.cl = snap_addr_cluster(st->snap, &ip);
	}
	if (!r.cl && !r.fail_flags && w->proxy->outbound_policy == PROXY_REGISTRY_ONLY) {
		STAT_INC(w->st.blackhole);
		st->cl = &sidecar_blackhole_cluster;
		st->route = &sidecar_block_all_route;
		st->resp_close = true;
		fwd_down->local_reply(st, 502, 0, "direct_response", NULL);
		return;
	}
	if (!r.cl && !r.fail_flags) {
		r.cl = &sidecar_passthrough_cluster;
		r.route_name = sidecar_allow_any_route.name;
	}
	snprintf(authority, sizeof(authority), "%.*s", (int)st->req.target.len, b + st->req.target.off);
	snprintf(ua, sizeof(ua), "%.*s", (int)uas.len, uas.p ? uas.p : "");
	r.name = host;
	r.port = port;
	r.local_s = d->local_s;
	r.remote_s = d->remote_s;
	/* Bytes the client sent right after the head (an eager TLS ClientHello). */
	r.initial = d->in + d->in_pos;
	r.ninitial = d->in_len - d->in_pos;
	r.connect = true;
	r.authority = authority;
	r.user_agent = ua;
	r.request_id = st->reqid;
	r.protocol = st->req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
	r.start_wall_ms = st->start_wall_ms;
	r.start_ms = st->start_ms;
	/* The stream's reference goes with st_detach; r.cl belongs to this snapshot, so
	 * hold it until the tunnel has taken its own. */
	r.snap = snap_ref(st->snap);
	st_detach(st);
	d_handoff(d, &r);
	snap_unref(r.snap);
}

static void st_resolved(struct stream *st, const struct dns_result *res)
{
	struct dconn *d = st->d;

	if (res->status != DNS_OK || res->n == 0) {
		char body[300];

		STAT_INC(d->w->st.dns_fail);
		snprintf(body, sizeof(body), "dns resolution failure: %s: %s", st->host, res->reason);
		fwd_down->local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure", body);
		return;
	}
	st_set_ep(st, &res->addrs[0].addr, st->port);
	st_connect(st, false);   /* refuses the proxy's own addresses */
}

static void st_on_dns(void *arg, const struct dns_result *res)
{
	struct stream *st = arg;
	struct dconn *d = st->d;

	st->dnsq = NULL;
	st_resolved(st, res);
	fwd_down->settle(d);
}

/* An original-destination cluster (PassthroughCluster, resolution NONE): where the
 * connection was going when it was redirected, else the request's authority, resolved
 * on the worker. */
void st_original_dst(struct stream *st)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct dns_result res;
	char name[256];
	size_t n = strlen(st->host);

	if (d->redirected) {
		st_set_ep(st, &d->odst, 0);
		st_connect(st, false);
		return;
	}
	/* st->host keeps an IPv6 literal's brackets. */
	if (n >= 2 && st->host[0] == '[' && st->host[n - 1] == ']')
		snprintf(name, sizeof(name), "%.*s", (int)(n - 2), st->host + 1);
	else
		str_copy(name, sizeof(name), st->host);
	if (!w->dns) {
		fwd_down->local_reply(st, 503, ALOG_F_DF, "dns_resolution_failure", "no resolver");
		return;
	}
	if (dns_resolve_local(w->dns, name, AF_UNSPEC, &res) == 0) {
		st_resolved(st, &res);
		return;
	}
	st->dnsq = dns_resolve(w->dns, name, AF_UNSPEC, st_on_dns, st);
}

/* No route for the host on this port: ALLOW_ANY passes the request to where it was
 * going (PassthroughCluster, route allow_any), REGISTRY_ONLY answers 502
 * (BlackHoleCluster, route block_all), as Istio's sidecar does. */
void st_sidecar_default(struct stream *st)
{
	struct worker *w = st->d->w;

	if (w->proxy->outbound_policy == PROXY_REGISTRY_ONLY) {
		STAT_INC(w->st.blackhole);
		st->cl = &sidecar_blackhole_cluster;
		st->route = &sidecar_block_all_route;
		fwd_down->local_reply(st, 502, 0, "direct_response", NULL);
		return;
	}
	STAT_INC(w->st.passthrough);
	st->cl = &sidecar_passthrough_cluster;
	st->route = &sidecar_allow_any_route;
	st_original_dst(st);
}

/* HTTP to a destination a mesh tcp: route takes (by host and port): the route decides,
 * not HTTP routing, so that a route to the gateway is never bypassed because the bytes
 * looked like HTTP. The connection's first request hands the whole connection to the
 * route's tunnel (what was read goes first); a later one, or a refusal, is answered 503.
 * Returns true when the request was taken. */
bool st_sidecar_tcp_route(struct stream *st, uint16_t port)
{
	struct dconn *d = st->d;
	struct worker *w = d->w;
	struct tun_req r;
	struct l4_req q;

	if (!st->snap->mesh_l4 || st->snap->mesh_l4->nroutes == 0)
		return false;
	memset(&q, 0, sizeof(q));
	memset(&r, 0, sizeof(r));
	q.host = st->host;
	q.port = port;
	q.dst = d->redirected ? &d->odst : NULL;
	q.src = &d->remote;
	q.http = true;
	if (l4_route_sidecar(w, st->snap, &q, SNI_NOT_TLS, &r) == 0)
		return false;
	if (r.fail_flags || d->nreq != 1 || d->h2s) {
		st->resp_close = true;
		st->cl = r.cl;
		if (r.fail_flags)
			fwd_down->local_reply(st, r.fail_code, r.fail_flags, r.fail_details, r.fail_reason);
		else
			fwd_down->local_reply(st, 503, ALOG_F_NR, "filter_chain_not_found",
			                      "a tcp route takes this destination: only a connection's "
			                      "first request can follow it");
		return true;
	}
	r.dst = q.dst;
	r.name = st->host;
	r.port = port;
	r.snap = snap_ref(st->snap);
	st_detach(st);
	d_handoff_read(d, &r);
	snap_unref(r.snap);
	return true;
}
