/* egressctl explain-request URL: asks a running proxy (its admin endpoint's /explain) how it
 * would handle one request, without sending it, and prints the answer as text or JSON.
 *
 * With --from-sidecar ADMIN_ADDR (or --from WORKLOAD) it follows the request along the
 * mesh: the sidecar's answer first; when the sidecar would forward it to one of the
 * gateway's listeners (the gateway's GET /listeners?format=json has the endpoint's
 * address and port), the gateway is asked in turn, for the same request arriving on that
 * port (the URL's port replaced by the endpoint's, as the sidecar sends it). When the
 * sidecar sends it elsewhere, the answer says that the gateway is not on its path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/ydoc.h"
#include "core/util.h"
#include "net/sock.h"
#include "proxy/snap.h"

static const char explain_usage[] =
	"Ask a running egressgw (gateway or sidecar) how it would handle one request, without\n"
	"sending it: the listener (and the Gateway server and its TLS), the route table, the\n"
	"VirtualService route that matches (with the file:line of the rule), the destination\n"
	"cluster, its TLS origination (mode, SNI, SubjectAltNames, credential), the endpoint,\n"
	"or why the request would be refused (404 NR, 503 UF/UH/DF/NC, the sidecar's\n"
	"PassthroughCluster and BlackHoleCluster), with Envoy's response flag.\n"
	"\n"
	"The proxy asked is the one whose admin endpoint ADMIN_ADDR is (a sidecar answers for\n"
	"what the application sends it; a gateway for what reaches its listeners).\n"
	"\n"
	"From a sidecar (--from-sidecar SIDECAR_ADMIN, or --from WORKLOAD): the whole path.\n"
	"The sidecar is asked first (mesh routing); when it would forward the request to one\n"
	"of the listeners of the gateway at ADMIN_ADDR, the gateway is asked in turn for the\n"
	"request as it arrives there (on the endpoint's port), down to the upstream endpoint.\n"
	"When the sidecar would send it anywhere else, the answer says the gateway is not on\n"
	"the request's path. WORKLOAD names the sidecar as istioctl names a pod\n"
	"(deploy/sleep, pod/NAME, a pod name), whose admin address is then\n"
	"$EGRESSGW_SIDECAR_ADMIN; an address there (IP:PORT, PORT) is the sidecar's itself.\n"
	"\n"
	"Usage:\n"
	"  egressctl explain-request URL [ADMIN_ADDR] [-X METHOD] [-H 'Name: value']...\n"
	"                                [-o text|json]\n"
	"  egressctl explain-request URL [GATEWAY_ADMIN_ADDR] --from-sidecar SIDECAR_ADMIN_ADDR\n"
	"  egressctl explain-request URL [GATEWAY_ADMIN_ADDR] --from WORKLOAD\n"
	"\n"
	"Examples:\n"
	"  egressctl explain-request http://edition.cnn.com/politics 127.0.0.1:15001\n"
	"  egressctl explain-request http://edition.cnn.com/politics -H 'x-user: a' -o json\n"
	"  egressctl explain-request http://edition.cnn.com/politics 15000 --from-sidecar 15001\n"
	"\n"
	"Flags:\n"
	"  -X, --request METHOD    the request's method (default GET)\n"
	"  -H, --header 'N: V'     a request header (repeatable), for header matches\n"
	"  -o, --output FORMAT     text (default) or json (the proxy's answer; from a sidecar:\n"
	"                          {\"sidecar\": ..., \"gateway\": ... or null, \"path\": ...})\n"
	"      --from-sidecar ADDR the sidecar's admin address: follow the request from there\n"
	"      --from WORKLOAD     the same, the sidecar named as a pod\n"
	"\n"
	"ADMIN_ADDR: IP:PORT, [IPv6]:PORT, localhost:PORT or PORT; default $EGRESSGW_ADMIN, else\n"
	"127.0.0.1:15000.\n"
	"\n"
	"Exit status: 0 when the request would be forwarded, redirected or answered by its\n"
	"route's directResponse, 1 when it would be refused (by either proxy, from a sidecar)\n"
	"or a proxy could not be asked. A route's fault (delay, abort) is shown as configured:\n"
	"it is decided per request.\n";

static void url_encode(struct sbuf *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			sbuf_addc(out, (char)*p);
		else
			sbuf_addf(out, "%%%02X", *p);
	}
}

static const char *str_at(const struct ynode *n, const char *k1, const char *k2)
{
	const struct ynode *v = ynode_get(n, k1);

	if (k2)
		v = ynode_get(v, k2);
	return v && v->type == YNODE_SCALAR && strcmp(ynode_str(v), "null") != 0 ? ynode_str(v)
	                                                                          : NULL;
}

static void list_line(const char *label, const struct ynode *seq)
{
	if (!seq || seq->type != YNODE_SEQ || seq->n == 0)
		return;
	printf("%-14s", label);
	for (size_t i = 0; i < seq->n; i++)
		printf("%s%s", i ? ", " : "", ynode_str(seq->items[i]) ? ynode_str(seq->items[i]) : "");
	printf("\n");
}

static void print_text(const struct ynode *root)
{
	const struct ynode *l = ynode_get(root, "listener"), *dests = ynode_get(root, "destinations");
	const struct ynode *tls = ynode_get(ynode_get(root, "cluster"), "tls");
	const char *result = str_at(root, "result", NULL), *v;

	printf("%-14s%s %s\n", "Request:", str_at(root, "request", "method"),
	       str_at(root, "request", "url"));
	printf("%-14s%s (configuration version %s)\n", "Proxy:", str_at(root, "proxy", NULL),
	       str_at(root, "config_version", NULL));
	if (l && l->type == YNODE_MAP) {
		v = str_at(l, "server_tls", NULL);
		printf("%-14s%s%s%s", "Listener:", str_at(l, "name", NULL), v ? ", TLS " : "",
		       v ? v : "");
		if ((v = str_at(l, "gateway", NULL)))
			printf(", Gateway %s", v);
		printf("\n");
		list_line("  clients:", ynode_get(l, "allowed_client_sans"));
	} else if ((v = str_at(root, "listener", NULL))) {
		printf("%-14s%s\n", "Listener:", v);
	}
	if ((v = str_at(root, "handling", NULL)))
		printf("%-14s%s\n", "Handling:", v);
	if ((v = str_at(root, "route_table", NULL)))
		printf("%-14s%s\n", "Route table:", v);
	if ((v = str_at(root, "virtual_host", NULL)))
		printf("%-14s%s\n", "Virtual host:", v);
	if (ynode_get(root, "route")) {
		printf("%-14s%s", "Route:", (v = str_at(root, "route", "name")) ? v : "(unnamed)");
		if ((v = str_at(root, "route", "virtual_service")))
			printf(", VirtualService %s", v);
		if ((v = str_at(root, "route", "source")))
			printf(" at %s", v);
		if ((v = str_at(root, "route", "reason")))
			printf(" (%s)", v);
		printf("\n");
	}
	for (size_t i = 0; dests && dests->type == YNODE_SEQ && i < dests->n; i++)
		printf("%-14s%s (weight %s)\n", i ? "" : "Destination:", str_at(dests->items[i],
		       "cluster", NULL), str_at(dests->items[i], "weight", NULL));
	if ((v = str_at(root, "cluster", "name")))
		printf("%-14s%s, %s\n", "Cluster:", v, str_at(root, "cluster", "load_balancer"));
	if ((v = str_at(tls, "mode", NULL))) {
		printf("%-14s%s", "Upstream TLS:", v);
		if ((v = str_at(tls, "sni", NULL)))
			printf(", SNI %s", v);
		if ((v = str_at(tls, "credential", NULL)))
			printf(", credential %s", v);
		if ((v = str_at(tls, "error", NULL)))
			printf(", NOT LOADED: %s", v);
		printf("\n");
		list_line("  SANs:", ynode_get(tls, "subject_alt_names"));
	}
	list_line("Endpoints:", ynode_get(ynode_get(root, "cluster"), "endpoints"));
	{
		/* Outlier detection runs per worker: on how many each endpoint is out. */
		const struct ynode *ej = ynode_get(ynode_get(root, "cluster"), "ejected_endpoints");

		for (size_t i = 0; ej && ej->type == YNODE_SEQ && i < ej->n; i++)
			printf("%-14s%s, ejected by outlier detection on %s of %s worker(s)\n",
			       i ? "" : "Ejected:", str_at(ej->items[i], "endpoint", NULL),
			       str_at(ej->items[i], "ejected_workers", NULL),
			       str_at(ej->items[i], "workers", NULL));
	}
	if (result && strcmp(result, "forward") == 0)
		printf("%-14sforwarded to %s (%s)\n", "Result:", str_at(root, "endpoint", NULL),
		       str_at(root, "endpoint_pick", NULL));
	else if (result && strcmp(result, "redirect") == 0 && (v = str_at(root, "location", NULL)))
		printf("%-14sredirect %s to %s\n", "Result:", str_at(root, "response_code", NULL), v);
	else if (result && strcmp(result, "redirect") == 0)
		printf("%-14sredirect %s (%s)\n", "Result:", str_at(root, "response_code", NULL),
		       str_at(root, "reason", NULL));
	else if (result && strcmp(result, "direct_response") == 0)
		printf("%-14sdirect response %s\n", "Result:", str_at(root, "response_code", NULL));
	else
		printf("%-14srefused: %s %s %s: %s\n", "Result:", str_at(root, "response_code", NULL),
		       str_at(root, "response_flags", NULL), str_at(root, "response_code_details", NULL),
		       str_at(root, "reason", NULL));
}

