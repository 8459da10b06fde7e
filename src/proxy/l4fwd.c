/* l4fwd: tls: and tcp: routes on the data path (see l4fwd.h). */
#include "proxy/l4fwd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "net/tls.h"
#include "proxy/alog.h"
#include "proxy/authz.h"
#include "proxy/l4tls.h"
#include "proxy/worker.h"

/* One log line per worker per second at most: a client probing a gateway port with
 * names it may not use must not be able to flood the log; the access log has every
 * connection. */
static void l4_log_refusal(struct worker *w, const struct l4_req *q, const char *table,
                           const char *why)
{
	static _Thread_local uint64_t last_ms;
	static _Thread_local unsigned dropped;
	uint64_t now = loop_now_ms(w->loop);

	if (last_ms && now - last_ms < 1000) {
		dropped++;
		return;
	}
	log_warn("l4", "refused a connection on %s (sni \"%s\", host \"%s\", port %u): %s%s",
	         table, q->sni ? q->sni : "", q->host ? q->host : "", q->port, why,
	         dropped ? " (and more since the last such line)" : "");
	last_ms = now;
	dropped = 0;
}

static void l4_refuse(struct worker *w, const struct l4_req *q, const char *table,
                      struct tun_req *r, int code, unsigned flags, const char *details,
                      const char *why)
{
	STAT_INC(w->st.l4_refused);
	r->fail_code = code;
	r->fail_flags = flags;
	r->fail_details = details;
	r->fail_reason = why;
	l4_log_refusal(w, q, table, why);
}

/* Follows route rt: a destination by weight, whose cluster the tunnel can carry. */
static void l4_follow(struct worker *w, const struct l4_route *rt, const struct l4_req *q,
                      const char *table, struct tun_req *r)
{
	const struct route_dest *d;

	if (rt->refuse) {
		l4_refuse(w, q, table, r, 503, ALOG_F_NR, "filter_chain_not_found", rt->refuse);
		return;
	}
	d = route_pick_weighted(rt->dests, rt->ndests, rt->total_weight, worker_rand(w));
	if (!d || !d->cluster) {
		l4_refuse(w, q, table, r, 503, ALOG_F_NC, "cluster_not_found",
		          "the route's destination has no cluster");
		return;
	}
	r->cl = d->cluster;
	/* Automatic mutual TLS (cluster.h auto_mtls) is not a DestinationRule's word: Istio's
	 * egress gateway carries no tlsMode label, so its sidecars never wrap a passthrough
	 * hop in mesh TLS, and a PASSTHROUGH port routes on the application's own SNI, which
	 * a wrapping would hide (istio/istio#48955). The bytes go as they are. A
	 * DestinationRule's own tls (the older form of the egress gateway task: ISTIO_MUTUAL
	 * with the application's host as SNI) is spoken by the tunnel (l4tls.c); a tunnel
	 * that no route sends (a CONNECT to a registry host) relays bytes as they are. */
	r->originate_tls = d->cluster->tls_mode != CLUSTER_TLS_DISABLE && !d->cluster->auto_mtls;
	STAT_INC(w->st.l4_routed);
}

/* The host (exact sniHosts of a tls: route that can take port) among whose registry
 * endpoints (cluster outbound|PORT||HOST) dst is, or NULL. The endpoint sets are read as
 * workers read them (valid until the worker returns to its loop). */
static const char *l4_dst_owner(const struct snap *s, const struct l4_table *t,
                                const struct sock_addr *dst, uint16_t port)
{
	char name[320];

	for (size_t i = 0; i < t->nroutes; i++) {
		const struct l4_route *r = &t->routes[i];

		for (size_t j = 0; r->tls && j < r->nmatches; j++) {
			const struct l4_match *m = &r->matches[j];

			if (m->port && m->port != port)
				continue;
			for (size_t k = 0; k < m->nhosts; k++) {
				const struct cluster *c;
				const struct cluster_eps *eps;

				if (m->hosts[k][0] == '*')
					continue;
				snprintf(name, sizeof(name), "outbound|%u||%s", port, m->hosts[k]);
				c = snap_cluster_find(s, name);
				eps = c ? cluster_eps_load(c) : NULL;
				for (size_t e = 0; eps && e < eps->n; e++) {
					struct sock_addr a = *dst;

					sock_addr_set_port(&a, sock_addr_port(&eps->v[e].addr));
					if (sock_addr_equal(&a, &eps->v[e].addr))
						return m->hosts[k];
				}
			}
		}
	}
	return NULL;
}

int l4_route_sidecar(struct worker *w, const struct snap *s, const struct l4_req *q,
                     enum sni_status st, struct tun_req *r)
{
	const struct l4_table *t = s->mesh_l4;
	const struct l4_route *rt;

