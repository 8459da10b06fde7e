/* egressctl analyze: istioctl analyze over the store.
 *
 * Loads the whole store and checks the references between resources that a gateway
 * would otherwise only reveal as 404s and 503s, printing each finding the way istioctl
 * does:
 *     Error [IST0101] (DestinationRule istio-system/originate-mtls-for-nginx) Referenced
 *     credentialName not found: "client-credential"
 * Messages go to stdout; the closing line goes to stderr ("Error: Analyzers found issues
 * when analyzing namespace: default." and istioctl's pointer to the documentation, or
 * "✔ No validation issues found when analyzing ..."). The exit status is istioctl's:
 * 79 when an Error was found, 0 otherwise.
 *
 * Checks (istioctl's codes and message templates):
 *   IST0101 Error    a VirtualService names a Gateway that does not exist
 *   IST0132 Warning  a VirtualService is bound to a Gateway none of whose server hosts
 *                    matches one of its hosts
 *   IST0101 Error    a route names a subset no DestinationRule for its host defines
 *   IST0101 Error    a route names a port the host's ServiceEntry does not declare
 *   IST0101 Error    a credentialName (DestinationRule or Gateway) names no Secret in the
 *                    gateway's namespace (a DestinationRule with a workloadSelector: in
 *                    its own namespace, where the workloads it selects read it)
 *   IST0161 Error    the credential's Secret lacks the keys its mode needs, or they do not
 *                    load (bad PEM, key not matching the certificate): the same rules,
 *                    and the same code, as the gateway (secrets/secret.h)
 *   IST0127 Warning  an AuthorizationPolicy in the gateway's namespace whose selector
 *                    contradicts the selector of every Gateway there (a label both name,
 *                    with another value): it selects no gateway
 *   IST0106 Error    a stored document that does not decode (Warning IST0133 for the
 *                    store's warnings, among them every field egressgw accepts and does
 *                    not apply, at its FILE:LINE: the decoder's keyword tables)
 *   IST0101 Error    an HTTPRoute whose parentRef (Gateway, ServiceEntry) does not exist,
 *                    or whose backendRef is not permitted (no ReferenceGrant) or of a
 *                    kind not served: the route's Accepted / ResolvedRefs conditions
 *                    (config/res_gwapi.h), which `get -o yaml` shows as its status
 *   IST0132 Warning  an HTTPRoute that no listener of its Gateway takes (sectionName,
 *                    port, allowedRoutes, hostnames)
 *   IST0109 Error    VirtualServices bound to the mesh gateway define the same host
 *   IST0128 Warning  a DestinationRule originates TLS (SIMPLE, MUTUAL) with nothing to
 *                    verify the server with (no caCertificates, no credentialName);
 *   IST0129 Warning  the same at port level
 *   IST0174 Warning  a DestinationRule whose host no ServiceEntry lists (hosts of the
 *                    cluster domain are Kubernetes Services, not checked)
 * Without -n every namespace is analyzed (references cross namespaces: the walkthrough's
 * DestinationRule lives in istio-system); -n NS reports only NS's resources. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/res_gwapi.h"
#include "config/resource.h"
#include "core/util.h"
#include "secrets/secret.h"

#define AN_EXIT_ISSUES 79   /* istioctl's AnalyzerFoundIssuesError */
#define AN_DOC_URL "https://istio.io/latest/docs/reference/config/analysis"

static const char analyze_usage[] =
	"Analyze the store's configuration and print potential problems, as `istioctl\n"
	"analyze` does: references that do not resolve (Gateways, subsets, ports, Secrets),\n"
	"credentials the gateway could not load, AuthorizationPolicies whose selector selects\n"
	"no gateway, DestinationRules whose host no ServiceEntry lists (Warning IST0174),\n"
	"and fields egressgw accepts but does not apply (Warning IST0133, with the file and\n"
	"line of the field).\n"
	"\n"
	"Usage:\n"
	"  egressctl analyze [-f FILE...] [-n NAMESPACE | -A] [--gateway-namespace NS]\n"
	"                    [-o log|json]\n"
	"\n"
	"Without -n, every namespace is analyzed. A credentialName is looked up where the\n"
	"gateway reads it: the Secret of that name in the gateway's namespace; one in a\n"
	"DestinationRule with a workloadSelector, in the rule's namespace (where the\n"
	"workloads it selects, say a sidecar, read it).\n"
	"\n"
	"Exit status: 79 when an Error was found (as istioctl), 0 otherwise.\n"
	"\n"
	"Examples:\n"
	"  egressctl analyze\n"
	"  egressctl analyze -n istio-system\n"
	"  egressctl analyze -o json\n"
	"\n"
	"Flags:\n"
	"  -f, --filename FILE         analyze the store as if FILE (a file, a directory, or -)\n"
	"                              were applied to it, before applying it (repeatable)\n"
	"  -A, --all-namespaces        analyze every namespace (the default)\n"
	"      --gateway-namespace NS  the gateway's namespace, where credentialName Secrets\n"
	"                              are read (default istio-system, as egressgw)\n"
	"  -o, --output FORMAT         log (default) or json\n"
	"  -n, --namespace NS          report only the resources of namespace NS\n"
	"      --store DIR             the store directory\n";