/* Asks the proxy at a (text addr) how it would handle url: its JSON answer in body, parsed
 * into s (freed by the caller when 0 is returned). Returns 0, or -1 after printing. */
static int ex_ask(const struct sock_addr *a, const char *addr, const char *url,
                  const char *method, const struct ctl_strs *headers, struct sbuf *body,
                  struct ystream *s)
{
	struct sbuf path = SBUF_INIT;
	struct diags d = DIAGS_INIT;
	int rc = -1;

	memset(s, 0, sizeof(*s));
	sbuf_adds(&path, "/explain?url=");
	url_encode(&path, url);
	if (method) {
		sbuf_adds(&path, "&method=");
		url_encode(&path, method);
	}
	for (size_t i = 0; i < headers->n; i++) {
		sbuf_adds(&path, "&h=");
		url_encode(&path, headers->v[i]);
	}
	if (ctl_admin_get(a, addr, sbuf_str(&path), body) < 0)
		goto out;
	if (ydoc_parse("explain", body->s ? body->s : "", body->len, s, &d) < 0 || s->ndocs != 1 ||
	    !s->docs[0].root || s->docs[0].root->type != YNODE_MAP) {
		fprintf(stderr, "error: the admin endpoint at %s answered something that is not "
		        "JSON\n", addr);
		ystream_free(s);
		memset(s, 0, sizeof(*s));
		goto out;
	}
	rc = 0;
out:
	diags_free(&d);
	sbuf_free(&path);
	return rc;
}

