/* authz_eval: deciding a request against compiled AuthorizationPolicies (see authz.h for
 * Istio's order and matching rules, authz_int.h for the compiled form). Evaluation
 * allocates nothing, reads only the immutable compiled policies (any worker, no lock),
 * and stops at the first rule that decides; the indexes narrow the rules tried. */
#include "proxy/authz.h"
#include "proxy/authz_int.h"

#include "core/log.h"
#include "proxy/worker.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- evaluate ---- */

static bool am_match(const struct amatch *m, const char *s, size_t len, bool icase)
{
	switch (m->k) {
	case AM_ANY:
		return true;
	case AM_EXACT:
		return len == m->len && (icase ? strncasecmp(s, m->s, len) == 0
		                               : memcmp(s, m->s, len) == 0);
	case AM_PREFIX:
		return len >= m->len && (icase ? strncasecmp(s, m->s, m->len) == 0
		                               : memcmp(s, m->s, m->len) == 0);
	case AM_SUFFIX:
		return len >= m->len && (icase ? strncasecmp(s + len - m->len, m->s, m->len) == 0
		                               : memcmp(s + len - m->len, m->s, m->len) == 0);
	}
	return false;
}

/* Any of l matches s; an absent value (s NULL) matches nothing, not even "*". */
static bool aml_any(const struct amlist *l, const char *s, size_t len, bool icase)
{
	if (!s)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (am_match(&l->v[i], s, len, icase))
			return true;
	return false;
}

/* The list constrains: set ones must match, not-lists must not. */
static bool aml_ok(const struct amlist *yes, const struct amlist *no, const char *s, size_t len,
                   bool icase)
{
	if (yes->n && !aml_any(yes, s, len, icase))
		return false;
	return !(no->n && aml_any(no, s, len, icase));
}

/* The address as family + bytes, IPv4-mapped IPv6 as IPv4. */
static int addr_bytes(const struct sock_addr *a, const uint8_t **b)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (!a)
		return -1;
	if (a->u.sa.sa_family == AF_INET) {
		*b = (const uint8_t *)&a->u.in4.sin_addr;
		return AF_INET;
	}
	if (a->u.sa.sa_family == AF_INET6) {
		*b = a->u.in6.sin6_addr.s6_addr;
		if (memcmp(*b, mapped, 12) == 0) {
			*b += 12;
			return AF_INET;
		}
		return AF_INET6;
	}
	return -1;
}

static bool cidr_has(const struct acidr *c, int fam, const uint8_t *b)
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (c->family != fam)
		return false;
	if (memcmp(c->addr, b, (size_t)full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		return (c->addr[full] & mask) == (b[full] & mask);
	}
	return true;
}

static bool acl_any(const struct acidrlist *l, const struct sock_addr *a)
{
	const uint8_t *b;
	int fam = addr_bytes(a, &b);

	if (fam < 0)
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (cidr_has(&l->v[i], fam, b))
			return true;
	return false;
}

static bool acl_ok(const struct acidrlist *yes, const struct acidrlist *no,
                   const struct sock_addr *a)
{
	if (yes->n && !acl_any(yes, a))
		return false;
	return !(no->n && acl_any(no, a));
}

static bool apl_ok(const struct aportlist *yes, const struct aportlist *no, uint16_t port)
{
	bool hit = false;

	if (yes->n) {
		for (size_t i = 0; i < yes->n && !hit; i++)
			hit = yes->v[i] == port;
		if (!hit)
			return false;
	}
	for (size_t i = 0; i < no->n; i++)
		if (no->v[i] == port)
			return false;
	return true;
}

/* What a request's principal says, computed once per evaluation. */
struct actx {
	const struct authz_req *r;
	size_t plen;
	const char *ns;              /* namespace part of the principal, or NULL */
	size_t nslen;
	const char *sa;              /* "ns/NS/sa/SA" tail of the principal, or NULL */
	bool canonical;              /* the principal is TD/ns/NS/sa/SA (or there is none) */
	const char *host;            /* authority without its port */
	size_t host_len;
	bool lenient;                /* l4: HTTP-only fields ignored (DENY, AUDIT) */
	bool scan;                   /* try every rule (authz_eval_scan) */
	struct aquery q;             /* the values the indexes are asked for */
	char host_lc[256];           /* the authority in lower case, for q */
	char sni_lc[256];            /* the SNI in lower case, for q */
};

