/* egressctl proxy-config cluster|endpoint|route|listener|secret|authz [ADMIN_ADDR]: istioctl's
 * proxy-config tables (and `istioctl x authz check`'s), made from a running egressgw's
 * admin endpoint.
 *
 * The gateway serves its compiled snapshot as JSON at GET /config_dump on its admin
 * address (the shape is documented in src/proxy/snap_json.c), and the credentials it has
 * loaded at GET /certs (src/secrets/secret.h). This command fetches the page with one
 * blocking HTTP/1.1 request, reads it with the YAML parser (JSON is YAML), keeps the
 * items the filter flags select and prints them as istioctl 1.20+ does: the same columns,
 * the same cell texts, laid out by Go's tabwriter rules with istioctl's padding.
 *
 * Every kind is one entry of pc_kinds[] (names, the admin page and JSON list it reads,
 * the filters it accepts, its table). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmd/egressctl/ctl.h"
#include "cmd/egressctl/pc.h"
#include "core/util.h"
#include "net/sock.h"

#define PC_DEFAULT_ADMIN "127.0.0.1:15000"
#define PC_DEFAULT_PORT  15000
#define PC_TIMEOUT_SEC   10
#define PC_MAX_RESPONSE  (256u << 20)   /* a dump larger than this is not a gateway's */

static const char pc_usage[] =
	"Show what a running egressgw serves, in the tables of `istioctl proxy-config`: read\n"
	"from the gateway's admin endpoint (GET /config_dump, GET /certs), so it shows the\n"
	"configuration the gateway is using, not what the store holds.\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config cluster|endpoint|route|listener|secret|authz [ADMIN_ADDR] [flags]\n"
	"\n"
	"Kinds:\n"
	"  cluster, clusters, c      upstream clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION,\n"
	"                            TYPE, DESTINATION RULE\n"
	"  endpoint, endpoints, ep   endpoints of the clusters: ENDPOINT, STATUS, OUTLIER CHECK,\n"
	"                            CLUSTER (from /clusters: outlier ejection on any worker)\n"
	"  route, routes, r          routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE\n"
	"  all                       the cluster, listener and route tables, one after the other\n"
	"  log [--level LEVEL]       the proxy's log level (GET /logging), or a new one (POST\n"
	"                            /logging?level=: trace, debug, info, warning, error)\n"
	"  listener, listeners, l    listeners: ADDRESSES, PORT, MATCH, DESTINATION\n"
	"  secret, secrets, s        certificates in use: RESOURCE NAME, TYPE, STATUS, VALID\n"
	"                            CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE (from /certs)\n"
	"  authz, ap                 AuthorizationPolicies in force: ACTION,\n"
	"                            AuthorizationPolicy, RULES (istioctl x authz check)\n"
	"\n"
	"Use \"egressctl proxy-config KIND --help\" for the flags of a kind.\n";

/* What every kind's help says about ADMIN_ADDR and -o. */
static const char pc_usage_common[] =
	"  -o, --output FORMAT       short (the table; default), json or yaml: the selected\n"
	"                            items as the gateway's admin page has them\n"
	"  -f, --file FILE           read a saved config_dump (curl ADMIN/config_dump > FILE)\n"
	"                            instead of asking a running proxy (not for secret)\n"
	"\n"
	"ADMIN_ADDR is the address given to the gateway's --admin: IP:PORT, [IPv6]:PORT,\n"
	"localhost:PORT, or PORT alone (on 127.0.0.1). The default is $EGRESSGW_ADMIN, else\n"
	"127.0.0.1:15000. istioctl takes a pod there; so that istioctl's commands can be\n"
	"pasted, a word that names a pod (deploy/istio-egressgateway, pod/NAME, a pod name:\n"
	"anything with a '/' or without a ':') is accepted and ignored, the default admin\n"
	"address is used, and -n NAMESPACE is ignored too:\n"
	"  egressctl -n istio-system proxy-config cluster deploy/istio-egressgateway\n";

static const char pc_cluster_usage[] =
	"Show the gateway's upstream clusters, as `istioctl proxy-config cluster` does.\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config cluster [ADMIN_ADDR] [--fqdn HOST] [--port N] [--subset S]\n"
	"                                 [--direction D] [-o short|json|yaml]\n"
	"\n"
	"Columns: SERVICE FQDN, PORT, SUBSET (- for none), DIRECTION, TYPE (STRICT_DNS for\n"
	"resolution DNS, LOGICAL_DNS for DNS_ROUND_ROBIN, STATIC, ORIGINAL_DST for NONE) and\n"
	"DESTINATION RULE (NAME.NAMESPACE of the rule whose policy the cluster uses).\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config cluster\n"
	"  egressctl proxy-config clusters 127.0.0.1:15000 --fqdn edition.cnn.com --port 443\n"
	"  egressctl proxy-config cluster --subset cnn -o json\n"
	"\n"
	"Flags:\n"
	"      --fqdn HOST           only clusters whose service FQDN contains HOST\n"
	"      --port N              only clusters of port N\n"
	"      --subset S            only clusters whose subset contains S\n"
	"      --direction D         only clusters of direction D (outbound)\n";

static const char pc_route_usage[] =
	"Show the gateway's routes, as `istioctl proxy-config route` does: one row per route\n"
	"and VirtualService match.\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config route [ADMIN_ADDR] [--name NAME] [-o short|json|yaml]\n"
	"\n"
	"Columns: NAME (the route table: http.PORT on a gateway), VHOST NAME, DOMAINS, MATCH\n"
	"(the path condition: /x exact, /x* prefix, regex RE; /* when the match has no path\n"
	"condition; header, method and authority conditions are not shown, as in istioctl)\n"
	"and VIRTUAL SERVICE (NAME.NAMESPACE). A virtual host without routes shows /* and 404.\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config routes\n"
	"  egressctl proxy-config route --name http.80 -o json\n"
	"\n"
	"Flags:\n"
	"      --name NAME           only the route table NAME\n";