/* 0 when the answer is forwarded, redirected or a route's direct response, else 1 (the
 * exit status). */
static int ex_status(const struct ynode *root)
{
	const char *result = str_at(root, "result", NULL);

	return result && (strcmp(result, "forward") == 0 || strcmp(result, "redirect") == 0 ||
	                  strcmp(result, "direct_response") == 0) ? 0 : 1;
}

/* The name of the gateway's listener on ep ("IP:PORT" or "[IPv6]:PORT"), or NULL: from
 * its /listeners?format=json (an address of 0.0.0.0 or :: takes any IP of the family). */
static char *ex_gateway_listener(const struct sock_addr *ga, const char *gaddr, const char *ep)
{
	struct sbuf body = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;
	struct sock_addr want;
	const struct ynode *list;
	char ip[SOCK_ADDR_STRLEN], *name = NULL;

	memset(&s, 0, sizeof(s));
	if (sock_addr_parse(ep, &want) < 0)
		goto out;
	sock_addr_ip_str(&want, ip, sizeof(ip));
	if (ctl_admin_get(ga, gaddr, "/listeners?format=json", &body) < 0 ||
	    ydoc_parse("listeners", sbuf_str(&body), body.len, &s, &d) < 0 || s.ndocs != 1)
		goto out;
	list = ynode_get(s.docs[0].root, "listener_statuses");
	for (size_t i = 0; list && list->type == YNODE_SEQ && i < list->n && !name; i++) {
		const struct ynode *sa = ynode_get(ynode_get(list->items[i], "local_address"),
		                                   "socket_address");
		const char *a = str_at(sa, "address", NULL), *p = str_at(sa, "port_value", NULL);

		if (!a || !p || strtol(p, NULL, 10) != sock_addr_port(&want))
			continue;
		if (strcmp(a, ip) == 0 || strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0)
			name = xstrdup(str_at(list->items[i], "name", NULL) ? str_at(list->items[i], "name", NULL)
			                                                    : "");
	}
out:
	ystream_free(&s);
	diags_free(&d);
	sbuf_free(&body);
	return name;
}