/* ASCII lower case, as the compiled host and SNI patterns are (am_compile). */
static void fold_lower(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i] >= 'A' && src[i] <= 'Z' ? (char)(src[i] - 'A' + 'a') : src[i];
}

static void actx_init(struct actx *c, const struct authz_req *r)
{
	const char *p = r->principal;

	memset(c, 0, sizeof(*c));
	c->r = r;
	c->canonical = true;
	if (p) {
		/* Istio's identities are TD/ns/NS/sa/SA (the trust domain has no '/'): only then
		 * is there a namespace. Another form (no CA of Istio's issues one) has none: it
		 * can match principal patterns, never namespaces or serviceAccounts. */
		const char *td_end = strchr(p, '/'), *ns_end;

		c->plen = strlen(p);
		c->canonical = td_end && td_end != p && strncmp(td_end, "/ns/", 4) == 0 &&
		               (ns_end = strchr(td_end + 4, '/')) && ns_end != td_end + 4 &&
		               strncmp(ns_end, "/sa/", 4) == 0 && ns_end[4] &&
		               !strchr(ns_end + 4, '/');
		if (c->canonical) {
			c->ns = td_end + 4;
			c->nslen = (size_t)(ns_end - c->ns);
			c->sa = td_end + 1;
		}
	}
	if (!r->l4 && r->host) {
		size_t n = r->host_len;

		/* Strip ":port" (not inside an IPv6 literal's brackets). */
		for (size_t i = n; i > 0; i--) {
			char ch = r->host[i - 1];

			if (ch == ':') {
				n = i - 1;
				break;
			}
			if (ch < '0' || ch > '9')
				break;
		}
		c->host = r->host;
		c->host_len = n;
	}
	c->q.principal = r->principal;
	c->q.principal_len = c->plen;
	c->q.ns = c->ns;
	c->q.ns_len = c->nslen;
	if (c->host && r->host_len <= sizeof(c->host_lc)) {
		/* Host patterns are compiled in lower case; the authority is folded once. */
		fold_lower(c->host_lc, r->host, r->host_len);
		c->q.host[0] = c->host_lc;
		c->q.host_len[0] = r->host_len;
		if (c->host_len != r->host_len) {
			c->q.host[1] = c->host_lc;
			c->q.host_len[1] = c->host_len;
		}
	}
	if (!r->l4) {
		c->q.path = r->path;
		c->q.path_len = r->path_len;
	}
	if (r->sni) {
		size_t n = strlen(r->sni);

		if (n <= sizeof(c->sni_lc)) {
			/* connection.sni values are compiled in lower case too. */
			fold_lower(c->sni_lc, r->sni, n);
			c->q.sni = c->sni_lc;
			c->q.sni_len = n;
		} else {
			c->q.all[AIX_SNI] = true;
		}
	}
}

/* serviceAccounts "NS/SA" against the principal's "ns/NS/sa/SA" tail. */
static bool sa_any(const struct amlist *l, const struct actx *c)
{
	if (!c->sa)
		return false;
	for (size_t i = 0; i < l->n; i++) {
		const char *v = l->v[i].s, *slash = strchr(v, '/');
		size_t nl = slash ? (size_t)(slash - v) : 0;

		if (slash && c->nslen == nl && memcmp(c->ns, v, nl) == 0 &&
		    strncmp(c->ns + nl, "/sa/", 4) == 0 && strcmp(c->ns + nl + 4, slash + 1) == 0)
			return true;
	}
	return false;
}

static bool src_match(const struct asource *s, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (!aml_ok(&s->principals, &s->not_principals, r->principal, c->plen, false))
		return false;
	if (!aml_ok(&s->namespaces, &s->not_namespaces, c->ns, c->nslen, false))
		return false;
	if (s->sas.n && !sa_any(&s->sas, c))
		return false;
	if (s->not_sas.n && sa_any(&s->not_sas, c))
		return false;
	return acl_ok(&s->ip, &s->not_ip, r->source) && acl_ok(&s->rip, &s->not_rip, r->source);
}

/* An authority matches a host pattern as written or without its port. */
static bool host_ok(const struct aop *o, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (o->hosts.n && !aml_any(&o->hosts, r->host, r->host_len, true) &&
	    !aml_any(&o->hosts, c->host, c->host_len, true))
		return false;
	return !(o->not_hosts.n && (aml_any(&o->not_hosts, r->host, r->host_len, true) ||
	                            aml_any(&o->not_hosts, c->host, c->host_len, true)));
}