static const char pc_listener_usage[] =
	"Show the gateway's listeners, as `istioctl proxy-config listener` does: one row per\n"
	"filter chain (the plain HTTP servers of a port share one; each TLS server has its own,\n"
	"chosen by the client's SNI).\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config listener [ADMIN_ADDR] [--address IP] [--port N]\n"
	"                                  [-o short|json|yaml]\n"
	"\n"
	"Columns: ADDRESSES (the listening address), PORT, MATCH (ALL, or SNI: the server's\n"
	"hosts), DESTINATION (Route: TABLE, the route table that serves the requests).\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config listeners\n"
	"  egressctl proxy-config listener --port 80 -o yaml\n"
	"\n"
	"Flags:\n"
	"      --address IP          only listeners on address IP\n"
	"      --port N              only listeners on port N\n";

static const char pc_secret_usage[] =
	"Show the certificates the gateway has loaded, as `istioctl proxy-config secret`\n"
	"does: one row per resource (default: the workload certificate of --identity;\n"
	"ROOTCA: the mesh root; kubernetes://NAME: a credentialName's certificate chain;\n"
	"kubernetes://NAME-cacert: its CA; file-cert:CERT~KEY and file-root:CA: certificates\n"
	"named by file in a DestinationRule or Gateway). Read from GET /certs; never shows\n"
	"key material.\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config secret [ADMIN_ADDR] [-o short|json|yaml]\n"
	"\n"
	"Columns: RESOURCE NAME, TYPE (Cert Chain or CA), STATUS (ACTIVE: in use; WARMING:\n"
	"not loaded yet, e.g. the Secret does not exist: requests that need it fail with 503\n"
	"UF), VALID CERT (true when now is between NOT BEFORE and NOT AFTER), SERIAL NUMBER\n"
	"(decimal), NOT AFTER and NOT BEFORE (RFC 3339, UTC). When the newest version of a\n"
	"Secret was rejected (bad PEM, key not matching the certificate, keys missing), the\n"
	"previous version stays in use: a warning after the table says so, and -o json shows\n"
	"the rejected version under \"rejected\" and the reason.\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config secret\n"
	"  egressctl -n istio-system proxy-config secret deploy/istio-egressgateway | grep client-credential\n"
	"  egressctl proxy-config secret 127.0.0.1:15000 -o json\n";

static const char pc_authz_usage[] =
	"Show the AuthorizationPolicies the gateway (or sidecar) enforces, as `istioctl x\n"
	"authz check` does: ACTION (ALLOW, DENY, AUDIT; \"(dry-run)\" for istio.io/dry-run\n"
	"policies, evaluated and counted but not enforced), AuthorizationPolicy (NAME.NAMESPACE)\n"
	"and RULES (how many). -o json shows each rule with its id as the access log names it\n"
	"(ns[NS]-policy[NAME]-rule[I]) and its compiled conditions.\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config authz [ADMIN_ADDR] [-o short|json|yaml]\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config authz\n"
	"  egressctl -n istio-system proxy-config authz deploy/istio-egressgateway -o json\n";

/* The filter flags (pc.h: struct pc_opts). */
enum {
	PC_F_FQDN      = 1u << 0,
	PC_F_PORT      = 1u << 1,
	PC_F_SUBSET    = 1u << 2,
	PC_F_DIRECTION = 1u << 3,
	PC_F_NAME      = 1u << 4,
	PC_F_ADDRESS   = 1u << 5,
	PC_F_CLUSTER   = 1u << 6,
	PC_F_STATUS    = 1u << 7,
};

struct pc_kind {
	const char *name, *plural, *alias;
	const char *path;       /* the admin page holding the items */
	const char *key;        /* the list of that page's JSON object */
	unsigned filters;       /* PC_F_* accepted */
	const char *usage;
	size_t padding;         /* istioctl's tabwriter padding for this table */
	const char *header;     /* column titles, separated by '\t' */
	bool (*keep)(const struct ynode *item, const struct pc_opts *o);
	int (*cmp)(const void *a, const void *b);   /* on const struct ynode **; NULL: as dumped */
	void (*rows)(const struct ynode *item, struct ctl_table *t);
	/* After the table: anything the rows cannot say (to stderr); NULL: nothing. */
	void (*notes)(const struct ynode *const *items, size_t n);
	/* A kind with a flow of its own (from a running proxy only); NULL: pc_show. */
	int (*show)(const struct pc_opts *o, enum pc_format f, const struct sock_addr *a,
	            const char *addr);
};

/* ---- reading the dump ---- */

/* The text of a scalar member, NULL when absent or null. */
static const char *pc_str(const struct ynode *map, const char *key)
{
	const struct ynode *v = ynode_get(map, key);

	return v && v->type == YNODE_SCALAR ? v->str : NULL;
}

static long pc_num(const struct ynode *map, const char *key)
{
	const char *s = pc_str(map, key);

	return s ? strtol(s, NULL, 10) : 0;
}

/* A list member, NULL when absent or not a list. */
static const struct ynode *pc_list(const struct ynode *map, const char *key)
{
	const struct ynode *v = ynode_get(map, key);

	return v && v->type == YNODE_SEQ ? v : NULL;
}

/* The dump names resources "NAMESPACE/NAME"; istioctl shows them as "NAME.NAMESPACE". */
static void pc_config_ref(const char *ref, struct sbuf *out)
{
	const char *slash;

	if (!ref)
		return;
	slash = strchr(ref, '/');
	if (!slash)
		sbuf_adds(out, ref);
	else
		sbuf_addf(out, "%s.%.*s", slash + 1, (int)(slash - ref), ref);
}

/* ---- clusters ---- */

/* A cluster name split as istioctl splits it: DIRECTION|PORT|SUBSET|FQDN. */
struct pc_cname {
	char buf[512];
	const char *direction, *subset, *fqdn;
	long port;
	bool full;      /* the name had the four parts; else fqdn is the whole name */
};

static void pc_cname_parse(const char *name, struct pc_cname *cn)
{
	char *part[4], *bar;

	snprintf(cn->buf, sizeof(cn->buf), "%s", name ? name : "");
	cn->direction = cn->subset = "";
	cn->fqdn = cn->buf;
	cn->port = 0;
	cn->full = false;
	part[0] = cn->buf;
	for (size_t i = 1; i < 4; i++) {
		bar = strchr(part[i - 1], '|');
		if (!bar) {
			snprintf(cn->buf, sizeof(cn->buf), "%s", name ? name : "");
			return;
		}
		*bar = '\0';
		part[i] = bar + 1;
	}
	bar = strchr(part[3], '|');
	if (bar)
		*bar = '\0';
	cn->direction = part[0];
	cn->port = strtol(part[1], NULL, 10);
	cn->subset = part[2];
	cn->fqdn = part[3];
	cn->full = true;
}

