/* egressctl explain-request URL: asks a running proxy (its admin endpoint's /explain) how it
 * would handle one request, without sending it, and prints the answer as text or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "config/ydoc.h"
#include "core/util.h"
#include "net/sock.h"

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
	"Usage:\n"
	"  egressctl explain-request URL [ADMIN_ADDR] [-X METHOD] [-H 'Name: value']...\n"
	"                                [-o text|json]\n"
	"\n"
	"Examples:\n"
	"  egressctl explain-request http://edition.cnn.com/politics 127.0.0.1:15001\n"
	"  egressctl explain-request http://edition.cnn.com/politics -H 'x-user: a' -o json\n"
	"\n"
	"Flags:\n"
	"  -X, --request METHOD    the request's method (default GET)\n"
	"  -H, --header 'N: V'     a request header (repeatable), for header matches\n"
	"  -o, --output FORMAT     text (default) or json (the proxy's answer)\n"
	"\n"
	"ADMIN_ADDR: IP:PORT, [IPv6]:PORT, localhost:PORT or PORT; default $EGRESSGW_ADMIN, else\n"
	"127.0.0.1:15000.\n"
	"\n"
	"Exit status: 0 when the request would be forwarded or redirected, 1 when it would be\n"
	"refused or the proxy could not be asked.\n";

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
	if (result && strcmp(result, "forward") == 0)
		printf("%-14sforwarded to %s (%s)\n", "Result:", str_at(root, "endpoint", NULL),
		       str_at(root, "endpoint_pick", NULL));
	else if (result && strcmp(result, "redirect") == 0 && (v = str_at(root, "location", NULL)))
		printf("%-14sredirect %s to %s\n", "Result:", str_at(root, "response_code", NULL), v);
	else if (result && strcmp(result, "redirect") == 0)
		printf("%-14sredirect %s (%s)\n", "Result:", str_at(root, "response_code", NULL),
		       str_at(root, "reason", NULL));
	else
		printf("%-14srefused: %s %s %s: %s\n", "Result:", str_at(root, "response_code", NULL),
		       str_at(root, "response_flags", NULL), str_at(root, "response_code_details", NULL),
		       str_at(root, "reason", NULL));
}

int ctl_cmd_explain_request(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 }, headers = { NULL, 0 };
	const char *method = NULL, *output = NULL;
	const struct ctl_flag flags[] = {
		{ "request", 'X', CTL_FLAG_STR, &method },
		{ "header", 'H', CTL_FLAG_LIST, &headers },
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct sock_addr a;
	char addr[SOCK_ADDR_STRLEN];
	struct sbuf path = SBUF_INIT, body = SBUF_INIT;
	struct ystream s;
	struct diags d = DIAGS_INIT;
	bool help = false, parsed = false;
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
	if (ctl_admin_addr(pos.n > 1 ? pos.v[1] : NULL, &a, addr, sizeof(addr)) < 0)
		goto out;
	sbuf_adds(&path, "/explain?url=");
	url_encode(&path, pos.v[0]);
	if (method) {
		sbuf_adds(&path, "&method=");
		url_encode(&path, method);
	}
	for (size_t i = 0; i < headers.n; i++) {
		sbuf_adds(&path, "&h=");
		url_encode(&path, headers.v[i]);
	}
	if (ctl_admin_get(&a, addr, sbuf_str(&path), &body) < 0)
		goto out;
	if (ydoc_parse("explain", body.s ? body.s : "", body.len, &s, &d) < 0 || s.ndocs != 1) {
		fprintf(stderr, "error: the admin endpoint at %s answered something that is not "
		        "JSON\n", addr);
		goto out;
	}
	parsed = true;
	if (output && strcmp(output, "json") == 0)
		fwrite(body.s, 1, body.len, stdout);
	else
		print_text(s.docs[0].root);
	{
		const char *result = str_at(s.docs[0].root, "result", NULL);

		rc = result && (strcmp(result, "forward") == 0 || strcmp(result, "redirect") == 0)
		     ? 0 : 1;
	}
out:
	if (parsed)
		ystream_free(&s);
	diags_free(&d);
	sbuf_free(&path);
	sbuf_free(&body);
	ctl_strs_free(&pos);
	ctl_strs_free(&headers);
	return rc;
}