static bool op_match(const struct aop *o, const struct actx *c)
{
	const struct authz_req *r = c->r;

	if (!apl_ok(&o->ports, &o->not_ports, r->port))
		return false;
	if (r->l4) {
		bool http = o->hosts.n || o->not_hosts.n || o->methods.n || o->not_methods.n ||
		            o->paths.n || o->not_paths.n;

		return !http || c->lenient;
	}
	return host_ok(o, c) &&
	       aml_ok(&o->methods, &o->not_methods, r->method, r->method_len, false) &&
	       aml_ok(&o->paths, &o->not_paths, r->path, r->path_len, false);
}

static bool cond_match(const struct acond *w, const struct actx *c)
{
	const struct authz_req *r = c->r;
	const char *s = NULL;
	size_t len = 0;
	bool icase = false;

	switch (w->key) {
	case AK_SOURCE_IP: case AK_REMOTE_IP:
		return acl_ok(&w->cvalues, &w->not_cvalues, r->source);
	case AK_DEST_IP:
		return acl_ok(&w->cvalues, &w->not_cvalues, r->dest);
	case AK_DEST_PORT:
		return apl_ok(&w->pvalues, &w->not_pvalues, r->port);
	case AK_HEADER:
		if (r->l4)
			return c->lenient;
		if (!r->header || !r->header(r->header_ctx, w->header, &s, &len))
			s = NULL;
		break;
	case AK_SOURCE_NS:
		s = c->ns;
		len = c->nslen;
		break;
	case AK_SOURCE_PRINCIPAL:
		s = r->principal;
		len = c->plen;
		break;
	case AK_SNI:
		s = r->sni;
		len = s ? strlen(s) : 0;
		icase = true;
		break;
	}
	return aml_ok(&w->values, &w->not_values, s, len, icase);
}

static bool rule_match(const struct arule *ru, const struct actx *c)
{
	bool ok = ru->nfrom == 0;

	for (size_t i = 0; i < ru->nfrom && !ok; i++)
		ok = src_match(&ru->from[i], c);
	if (!ok)
		return false;
	ok = ru->nto == 0;
	for (size_t i = 0; i < ru->nto && !ok; i++)
		ok = op_match(&ru->to[i], c);
	if (!ok)
		return false;
	for (size_t i = 0; i < ru->nwhen; i++)
		if (!cond_match(&ru->when[i], c))
			return false;
	return true;
}

/* The first rule of the set's policies that matches, or NULL: the rules of the lists the
 * indexes give for the request (authz_index_lookup), merged in rule order (policy order,
 * so the first match is Istio's), each tried once. */
static const struct arule *aset_match(const struct aset *s, struct actx *c, bool lenient)
{
	struct aidlist l[AIX_MAXLISTS];
	size_t at[AIX_MAXLISTS] = { 0 };
	int nl;
	uint32_t last = UINT32_MAX;

	if (!s->nrules)
		return NULL;
	c->lenient = lenient;
	/* A connection under DENY/AUDIT ignores hosts and paths: every rule filed by them
	 * is a candidate. Under ALLOW such a rule never matches a connection. An authority
	 * too long to fold is not looked up: every rule filed by host is tried. */
	c->q.all[AIX_HOST] = (c->r->l4 && lenient) || (!c->r->l4 && c->host && !c->q.host[0]);
	c->q.all[AIX_PATH] = c->r->l4 && lenient;
	nl = c->scan ? -1 : authz_index_lookup(s, &c->q, l, AIX_MAXLISTS);
	if (nl < 0) {
		for (size_t i = 0; i < s->nrules; i++)
			if (rule_match(s->rules[i], c))
				return s->rules[i];
		return NULL;
	}
	for (;;) {
		int best = -1;

		for (int w = 0; w < nl; w++)
			if (at[w] < l[w].n && (best < 0 || l[w].v[at[w]] < l[best].v[at[best]]))
				best = w;
		if (best < 0)
			return NULL;
		if (l[best].v[at[best]] != last) {
			last = l[best].v[at[best]];
			if (rule_match(s->rules[last], c))
				return s->rules[last];
		}
		at[best]++;
	}
}