static bool pc_cluster_keep(const struct ynode *c, const struct pc_opts *o)
{
	struct pc_cname cn;

	pc_cname_parse(pc_str(c, "name"), &cn);
	if (o->fqdn && !strstr(cn.fqdn, o->fqdn))
		return false;
	if (o->port && (!cn.full || cn.port != o->port))
		return false;
	if (o->subset && !strstr(cn.subset, o->subset))
		return false;
	if (o->direction && strcmp(cn.direction, o->direction) != 0)
		return false;
	return true;
}

/* istioctl's order: FQDN, then subset, then port (numerically), then direction. */
static int pc_cluster_cmp(const void *a, const void *b)
{
	struct pc_cname x, y;
	int r;

	pc_cname_parse(pc_str(*(const struct ynode *const *)a, "name"), &x);
	pc_cname_parse(pc_str(*(const struct ynode *const *)b, "name"), &y);
	if ((r = strcmp(x.fqdn, y.fqdn)) != 0 || (r = strcmp(x.subset, y.subset)) != 0)
		return r;
	if (x.port != y.port)
		return x.port < y.port ? -1 : 1;
	return strcmp(x.direction, y.direction);
}

static void pc_cluster_rows(const struct ynode *c, struct ctl_table *t)
{
	struct pc_cname cn;
	struct sbuf dr = SBUF_INIT;
	char port[24];

	pc_cname_parse(pc_str(c, "name"), &cn);
	snprintf(port, sizeof(port), "%ld", cn.port);
	ctl_table_add(t, cn.fqdn);
	ctl_table_add(t, cn.full ? port : "-");
	ctl_table_add(t, cn.full && cn.subset[0] ? cn.subset : "-");
	ctl_table_add(t, cn.full ? cn.direction : "-");
	ctl_table_add(t, pc_str(c, "discovery"));
	pc_config_ref(pc_str(c, "destination_rule"), &dr);
	ctl_table_add(t, sbuf_str(&dr));
	sbuf_free(&dr);
}

/* ---- routes ---- */

static bool pc_route_keep(const struct ynode *rc, const struct pc_opts *o)
{
	const char *name = pc_str(rc, "name");

	return !o->name || strcmp(name ? name : "", o->name) == 0;
}

static bool pc_has(const char *const *v, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
			return true;
	return false;
}

/* True if d is a longer spelling (NAME.svc.cluster.local, NAME.svc) of a name in v. */
static bool pc_expanded(const char *const *v, size_t n, const char *d)
{
	static const char *const sfx[] = { ".svc.cluster.local", ".svc" };
	size_t len = strlen(d);

	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		size_t sl = strlen(sfx[i]);

		if (len > sl && strcmp(d + len - sl, sfx[i]) == 0 && pc_has(v, n, d, len - sl))
			return true;
	}
	return false;
}

/* istioctl's DOMAINS cell: the one domain; or of several, those without a port and not a
 * longer spelling of another one, the first two of them and "+ N more...". */
static void pc_route_domains(const struct ynode *domains, struct sbuf *out)
{
	const char **v, **keep;
	size_t n = domains ? domains->n : 0, nv = 0, nk = 0;

	if (n == 0)
		return;
	if (n == 1) {
		sbuf_adds(out, ynode_str(domains->items[0]) ? ynode_str(domains->items[0]) : "");
		return;
	}
	v = xcalloc(n, sizeof(*v));
	keep = xcalloc(n, sizeof(*keep));
	for (size_t i = 0; i < n; i++) {
		const char *d = ynode_str(domains->items[i]);
		size_t colons = 0;

		if (!d)
			continue;
		for (const char *p = d; *p; p++)
			colons += *p == ':';
		/* "[fd00::1]" is an address without a port; "[fd00::1]:80" has one. */
		if (colons == 0 || (colons > 2 && str_has_suffix(d, "]")))
			v[nv++] = d;
	}
	for (size_t i = 0; i < nv; i++)
		if (!pc_expanded(v, nv, v[i]))
			keep[nk++] = v[i];
	for (size_t i = 0; i < nk && i < 2; i++)
		sbuf_addf(out, "%s%s", i ? ", " : "", keep[i]);
	if (nk > 2)
		sbuf_addf(out, " + %zu more...", nk - 2);
	free(v);
	free(keep);
}

/* istioctl's MATCH cell: the path condition only. A match without one is Envoy's
 * prefix "/", shown as "/" followed by "*". */
static void pc_route_match(const struct ynode *m, struct sbuf *out)
{
	const struct ynode *uri = ynode_get(m, "uri");
	const char *s;

	if ((s = pc_str(uri, "prefix")) != NULL)
		sbuf_addf(out, "%s*", s);
	else if ((s = pc_str(uri, "exact")) != NULL)
		sbuf_adds(out, s);
	else if ((s = pc_str(uri, "regex")) != NULL)
		sbuf_addf(out, "regex %s", s);
	else
		sbuf_adds(out, "/*");
}

/* istioctl leaves out the routes that only pass traffic through. */
static bool pc_route_passthrough(const struct ynode *r)
{
	const struct ynode *dests = pc_list(r, "route");
	const char *cl;

	if (!dests || dests->n != 1)
		return false;
	cl = pc_str(dests->items[0], "cluster");
	return cl && strcmp(cl, "PassthroughCluster") == 0;
}

static void pc_route_row(struct ctl_table *t, const char *name, const char *vhost,
                         const char *domains, const char *match, const char *vs)
{
	ctl_table_add(t, name);
	ctl_table_add(t, vhost);
	ctl_table_add(t, domains);
	ctl_table_add(t, match);
	ctl_table_add(t, vs);
}

/* One row per route and match: Istio makes one Envoy route of each match of a
 * VirtualService route, and the dump keeps them together. */