/* url with its port replaced by port: the request as the sidecar sends it to the gateway. */
static char *ex_url_on_port(const char *url, unsigned port)
{
	const char *sep = strstr(url, "://");
	const char *auth = sep ? sep + 3 : url;
	size_t alen = strcspn(auth, "/?#"), hlen;
	const char *rb = alen && auth[0] == '[' ? memchr(auth, ']', alen) : NULL;

	if (rb)
		hlen = (size_t)(rb - auth) + 1;
	else
		hlen = strcspn(auth, ":/?#");
	return xasprintf("%.*s%.*s:%u%s", (int)(auth - url), url, (int)hlen, auth, port, auth + alen);
}

static void ex_json_member(const char *key, const struct sbuf *body, bool last)
{
	size_t n = body->len;

	while (n && (body->s[n - 1] == '\n' || body->s[n - 1] == ' '))
		n--;
	printf("  \"%s\": ", key);
	fwrite(body->s, 1, n, stdout);
	printf("%s\n", last ? "" : ",");
}

/* --from-sidecar: the sidecar's answer, then the gateway's when the sidecar forwards the
 * request to one of the gateway's listeners. Returns the exit status. */
static int ex_chain(const char *url, const char *method, const struct ctl_strs *headers,
                    bool json, const struct sock_addr *sa, const char *saddr,
                    const struct sock_addr *ga, const char *gaddr)
{
	struct sbuf b1 = SBUF_INIT, b2 = SBUF_INIT, path = SBUF_INIT;
	struct ystream s1, s2;
	bool have1 = false, have2 = false;
	const char *ep = NULL;
	char *lname = NULL, *url2 = NULL;
	int rc = 1;

	memset(&s2, 0, sizeof(s2));
	if (ex_ask(sa, saddr, url, method, headers, &b1, &s1) < 0)
		goto out;
	have1 = true;
	rc = ex_status(s1.docs[0].root);
	if (strcmp(str_at(s1.docs[0].root, "result", NULL) ? str_at(s1.docs[0].root, "result", NULL)
	                                                   : "", "forward") == 0)
		ep = str_at(s1.docs[0].root, "endpoint", NULL);
	if (!ep) {
		sbuf_addf(&path, "the sidecar does not forward the request: the gateway at %s is not "
		          "asked", gaddr);
	} else if (!(lname = ex_gateway_listener(ga, gaddr, ep))) {
		sbuf_addf(&path, "NOT through the gateway: the sidecar sends the request to %s "
		          "(cluster %s), which is not a listener of the gateway at %s", ep,
		          str_at(s1.docs[0].root, "cluster", "name"), gaddr);
	} else {
		struct sock_addr e;

		if (sock_addr_parse(ep, &e) < 0)
			goto out;
		url2 = ex_url_on_port(url, sock_addr_port(&e));
		sbuf_addf(&path, "the sidecar sends the request to %s, the gateway's listener %s; "
		          "the gateway is asked for %s", ep, lname, url2);
		if (ex_ask(ga, gaddr, url2, method, headers, &b2, &s2) < 0) {
			rc = 1;
			goto out;
		}
		have2 = true;
		rc = ex_status(s2.docs[0].root);
	}
	if (json) {
		struct sbuf p = SBUF_INIT;

		snap_json_escape(&p, sbuf_str(&path));
		printf("{\n");
		ex_json_member("sidecar", &b1, false);
		if (have2)
			ex_json_member("gateway", &b2, false);
		else
			printf("  \"gateway\": null,\n");
		printf("  \"path\": %s\n}\n", sbuf_str(&p));
		sbuf_free(&p);
	} else {
		printf("From the sidecar at %s:\n", saddr);
		print_text(s1.docs[0].root);
		printf("\n%-14s%s\n", "Path:", sbuf_str(&path));
		if (have2) {
			printf("\nThen the gateway at %s:\n", gaddr);
			print_text(s2.docs[0].root);
		}
	}
out:
	if (have1)
		ystream_free(&s1);
	if (have2)
		ystream_free(&s2);
	free(lname);
	free(url2);
	sbuf_free(&b1);
	sbuf_free(&b2);
	sbuf_free(&path);
	return rc;
}