static const char rbac_none[] = "rbac_access_denied_matched_policy[none]";

/* DENY, then ALLOW: Istio's order for one set of policies. */
static bool decide(const struct aset *deny, const struct aset *allow, struct actx *c,
                   const char **policy, const char **details)
{
	const struct arule *ru = aset_match(deny, c, true);

	if (ru) {
		*policy = ru->name;
		*details = ru->details;
		return true;
	}
	if (!allow->n)
		return false;
	if ((ru = aset_match(allow, c, false))) {
		*policy = ru->name;
		return false;
	}
	*details = rbac_none;
	return true;
}

static void eval(const struct authz *a, const struct authz_req *r, bool scan,
                 struct authz_result *out)
{
	const char *sdetails = NULL;
	struct actx c;

	memset(out, 0, sizeof(*out));
	if (!a)
		return;
	actx_init(&c, r);
	c.scan = scan;
	out->denied = decide(&a->deny, &a->allow, &c, &out->policy, &out->details);
	if (a->audit.n) {
		const struct arule *ru = aset_match(&a->audit, &c, true);

		out->audit = ru ? ru->name : NULL;
	}
	if (a->sdeny.n || a->sallow.n) {
		out->shadow = true;
		out->shadow_denied = decide(&a->sdeny, &a->sallow, &c, &out->shadow_policy,
		                            &sdetails);
	}
}

void authz_eval(const struct authz *a, const struct authz_req *r, struct authz_result *out)
{
	eval(a, r, false, out);
}

void authz_eval_scan(const struct authz *a, const struct authz_req *r, struct authz_result *out)
{
	eval(a, r, true, out);
}

/* For the log: "GET /path" to host, or the connection's SNI and port. */
static void req_desc(const struct authz_req *r, char *buf, size_t n)
{
	if (r->l4)
		snprintf(buf, n, "connection to %s port %u", r->sni ? r->sni : "-", r->port);
	else
		snprintf(buf, n, "\"%.*s %.*s\" to %.*s", (int)r->method_len,
		         r->method ? r->method : "", (int)r->path_len, r->path ? r->path : "",
		         (int)r->host_len, r->host ? r->host : "");
}

int authz_request(const struct authz *a, const struct authz_req *r, const char *remote,
                  const char *request_id, struct wstats *st, const char **details)
{
	struct authz_result res;
	const char *who = r->principal ? r->principal : "-";
	char what[600];

	*details = NULL;
	if (!r->l4 && r->path && a && a->uses_paths && !authz_path_normal(r->path, r->path_len)) {
		*details = "path_normalization_failed";
		return 400;
	}
	authz_eval(a, r, &res);
	if (res.shadow) {
		if (res.shadow_denied) {
			STAT_INC(st->rbac_shadow_denied);
			req_desc(r, what, sizeof(what));
			log_info("rbac", "dry-run: would deny %s from %s (%s) request %s: %s", what,
			         remote, who, request_id ? request_id : "-",
			         res.shadow_policy ? res.shadow_policy : "none");
		} else {
			STAT_INC(st->rbac_shadow_allowed);
		}
	}
	if (res.audit) {
		req_desc(r, what, sizeof(what));
		log_info("rbac", "audit: %s matched %s from %s (%s) request %s, %s", res.audit, what,
		         remote, who, request_id ? request_id : "-",
		         res.denied ? "denied" : "allowed");
	}
	if (!res.denied) {
		STAT_INC(st->rbac_allowed);
		return 0;
	}
	STAT_INC(st->rbac_denied);
	*details = res.details;
	return 403;
}

/* ---- path form ---- */

bool authz_path_normal(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];

		if (ch == '?' || ch == '#')
			break;
		if (ch == '\\')
			return false;
		if (ch == '%' && i + 2 < n) {
			char a = p[i + 1], b = (char)(p[i + 2] | 0x20);

			/* %2e ".", %2f "/", %5c "\": an upstream decoding them sees another path. */
			if ((a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c'))
				return false;
		}
		if (ch != '/')
			continue;
		if (i + 1 < n && p[i + 1] == '/')
			return false;
		if (i + 1 < n && p[i + 1] == '.') {
			size_t k = i + 2;

			if (k < n && p[k] == '.')
				k++;
			if (k >= n || p[k] == '/' || p[k] == '?' || p[k] == '#')
				return false;
		}
	}
	return true;
}