static void pc_route_rows(const struct ynode *rc, struct ctl_table *t)
{
	const char *name = pc_str(rc, "name");
	const struct ynode *vhosts = pc_list(rc, "virtual_hosts");

	for (size_t i = 0; vhosts && i < vhosts->n; i++) {
		const struct ynode *vh = vhosts->items[i];
		const struct ynode *routes = pc_list(vh, "routes");
		const char *vname = pc_str(vh, "name");
		struct sbuf domains = SBUF_INIT;

		pc_route_domains(pc_list(vh, "domains"), &domains);
		for (size_t k = 0; routes && k < routes->n; k++) {
			const struct ynode *r = routes->items[k];
			const struct ynode *matches = pc_list(r, "match");
			struct sbuf vs = SBUF_INIT, m = SBUF_INIT;

			if (pc_route_passthrough(r))
				continue;
			pc_config_ref(pc_str(r, "virtual_service"), &vs);
			for (size_t j = 0; j < (matches && matches->n ? matches->n : 1); j++) {
				sbuf_reset(&m);
				pc_route_match(matches && matches->n ? matches->items[j] : NULL, &m);
				pc_route_row(t, name, vname, sbuf_str(&domains), sbuf_str(&m),
				             sbuf_str(&vs));
			}
			sbuf_free(&vs);
			sbuf_free(&m);
		}
		if (!routes || routes->n == 0)
			pc_route_row(t, name, vname, sbuf_str(&domains), "/*", "404");
		sbuf_free(&domains);
	}
}

/* ---- listeners ---- */

/* "127.0.0.1:80" -> "127.0.0.1", "[::]:80" -> "::". */
static void pc_listener_ip(const struct ynode *l, struct sbuf *out)
{
	const char *a = pc_str(l, "address"), *end;

	if (!a)
		return;
	if (a[0] == '[') {
		end = strchr(a, ']');
		sbuf_add(out, a + 1, end ? (size_t)(end - a - 1) : strlen(a + 1));
		return;
	}
	end = strrchr(a, ':');
	sbuf_add(out, a, end ? (size_t)(end - a) : strlen(a));
}

static bool pc_listener_keep(const struct ynode *l, const struct pc_opts *o)
{
	struct sbuf ip = SBUF_INIT;
	bool ok = true;

	if (o->port && pc_num(l, "port") != o->port)
		ok = false;
	if (ok && o->address) {
		pc_listener_ip(l, &ip);
		ok = strcasecmp(sbuf_str(&ip), o->address) == 0;
	}
	sbuf_free(&ip);
	return ok;
}

/* istioctl's order: port, then address. */
static int pc_listener_cmp(const void *a, const void *b)
{
	const struct ynode *x = *(const struct ynode *const *)a;
	const struct ynode *y = *(const struct ynode *const *)b;
	long px = pc_num(x, "port"), py = pc_num(y, "port");
	const char *ax = pc_str(x, "address"), *ay = pc_str(y, "address");

	if (px != py)
		return px < py ? -1 : 1;
	return strcmp(ax ? ax : "", ay ? ay : "");
}

static int pc_strptr_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The MATCH of a TLS server's filter chain, as Istio builds it: SNI on the server's hosts
 * (namespace part dropped, sorted, each once), none ("ALL") when one of them is "*". */
static void pc_server_match(const struct ynode *sv, struct sbuf *out)
{
	const struct ynode *hosts = pc_list(sv, "hosts");
	size_t n = hosts ? hosts->n : 0, nv = 0;
	const char **v;

	if (n == 0) {
		sbuf_adds(out, "ALL");
		return;
	}
	v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		const char *h = ynode_str(hosts->items[i]), *slash;

		if (!h)
			continue;
		slash = strchr(h, '/');
		v[nv++] = slash ? slash + 1 : h;
	}
	qsort(v, nv, sizeof(*v), pc_strptr_cmp);
	for (size_t i = 0; i < nv; i++)
		if (strcmp(v[i], "*") == 0)
			nv = 0;
	if (nv == 0)
		sbuf_adds(out, "ALL");
	for (size_t i = 0; i < nv; i++)
		if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
			sbuf_addf(out, "%s%s", i ? "," : "SNI: ", v[i]);
	free(v);
}

struct pc_chain {
	char *match, *dest;
};

/* The chain of one tls:/tcp: route: "SNI: a,b" (sorted, each once) or "ALL", and its
 * clusters. m is scratch. */