enum an_level { AN_ERROR, AN_WARNING, AN_INFO };

static const char *const an_level_names[] = { "Error", "Warning", "Info" };

struct an_msg {
	enum an_level level;
	const char *code;
	char *kind, *ns, *name;   /* origin; kind NULL for a file-only origin */
	char *ref;                /* FILE:LINE relative to the store, or NULL */
	size_t seq;               /* order found: fields in document order */
	char *text;
};

struct an {
	const struct ctl *c;
	const struct store_contents *contents;
	const char *gwns;         /* the gateway's namespace */
	const char *only_ns;      /* NULL: every namespace */
	struct an_msg *v;
	size_t n;
	const struct resource *r; /* the resource being checked */
};

/* ---- messages ---- */

static const char *an_rel(const struct an *a, const char *file)
{
	size_t l = strlen(a->c->root);

	if (file && strncmp(file, a->c->root, l) == 0 && file[l] == '/')
		return file + l + 1;
	return file;
}

static void an_report(struct an *a, enum an_level lvl, const char *code,
                      const struct srcpos *pos, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void an_report(struct an *a, enum an_level lvl, const char *code,
                      const struct srcpos *pos, const char *fmt, ...)
{
	const struct resource *r = a->r;
	struct an_msg *m;
	struct sbuf b = SBUF_INIT;
	const char *file = pos && pos->file ? pos->file : r->file;
	int line = pos && pos->line ? pos->line : r->line;
	va_list ap;

	if (a->only_ns && strcmp(r->namespace, a->only_ns) != 0)
		return;
	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	a->v = xrealloc(a->v, (a->n + 1) * sizeof(*a->v));
	m = &a->v[a->n++];
	memset(m, 0, sizeof(*m));
	m->level = lvl;
	m->code = code;
	m->kind = xstrdup(res_kind_info(r->kind)->kind_name);
	m->ns = xstrdup(r->namespace);
	m->name = xstrdup(r->name);
	m->seq = a->n;
	if (file)
		m->ref = line ? xasprintf("%s:%d", an_rel(a, file), line) : xstrdup(an_rel(a, file));
	m->text = sbuf_steal(&b);
}

/* A problem the store had reading a file: no resource to name, the file instead. */
static void an_report_diag(struct an *a, const struct diag *d)
{
	struct an_msg *m;
	bool err = d->level == DIAG_ERROR;

	a->v = xrealloc(a->v, (a->n + 1) * sizeof(*a->v));
	m = &a->v[a->n++];
	memset(m, 0, sizeof(*m));
	m->level = err ? AN_ERROR : AN_WARNING;
	m->code = err ? "IST0106" : "IST0133";
	m->ns = xstrdup("");
	m->seq = a->n;
	if (d->file)
		m->ref = d->line ? xasprintf("%s:%d", an_rel(a, d->file), d->line)
		                 : xstrdup(an_rel(a, d->file));
	m->text = xasprintf("Schema validation %s: %s", err ? "error" : "warning", d->msg);
}

static void an_msgs_free(struct an *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].kind);
		free(a->v[i].ns);
		free(a->v[i].name);
		free(a->v[i].ref);
		free(a->v[i].text);
	}
	free(a->v);
}

static int an_str_cmp(const char *x, const char *y)
{
	return strcmp(x ? x : "", y ? y : "");
}

/* By origin (kind, namespace, name), then in the order found (the resource's fields in
 * document order): the same store always prints the same lines. */