/* --from WORKLOAD: an address is the sidecar's; a pod word means $EGRESSGW_SIDECAR_ADMIN. */
static const char *ex_from_workload(const char *w)
{
	bool digits = *w && strspn(w, "0123456789") == strlen(w);
	const char *env = getenv("EGRESSGW_SIDECAR_ADMIN");

	if (digits || (strchr(w, ':') && !strchr(w, '/')))
		return w;
	if (!env || !*env) {
		fprintf(stderr, "error: --from %s names a workload; egressctl finds its sidecar's admin "
		        "address in $EGRESSGW_SIDECAR_ADMIN, which is not set (or use --from-sidecar "
		        "ADMIN_ADDR)\n", w);
		return NULL;
	}
	return env;
}

int ctl_cmd_explain_request(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 }, headers = { NULL, 0 };
	const char *method = NULL, *output = NULL, *from = NULL, *from_sidecar = NULL;
	const struct ctl_flag flags[] = {
		{ "request", 'X', CTL_FLAG_STR, &method },
		{ "header", 'H', CTL_FLAG_LIST, &headers },
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ "from", 0, CTL_FLAG_STR, &from },
		{ "from-sidecar", 0, CTL_FLAG_STR, &from_sidecar },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct sock_addr a, sa;
	char addr[SOCK_ADDR_STRLEN], saddr[SOCK_ADDR_STRLEN];
	struct sbuf body = SBUF_INIT;
	struct ystream s;
	bool help = false, parsed = false, json;
	int rc = 1;

	memset(&s, 0, sizeof(s));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(explain_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n < 1 || pos.n > 2) {
		fprintf(stderr, "error: want a URL (and optionally ADMIN_ADDR)\n"
		        "See 'egressctl explain-request --help' for usage.\n");
		goto out;
	}
	if (output && strcmp(output, "text") != 0 && strcmp(output, "json") != 0) {
		fprintf(stderr, "error: output format \"%s\" not supported (want text or json)\n",
		        output);
		goto out;
	}
	json = output && strcmp(output, "json") == 0;
	if (from && from_sidecar) {
		fprintf(stderr, "error: --from and --from-sidecar name the same thing: give one\n");
		goto out;
	}
	if (from && !(from_sidecar = ex_from_workload(from)))
		goto out;
	if (ctl_admin_addr(pos.n > 1 ? pos.v[1] : NULL, &a, addr, sizeof(addr)) < 0)
		goto out;
	if (from_sidecar) {
		if (ctl_admin_addr(from_sidecar, &sa, saddr, sizeof(saddr)) < 0)
			goto out;
		rc = ex_chain(pos.v[0], method, &headers, json, &sa, saddr, &a, addr);
		goto out;
	}
	if (ex_ask(&a, addr, pos.v[0], method, &headers, &body, &s) < 0)
		goto out;
	parsed = true;
	if (json)
		fwrite(body.s, 1, body.len, stdout);
	else
		print_text(s.docs[0].root);
	rc = ex_status(s.docs[0].root);
out:
	if (parsed)
		ystream_free(&s);
	sbuf_free(&body);
	ctl_strs_free(&pos);
	ctl_strs_free(&headers);
	return rc;
}