static void pc_l4_chain(const struct ynode *r, struct sbuf *m, struct pc_chain *out)
{
	const struct ynode *matches = pc_list(r, "matches"), *route = pc_list(r, "route");
	const char *kind = pc_str(r, "kind");
	const char **v = NULL;
	size_t nv = 0, cap = 0;

	for (size_t i = 0; kind && strcmp(kind, "tls") == 0 && matches && i < matches->n; i++) {
		const struct ynode *hosts = pc_list(matches->items[i], "sni_hosts");

		for (size_t j = 0; hosts && j < hosts->n; j++) {
			if (!ynode_str(hosts->items[j]))
				continue;
			if (nv == cap) {
				cap = cap ? 2 * cap : 8;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[nv++] = ynode_str(hosts->items[j]);
		}
	}
	if (nv)
		qsort(v, nv, sizeof(*v), pc_strptr_cmp);
	for (size_t i = 0; i < nv; i++)
		if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
			sbuf_addf(m, "%s%s", i ? "," : "SNI: ", v[i]);
	if (nv == 0)
		sbuf_adds(m, "ALL");
	free(v);
	out->match = xstrdup(sbuf_str(m));
	sbuf_reset(m);
	if (pc_str(r, "refused"))
		sbuf_adds(m, "Refused");
	for (size_t i = 0; !pc_str(r, "refused") && route && i < route->n; i++)
		sbuf_addf(m, "%s%s", i ? "," : "Cluster: ", pc_str(route->items[i], "cluster"));
	out->dest = xstrdup(sbuf_str(m));
}

static void pc_listener_rows(const struct ynode *l, struct ctl_table *t)
{
	const struct ynode *servers = pc_list(l, "servers"), *l4 = pc_list(l, "l4_routes");
	const char *rc = pc_str(l, "route_config");
	struct sbuf ip = SBUF_INIT, m = SBUF_INIT;
	struct pc_chain *ch = xcalloc((servers ? servers->n : 0) + 1, sizeof(*ch));
	char *route = rc ? xasprintf("Route: %s", rc) : xstrdup("Non-HTTP/Non-TCP");
	size_t n = 0;
	bool plain = false;
	char port[24];

	/* A PASSTHROUGH or TCP port: one chain per tls:/tcp: route (Envoy's tcp_proxy
	 * filter chains), matched by SNI or by nothing. */
	if (l4 && l4->n) {
		ch = xrealloc(ch, (l4->n + (servers ? servers->n : 0) + 1) * sizeof(*ch));
		for (size_t i = 0; i < l4->n; i++) {
			sbuf_reset(&m);
			pc_l4_chain(l4->items[i], &m, &ch[n]);
			n++;
		}
	}
	for (size_t i = 0; servers && i < servers->n; i++) {
		const struct ynode *sv = servers->items[i];
		const char *mode = pc_str(sv, "tls_mode");

		const char *inside = pc_str(sv, "routes_inside_by_tls_tcp");

		/* Their chains are the routes' (above); so are those of a protocol TLS server
		 * that terminates and routes what is inside by tls:/tcp: routes. */
		if (l4 && l4->n && mode && (strcmp(mode, "PASSTHROUGH") == 0 ||
		                            strcmp(mode, "TCP") == 0 ||
		                            (inside && strcmp(inside, "true") == 0)))
			continue;

		if (!mode || strcmp(mode, "PLAIN") == 0) {
			/* The plain HTTP servers of a port share one filter chain. */
			if (plain)
				continue;
			plain = true;
			ch[n].match = xstrdup("ALL");
			ch[n++].dest = xstrdup(route);
			continue;
		}
		sbuf_reset(&m);
		pc_server_match(sv, &m);
		ch[n].match = xstrdup(sbuf_str(&m));
		/* PASSTHROUGH servers are not terminated: no HTTP route serves them. */
		ch[n++].dest = xstrdup(strcmp(mode, "PASSTHROUGH") == 0 ? "Non-HTTP/Non-TCP" : route);
	}
	if (n == 0) {
		ch[n].match = xstrdup("ALL");
		ch[n++].dest = xstrdup(route);
	}
	/* istioctl orders a listener's chains by destination, descending; insertion sort
	 * keeps equal ones in the dump's order. */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(ch[k - 1].dest, ch[k].dest) < 0; k--) {
			struct pc_chain tmp = ch[k];

			ch[k] = ch[k - 1];
			ch[k - 1] = tmp;
		}
	pc_listener_ip(l, &ip);
	snprintf(port, sizeof(port), "%ld", pc_num(l, "port"));
	for (size_t i = 0; i < n; i++) {
		ctl_table_add(t, sbuf_str(&ip));
		ctl_table_add(t, port);
		ctl_table_add(t, ch[i].match);
		ctl_table_add(t, ch[i].dest);
		free(ch[i].match);
		free(ch[i].dest);
	}
	free(ch);
	free(route);
	sbuf_free(&ip);
	sbuf_free(&m);
}

/* ---- secrets ---- */

/* Kinds without filters keep every item. */
static bool pc_keep_all(const struct ynode *it, const struct pc_opts *o)
{
	(void)it;
	(void)o;
	return true;
}

static void pc_secret_rows(const struct ynode *it, struct ctl_table *t)
{
	const char *v = pc_str(it, "valid");

	ctl_table_add(t, pc_str(it, "name"));
	ctl_table_add(t, pc_str(it, "type"));
	ctl_table_add(t, pc_str(it, "status"));
	ctl_table_add(t, v && strcmp(v, "true") == 0 ? "true" : "false");
	ctl_table_add(t, pc_str(it, "serial"));
	ctl_table_add(t, pc_str(it, "not_after"));
	ctl_table_add(t, pc_str(it, "not_before"));
}

/* A rejected version is not a row in istioctl's table; say it below, on stderr, so the
 * table stays what scripts expect. The reason of a WARMING resource too. */
/* A certificate the gateway reports as expiring (less than a quarter of its validity
 * left) or expired. */
static void pc_secret_expiry_note(const struct ynode *item, const char *name)
{
	const char *exp = pc_str(item, "expiring");
	const char *left = pc_str(item, "expires_in_seconds");
	long long s;

	if (!exp || strcmp(exp, "true") != 0 || !left)
		return;
	s = strtoll(left, NULL, 10);
	if (s < 0)
		fprintf(stderr, "warning: %s: the certificate expired at %s\n", name ? name : "",
		        pc_str(item, "not_after") ? pc_str(item, "not_after") : "?");
	else
		fprintf(stderr, "warning: %s: the certificate expires in %lldh%02lldm (at %s): renew "
		        "it\n", name ? name : "", s / 3600, s % 3600 / 60,
		        pc_str(item, "not_after") ? pc_str(item, "not_after") : "?");
}

static void pc_secret_notes(const struct ynode *const *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct ynode *rej = ynode_get(items[i], "rejected");
		const char *name = pc_str(items[i], "name"), *err = pc_str(items[i], "error");
		const char *st = pc_str(items[i], "status");

		if (rej && rej->type == YNODE_MAP)
			fprintf(stderr, "warning: %s: the newest version%s%s was rejected%s%s: %s; %s\n",
			        name ? name : "", pc_str(rej, "version") && *pc_str(rej, "version")
			        ? " " : "", pc_str(rej, "version") ? pc_str(rej, "version") : "",
			        pc_str(rej, "at") && *pc_str(rej, "at") ? " at " : "",
			        pc_str(rej, "at") ? pc_str(rej, "at") : "",
			        pc_str(rej, "reason") ? pc_str(rej, "reason") : "",
			        st && strcmp(st, "ACTIVE") == 0 ? "the previous version stays in use"
			                                        : "nothing is in use");
		else if (err && *err && st && strcmp(st, "WARMING") == 0)
			fprintf(stderr, "warning: %s is WARMING: %s\n", name ? name : "", err);
		pc_secret_expiry_note(items[i], name);
	}
}

/* ---- authorization policies ---- */

static void pc_authz_rows(const struct ynode *it, struct ctl_table *t)
{
	const struct ynode *rules = pc_list(it, "rules");
	const char *dry = pc_str(it, "dry_run");
	struct sbuf cell = SBUF_INIT;

	sbuf_adds(&cell, pc_str(it, "action") ? pc_str(it, "action") : "");
	if (dry && strcmp(dry, "true") == 0)
		sbuf_adds(&cell, " (dry-run)");
	ctl_table_add(t, sbuf_str(&cell));
	sbuf_reset(&cell);
	sbuf_addf(&cell, "%s.%s", pc_str(it, "name") ? pc_str(it, "name") : "",
	          pc_str(it, "namespace") ? pc_str(it, "namespace") : "");
	ctl_table_add(t, sbuf_str(&cell));
	sbuf_reset(&cell);
	sbuf_addf(&cell, "%zu", rules ? rules->n : 0);
	ctl_table_add(t, sbuf_str(&cell));
	sbuf_free(&cell);
}