	if (!t || t->nroutes == 0)
		return 0;
	rt = l4_lookup(t, q);
	if (rt) {
		l4_follow(w, rt, q, "mesh", r);
		return 1;
	}
	/* Bound for an address of a host that tls: routes send elsewhere (the gateway),
	 * without naming it (no SNI, another SNI, not TLS, an IP in CONNECT): refused, or
	 * leaving out the SNI would be a way around the gateway. */
	if (q->dst && !q->http) {
		const char *owner = l4_dst_owner(s, t, q->dst, q->port);

		if (owner) {
			l4_refuse(w, q, "mesh", r, 503, ALOG_F_NR, "filter_chain_not_found",
			          "the destination address is one of a host that tls routes send "
			          "elsewhere, and the connection does not name it");
			log_debug("l4", "%s: an address of %s", q->host ? q->host : "", owner);
			return 1;
		}
	}
	/* TLS whose name cannot be read while tls: routes watch this port: the name might
	 * have been one of theirs. Refused rather than passed on by address. */
	if ((st == SNI_BAD_NAME || st == SNI_MALFORMED || st == SNI_TOO_LONG) &&
	    l4_table_has_port(t, q->port)) {
		l4_refuse(w, q, "mesh", r, 503, ALOG_F_NR, "filter_chain_not_found",
		          st == SNI_TOO_LONG ? "ClientHello too long to read its server name"
		                             : "unreadable ClientHello server name");
		return 1;
	}
	return 0;
}

/* Whether one of the listener's PASSTHROUGH servers admits the name: a plain one by the
 * name itself, an AUTO_PASSTHROUGH one (auto true) by the host inside Istio's
 * outbound_.PORT_.SUBSET_.HOST form (auto_host, NULL when sni is not of that form). */
static bool l4_server_admits(const struct snap_listener *l, const char *sni,
                             const char *auto_host, bool autos)
{
	for (size_t i = 0; i < l->nservers; i++) {
		const struct snap_server *sv = &l->servers[i];
		const char *name = autos ? auto_host : sni;

		if (sv->tls != SNAP_SRV_PASSTHROUGH || sv->auto_sni != autos || (autos && !name))
			continue;
		for (size_t j = 0; j < sv->nhosts; j++)
			if (tls_host_match(sv->hosts[j], name))
				return true;
	}
	return false;
}

/* AUTO_PASSTHROUGH (Istio's SNI-DNAT): the cluster the SNI names, outbound|PORT|SUBSET|HOST,
 * taken as it is: its endpoints, none of its DestinationRule's TLS (the bytes are the
 * client's own TLS, as Istio's sni-dnat clusters carry them). */
static void l4_follow_auto(struct worker *w, const struct snap_listener *l,
                           const struct l4_req *q, uint16_t port, const char *subset,
                           const char *host, struct tun_req *r)
{
	char name[600];
	struct cluster *c;

	snprintf(name, sizeof(name), "outbound|%u|%s|%s", port, subset, host);
	c = r->snap ? snap_cluster_find(r->snap, name) : NULL;
	if (!c) {
		l4_refuse(w, q, l->name, r, 503, ALOG_F_NR, "filter_chain_not_found",
		          "AUTO_PASSTHROUGH: the SNI names no cluster of the registry");
		return;
	}
	r->cl = c;
	STAT_INC(w->st.l4_routed);
}

void l4_route_gateway(struct worker *w, const struct snap_listener *l, const struct l4_req *q,
                      enum sni_status st, struct tun_req *r)
{
	const struct l4_route *rt;
	char asub[256], ahost[256] = "";
	uint16_t aport = 0;

	if (l->l4_mode != SNAP_L4_TCP) {
		if (st != SNI_OK && st != SNI_NO_NAME) {
			l4_refuse(w, q, l->name, r, 503, ALOG_F_NR, "filter_chain_not_found",
			          st == SNI_NOT_TLS ? "not a TLS ClientHello on a PASSTHROUGH port"
			                            : "unreadable ClientHello");
			return;
		}
		if (l4_auto_sni_parse(q->sni, &aport, asub, sizeof(asub), ahost, sizeof(ahost)) < 0)
			ahost[0] = '\0';
		if (!l4_server_admits(l, q->sni, NULL, false)) {
			if (ahost[0] && l4_server_admits(l, q->sni, ahost, true)) {
				l4_follow_auto(w, l, q, aport, asub, ahost, r);
				return;
			}
			l4_refuse(w, q, l->name, r, 503, ALOG_F_NR, "filter_chain_not_found",
			          q->sni ? "no PASSTHROUGH server of this port has the SNI as a host"
			                 : "no SNI, and no PASSTHROUGH server of this port has host \"*\"");
			return;
		}
	}
	rt = l4_lookup(l->l4, q);
	if (!rt && ahost[0] && l4_server_admits(l, q->sni, ahost, true)) {
		l4_follow_auto(w, l, q, aport, asub, ahost, r);
		return;
	}
	if (!rt) {
		l4_refuse(w, q, l->name, r, 503, ALOG_F_NR, "filter_chain_not_found",
		          l->l4_mode != SNAP_L4_TCP ? "no tls route matches the SNI"
		                                    : "no tcp route matches");
		return;
	}
	l4_follow(w, rt, q, l->name, r);
}