static int an_msg_cmp(const void *p, const void *q)
{
	const struct an_msg *x = p, *y = q;
	int c;

	if ((c = an_str_cmp(x->kind, y->kind)) || (c = an_str_cmp(x->ns, y->ns)) ||
	    (c = an_str_cmp(x->name, y->name)))
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void an_origin(const struct an_msg *m, struct sbuf *out)
{
	if (m->kind)
		sbuf_addf(out, "%s %s/%s", m->kind, m->ns, m->name);
	else
		sbuf_adds(out, m->ref ? m->ref : "");
}

static void an_json_str(struct sbuf *out, const char *s)
{
	sbuf_addc(out, '"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			sbuf_addf(out, "\\%c", *p);
		else if (*p < 0x20)
			sbuf_addf(out, "\\u%04x", *p);
		else
			sbuf_addc(out, (char)*p);
	}
	sbuf_addc(out, '"');
}

static void an_print_json(const struct an *a)
{
	struct sbuf out = SBUF_INIT, o = SBUF_INIT;

	sbuf_adds(&out, "[");
	for (size_t i = 0; i < a->n; i++) {
		const struct an_msg *m = &a->v[i];
		char code[16];
		size_t k;

		for (k = 0; m->code[k] && k + 1 < sizeof(code); k++)
			code[k] = (char)(m->code[k] >= 'A' && m->code[k] <= 'Z' ? m->code[k] + 32
			                                                        : m->code[k]);
		code[k] = '\0';
		sbuf_reset(&o);
		an_origin(m, &o);
		sbuf_adds(&out, i ? ",\n\t{\n" : "\n\t{\n");
		sbuf_addf(&out, "\t\t\"code\": \"%s\",\n", m->code);
		sbuf_addf(&out, "\t\t\"documentationUrl\": \"%s/%s/\",\n", AN_DOC_URL, code);
		sbuf_addf(&out, "\t\t\"level\": \"%s\",\n", an_level_names[m->level]);
		sbuf_adds(&out, "\t\t\"message\": ");
		an_json_str(&out, m->text);
		sbuf_adds(&out, ",\n\t\t\"origin\": ");
		an_json_str(&out, sbuf_str(&o));
		sbuf_adds(&out, ",\n\t\t\"reference\": ");
		an_json_str(&out, m->ref);
		sbuf_adds(&out, "\n\t}");
	}
	sbuf_adds(&out, a->n ? "\n]\n" : "]\n");
	fputs(sbuf_str(&out), stdout);
	sbuf_free(&out);
	sbuf_free(&o);
}

static void an_print_log(const struct an *a)
{
	struct sbuf o = SBUF_INIT;

	for (size_t i = 0; i < a->n; i++) {
		const struct an_msg *m = &a->v[i];

		sbuf_reset(&o);
		an_origin(m, &o);
		printf("%s [%s] (%s) %s\n", an_level_names[m->level], m->code, sbuf_str(&o), m->text);
	}
	sbuf_free(&o);
}

/* ---- helpers ---- */

/* "reviews" in namespace ns -> "reviews.ns.svc.cluster.local", as Istio reads short
 * names. */
static void an_fqdn(const char *host, const char *ns, char *out, size_t n)
{
	if (strchr(host, '.') || strcmp(host, "*") == 0)
		snprintf(out, n, "%s", host);
	else
		snprintf(out, n, "%s.%s.svc.cluster.local", host, ns);
}

static bool an_hosts_overlap(const char *a, const char *b)
{
	return res_host_matches(a, b) || res_host_matches(b, a);
}

/* The Gateway a VirtualService names: "name" (its own namespace), "ns/name", or the
 * legacy "name.ns[.svc.cluster.local]". */
static const struct resource *an_gateway(const struct an *a, const char *ref,
                                         const char *vs_ns)
{
	char ns[256], name[256];
	const char *slash = strchr(ref, '/'), *dot = strchr(ref, '.');
	const struct store_entry *e;

	if (slash) {
		snprintf(ns, sizeof(ns), "%.*s", (int)(slash - ref), ref);
		snprintf(name, sizeof(name), "%s", slash + 1);
	} else if (dot) {
		const char *dot2 = strchr(dot + 1, '.');

		snprintf(name, sizeof(name), "%.*s", (int)(dot - ref), ref);
		snprintf(ns, sizeof(ns), "%.*s",
		         (int)(dot2 ? (size_t)(dot2 - dot - 1) : strlen(dot + 1)), dot + 1);
	} else {
		snprintf(ns, sizeof(ns), "%s", vs_ns);
		snprintf(name, sizeof(name), "%s", ref);
	}
	e = store_find(a->contents, RES_GATEWAY, ns, name);
	return e ? &e->res : NULL;
}

/* Whether a server host of Gateway gwr serves one of the VirtualService's hosts, with
 * Istio's namespace rules for "ns/host" ("./h": the Gateway's namespace; "*\/h": any). */
static bool an_vs_host_in_gateway(const struct resource *gwr, const struct virtualservice *vs,
                                  const char *vs_ns)
{
	const struct gateway *gw = gwr->u.gw;

	for (size_t i = 0; i < gw->servers.n; i++) {
		const struct res_strlist *hosts = &gw->servers.v[i].hosts;

		for (size_t j = 0; j < hosts->n; j++) {
			const char *h = hosts->v[j], *slash = strchr(h, '/');

			if (slash) {
				size_t nl = (size_t)(slash - h);
				bool ok = (nl == 1 && (h[0] == '*' || (h[0] == '.' &&
				           strcmp(gwr->namespace, vs_ns) == 0))) ||
				          (strlen(vs_ns) == nl && strncmp(h, vs_ns, nl) == 0);

				if (!ok)
					continue;
				h = slash + 1;
			}
			for (size_t k = 0; k < vs->hosts.n; k++)
				if (an_hosts_overlap(h, vs->hosts.v[k]))
					return true;
		}
	}
	return false;
}

/* "[a b]": Go's %v of a string slice, as istioctl prints hosts. */
static void an_hosts_list(const struct res_strlist *l, struct sbuf *out)
{
	sbuf_addc(out, '[');
	for (size_t i = 0; i < l->n; i++)
		sbuf_addf(out, "%s%s", i ? " " : "", l->v[i]);
	sbuf_addc(out, ']');
}

/* ---- VirtualService checks ---- */

static void an_gateway_ref(struct an *a, const char *ref, const struct srcpos *pos,
                           bool check_hosts)
{
	const struct resource *vsr = a->r, *gwr;

	if (!ref || strcmp(ref, "mesh") == 0)
		return;
	gwr = an_gateway(a, ref, vsr->namespace);
	if (!gwr) {
		an_report(a, AN_ERROR, "IST0101", pos, "Referenced gateway not found: \"%s\"", ref);
		return;
	}
	if (check_hosts && !an_vs_host_in_gateway(gwr, vsr->u.vs, vsr->namespace)) {
		struct sbuf hosts = SBUF_INIT;

		an_hosts_list(&vsr->u.vs->hosts, &hosts);
		an_report(a, AN_WARNING, "IST0132", pos, "one or more host %s defined in "
		          "VirtualService %s/%s not found in Gateway %s/%s.", sbuf_str(&hosts),
		          vsr->namespace, vsr->name, gwr->namespace, gwr->name);
		sbuf_free(&hosts);
	}
}

static void an_match_gateways(struct an *a, const struct res_strlist *l)
{
	const struct res_strlist *top = &a->r->u.vs->gateways;

	for (size_t i = 0; i < l->n; i++)
		if (!res_strlist_has(top, l->v[i]))   /* the top-level list was checked */
			an_gateway_ref(a, l->v[i], &l->pos[i], false);
}

static bool an_dr_defines(const struct destinationrule *dr, const char *subset)
{
	for (size_t i = 0; i < dr->subsets.n; i++)
		if (dr->subsets.v[i].name && strcmp(dr->subsets.v[i].name, subset) == 0)
			return true;
	return false;
}

static void an_destination(struct an *a, const struct vs_destination *d)
{
	char host[300];
	bool se_found = false, port_found = false;

	if (!d || !d->host)
		return;
	an_fqdn(d->host, a->r->namespace, host, sizeof(host));
	if (d->subset) {
		bool found = false;

		for (size_t i = 0; i < a->contents->n && !found; i++) {
			const struct resource *o = &a->contents->v[i].res;
			char drhost[300];

			if (o->kind != RES_DESTINATION_RULE || !o->u.dr->host)
				continue;
			an_fqdn(o->u.dr->host, o->namespace, drhost, sizeof(drhost));
			found = res_host_matches(drhost, host) && an_dr_defines(o->u.dr, d->subset);
		}
		if (!found)
			an_report(a, AN_ERROR, "IST0101", &d->pos, "Referenced host+subset in "
			          "destinationrule not found: \"%s+%s\"", d->host, d->subset);
	}
	if (!d->port)
		return;
	for (size_t i = 0; i < a->contents->n && !port_found; i++) {
		const struct resource *o = &a->contents->v[i].res;

		if (o->kind != RES_SERVICE_ENTRY)
			continue;
		for (size_t h = 0; h < o->u.se->hosts.n; h++) {
			char sehost[300];

			an_fqdn(o->u.se->hosts.v[h], o->namespace, sehost, sizeof(sehost));
			if (!res_host_matches(sehost, host))
				continue;
			se_found = true;
			for (size_t p = 0; p < o->u.se->ports.n; p++)
				port_found |= o->u.se->ports.v[p].number == d->port;
		}
	}
	/* A host no ServiceEntry lists is a Kubernetes Service: not ours to check. */
	if (se_found && !port_found)
		an_report(a, AN_ERROR, "IST0101", &d->pos, "Referenced host:port not found: "
		          "\"%s:%u\"", d->host, d->port);
}

static void an_vs(struct an *a)
{
	const struct virtualservice *vs = a->r->u.vs;

	for (size_t i = 0; i < vs->gateways.n; i++)
		an_gateway_ref(a, vs->gateways.v[i], &vs->gateways.pos[i], true);
	for (size_t i = 0; i < vs->http.n; i++) {
		const struct vs_http_route *h = &vs->http.v[i];

		for (size_t m = 0; m < h->match.n; m++)
			an_match_gateways(a, &h->match.v[m].gateways);
		for (size_t r = 0; r < h->route.n; r++)
			an_destination(a, h->route.v[r].destination);
		an_destination(a, h->mirror);
		for (size_t m = 0; m < h->mirrors.n; m++)
			an_destination(a, h->mirrors.v[m].destination);
	}
	for (size_t i = 0; i < vs->tls.n; i++) {
		for (size_t m = 0; m < vs->tls.v[i].match.n; m++)
			an_match_gateways(a, &vs->tls.v[i].match.v[m].gateways);
		for (size_t r = 0; r < vs->tls.v[i].route.n; r++)
			an_destination(a, vs->tls.v[i].route.v[r].destination);
	}
	for (size_t i = 0; i < vs->tcp.n; i++) {
		for (size_t m = 0; m < vs->tcp.v[i].match.n; m++)
			an_match_gateways(a, &vs->tcp.v[i].match.v[m].gateways);
		for (size_t r = 0; r < vs->tcp.v[i].route.n; r++)
			an_destination(a, vs->tcp.v[i].route.v[r].destination);
	}
}

/* IST0109: VirtualServices bound to the mesh gateway that define the same host; each
 * of them gets the message, naming all of them. */
static bool an_vs_mesh(const struct virtualservice *vs)
{
	return vs->gateways.n == 0 || res_strlist_has(&vs->gateways, "mesh");
}

static void an_vs_conflicts(struct an *a)
{
	const struct resource *r = a->r;
	const struct virtualservice *vs = r->u.vs;

	if (!an_vs_mesh(vs))
		return;
	for (size_t h = 0; h < vs->hosts.n; h++) {
		char host[300];
		struct sbuf names = SBUF_INIT;
		size_t n = 0;

		an_fqdn(vs->hosts.v[h], r->namespace, host, sizeof(host));
		for (size_t i = 0; i < a->contents->n; i++) {
			const struct resource *o = &a->contents->v[i].res;
			bool same = false;

			if (o->kind != RES_VIRTUAL_SERVICE || !an_vs_mesh(o->u.vs))
				continue;
			for (size_t k = 0; k < o->u.vs->hosts.n && !same; k++) {
				char oh[300];

				an_fqdn(o->u.vs->hosts.v[k], o->namespace, oh, sizeof(oh));
				same = strcmp(oh, host) == 0;
			}
			if (same) {
				sbuf_addf(&names, "%s%s/%s", n ? "," : "", o->namespace, o->name);
				n++;
			}
		}
		if (n > 1)
			an_report(a, AN_ERROR, "IST0109", &vs->hosts.pos[h], "The VirtualServices %s "
			          "associated with mesh gateway define the same host %s which can lead "
			          "to undefined behavior. This can be fixed by merging the conflicting "
			          "VirtualServices into a single resource.", sbuf_str(&names), host);
		sbuf_free(&names);
	}
}

/* ---- credentials ---- */

/* credentialName with what its user needs (SECRET_USE_*), looked up where the proxy
 * that uses it reads it, with the proxy's own rules: a DestinationRule with a
 * workloadSelector applies to the workloads it selects, in its own namespace, and
 * those read the Secret there (Istio's "mutual TLS origination at the sidecar", whose
 * client-credential is in the sleep pod's namespace); any other rule, and a Gateway,
 * is the gateway's, which reads its own namespace. */
static void an_credential(struct an *a, const char *cred, unsigned flags,
                          const struct srcpos *pos)
{
	struct secret_parts parts;
	struct secret_cache *sc;
	struct sbuf err = SBUF_INIT;
	const char *name = cred;
	const struct resource *r = a->r;
	const char *kind = res_kind_info(r->kind)->kind_name;
	const char *ns = r->kind == RES_DESTINATION_RULE && r->u.dr->workload_selector
	                 ? r->namespace : a->gwns;

	if (!cred)
		return;
	if (str_has_prefix(cred, "kubernetes://"))
		name = cred + 13;
	else if (strstr(cred, "://"))
		return;   /* another credential source: not in the store */
	if (secret_resolve(a->contents, ns, name, flags & SECRET_USE_CERT, &parts,
	                   &err) == SECRET_NOT_FOUND) {
		an_report(a, AN_ERROR, "IST0101", pos, "Referenced credentialName not found: \"%s\" "
		          "(no Secret %s in namespace %s, where the %s reads it)", cred, name, ns,
		          ns == a->gwns ? "gateway" : "selected workload");
		sbuf_free(&err);
		return;
	}
	/* Loaded as the gateway loads it, so that both say the same thing. */
	sbuf_reset(&err);
	sc = secret_cache_new();
	secret_cache_begin(sc);
	if (!secret_cache_credential(sc, a->contents, a->c->root, ns, name, flags, &err))
		an_report(a, AN_ERROR, "IST0161", pos, "The credential referenced by the %s %s in "
		          "namespace %s is invalid, which can cause the traffic not to work as "
		          "expected: %s", kind, r->name, r->namespace, sbuf_str(&err));
	secret_cache_free(sc);
	sbuf_free(&err);
}

static void an_dr_tls(struct an *a, const struct dr_tls *t)
{
	if (!t || !t->credential_name)
		return;
	if (t->mode == DR_TLS_MUTUAL)
		an_credential(a, t->credential_name, SECRET_USE_CERT | SECRET_USE_CA, &t->pos);
	else if (t->mode == DR_TLS_SIMPLE)
		an_credential(a, t->credential_name, SECRET_USE_CA | SECRET_NEED_CA, &t->pos);
}

static void an_dr_policy(struct an *a, const struct dr_traffic_policy *tp)
{
	if (!tp)
		return;
	an_dr_tls(a, tp->tls);
	for (size_t i = 0; i < tp->port_level_settings.n; i++)
		an_dr_tls(a, tp->port_level_settings.v[i].tls);
}

/* IST0128 / IST0129: SIMPLE or MUTUAL origination with nothing to verify the server
 * with (no caCertificates, no credentialName), at the destination or at a port; Istio's
 * analyzer looks at the top-level traffic policy only. */
static void an_dr_ca(struct an *a, const struct dr_tls *t, uint32_t port)
{
	const struct resource *r = a->r;
	const char *mode = t && t->mode == DR_TLS_SIMPLE ? "SIMPLE" : "MUTUAL";

	if (!t || (t->mode != DR_TLS_SIMPLE && t->mode != DR_TLS_MUTUAL) ||
	    t->ca_certificates || t->credential_name || t->insecure_skip_verify)
		return;
	if (port)
		an_report(a, AN_WARNING, "IST0129", &t->pos, "DestinationRule %s in namespace %s has "
		          "TLS mode set to %s but no caCertificates are set to validate server "
		          "identity for host: %s at port %u", r->name, r->namespace, mode,
		          r->u.dr->host, port);
	else
		an_report(a, AN_WARNING, "IST0128", &t->pos, "DestinationRule %s in namespace %s has "
		          "TLS mode set to %s but no caCertificates are set to validate server "
		          "identity for host: %s", r->name, r->namespace, mode, r->u.dr->host);
}

static void an_dr(struct an *a)
{
	const struct destinationrule *dr = a->r->u.dr;

	if (dr->traffic_policy) {
		an_dr_ca(a, dr->traffic_policy->tls, 0);
		for (size_t i = 0; i < dr->traffic_policy->port_level_settings.n; i++)
			an_dr_ca(a, dr->traffic_policy->port_level_settings.v[i].tls,
			         dr->traffic_policy->port_level_settings.v[i].port);
	}

	an_dr_policy(a, dr->traffic_policy);
	for (size_t i = 0; i < dr->subsets.n; i++)
		an_dr_policy(a, dr->subsets.v[i].traffic_policy);
}

static void an_gw(struct an *a)
{
	const struct gateway *gw = a->r->u.gw;

	for (size_t i = 0; i < gw->servers.n; i++) {
		const struct gw_tls *t = gw->servers.v[i].tls;

		if (!t || !t->credential_name)
			continue;
		if (t->mode == GW_TLS_SIMPLE)
			an_credential(a, t->credential_name, SECRET_USE_CERT, &t->pos);
		else if (t->mode == GW_TLS_MUTUAL || t->mode == GW_TLS_OPTIONAL_MUTUAL)
			an_credential(a, t->credential_name,
			              SECRET_USE_CERT | SECRET_USE_CA | SECRET_NEED_CA, &t->pos);
	}
}

/* IST0127. The gateway's labels are not in the store, but every Gateway's selector is a
 * subset of them: a policy selector that gives one of those labels another value, for
 * every Gateway of the namespace, cannot select a gateway. (A sidecar's labels are not
 * known at all: policies elsewhere are not checked.) */
static void an_ap(struct an *a)
{
	const struct authorizationpolicy *ap = a->r->u.ap;
	const struct res_strmap *sel;
	struct sbuf labels = SBUF_INIT;
	size_t ngw = 0;

	if (!ap->selector || strcmp(a->r->namespace, a->gwns) != 0)
		return;
	sel = &ap->selector->match_labels;
	for (size_t i = 0; i < a->contents->n; i++) {
		const struct resource *o = &a->contents->v[i].res;
		bool contradicts = false;

		if (o->kind != RES_GATEWAY || strcmp(o->namespace, a->gwns) != 0)
			continue;
		ngw++;
		for (size_t k = 0; k < sel->n && !contradicts; k++) {
			const char *v = res_strmap_get(&o->u.gw->selector, sel->v[k].key);

			contradicts = v && strcmp(v, sel->v[k].value) != 0;
		}
		if (!contradicts)
			return;
	}
	if (!ngw)
		return;
	for (size_t k = 0; k < sel->n; k++)
		sbuf_addf(&labels, "%s%s=%s", k ? "," : "", sel->v[k].key, sel->v[k].value);
	an_report(a, AN_WARNING, "IST0127", &ap->selector->pos, "No matching workloads for this "
	          "resource with the following labels: %s", sbuf_str(&labels));
	sbuf_free(&labels);
}

/* ---- the command ---- */

/* Gateway API routes: what their status conditions say is wrong, located. */
static void an_gwapi(struct an *a)
{
	const struct resource **all = xcalloc(a->contents->n + 1, sizeof(*all));
	struct diags quiet = DIAGS_INIT;
	struct gwapi_xlate x;

	for (size_t i = 0; i < a->contents->n; i++)
		all[i] = &a->contents->v[i].res;
	gwapi_translate(all, a->contents->n, &x, &quiet);
	for (size_t i = 0; i < x.nroutes; i++) {
		const struct gwapi_route_status *st = &x.routes[i];

		a->r = st->route;
		for (size_t j = 0; j < st->nparents; j++) {
			const struct gwapi_parent_status *ps = &st->parents[j];
			bool missing = strcmp(ps->accepted.reason, "NoMatchingParent") == 0 &&
			               strstr(ps->accepted.message, "not found");

			if (!ps->accepted.status)
				an_report(a, missing ? AN_ERROR : AN_WARNING,
				          missing ? "IST0101" : "IST0132", &ps->ref->pos,
				          "parentRefs[%zu] not accepted (%s): %s", j,
				          ps->accepted.reason, ps->accepted.message);
		}
		if (st->nparents && !st->parents[0].resolved.status)
			an_report(a, AN_ERROR, "IST0101", &st->route->u.route->pos,
			          "references not resolved (%s): %s", st->parents[0].resolved.reason,
			          st->parents[0].resolved.message);
	}
	gwapi_xlate_free(&x);
	diags_free(&quiet);
	free(all);
}

int ctl_cmd_analyze(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 }, files = { NULL, 0 };
	const char *gwns = "istio-system", *output = NULL;
	bool all = false, help = false, errors = false;
	struct ystream **streams = NULL;
	size_t nstreams = 0;
	const struct ctl_flag flags[] = {
		{ "filename", 'f', CTL_FLAG_LIST, &files },
		{ "all-namespaces", 'A', CTL_FLAG_BOOL, &all },
		{ "gateway-namespace", 0, CTL_FLAG_STR, &gwns },
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct store_contents contents = STORE_CONTENTS_INIT;
	struct diags d = DIAGS_INIT;
	struct an a;
	const struct resource **dr_all = NULL;
	bool *dr_unknown = NULL;
	int rc = 1;

	memset(&a, 0, sizeof(a));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(analyze_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n) {
		fprintf(stderr, "error: analyze takes no arguments (it analyzes the store), got "
		        "\"%s\"\nSee 'egressctl analyze --help' for usage.\n", pos.v[0]);
		goto out;
	}
	if (output && strcmp(output, "log") != 0 && strcmp(output, "json") != 0) {
		fprintf(stderr, "error: output format \"%s\" not supported (want log or json)\n",
		        output);
		goto out;
	}
	if (all && c->ns_flag) {
		fprintf(stderr, "error: -A and -n cannot be given together\n");
		goto out;
	}
	if (files.n && ctl_read_inputs(&files, &streams, &nstreams, &d) < 0) {
		ctl_print_diags(&d);
		goto out;
	}
	store_load(c->root, "default", &contents, &d);
	/* -f: the files as if they were applied over the store (istioctl analyze FILE). */
	for (size_t i = 0; i < nstreams; i++)
		store_overlay(&contents, streams[i], ctl_namespace(c), &d);
	free(streams);
	streams = NULL;
	nstreams = 0;
	a.c = c;
	a.contents = &contents;
	a.gwns = gwns;
	a.only_ns = c->ns_flag && *c->ns_flag ? c->ns_flag : NULL;
	for (size_t i = 0; i < d.n; i++)
		an_report_diag(&a, &d.v[i]);
	dr_all = xcalloc(contents.n + 1, sizeof(*dr_all));
	dr_unknown = xcalloc(contents.n + 1, sizeof(*dr_unknown));
	for (size_t i = 0; i < contents.n; i++)
		dr_all[i] = &contents.v[i].res;
	res_dr_unknown_hosts(dr_all, contents.n, dr_unknown);
	for (size_t i = 0; i < contents.n; i++) {
		a.r = &contents.v[i].res;
		switch (a.r->kind) {
		case RES_VIRTUAL_SERVICE:
			an_vs(&a);
			an_vs_conflicts(&a);
			break;
		case RES_DESTINATION_RULE:
			an_dr(&a);
			if (dr_unknown[i])
				an_report(&a, AN_WARNING, "IST0174", &a.r->u.dr->pos, "The host %s "
				          "defined in the DestinationRule does not match any services in "
				          "the mesh.", a.r->u.dr->host);
			break;
		case RES_GATEWAY:
			an_gw(&a);
			break;
		case RES_AUTHORIZATION_POLICY:
			an_ap(&a);
			break;
		default:
			break;
		}
	}
	an_gwapi(&a);
	if (a.n)
		qsort(a.v, a.n, sizeof(*a.v), an_msg_cmp);
	for (size_t i = 0; i < a.n; i++)
		errors |= a.v[i].level == AN_ERROR;
	if (output && strcmp(output, "json") == 0)
		an_print_json(&a);
	else
		an_print_log(&a);
	fflush(stdout);
	if (a.n == 0)
		fprintf(stderr, "\u2714 No validation issues found when analyzing %s%s.\n",
		        a.only_ns ? "namespace: " : "all namespaces", a.only_ns ? a.only_ns : "");
	else if (errors && (!output || strcmp(output, "log") == 0))
		fprintf(stderr, "Error: Analyzers found issues when analyzing %s%s.\nSee %s for more "
		        "information about causes and resolutions.\n",
		        a.only_ns ? "namespace: " : "all namespaces", a.only_ns ? a.only_ns : "",
		        AN_DOC_URL);
	rc = errors ? AN_EXIT_ISSUES : 0;
out:
	free(dr_all);
	free(dr_unknown);
	an_msgs_free(&a);
	store_contents_free(&contents);
	ctl_free_streams(streams, nstreams);
	diags_free(&d);
	ctl_strs_free(&pos);
	ctl_strs_free(&files);
	return rc;
}