/* ---- the kinds ---- */

static const struct pc_kind pc_kinds[] = {
	{ "cluster", "clusters", "c", "/config_dump", "clusters",
	  PC_F_FQDN | PC_F_PORT | PC_F_SUBSET | PC_F_DIRECTION, pc_cluster_usage, 5,
	  "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE",
	  pc_cluster_keep, pc_cluster_cmp, pc_cluster_rows, NULL, NULL },
	{ "route", "routes", "r", "/config_dump", "route_configs",
	  PC_F_NAME, pc_route_usage, 5,
	  "NAME\tVHOST NAME\tDOMAINS\tMATCH\tVIRTUAL SERVICE",
	  pc_route_keep, NULL, pc_route_rows, NULL, NULL },
	{ "listener", "listeners", "l", "/config_dump", "listeners",
	  PC_F_ADDRESS | PC_F_PORT, pc_listener_usage, 1,
	  "ADDRESSES\tPORT\tMATCH\tDESTINATION",
	  pc_listener_keep, pc_listener_cmp, pc_listener_rows, NULL, NULL },
	{ "secret", "secrets", "s", "/certs", "secrets",
	  0, pc_secret_usage, 5,
	  "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE",
	  pc_keep_all, NULL, pc_secret_rows, pc_secret_notes, NULL },
	{ "authz", "authorizationpolicies", "ap", "/config_dump", "authorization_policies",
	  0, pc_authz_usage, 3,
	  "ACTION\tAuthorizationPolicy\tRULES",
	  pc_keep_all, NULL, pc_authz_rows, NULL, NULL },
	{ "endpoint", "endpoints", "ep", "/clusters?format=json", "cluster_statuses",
	  PC_F_ADDRESS | PC_F_PORT | PC_F_CLUSTER | PC_F_STATUS, ctl_pc_endpoint_usage, 5,
	  "ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER", NULL, NULL, NULL, NULL, ctl_pc_endpoints },
};

static const struct pc_kind *pc_kind_find(const char *word)
{
	for (size_t i = 0; i < ARRAY_SIZE(pc_kinds); i++)
		if (strcmp(word, pc_kinds[i].name) == 0 || strcmp(word, pc_kinds[i].plural) == 0 ||
		    strcmp(word, pc_kinds[i].alias) == 0)
			return &pc_kinds[i];
	return NULL;
}

/* ---- the admin endpoint ---- */

static bool pc_all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

/* A word istioctl would take for a pod: deploy/NAME, pod/NAME, NAME[.NAMESPACE]. */
static bool pc_names_pod(const char *w)
{
	return strchr(w, '/') || (!strchr(w, ':') && !pc_all_digits(w, strlen(w)) &&
	                          !sock_is_ip_literal(w));
}

/* Turns the ADMIN_ADDR word (NULL when not given) into an address and its text
 * ("127.0.0.1:15000"). Returns 0, or -1 after printing the error. */
static int pc_admin_addr(const char *word, struct sock_addr *out, char *text, size_t n)
{
	const char *env = getenv("EGRESSGW_ADMIN");
	const char *w = word;
	char host[SOCK_ADDR_STRLEN];
	size_t len;

	if (w && str_has_prefix(w, "http://"))
		w += 7;
	else if (w && pc_names_pod(w))
		w = NULL;
	if (!w)
		w = word = env && *env ? env : PC_DEFAULT_ADMIN;
	len = strcspn(w, "/");            /* "http://127.0.0.1:15000/" */
	snprintf(host, sizeof(host), "%.*s", (int)len, w);
	if (pc_all_digits(host, strlen(host)))
		snprintf(text, n, "127.0.0.1:%s", host);
	else if (sock_is_ip_literal(host))
		snprintf(text, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, PC_DEFAULT_PORT);
	else if (str_has_prefix(host, "localhost:"))
		snprintf(text, n, "127.0.0.1:%s", host + 10);
	else
		snprintf(text, n, "%s", host);
	if (len >= sizeof(host) || sock_addr_parse(text, out) < 0) {
		fprintf(stderr, "error: invalid admin address \"%s\" (want IP:PORT, [IPv6]:PORT, "
		        "localhost:PORT or PORT)\n", word);
		return -1;
	}
	return 0;
}

/* GET path from the admin endpoint: one request on a blocking socket with a timeout,
 * read to the end (the admin closes after answering). The body goes to body. Returns 0,
 * or -1 after printing the error. */
static int pc_request(const struct sock_addr *a, const char *addr, const char *method,
                      const char *path, struct sbuf *body)
{
	struct timeval tv = { PC_TIMEOUT_SEC, 0 };
	struct sbuf req = SBUF_INIT, resp = SBUF_INIT;
	const char *head_end, *cl;
	char buf[16384];
	int fd, status = 0, rc = -1;
	size_t off = 0;

	fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "error: cannot reach the admin endpoint at %s: %s\n", addr,
		        strerror(errno));
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, &a->u.sa, a->len) < 0) {
		/* A blocking connect that hits SO_SNDTIMEO fails with EINPROGRESS. */
		fprintf(stderr, "error: cannot reach the admin endpoint at %s: %s\n", addr,
		        strerror(errno == EINPROGRESS ? ETIMEDOUT : errno));
		goto out;
	}
	sbuf_addf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: egressctl\r\n"
	          "Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	          method, path, addr);
	while (off < req.len) {
		ssize_t w = write(fd, req.s + off, req.len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "error: cannot send to the admin endpoint at %s: %s\n", addr,
			        strerror(w < 0 && errno != EAGAIN ? errno : ETIMEDOUT));
			goto out;
		}
		off += (size_t)w;
	}
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "error: no answer from the admin endpoint at %s: %s\n", addr,
			        strerror(errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno));
			goto out;
		}
		if (r == 0)
			break;
		if (resp.len + (size_t)r > PC_MAX_RESPONSE) {
			fprintf(stderr, "error: the admin endpoint at %s sent more than %u bytes\n",
			        addr, PC_MAX_RESPONSE);
			goto out;
		}
		sbuf_add(&resp, buf, (size_t)r);
	}
	head_end = resp.len ? strstr(resp.s, "\r\n\r\n") : NULL;
	if (!head_end || sscanf(resp.s, "HTTP/1.%*d %d", &status) != 1) {
		fprintf(stderr, "error: the admin endpoint at %s did not answer with HTTP "
		        "(is %s the gateway's --admin address?)\n", addr, addr);
		goto out;
	}
	head_end += 4;
	off = resp.len - (size_t)(head_end - resp.s);
	cl = strcasestr(resp.s, "\r\ncontent-length:");
	if (cl && cl < head_end) {
		size_t want = strtoul(cl + 17, NULL, 10);

		if (want < off)
			off = want;
	}
	if (status != 200) {
		fprintf(stderr, "error: the admin endpoint at %s answered %d to %s %s: %.*s\n",
		        addr, status, method, path, (int)strcspn(head_end, "\r\n"), head_end);
		goto out;
	}
	sbuf_add(body, head_end, off);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	sbuf_free(&req);
	sbuf_free(&resp);
	return rc;
}