bool l4_authz(struct worker *w, const struct snap *s, const struct l4_req *q,
              const struct sock_addr *peer, const char *remote_s, const char *principal,
              struct tun_req *r)
{
	struct authz_req rq;
	const char *details;

	if (!s || !s->authz || r->fail_flags)
		return false;
	memset(&rq, 0, sizeof(rq));
	rq.l4 = true;
	rq.principal = principal;
	rq.source = peer;
	rq.dest = q->dst;
	rq.port = q->port;
	rq.sni = q->sni;
	if (authz_request(s->authz, &rq, remote_s, NULL, &w->st, &details) == 0)
		return false;
	/* Envoy's network RBAC filter closes the connection with no response flag; its
	 * reason goes where the HTTP path puts it (RESPONSE_CODE_DETAILS). A CONNECT client
	 * would get 403 (the sidecar decides CONNECT as HTTP before routing, though). */
	r->fail_code = 403;
	r->fail_flags = 0;
	r->fail_details = details;
	r->fail_reason = "RBAC: access denied";
	r->fail_denied = true;
	return true;
}

void l4_accept_tcp(struct worker *w, const struct snap_listener *l, int fd,
                   const struct sock_addr *peer)
{
	struct tun_req r;
	struct l4_req q;
	struct sock_addr local;
	char local_s[SOCK_ADDR_STRLEN] = "", remote_s[SOCK_ADDR_STRLEN];

	STAT_INC(w->st.dcx_total);
	sock_addr_str(peer, remote_s, sizeof(remote_s));
	memset(&q, 0, sizeof(q));
	q.port = l->port;
	q.src = peer;
	if (sock_accepted_local(fd, &l->addr, &local) == 0) {
		sock_addr_str(&local, local_s, sizeof(local_s));
		q.dst = &local;
	}
	memset(&r, 0, sizeof(r));
	r.snap = w->snap;
	l4_route_gateway(w, l, &q, SNI_NOT_TLS, &r);
	l4_authz(w, r.snap, &q, peer, remote_s, NULL, &r);
	r.fd = fd;
	r.local_s = local_s;
	r.remote_s = remote_s;
	r.start_wall_ms = wall_ms();
	r.start_ms = loop_now_ms(w->loop);
	tun_start(w, &r);
}

bool l4_term_takes(const struct snap_listener *l, const char *sni)
{
	const struct snap_server *best = NULL;
	size_t score = 0;

	/* The server the handshake's SNI dispatch chose: the most specific host. */
	for (size_t i = 0; i < l->nservers; i++) {
		const struct snap_server *sv = &l->servers[i];
		size_t sc = sv->ctx ? snap_server_sni_score(sv, sni) : 0;

		if (sc > score) {
			score = sc;
			best = sv;
		}
	}
	return best && best->term_l4;
}

int l4_term_handoff(struct worker *w, struct snap *s, const struct snap_listener *l,
                    struct tls_conn *tls, int fd, const char *sni,
                    const struct sock_addr *local, const struct sock_addr *remote,
                    const char *local_s, const char *remote_s, const char *principal,
                    int64_t start_wall_ms, uint64_t start_ms)
{
	const struct l4_route *rt;
	struct tun_req r;
	struct l4_req q;
	int plain;

	memset(&q, 0, sizeof(q));
	q.sni = sni && sni[0] ? sni : NULL;
	q.host = q.sni;
	q.port = l->port;
	q.dst = local;
	q.src = remote;
	memset(&r, 0, sizeof(r));
	r.snap = s;
	rt = l4_lookup(l->l4, &q);
	if (rt)
		l4_follow(w, rt, &q, l->name, &r);
	else
		l4_refuse(w, &q, l->name, &r, 503, ALOG_F_NR, "filter_chain_not_found",
		          "no tls or tcp route takes what this TLS server terminated");
	l4_authz(w, s, &q, remote, remote_s, principal, &r);
	plain = l4tls_wrap_server(w, tls, fd);
	if (plain < 0) {
		log_warn("l4", "%s: no socketpair for the terminated connection: %s", remote_s,
		         strerror(errno));
		return -1;
	}
	r.fd = plain;
	r.local_s = local_s;
	r.remote_s = remote_s;
	r.sni = q.sni;
	r.start_wall_ms = start_wall_ms;
	r.start_ms = start_ms;
	tun_start(w, &r);
	return 0;
}

bool l4_peek_passthrough(const struct snap_listener *l, const char *sni)
{
	size_t pass = 0, term = 0;

	for (size_t i = 0; i < l->nservers; i++) {
		const struct snap_server *sv = &l->servers[i];
		char asub[256], ahost[256];
		uint16_t aport;
		size_t score = sv->auto_sni && l4_auto_sni_parse(sni, &aport, asub, sizeof(asub), ahost,
		                                                 sizeof(ahost)) == 0
		               ? snap_server_sni_score(sv, ahost) : snap_server_sni_score(sv, sni);

		if (sv->tls == SNAP_SRV_PASSTHROUGH && score > pass)
			pass = score;
		else if (sv->ctx && score > term)
			term = score;
	}
	return pass > term;
}