static int pc_fetch(const struct sock_addr *a, const char *addr, const char *path,
                    struct sbuf *body)
{
	return pc_request(a, addr, "GET", path, body);
}

/* istioctl proxy-config log [--level LEVEL]: the proxy's loggers (GET /logging), or a
 * new level for all of them (POST /logging?level=). */
static int pc_log(const char *level, const struct sock_addr *a, const char *addr)
{
	struct sbuf body = SBUF_INIT, path = SBUF_INIT;
	int rc;

	/* istioctl takes "level" or "logger:level"; egressgw has one level for all loggers. */
	if (level && strchr(level, ':'))
		level = strrchr(level, ':') + 1;
	if (level)
		sbuf_addf(&path, "/logging?level=%s", level);
	rc = pc_request(a, addr, level ? "POST" : "GET", level ? sbuf_str(&path) : "/logging",
	                &body);
	if (rc == 0)
		fputs(sbuf_str(&body), stdout);
	sbuf_free(&body);
	sbuf_free(&path);
	return rc < 0 ? 1 : 0;
}

/* ---- the command ---- */

static int pc_format_parse(const char *s, enum pc_format *out)
{
	if (!s || strcmp(s, "short") == 0)
		*out = PC_SHORT;
	else if (strcmp(s, "json") == 0)
		*out = PC_JSON;
	else if (strcmp(s, "yaml") == 0)
		*out = PC_YAML;
	else {
		fprintf(stderr, "error: output format \"%s\" not supported (want short, json or "
		        "yaml)\n", s);
		return -1;
	}
	return 0;
}

/* A flag the kind does not take is an unknown flag, as for istioctl's subcommand. */
static int pc_check_flags(const struct pc_kind *k, const struct pc_opts *o, const char *port)
{
	const struct { unsigned bit; const char *name; bool given; } f[] = {
		{ PC_F_FQDN, "fqdn", o->fqdn != NULL },
		{ PC_F_PORT, "port", port != NULL },
		{ PC_F_SUBSET, "subset", o->subset != NULL },
		{ PC_F_DIRECTION, "direction", o->direction != NULL },
		{ PC_F_NAME, "name", o->name != NULL },
		{ PC_F_ADDRESS, "address", o->address != NULL },
		{ PC_F_CLUSTER, "cluster", o->cluster != NULL },
		{ PC_F_STATUS, "status", o->status != NULL },
	};

	for (size_t i = 0; i < ARRAY_SIZE(f); i++)
		if (f[i].given && !(k->filters & f[i].bit)) {
			fprintf(stderr, "error: unknown flag: --%s\nSee 'egressctl proxy-config %s "
			        "--help' for usage.\n", f[i].name, k->name);
			return -1;
		}
	return 0;
}

static void pc_print_table(const struct pc_kind *k, const struct ynode *const *items,
                           size_t n)
{
	struct ctl_table t;
	size_t ncols = 1;
	char *hdr = xstrdup(k->header);

	for (const char *p = hdr; *p; p++)
		ncols += *p == '\t';
	ctl_table_init(&t, ncols);
	t.minwidth = 0;
	t.padding = k->padding;
	for (char *save = NULL, *w = strtok_r(hdr, "\t", &save); w; w = strtok_r(NULL, "\t", &save))
		ctl_table_add(&t, w);
	for (size_t i = 0; i < n; i++)
		k->rows(items[i], &t);
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	free(hdr);
}

/* -o json|yaml: the selected items, as a list, the way the dump has them. */
void ctl_pc_print_doc(struct ystream *s, const struct ynode *const *items, size_t n,
                      enum pc_format f)
{
	struct ynode *seq = ynode_new_seq(s);
	struct sbuf out = SBUF_INIT;

	for (size_t i = 0; i < n; i++)
		ynode_seq_append(s, seq, (struct ynode *)items[i]);
	if (f == PC_JSON)
		ydoc_emit_json(seq, &out);
	else
		ydoc_emit(seq, &out);
	fwrite(sbuf_str(&out), 1, out.len, stdout);
	sbuf_free(&out);
}

int ctl_pc_parse(const char *where, const struct sbuf *body, const char *what, struct ystream *s)
{
	struct diags d = DIAGS_INIT;
	struct sbuf msg = SBUF_INIT;
	int rc = ydoc_parse(where, sbuf_str(body), body->len, s, &d);

	if (rc < 0) {
		if (d.n)
			diag_format(&d.v[0], &msg);
		fprintf(stderr, "error: cannot read the %s: %s\n", what, sbuf_str(&msg));
	}
	sbuf_free(&msg);
	diags_free(&d);
	return rc < 0 ? -1 : 0;
}

/* file: a saved config_dump (istioctl's --file) instead of asking the admin endpoint. */
static int pc_show(const struct pc_kind *k, const struct pc_opts *o, enum pc_format f,
                   const struct sock_addr *a, const char *addr, const char *file)
{
	struct sbuf body = SBUF_INIT, where = SBUF_INIT;
	struct ystream s;
	const struct ynode *root, *list;
	const struct ynode **items = NULL;
	size_t n = 0;
	int rc = 1;

	memset(&s, 0, sizeof(s));
	if (file) {
		char *data = NULL;
		size_t len = 0;

		if (strcmp(k->path, "/config_dump") != 0) {
			fprintf(stderr, "error: --file holds a config_dump; %s needs a running proxy "
			        "(%s)\n", k->plural, k->path);
			goto out;
		}
		if (file_read_all(file, &data, &len) < 0) {
			fprintf(stderr, "error: %s: %s\n", file, strerror(errno));
			goto out;
		}
		sbuf_add(&body, data, len);
		free(data);
		sbuf_adds(&where, file);
	} else {
		if (pc_fetch(a, addr, k->path, &body) < 0)
			goto out;
		sbuf_addf(&where, "http://%s%s", addr, k->path);
	}
	if (ctl_pc_parse(sbuf_str(&where), &body, "configuration dump", &s) < 0)
		goto out;
	root = s.ndocs ? s.docs[0].root : NULL;
	if (root && root->type != YNODE_MAP) {
		fprintf(stderr, "error: %s is not a configuration dump (want a JSON object)\n",
		        sbuf_str(&where));
		goto out;
	}
	list = pc_list(root, k->key);
	if (!list || list->n == 0) {
		/* istioctl's words when the proxy has none at all. */
		fprintf(stderr, "error: no %s found\n", k->plural);
		goto out;
	}
	items = xcalloc(list->n, sizeof(*items));
	for (size_t i = 0; i < list->n; i++)
		if (k->keep(list->items[i], o))
			items[n++] = list->items[i];
	if (k->cmp)
		qsort(items, n, sizeof(*items), k->cmp);
	if (f == PC_SHORT) {
		pc_print_table(k, items, n);
		fflush(stdout);
		if (k->notes)
			k->notes(items, n);
	} else {
		ctl_pc_print_doc(&s, items, n, f);
	}
	rc = 0;
out:
	free(items);
	ystream_free(&s);
	sbuf_free(&body);
	sbuf_free(&where);
	return rc;
}

int ctl_cmd_proxy_config(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const char *output = NULL, *port = NULL, *file = NULL, *level = NULL;
	struct pc_opts o;
	const struct ctl_flag flags[] = {
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ "file", 'f', CTL_FLAG_STR, &file },
		{ "level", 0, CTL_FLAG_STR, &level },
		{ "fqdn", 0, CTL_FLAG_STR, &o.fqdn },
		{ "port", 0, CTL_FLAG_STR, &port },
		{ "subset", 0, CTL_FLAG_STR, &o.subset },
		{ "direction", 0, CTL_FLAG_STR, &o.direction },
		{ "name", 0, CTL_FLAG_STR, &o.name },
		{ "address", 0, CTL_FLAG_STR, &o.address },
		{ "cluster", 0, CTL_FLAG_STR, &o.cluster },
		{ "status", 0, CTL_FLAG_STR, &o.status },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	const struct pc_kind *k;
	enum pc_format f;
	struct sock_addr a;
	char addr[SOCK_ADDR_STRLEN + 16];
	bool help = false;
	int rc = 1;

	memset(&o, 0, sizeof(o));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (pos.n == 0) {
		if (help) {
			fputs(pc_usage, stdout);
			rc = 0;
		} else {
			fprintf(stderr, "error: say what to show: cluster, endpoint, route, listener, "
			        "secret or authz\n"
			        "See 'egressctl proxy-config --help' for usage.\n");
		}
		goto out;
	}
	if (strcmp(pos.v[0], "log") == 0 && !help) {
		rc = pc_admin_addr(pos.n > 1 ? pos.v[1] : NULL, &a, addr, sizeof(addr)) < 0
		     ? 1 : pc_log(level, &a, addr);
		goto out;
	}
	if (strcmp(pos.v[0], "all") == 0 && !help) {
		/* istioctl proxy-config all: the cluster, listener and route tables in turn. */
		static const char *const all[] = { "cluster", "listener", "route" };

		if (pc_format_parse(output, &f) < 0 ||
		    (!file && pc_admin_addr(pos.n > 1 ? pos.v[1] : NULL, &a, addr, sizeof(addr)) < 0))
			goto out;
		rc = 0;
		for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
			if (i && f == PC_SHORT)
				fputs("\n", stdout);
			fflush(stdout);
			rc |= pc_show(pc_kind_find(all[i]), &o, f, &a, addr, file);
		}
		goto out;
	}
	k = pc_kind_find(pos.v[0]);
	if (!k) {
		fprintf(stderr, "error: unknown kind \"%s\" for \"egressctl proxy-config\" (want "
		        "cluster, endpoint, route, listener, secret or authz)\n"
		        "See 'egressctl proxy-config --help' for usage.\n", pos.v[0]);
		goto out;
	}
	if (help) {
		printf("%s%s", k->usage, pc_usage_common);
		rc = 0;
		goto out;
	}
	if (pc_check_flags(k, &o, port) < 0 || pc_format_parse(output, &f) < 0)
		goto out;
	if (port) {
		char *end;

		o.port = strtol(port, &end, 10);
		if (!*port || *end || o.port < 1 || o.port > 65535) {
			fprintf(stderr, "error: invalid argument \"%s\" for \"--port\" flag: want a "
			        "port number (1-65535)\n", port);
			goto out;
		}
	}
	if (pos.n > 2) {
		fprintf(stderr, "error: proxy-config %s takes at most one ADMIN_ADDR, got %zu "
		        "arguments\n", k->name, pos.n - 1);
		goto out;
	}
	if (file && k->show) {
		fprintf(stderr, "error: --file holds a config_dump; %s needs a running proxy (%s)\n",
		        k->plural, k->path);
		goto out;
	}
	if (!file && pc_admin_addr(pos.n > 1 ? pos.v[1] : NULL, &a, addr, sizeof(addr)) < 0)
		goto out;
	rc = k->show ? k->show(&o, f, &a, addr) : pc_show(k, &o, f, &a, addr, file);
out:
	ctl_strs_free(&pos);
	return rc;
}

/* ---- for other commands (explain-request) ---- */

int ctl_admin_addr(const char *word, struct sock_addr *out, char *text, size_t n)
{
	return pc_admin_addr(word, out, text, n);
}

int ctl_admin_get(const struct sock_addr *a, const char *addr, const char *path,
                  struct sbuf *body)
{
	return pc_fetch(a, addr, path, body);
}
