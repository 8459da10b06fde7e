/* res_validate: the checks Istio's validating webhook (pkg/config/validation) and the
 * Kubernetes API server apply to these objects, run as keyword checks (one value) and
 * post hooks (one object, after its fields are decoded).
 *
 * Messages say what is wrong in Istio's terms, and each is placed on the YAML node at
 * fault: the field's value when there is one, else the object that lacks it. */
#include "config/res_internal.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------------
 * Name syntax
 * ------------------------------------------------------------------------------- */

static bool is_alnum_lower(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool is_alnum(char ch)
{
	return isalnum((unsigned char)ch) != 0;
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most max */
static bool label_ok(const char *s, size_t len, size_t max, bool any_case)
{
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool an = any_case ? is_alnum(s[i]) : is_alnum_lower(s[i]);

		if (!an && !(s[i] == '-' && i > 0 && i + 1 < len))
			return false;
	}
	return true;
}

bool is_dns1123_label(const char *s)
{
	return s && label_ok(s, strlen(s), 63, false);
}

bool is_istio_label(const char *s)
{
	return s && label_ok(s, strlen(s), 63, true);
}

bool is_dns1123_subdomain(const char *s)
{
	size_t len;

	if (!s || (len = strlen(s)) == 0 || len > 253)
		return false;
	for (const char *p = s;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!label_ok(p, l, 253, false))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

bool is_ip_address(const char *s)
{
	unsigned char buf[16];

	return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

static bool is_cidr(const char *s)
{
	const char *slash = strchr(s, '/');
	char ip[64];
	char *end;
	long bits;
	bool v6;

	if (!slash)
		return is_ip_address(s);
	if ((size_t)(slash - s) >= sizeof(ip))
		return false;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	if (!is_ip_address(ip) || !slash[1])
		return false;
	v6 = strchr(ip, ':') != NULL;
	bits = strtol(slash + 1, &end, 10);
	return *end == '\0' && bits >= 0 && bits <= (v6 ? 128 : 32);
}

/* Istio's ValidateDNS1123Labels over host (or its part after the first label). */
static const char *check_labels(const char *host, const char *part, char *buf, size_t bufsz)
{
	const char *last = strrchr(part, '.');
	const char *tld = last ? last + 1 : part;
	bool numeric = *tld != '\0';

	for (const char *p = tld; *p; p++)
		if (*p < '0' || *p > '9')
			numeric = false;
	if (numeric) {
		snprintf(buf, bufsz, "domain name \"%.100s\" invalid (top level domain \"%.60s\" "
		         "cannot be all-numeric)", host, tld);
		return buf;
	}
	for (const char *p = part;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!dot && l == 0 && p != part)
			return NULL;   /* trailing dot: "istio.io." */
		if (!label_ok(p, l, 63, true)) {
			snprintf(buf, bufsz, "domain name \"%.100s\" invalid (label \"%.*s\" invalid)",
			         host, (int)(l > 63 ? 63 : l), p);
			return buf;
		}
		if (!dot)
			return NULL;
		p = dot + 1;
	}
}

static const char *check_dns_preconditions(const char *host, char *buf, size_t bufsz)
{
	if (strlen(host) > 255) {
		snprintf(buf, bufsz, "domain name \"%.60s...\" too long (max 255)", host);
		return buf;
	}
	if (!*host)
		return "empty domain name not allowed";
	return NULL;
}

const char *check_fqdn(const char *host, char *buf, size_t bufsz)
{
	const char *e = check_dns_preconditions(host, buf, bufsz);

	return e ? e : check_labels(host, host, buf, bufsz);
}

/* "*", "*foo", "*-foo" or a label */
static bool wildcard_label_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	if (s[0] == '*') {
		if (len == 1)
			return true;
		s++;
		len--;
		if (s[0] == '-') {
			s++;
			len--;
		}
	}
	return label_ok(s, len, 63, true);
}

const char *check_wildcard_domain(const char *host, char *buf, size_t bufsz)
{
	const char *e = check_dns_preconditions(host, buf, bufsz);
	const char *dot;
	size_t l;

	if (e)
		return e;
	dot = strchr(host, '.');
	l = dot ? (size_t)(dot - host) : strlen(host);
	if (!wildcard_label_ok(host, l)) {
		snprintf(buf, bufsz, "domain name \"%.100s\" invalid (label \"%.*s\" invalid)", host,
		         (int)(l > 63 ? 63 : l), host);
		return buf;
	}
	return dot ? check_labels(host, dot + 1, buf, bufsz) : NULL;
}

static bool partial_wildcard(const char *host)
{
	return strchr(host, '*') && strcmp(host, "*") != 0 && strncmp(host, "*.", 2) != 0;
}

/* Kubernetes qualified names: [prefix/]name, prefix a DNS-1123 subdomain, name up to 63
 * of [A-Za-z0-9_.-] starting and ending alphanumeric. */
static bool name_part_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && !strchr("-_.", s[i]))
			return false;
	return true;
}

static bool qualified_name_ok(const char *s)
{
	const char *slash = strchr(s, '/');

	if (slash) {
		char prefix[256];
		size_t pl = (size_t)(slash - s);

		if (pl == 0 || pl >= sizeof(prefix))
			return false;
		memcpy(prefix, s, pl);
		prefix[pl] = '\0';
		if (!is_dns1123_subdomain(prefix))
			return false;
		s = slash + 1;
	}
	return name_part_ok(s, strlen(s));
}

static bool label_value_ok(const char *s)
{
	return *s == '\0' || name_part_ok(s, strlen(s));
}

/* ---------------------------------------------------------------------------------
 * Keyword checks (one value)
 * ------------------------------------------------------------------------------- */

void chk_ns_label(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_dns1123_label(s))
		derr(c, n, "invalid namespace \"%.100s\": must be a DNS-1123 label (lowercase "
		     "letters, digits and '-', starting and ending with a letter or digit, at most "
		     "63 characters)", s);
}

void chk_label_key(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!qualified_name_ok(s))
		derr(c, n, "invalid label key \"%.100s\": want [prefix/]name, name at most 63 "
		     "characters of letters, digits, '-', '_' and '.', starting and ending with a "
		     "letter or digit", s);
}

void chk_label_value(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!label_value_ok(s))
		derr(c, n, "invalid label value \"%.100s\": want at most 63 characters of letters, "
		     "digits, '-', '_' and '.', starting and ending with a letter or digit", s);
}

void chk_selector_key(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "empty key is not supported in selector");
	else if (strchr(s, '*'))
		derr(c, n, "wildcard is not supported in selector: \"%.100s\"", s);
	else
		chk_label_key(c, n, s);
}

void chk_selector_value(struct dctx *c, const struct ynode *n, const char *s)
{
	if (strchr(s, '*'))
		derr(c, n, "wildcard is not supported in selector: \"%.100s\"", s);
	else
		chk_label_value(c, n, s);
}

void chk_annotation_key(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!qualified_name_ok(s))
		derr(c, n, "invalid annotation key \"%.100s\": want [prefix/]name, name at most 63 "
		     "characters of letters, digits, '-', '_' and '.'", s);
}

void chk_export_to(struct dctx *c, const struct ynode *n, const char *s)
{
	if (strcmp(s, ".") == 0 || strcmp(s, "*") == 0)
		return;
	if (strcmp(s, "~") == 0 && c->kind == RES_SERVICE_ENTRY)
		return;
	if (!is_dns1123_label(s))
		derr(c, n, "invalid exportTo value \"%.100s\" (want \".\", \"*\"%s or a namespace "
		     "name)", s, c->kind == RES_SERVICE_ENTRY ? ", \"~\"" : "");
}

void chk_se_host(struct dctx *c, const struct ynode *n, const char *s)
{
	char buf[256];
	const char *e;

	if (strcmp(s, "*") == 0) {
		derr(c, n, "invalid host *: a ServiceEntry host cannot be the full wildcard");
		return;
	}
	if ((e = check_wildcard_domain(s, buf, sizeof(buf)))) {
		derr(c, n, "%s", e);
		return;
	}
	if (partial_wildcard(s))
		dwarn(c, n, "partial wildcard \"%.100s\" not allowed (only \"*.\" at the start)", s);
}

void chk_ip_or_cidr(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_cidr(s))
		derr(c, n, "\"%.100s\" is not a valid IP address or CIDR block", s);
}

void chk_cidr(struct dctx *c, const struct ynode *n, const char *s)
{
	chk_ip_or_cidr(c, n, s);
}

void chk_port_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_istio_label(s))
		derr(c, n, "invalid port name \"%.100s\" (want a DNS-1123 label: letters, digits "
		     "and '-', at most 63 characters)", s);
}

/* Gateway server hosts: "[ns/]host"; ns is "*", "." or a namespace; host is "*", an FQDN
 * with an optional "*." prefix, or an IP address. */
void chk_gw_host(struct dctx *c, const struct ynode *n, const char *s)
{
	const char *slash = strchr(s, '/');
	const char *host = slash ? slash + 1 : s;
	char buf[256];
	const char *e;

	if (slash) {
		char ns[64];
		size_t nl = (size_t)(slash - s);

		if (nl == 0 || !*host) {
			derr(c, n, "config namespace and dnsName in host entry cannot be empty");
			return;
		}
		if (nl >= sizeof(ns) || (memcpy(ns, s, nl), ns[nl] = '\0',
		                         strcmp(ns, "*") != 0 && strcmp(ns, ".") != 0 &&
		                         !is_dns1123_label(ns))) {
			derr(c, n, "invalid namespace value \"%.*s\" in host \"%.100s\" (want \"*\", "
			     "\".\" or a namespace name)", (int)(nl > 63 ? 63 : nl), s, s);
			return;
		}
	}
	if (strcmp(host, "*") != 0 && !strchr(host, '.')) {
		derr(c, n, "short names (non FQDN) are not allowed: \"%.100s\"", host);
		return;
	}
	if ((e = check_wildcard_domain(host, buf, sizeof(buf))) && !is_ip_address(host)) {
		derr(c, n, "%s", e);
		return;
	}
	if (partial_wildcard(host))
		derr(c, n, "partial wildcard \"%.100s\" not allowed", host);
}

void chk_ip_bind(struct dctx *c, const struct ynode *n, const char *s)
{
	if (strncmp(s, "unix://", 7) == 0) {
		const char *p = s + 7;

		if (*p != '@' && (*p != '/' || p[strlen(p) - 1] == '/'))
			derr(c, n, "%.100s is not an absolute path to a file", p);
		return;
	}
	if (!is_ip_address(s))
		derr(c, n, "%.100s is not a valid IP address", s);
}

/* Gateway references: "mesh", "name", "ns/name" (legacy "name.ns.svc..." warns). */
void chk_gateway_name(struct dctx *c, const struct ynode *n, const char *s)
{
	const char *slash = strchr(s, '/');
	char buf[256];
	const char *e;

	if (!slash) {
		if (strchr(s, '.')) {
			const char *dot = strchr(s, '.'), *dot2 = strchr(dot + 1, '.');
			int nl = (int)(dot2 ? dot2 - dot - 1 : (long)strlen(dot + 1));

			dwarn(c, n, "using legacy gatewayName format \"%.100s\"; prefer the "
			      "<namespace>/<name> format: \"%.*s/%.*s\"", s, nl > 63 ? 63 : nl, dot + 1,
			      (int)(dot - s > 63 ? 63 : dot - s), s);
		}
		if ((e = check_fqdn(s, buf, sizeof(buf))))
			derr(c, n, "invalid gateway name: %s", e);
		return;
	}
	if (slash == s || !slash[1]) {
		derr(c, n, "config namespace and gateway name cannot be empty");
		return;
	}
	if (!label_ok(s, (size_t)(slash - s), 63, true))
		derr(c, n, "invalid value for namespace: \"%.*s\"",
		     (int)(slash - s > 63 ? 63 : slash - s), s);
	if (!is_istio_label(slash + 1))
		derr(c, n, "invalid value for gateway name: \"%.100s\"", slash + 1);
}

void chk_dest_host(struct dctx *c, const struct ynode *n, const char *s)
{
	char buf[256];
	const char *e;

	if (strcmp(s, "*") == 0)
		derr(c, n, "invalid destination host *");
	else if ((e = check_wildcard_domain(s, buf, sizeof(buf))))
		derr(c, n, "%s", e);
}

void chk_subset_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "subset name cannot be empty");
	else if (!is_istio_label(s))
		derr(c, n, "subset name is invalid: \"%.100s\" (want a DNS-1123 label: letters, "
		     "digits and '-', at most 63 characters)", s);
}

void chk_dr_host(struct dctx *c, const struct ynode *n, const char *s)
{
	char buf[256];
	const char *e;

	if ((e = check_wildcard_domain(s, buf, sizeof(buf))))
		derr(c, n, "%s", e);
}

static bool token_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_alnum(*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

void chk_header_name(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const pseudo[] = { ":method", ":scheme", ":authority", ":path",
	                                      ":status", NULL };

	if (!*s) {
		derr(c, n, "header name cannot be empty");
		return;
	}
	if (strncmp(s, "@request.auth.claims", 20) == 0)
		return;
	for (size_t i = 0; pseudo[i]; i++)
		if (strcmp(s, pseudo[i]) == 0)
			return;
	if (!token_ok(s))
		derr(c, n, "header name %.100s is not a valid header name", s);
}

/* Envoy header values: no control characters; '%' starts %VARIABLE% or is doubled.
 * Envoy substitutes %VARIABLE% (request and connection properties) in header operation
 * values; egressgw sends values as written (%% as %), so a value that names a variable
 * is refused rather than sent with the variable's name in it. */
void chk_header_value(struct dctx *c, const struct ynode *n, const char *s)
{
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			derr(c, n, "header value must not contain control characters");
			return;
		}
	}
	for (const char *p = s; *p; p++) {
		const char *end;

		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		end = strchr(p + 1, '%');
		if (!end || end == p + 1 || !(p[1] >= 'A' && p[1] <= 'Z')) {
			derr(c, n, "header value \"%.100s\" is invalid: '%%' must start a %%VARIABLE%% "
			     "or be written as %%%%", s);
			return;
		}
		derr(c, n, "header value \"%.100s\": %%%.*s%% substitution is not supported by "
		     "egressgw (write %%%% for a literal '%%')", s, (int)(end - p - 1), p + 1);
		return;
	}
}

/* Fields the proxy's codecs own: framing (content-length, transfer-encoding, trailer) and
 * the connection's management (RFC 9110 section 7.6.1). An operation on one would contradict
 * what the proxy writes, or be dropped by the next hop, so it is refused. */
static bool is_hop_by_hop(const char *s)
{
	static const char *const names[] = {
		"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
		"proxy-connection", "trailer", "content-length", NULL
	};

	for (size_t i = 0; names[i]; i++)
		if (strcasecmp(s, names[i]) == 0)
			return true;
	return false;
}

/* What every header operation name must be: a field name (RFC 9110 token), not one the
 * codecs own. Returns false after reporting. */
static bool chk_op_name_field(struct dctx *c, const struct ynode *n, const char *s)
{
	if (is_hop_by_hop(s)) {
		derr(c, n, "invalid header \"%.100s\": hop-by-hop and framing fields cannot be "
		     "modified", s);
		return false;
	}
	if (!token_ok(s)) {
		derr(c, n, "header name %.100s is not a valid header name", s);
		return false;
	}
	return true;
}

void chk_request_header_op_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "header name cannot be empty");
	else if (s[0] == ':' && strcasecmp(s, ":authority") != 0)
		derr(c, n, "invalid header \"%.100s\": header cannot have \":\" prefix", s);
	else if (s[0] != ':')
		chk_op_name_field(c, n, s);
}

/* Istio turns a destination's `host` into that destination's host rewrite (Envoy's
 * weighted cluster host_rewrite_literal); egressgw rewrites the host per route only
 * (rewrite.authority, or the route's headers.request.set host). */
void chk_dest_request_header_op_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "header name cannot be empty");
	else if (strcasecmp(s, "host") == 0 || strcasecmp(s, ":authority") == 0)
		derr(c, n, "invalid header \"%.100s\": a destination's host rewrite is not "
		     "supported by egressgw (set host in the route's headers, or rewrite.authority)",
		     s);
	else if (s[0] == ':')
		derr(c, n, "invalid header \"%.100s\": header cannot have \":\" prefix", s);
	else
		chk_op_name_field(c, n, s);
}

void chk_header_op_name(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "header name cannot be empty");
	else if (strcasecmp(s, "host") == 0)
		derr(c, n, "invalid header \"%.100s\": cannot set Host header", s);
	else if (s[0] == ':')
		derr(c, n, "invalid header \"%.100s\": header cannot have \":\" prefix", s);
	else
		chk_op_name_field(c, n, s);
}

/* Istio's validateHTTPMethod for allowMethods. */
void chk_cors_method(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const methods[] = {
		"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL
	};

	for (size_t i = 0; methods[i]; i++)
		if (strcmp(s, methods[i]) == 0)
			return;
	derr(c, n, "%.60s is not a valid HTTP method", s);
}

/* allowHeaders / exposeHeaders items: sent as one comma-separated field value, so each
 * must be a field name (or "*"). */
void chk_cors_header(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "header name cannot be empty");
	else if (strcmp(s, "*") != 0 && !token_ok(s))
		derr(c, n, "header name %.100s is not a valid header name", s);
}

void chk_not_empty(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!*s)
		derr(c, n, "must not be empty");
}

void chk_retry_on(struct dctx *c, const struct ynode *n, const char *s)
{
	static const char *const policies[] = {
		"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
		"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
		"envoy-ratelimited", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
		"internal", "resource-exhausted", "unavailable", NULL
	};
	const char *p = s;

	for (;;) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		bool ok = false;

		if (l == 3 && p[0] >= '1' && p[0] <= '5' && isdigit((unsigned char)p[1]) &&
		    isdigit((unsigned char)p[2]))
			ok = true;
		for (size_t i = 0; policies[i] && !ok; i++)
			ok = strlen(policies[i]) == l && strncmp(policies[i], p, l) == 0;
		if (!ok)
			derr(c, n, "\"%.*s\" is not a valid retryOn policy", (int)(l > 60 ? 60 : l), p);
		if (!comma)
			return;
		p = comma + 1;
	}
}

void chk_source_namespace(struct dctx *c, const struct ynode *n, const char *s)
{
	if (!is_istio_label(s))
		derr(c, n, "sourceNamespace match %.100s is invalid", s);
}

void chk_secret_key(struct dctx *c, const struct ynode *n, const char *s)
{
	bool ok = *s && strlen(s) <= 253 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	          strncmp(s, "..", 2) != 0;

	for (const char *p = s; ok && *p; p++)
		ok = is_alnum(*p) || strchr("-_.", *p);
	if (!ok)
		derr(c, n, "invalid key \"%.100s\": must consist of letters, digits, '-', '_' or "
		     "'.' (at most 253)", s);
}

/* ---------------------------------------------------------------------------------
 * Helpers for post hooks
 * ------------------------------------------------------------------------------- */

/* The YAML node of list item i of map.field (lists decode 1:1 from the sequence). */
static const struct ynode *item_node(const struct ynode *map, const char *field, size_t i)
{
	const struct ynode *l = ynode_get(map, field);

	return l && l->type == YNODE_SEQ && i < l->n ? l->items[i] : (l ? l : map);
}

static void ditem(struct dctx *c, enum diag_level lvl, const struct ynode *map,
                  const char *field, size_t i, const char *sub, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

/* A message about map.field[i] (or map.field[i].sub). */
static void ditem(struct dctx *c, enum diag_level lvl, const struct ynode *map,
                  const char *field, size_t i, const char *sub, const char *fmt, ...)
{
	const struct ynode *at = item_node(map, field, i);
	size_t mark = path_push_key(c, field);
	struct sbuf msg = SBUF_INIT;
	va_list ap;

	path_push_index(c, i);
	va_start(ap, fmt);
	sbuf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (sub) {
		if (lvl == DIAG_ERROR)
			derr_field(c, at, sub, "%s", sbuf_str(&msg));
		else
			dwarn_field(c, at, sub, "%s", sbuf_str(&msg));
	} else if (lvl == DIAG_ERROR) {
		derr(c, at, "%s", sbuf_str(&msg));
	} else {
		dwarn(c, at, "%s", sbuf_str(&msg));
	}
	sbuf_free(&msg);
	path_pop(c, mark);
}

static void check_export_list(struct dctx *c, const struct ynode *map,
                              const struct res_strlist *l)
{
	bool star = false, none = false;

	for (size_t i = 0; i < l->n; i++) {
		const char *a = l->v[i];

		if (!a)
			continue;
		star |= strcmp(a, "*") == 0;
		none |= strcmp(a, "~") == 0;
		for (size_t j = 0; j < i; j++) {
			const char *b = l->v[j];
			const char *ka = strcmp(a, ".") == 0 ? c->ns : a;
			const char *kb = b && strcmp(b, ".") == 0 ? c->ns : b;

			if (b && strcmp(ka, kb) == 0) {
				if (strcmp(a, b) == 0)
					ditem(c, DIAG_ERROR, map, "exportTo", i, NULL,
					      "duplicate entries in exportTo for entry %s", a);
				else
					ditem(c, DIAG_ERROR, map, "exportTo", i, NULL,
					      "duplicate entries in exportTo: . and current namespace %s",
					      c->ns);
				break;
			}
		}
	}
	if (star && l->n > 1)
		derr_field(c, map, "exportTo", "cannot have both public (*) and non-public exportTo "
		           "values for a resource");
	if (none && l->n > 1)
		derr_field(c, map, "exportTo", "cannot export service entry to no one (~) and someone");
}

static bool any_cidr(const struct res_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] && strchr(l->v[i], '/'))
			return true;
	return false;
}

/* ---------------------------------------------------------------------------------
 * Metadata
 * ------------------------------------------------------------------------------- */

void post_metadata(struct dctx *c, const struct ynode *map, void *obj)
{
	struct res_meta *m = obj;

	if (!m->name) {
		if (!ynode_get(map, "name"))
			derr_required(c, map, "name");
		return;
	}
	if (!is_dns1123_subdomain(m->name))
		derr_field(c, map, "name", "invalid name \"%.100s\": must be a DNS-1123 subdomain "
		           "(lowercase letters, digits, '-' and '.', starting and ending with a "
		           "letter or digit, at most 253 characters)", m->name);
}

void post_portsel(struct dctx *c, const struct ynode *map, void *obj)
{
	const uint32_t *number = obj;

	if (*number == 0 && !ynode_get(map, "number"))
		derr_required(c, map, "number");
}

/* ---------------------------------------------------------------------------------
 * ServiceEntry
 * ------------------------------------------------------------------------------- */

void post_se_port(struct dctx *c, const struct ynode *map, void *obj)
{
	struct se_port *p = obj;

	if (!ynode_get(map, "number"))
		derr_required(c, map, "number");
	if (!p->name && !ynode_get(map, "name"))
		derr_required(c, map, "name");
}

void post_se_endpoint(struct dctx *c, const struct ynode *map, void *obj)
{
	struct se_endpoint *e = obj;

	if (!e->address && !e->network && !ynode_get(map, "address"))
		derr_required(c, map, "address");
	else if (!e->address && e->network)
		dwarn(c, map, "address is unset with network \"%.60s\"", e->network);
}

void post_se_selector(struct dctx *c, const struct ynode *map, void *obj)
{
	struct se_workload_selector *s = obj;

	if (s->labels.n == 0)
		dwarn(c, map, "workload selector specified without labels; it applies to every "
		      "workload in the namespace");
}

static bool se_has_port_name(const struct serviceentry *se, const char *name)
{
	for (size_t i = 0; i < se->ports.n; i++)
		if (se->ports.v[i].name && strcmp(se->ports.v[i].name, name) == 0)
			return true;
	return false;
}

static void se_check_endpoints(struct dctx *c, const struct ynode *map,
                               const struct serviceentry *se)
{
	bool dns = se->resolution == SE_RESOLUTION_DNS ||
	           se->resolution == SE_RESOLUTION_DNS_ROUND_ROBIN;
	char buf[256];

	for (size_t i = 0; i < se->endpoints.n; i++) {
		const struct se_endpoint *e = &se->endpoints.v[i];
		const char *a = e->address;

		if (a && strncmp(a, "unix://", 7) == 0) {
			if (e->ports.n)
				ditem(c, DIAG_ERROR, map, "endpoints", i, "ports",
				      "unix endpoint %.100s must not include ports", a);
		} else if (a && !is_ip_address(a)) {
			if (!dns)
				ditem(c, DIAG_ERROR, map, "endpoints", i, "address",
				      "endpoint address \"%.100s\" is not a valid IP address "
				      "(resolution %s)", a, se_resolution_names[se->resolution]);
			else if (check_fqdn(a, buf, sizeof(buf)))
				ditem(c, DIAG_ERROR, map, "endpoints", i, "address",
				      "endpoint address \"%.100s\" is not a valid FQDN or an IP address",
				      a);
		}
		for (size_t p = 0; p < e->ports.n; p++) {
			if (!se_has_port_name(se, e->ports.v[p].name)) {
				const struct ynode *pn = ynode_get(item_node(map, "endpoints", i), "ports");
				const struct ynode *at = pn && p < pn->n ? pn->pairs[p].key : map;
				size_t mark = path_push_key(c, "endpoints");

				path_push_index(c, i);
				path_push_key(c, "ports");
				path_push_mapkey(c, e->ports.v[p].name);
				derr(c, at, "endpoint port %u (%.60s) is not defined by the service entry",
				     e->ports.v[p].number, e->ports.v[p].name);
				path_pop(c, mark);
			}
		}
	}
}

void post_se(struct dctx *c, const struct ynode *map, void *obj)
{
	struct serviceentry *se = obj;
	char buf[256];

	if (se->hosts.n == 0)
		derr_required(c, map, "hosts");
	if (se->workload_selector && se->endpoints.n)
		derr_field(c, map, "workloadSelector", "only one of workloadSelector or endpoints "
		           "is allowed in a ServiceEntry");
	if (any_cidr(&se->addresses) && se->resolution != SE_RESOLUTION_NONE &&
	    se->resolution != SE_RESOLUTION_STATIC)
		derr_field(c, map, "addresses", "CIDR addresses are allowed only for NONE/STATIC "
		           "resolution types");
	for (size_t j = 0; j < se->ports.n; j++) {
		for (size_t i = 0; i < j; i++) {
			const struct se_port *a = &se->ports.v[i], *b = &se->ports.v[j];

			if (a->name && b->name && strcmp(a->name, b->name) == 0) {
				ditem(c, DIAG_ERROR, map, "ports", j, "name",
				      "service entry port name \"%.60s\" already defined", b->name);
				break;
			}
		}
		for (size_t i = 0; i < j; i++) {
			if (se->ports.v[i].number && se->ports.v[i].number == se->ports.v[j].number) {
				ditem(c, DIAG_ERROR, map, "ports", j, "number",
				      "service entry port %u already defined", se->ports.v[j].number);
				break;
			}
		}
	}
	switch (se->resolution) {
	case SE_RESOLUTION_NONE:
		if (se->endpoints.n)
			derr_field(c, map, "endpoints", "no endpoints should be provided for "
			           "resolution type NONE");
		if (se->workload_selector)
			dwarn_field(c, map, "workloadSelector", "workloadSelector should not be set "
			            "when resolution mode is NONE");
		break;
	case SE_RESOLUTION_STATIC:
		se_check_endpoints(c, map, se);
		break;
	case SE_RESOLUTION_DNS:
	case SE_RESOLUTION_DNS_ROUND_ROBIN:
		if (se->endpoints.n == 0) {
			for (size_t i = 0; i < se->hosts.n; i++)
				if (se->hosts.v[i] && check_fqdn(se->hosts.v[i], buf, sizeof(buf)))
					ditem(c, DIAG_ERROR, map, "hosts", i, NULL,
					      "hosts must be FQDN if no endpoints are provided for "
					      "resolution mode %s", se_resolution_names[se->resolution]);
		}
		if (se->resolution == SE_RESOLUTION_DNS_ROUND_ROBIN && se->endpoints.n > 1)
			derr_field(c, map, "endpoints", "there must only be 0 or 1 endpoint for "
			           "resolution mode DNS_ROUND_ROBIN");
		se_check_endpoints(c, map, se);
		break;
	}
	if (se->resolution != SE_RESOLUTION_NONE && se->hosts.n > 1) {
		for (size_t i = 0; i < se->ports.n; i++) {
			enum res_protocol p = se->ports.v[i].protocol;

			if (!res_protocol_is_http(p) && !res_protocol_is_tls(p)) {
				ditem(c, DIAG_ERROR, map, "ports", i, "protocol",
				      "multiple hosts provided with non-HTTP, non-TLS ports");
				break;
			}
		}
	}
	check_export_list(c, map, &se->export_to);
}

/* ---------------------------------------------------------------------------------
 * Gateway
 * ------------------------------------------------------------------------------- */

void post_gw_port(struct dctx *c, const struct ynode *map, void *obj)
{
	(void)c;
	(void)map;
	(void)obj;
}

void post_gw_tls(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gw_tls *t = obj;
	const char *mode = gw_tls_mode_names[t->mode];
	bool certs = t->server_certificate || t->private_key || t->ca_certificates ||
	             t->ca_crl || t->credential_name;

	if ((t->min_protocol_version == RES_TLSV1_0 || t->min_protocol_version == RES_TLSV1_1) &&
	    t->cipher_suites.n == 0)
		dwarn_field(c, map, "minProtocolVersion", "TLS versions below TLSV1_2 require "
		            "setting compatible cipherSuites, as the defaults no longer include them");
	if (t->min_protocol_version && t->max_protocol_version &&
	    t->min_protocol_version > t->max_protocol_version)
		derr_field(c, map, "minProtocolVersion", "%s is higher than maxProtocolVersion %s",
		           res_tls_version_names[t->min_protocol_version],
		           res_tls_version_names[t->max_protocol_version]);
	if (t->mode == GW_TLS_ISTIO_MUTUAL) {
		static const char *const fields[] = { "serverCertificate", "privateKey",
		                                      "caCertificates", "credentialName" };
		const char *vals[] = { t->server_certificate, t->private_key, t->ca_certificates,
		                       t->credential_name };

		for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
			if (vals[i])
				derr_field(c, map, fields[i], "must not be set with mode ISTIO_MUTUAL "
				           "(the proxy uses its mesh certificate)");
		return;
	}
	if ((t->mode == GW_TLS_PASSTHROUGH || t->mode == GW_TLS_AUTO_PASSTHROUGH) && certs)
		dwarn(c, map, "%s mode does not use certificates, they will be ignored", mode);
	if (t->credential_name && t->server_certificate && t->private_key)
		derr_field(c, map, "credentialName", "only one of credentialName or "
		           "serverCertificate/privateKey should be specified");
	if (t->ca_crl && t->credential_name)
		derr_field(c, map, "caCrl", "CRL is not supported with credentialName; put the CRL "
		           "in the credential (key ca.crl)");
	if (t->ca_crl && t->mode == GW_TLS_SIMPLE)
		derr_field(c, map, "caCrl", "CRL is not supported with SIMPLE TLS");
	if ((t->mode == GW_TLS_SIMPLE || t->mode == GW_TLS_MUTUAL ||
	     t->mode == GW_TLS_OPTIONAL_MUTUAL) && !t->credential_name) {
		if (!t->server_certificate)
			derr(c, map, "mode %s requires serverCertificate and privateKey, or "
			     "credentialName", mode);
		else if (!t->private_key)
			derr(c, map, "mode %s requires a privateKey with serverCertificate", mode);
		if (t->mode != GW_TLS_SIMPLE && !t->ca_certificates)
			derr(c, map, "mode %s requires caCertificates (the client CA bundle), or "
			     "credentialName", mode);
	}
}

void post_gw_server(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gw_server *s = obj;
	const struct ynode *portn = ynode_get(map, "port");
	bool unix_bind = s->bind && strncmp(s->bind, "unix://", 7) == 0;

	if (s->hosts.n == 0)
		derr_required(c, map, "hosts");
	if (!portn || portn->type != YNODE_MAP) {
		if (!portn)
			derr_required(c, map, "port");
		return;
	}
	{
		size_t mark = path_push_key(c, "port");

		if (s->port.number == 0 && !unix_bind && !ynode_get(portn, "number"))
			derr_required(c, portn, "number");
		else if (s->port.number != 0 && unix_bind)
			derr_field(c, portn, "number", "port number must be 0 for unix domain socket");
		if (s->port.protocol == RES_PROTO_UNSET && !ynode_get(portn, "protocol"))
			derr_required(c, portn, "protocol");
		if (!s->port.name && !ynode_get(portn, "name"))
			derr_required(c, portn, "name");
		if (s->port.target_port)
			derr_field(c, portn, "targetPort", "targetPort has no impact on Gateways");
		path_pop(c, mark);
	}
	if (s->port.protocol == RES_PROTO_UNSET)
		return;
	if (res_protocol_is_tls(s->port.protocol) && !s->tls) {
		derr_field(c, map, "tls", "server must have TLS settings for HTTPS/TLS protocols");
	} else if (!res_protocol_is_tls(s->port.protocol) && s->tls) {
		const struct gw_tls *t = s->tls;
		bool passthrough = t->mode == GW_TLS_PASSTHROUGH || t->mode == GW_TLS_AUTO_PASSTHROUGH;

		if (res_protocol_is_http(s->port.protocol)) {
			if (!passthrough || t->ca_certificates || t->private_key || t->server_certificate)
				derr_field(c, map, "tls", "server cannot have TLS settings for plain text "
				           "HTTP ports (only httpsRedirect)");
		} else {
			derr_field(c, map, "tls", "server cannot have TLS settings for non HTTPS/TLS "
			           "ports");
		}
	}
	if (s->tls && s->tls->https_redirect && !res_protocol_is_http(s->port.protocol)) {
		size_t mark = path_push_key(c, "tls");

		dwarn_field(c, ynode_get(map, "tls"), "httpsRedirect", "tls.httpsRedirect should "
		            "only be used with http servers");
		path_pop(c, mark);
	}
}

void post_gw(struct dctx *c, const struct ynode *map, void *obj)
{
	struct gateway *gw = obj;

	if (gw->servers.n == 0) {
		derr_required(c, map, "servers");
		return;
	}
	for (size_t j = 0; j < gw->servers.n; j++) {
		const char *nj = gw->servers.v[j].port.name;

		for (size_t i = 0; nj && i < j; i++) {
			const char *ni = gw->servers.v[i].port.name;

			if (ni && strcmp(ni, nj) == 0) {
				const struct ynode *srv = item_node(map, "servers", j);
				size_t mark = path_push_key(c, "servers");

				path_push_index(c, j);
				path_push_key(c, "port");
				derr_field(c, ynode_get(srv, "port"), "name", "port names in servers must "
				           "be unique: duplicate name %.60s", nj);
				path_pop(c, mark);
				break;
			}
		}
	}
}

/* ---------------------------------------------------------------------------------
 * VirtualService
 * ------------------------------------------------------------------------------- */

static void check_string_match(struct dctx *c, const struct ynode *map, struct vs_string_match *m,
                               bool empty_prefix_ok)
{
	int set = !!m->exact + !!m->prefix + !!m->regex;

	if (set > 1)
		derr(c, map, "only one of exact, prefix or regex may be set");
	if (m->prefix && !*m->prefix && !empty_prefix_ok)
		derr_field(c, map, "prefix", "prefix string match should not be empty");
	if (m->regex && !*m->regex)
		derr_field(c, map, "regex", "regex string match should not be empty");
	else if (m->regex && strlen(m->regex) > 1024)
		derr_field(c, map, "regex", "regex is too large, max length allowed is 1024");
	else if (m->regex)
		chk_re2_field(c, map, "regex", m->regex);
}

void post_vs_string_match(struct dctx *c, const struct ynode *map, void *obj)
{
	check_string_match(c, map, obj, false);
}

void post_vs_uri_match(struct dctx *c, const struct ynode *map, void *obj)
{
	check_string_match(c, map, obj, true);
}

void post_vs_http_match(struct dctx *c, const struct ynode *map, void *obj)
{
	(void)c;
	(void)map;
	(void)obj;
}

void post_vs_destination(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_destination *d = obj;

	if (!d->host && !ynode_get(map, "host"))
		derr_required(c, map, "host");
}

/* The proxy writes a head's fields through fixed arrays (HTTP/2: H1_MAX_HEADERS plus
 * VS_HEADER_OPS_MAX per level, src/proxy/route_hdrs.h): more set/add fields per
 * direction than that are refused, not cut. */
void post_vs_headers(struct dctx *c, const struct ynode *map, void *obj)
{
	const struct vs_headers *h = obj;
	const struct vs_header_ops *ops[2] = { h->request, h->response };
	static const char *const what[2] = { "request", "response" };

	for (size_t i = 0; i < 2; i++)
		if (ops[i] && ops[i]->set.n + ops[i]->add.n > VS_HEADER_OPS_MAX)
			derr_field(c, map, what[i], "more than %d set/add header operations are not "
			           "supported by egressgw", VS_HEADER_OPS_MAX);
}

void post_vs_cors(struct dctx *c, const struct ynode *map, void *obj)
{
	const struct vs_cors *p = obj;

	if (p->max_age_ms % 1000 != 0)
		derr_field(c, map, "maxAge", "max_age duration is accurate only to seconds "
		           "precision");
}

void post_vs_http_dest(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_http_route_destination *d = obj;

	if (!d->destination && !ynode_get(map, "destination"))
		derr_required(c, map, "destination");
}

/* HTTPMirrorPolicy: Istio's validateHTTPRoute requires each mirror's destination. */
void post_vs_mirror_policy(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_mirror_policy *m = obj;

	if (!m->destination && !ynode_get(map, "destination"))
		derr_required(c, map, "destination");
}

void post_vs_route_dest(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_route_destination *d = obj;

	if (!d->destination && !ynode_get(map, "destination"))
		derr_required(c, map, "destination");
}

void post_vs_redirect(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_redirect *r = obj;

	if (!r->uri && !r->authority && !r->port && !r->scheme && !ynode_get(map, "derivePort"))
		derr(c, map, "redirect must specify uri, authority, scheme, or port");
	if (r->port && ynode_get(map, "derivePort"))
		derr_field(c, map, "derivePort", "only one of port or derivePort may be set");
	if (r->redirect_code && (r->redirect_code < 300 || r->redirect_code > 399))
		derr_field(c, map, "redirectCode", "%u is not a valid redirect code, must be 3xx",
		           r->redirect_code);
	if (r->scheme && strcmp(r->scheme, "http") != 0 && strcmp(r->scheme, "https") != 0)
		derr_field(c, map, "scheme", "invalid redirect scheme, must be \"http\" or \"https\"");
}

void post_vs_regex_rewrite(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_regex_rewrite *r = obj;

	if (!r->match || !*r->match)
		derr_required(c, map, "match");
	else if (strlen(r->match) > 1024)
		derr_field(c, map, "match", "regex is too large, max length allowed is 1024");
	else
		chk_regex_rewrite(c, map, r);
	if (!r->rewrite)
		derr_required(c, map, "rewrite");
}

void post_vs_rewrite(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_rewrite *r = obj;

	if (r->uri && r->uri_regex_rewrite)
		derr(c, map, "rewrite may only contain one of uri or uriRegexRewrite");
	else if (!r->uri && !r->uri_regex_rewrite && !r->authority)
		derr(c, map, "rewrite must specify at least one of uri, uriRegexRewrite or "
		     "authority");
}

void post_vs_retries(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_retries *r = obj;

	if (r->attempts == 0 && (r->per_try_timeout_ms || r->retry_on ||
	                         r->retry_remote_localities))
		derr_field(c, map, "attempts", "http retry policy configured when attempts are set "
		           "to 0 (disabled)");
}

static void check_percentage(struct dctx *c, const struct ynode *map, const struct res_percent *p)
{
	if (p && p->value > 0 && p->value < 0.0001)
		derr_field(c, map, "percentage", "percentage %g is neither 0.0, nor in range "
		           "[0.0001, 100.0]", p->value);
}

void post_vs_fault_delay(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_fault_delay *d = obj;

	check_percentage(c, map, d->percentage);
	if (ynode_get(map, "exponentialDelay"))
		derr_field(c, map, "exponentialDelay", "exponentialDelay not supported yet");
	else if (!d->fixed_delay_ms && !ynode_get(map, "fixedDelay"))
		derr_required(c, map, "fixedDelay");
	/* Istio's API: "If left unspecified, no request will be delayed" (said, since
	 * a fault that never fires looks like one that is not applied). */
	else if (!d->percentage && !d->percent)
		dwarn(c, map, "no percentage: no request will be delayed (Istio's default; "
		      "percentage.value: 100 delays all)");
	else if (!d->percentage)
		dwarn_field(c, map, "percent", "using deprecated setting \"percent\", use "
		            "\"percentage\" instead");
}

void post_vs_fault_abort(struct dctx *c, const struct ynode *map, void *obj)
{
	static const char *const grpc[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
		"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
		"UNAUTHENTICATED", NULL
	};
	struct vs_fault_abort *a = obj;
	bool found = false;

	check_percentage(c, map, a->percentage);
	if (a->http2_error) {
		derr_field(c, map, "http2Error", "HTTP/2 abort fault injection not supported yet");
	} else if (a->grpc_status) {
		for (size_t i = 0; grpc[i]; i++)
			found |= strcmp(grpc[i], a->grpc_status) == 0;
		if (!found)
			derr_field(c, map, "grpcStatus", "gRPC status \"%.60s\" is not supported (for "
			           "example NOT_FOUND, UNAVAILABLE)", a->grpc_status);
	} else if (ynode_get(map, "httpStatus")) {
		if (a->http_status < 200 || a->http_status > 600)
			derr_field(c, map, "httpStatus", "HTTP status %d is not in range 200-599",
			           a->http_status);
	} else {
		dwarn(c, map, "abort configured, but error type not set");
		return;
	}
	if (!a->percentage)
		dwarn(c, map, "no percentage: no request will be aborted (Istio's default; "
		      "percentage.value: 100 aborts all)");
}

void post_vs_fault(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_fault *f = obj;

	if (!f->delay && !f->abort)
		derr(c, map, "HTTP fault injection must have an abort and/or a delay");
}

/* Istio's limits on a direct response's body (validateHTTPDirectResponse): over 1 MiB is
 * refused, over 100 KiB warned; Istio sets the route table's
 * max_direct_response_body_size_bytes to the same 1 MiB. */
#define VS_DIRECT_BODY_MAX  (1024 * 1024)
#define VS_DIRECT_BODY_WARN (100 * 1024)

void post_vs_http_body(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_http_body *b = obj;
	size_t len = 0;

	if (b->string && b->bytes) {
		derr(c, map, "only one of string or bytes may be set");
		return;
	}
	if (b->bytes) {
		unsigned char *out = NULL;
		size_t bad = 0;

		if (base64_decode(b->bytes, strlen(b->bytes), &out, &len, &bad) < 0) {
			derr_field(c, map, "bytes", "illegal base64 data at input byte %zu", bad);
			return;
		}
		free(b->bytes);
		b->bytes = (char *)out;
		b->bytes_len = len;
	} else if (b->string) {
		len = strlen(b->string);
	}
	if (len > VS_DIRECT_BODY_MAX)
		derr(c, map, "large direct_responses may impact control plane performance, must "
		     "be less than 1MB");
	else if (len > VS_DIRECT_BODY_WARN)
		dwarn(c, map, "large direct_responses may impact control plane performance");
}

void post_vs_direct_response(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_direct_response *d = obj;

	if (d->status < 200 || d->status > 599)
		derr_field(c, map, "status", "status code %u is not in range 200-599", d->status);
}

/* Weights: none negative (the table checks), and a split must not total 0. */
static void check_weight_total(struct dctx *c, const struct ynode *map, size_t n, int64_t total)
{
	if (n > 1 && total == 0)
		derr_field(c, map, "route", "total destination weight = 0");
}

static bool is_authority_header(const char *k)
{
	return strcasecmp(k, ":authority") == 0 || strcasecmp(k, "host") == 0;
}

/* rewrite.authority and headers.request.{set,add}[:authority|host] all set the same
 * thing; Istio allows only one of them. */
static void check_authority_rewrite(struct dctx *c, const struct ynode *map,
                                    const struct vs_http_route *h)
{
	const char *cur = h->rewrite ? h->rewrite->authority : NULL;
	const struct vs_header_ops *req = h->headers ? h->headers->request : NULL;
	const struct res_strmap *maps[2] = { req ? &req->set : NULL, req ? &req->add : NULL };

	for (size_t m = 0; m < 2; m++) {
		for (size_t i = 0; maps[m] && i < maps[m]->n; i++) {
			const struct res_strmap_entry *e = &maps[m]->v[i];

			if (!e->value || !is_authority_header(e->key))
				continue;
			if (cur) {
				derr_field(c, map, "headers", "authority header cannot be set multiple "
				           "times: have \"%.60s\", attempting to set \"%.60s\"", cur,
				           e->value);
				return;
			}
			cur = e->value;
		}
	}
}

void post_vs_http(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_http_route *h = obj;
	int64_t total = 0;

	if (h->redirect) {
		if (h->route.n)
			derr_field(c, map, "redirect", "HTTP route cannot contain both route and "
			           "redirect");
		if (h->fault)
			derr_field(c, map, "redirect", "HTTP route cannot contain both fault and "
			           "redirect");
		if (h->rewrite)
			derr_field(c, map, "redirect", "HTTP route rule cannot contain both rewrite "
			           "and redirect");
	}
	if (h->direct_response) {
		if (h->route.n)
			derr_field(c, map, "directResponse", "HTTP route cannot contain both route "
			           "and direct response");
		if (h->redirect)
			derr_field(c, map, "directResponse", "HTTP route cannot contain both redirect "
			           "and direct response");
	}
	if (!h->redirect && !h->direct_response && h->route.n == 0 && !ynode_get(map, "delegate"))
		derr_required(c, map, "route");
	if (h->mirror && ynode_get(map, "mirrors"))
		derr_field(c, map, "mirror", "HTTP route cannot contain both mirror and mirrors");
	if (h->mirror_percent.set)
		dwarn_field(c, map, "mirrorPercent", "using deprecated setting \"mirrorPercent\", "
		            "use \"mirrorPercentage\" instead");
	for (size_t i = 0; i < h->route.n; i++)
		total += h->route.v[i].weight;
	check_weight_total(c, map, h->route.n, total);
	check_authority_rewrite(c, map, h);
}

void post_vs_tls_match(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_tls_match *m = obj;

	if (m->sni_hosts.n == 0)
		derr_required(c, map, "sniHosts");
}

static void check_l4_route(struct dctx *c, const struct ynode *map, size_t n,
                           const struct vs_route_destination *v)
{
	int64_t total = 0;

	if (n == 0)
		derr_required(c, map, "route");
	for (size_t i = 0; i < n; i++)
		total += v[i].weight;
	check_weight_total(c, map, n, total);
}

void post_vs_tls_route(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_tls_route *t = obj;

	if (t->match.n == 0)
		derr_required(c, map, "match");
	check_l4_route(c, map, t->route.n, t->route.v);
}

void post_vs_tcp_route(struct dctx *c, const struct ynode *map, void *obj)
{
	struct vs_tcp_route *t = obj;

	check_l4_route(c, map, t->route.n, t->route.v);
}

/* SNI hosts Istio generates for AUTO_PASSTHROUGH: outbound_.<port>_._.<host> */
static bool auto_sni_ok(const char *h)
{
	const char *port, *end;

	if (strncmp(h, "outbound_.", 10) != 0)
		return false;
	port = h + 10;
	end = strstr(port, "_.");
	return end && end > port && isdigit((unsigned char)*port) &&
	       strncmp(end, "_._.", 4) == 0 && isalpha((unsigned char)end[4]);
}

static bool vs_has_sni(const struct virtualservice *vs)
{
	for (size_t i = 0; i < vs->tls.n; i++)
		for (size_t j = 0; j < vs->tls.v[i].match.n; j++)
			if (vs->tls.v[i].match.v[j].sni_hosts.n)
				return true;
	return false;
}

static const char *vs_host_error(const char *h, bool gateway, bool sni, char *buf, size_t bufsz)
{
	if (gateway && sni && strncmp(h, "outbound_", 9) == 0)
		return auto_sni_ok(h) ? NULL : "invalid auto-generated SNI host (want "
		       "outbound_.<PORT>_._.<HOSTNAME>)";
	return check_wildcard_domain(h, buf, bufsz);
}

static void vs_check_hosts(struct dctx *c, const struct ynode *map, const struct virtualservice *vs,
                           bool gateway)
{
	bool all_valid = true, sni = vs_has_sni(vs);
	char buf[256];
	size_t *first;

	for (size_t i = 0; i < vs->hosts.n; i++) {
		const char *h = vs->hosts.v[i], *e;

		if (!h) {
			all_valid = false;
			continue;
		}
		e = vs_host_error(h, gateway, sni, buf, sizeof(buf));
		if (e && !is_ip_address(h)) {
			ditem(c, DIAG_ERROR, map, "hosts", i, NULL, "%s", e);
			all_valid = false;
		} else if (!e && !gateway && strcmp(h, "*") == 0) {
			ditem(c, DIAG_ERROR, map, "hosts", i, NULL, "wildcard host * is not allowed for "
			      "virtual services bound to the mesh gateway");
			all_valid = false;
		}
	}
	if (!all_valid)
		return;
	/* Each host that overlaps an earlier one, reported once, against the first. */
	first = xcalloc(vs->hosts.n + 1, sizeof(*first));
	res_hosts_first_overlap((const char *const *)vs->hosts.v, vs->hosts.n, first);
	for (size_t j = 0; j < vs->hosts.n; j++)
		if (first[j] != SIZE_MAX)
			ditem(c, DIAG_ERROR, map, "hosts", j, NULL, "duplicate hosts in virtual "
			      "service: %.100s & %.100s", vs->hosts.v[first[j]], vs->hosts.v[j]);
	free(first);
}

static void vs_check_sni(struct dctx *c, const struct ynode *map, const struct virtualservice *vs,
                         bool gateway)
{
	char buf[256];

	for (size_t r = 0; r < vs->tls.n; r++) {
		for (size_t m = 0; m < vs->tls.v[r].match.n; m++) {
			const struct vs_tls_match *tm = &vs->tls.v[r].match.v[m];
			const struct ynode *rn = item_node(map, "tls", r);
			const struct ynode *mn = item_node(rn, "match", m);
			size_t mark = path_push_key(c, "tls");

			path_push_index(c, r);
			path_push_key(c, "match");
			path_push_index(c, m);
			for (size_t k = 0; k < tm->sni_hosts.n; k++) {
				const char *sni = tm->sni_hosts.v[k], *e;
				bool covered = false;

				if (!sni)
					continue;
				e = vs_host_error(sni, gateway, true, buf, sizeof(buf));
				if (e) {
					if (is_ip_address(sni))
						ditem(c, DIAG_WARNING, mn, "sniHosts", k, NULL, "using an IP "
						      "address (\"%.60s\") goes against SNI spec and most clients "
						      "do not support this", sni);
					else
						ditem(c, DIAG_ERROR, mn, "sniHosts", k, NULL, "%s", e);
					continue;
				}
				for (size_t h = 0; h < vs->hosts.n && !covered; h++)
					covered = res_host_matches(vs->hosts.v[h], sni);
				if (!covered) {
					struct sbuf hosts = SBUF_INIT;

					for (size_t h = 0; h < vs->hosts.n; h++)
						sbuf_addf(&hosts, "%s%s", h ? ", " : "",
						          vs->hosts.v[h] ? vs->hosts.v[h] : "");
					ditem(c, DIAG_ERROR, mn, "sniHosts", k, NULL, "SNI host \"%.100s\" is "
					      "not a compatible subset of any of the virtual service hosts: "
					      "[%s]", sni, sbuf_str(&hosts));
					sbuf_free(&hosts);
				}
			}
			path_pop(c, mark);
		}
	}
}

void post_vs(struct dctx *c, const struct ynode *map, void *obj)
{
	struct virtualservice *vs = obj;
	bool gateway = vs->gateways.n > 0 && !res_strlist_has(&vs->gateways, "mesh");

	if (vs->hosts.n == 0)
		derr_required(c, map, "hosts");
	vs_check_hosts(c, map, vs, gateway);
	if (vs->http.n == 0 && vs->tcp.n == 0 && vs->tls.n == 0)
		derr(c, map, "http, tcp or tls must be provided in virtual service");
	vs_check_sni(c, map, vs, gateway);
	check_export_list(c, map, &vs->export_to);
}

/* ---------------------------------------------------------------------------------
 * DestinationRule
 * ------------------------------------------------------------------------------- */

void post_dr_pool(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_connection_pool *p = obj;

	if (!p->tcp && !p->http)
		derr(c, map, "connection pool must have at least one field");
	if (p->http && p->http->h2_upgrade_policy == DR_H2_UPGRADE && p->http->use_client_protocol)
		derr_field(c, map, "http", "useClientProtocol must not be true when "
		           "h2UpgradePolicy is UPGRADE");
}

void post_dr_outlier(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_outlier_detection *o = obj;

	if (!o->split_external_local_origin_errors && o->consecutive_local_origin_failures.value > 0)
		derr_field(c, map, "consecutiveLocalOriginFailures", "outlier detection consecutive "
		           "local origin failures is specified, but split external local origin "
		           "errors is set to false");
	if (o->consecutive_errors)
		dwarn_field(c, map, "consecutiveErrors", "outlier detection consecutive errors is "
		            "deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead");
}

void post_dr_tls(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_tls *t = obj;
	const char *mode = dr_tls_mode_names[t->mode];

	if (t->insecure_skip_verify) {
		if (t->mode == DR_TLS_SIMPLE && (t->ca_certificates || t->credential_name ||
		                                 t->subject_alt_names.n))
			derr_field(c, map, "insecureSkipVerify", "cannot specify caCertificates, "
			           "credentialName or subjectAltNames when insecureSkipVerify is true");
		if (t->mode == DR_TLS_MUTUAL && (t->ca_certificates || t->subject_alt_names.n))
			derr_field(c, map, "insecureSkipVerify", "cannot specify caCertificates or "
			           "subjectAltNames when insecureSkipVerify is true");
	}
	if ((t->mode == DR_TLS_SIMPLE || t->mode == DR_TLS_MUTUAL) && t->credential_name) {
		static const char *const fields[] = { "clientCertificate", "privateKey",
		                                      "caCertificates", "caCrl" };
		const char *vals[] = { t->client_certificate, t->private_key, t->ca_certificates,
		                       t->ca_crl };

		for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
			if (vals[i])
				derr_field(c, map, fields[i], "cannot be set together with credentialName "
				           "(the credential supplies the certificates, CA and CRL)");
		return;
	}
	if (t->mode == DR_TLS_MUTUAL) {
		if (!t->client_certificate)
			derr(c, map, "mode MUTUAL requires clientCertificate and privateKey, or "
			     "credentialName");
		else if (!t->private_key)
			derr(c, map, "mode MUTUAL requires a privateKey with clientCertificate");
	}
	if ((t->mode == DR_TLS_DISABLE || t->mode == DR_TLS_ISTIO_MUTUAL) &&
	    (t->client_certificate || t->private_key || t->ca_certificates || t->credential_name ||
	     t->ca_crl))
		dwarn(c, map, "mode %s does not use clientCertificate, privateKey, caCertificates, "
		      "caCrl or credentialName; they are ignored", mode);
}

void post_dr_port_policy(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_port_policy *p = obj;

	if (!ynode_get(map, "port"))
		derr_required(c, map, "port");
	if (!p->load_balancer && !p->connection_pool && !p->outlier_detection && !p->tls)
		derr(c, map, "port traffic policy must have at least one field");
}

void post_dr_policy(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_traffic_policy *p = obj;

	if (!p->load_balancer && !p->connection_pool && !p->outlier_detection && !p->tls &&
	    p->port_level_settings.n == 0 && !ynode_get(map, "tunnel") &&
	    !ynode_get(map, "proxyProtocol"))
		derr(c, map, "traffic policy must have at least one field");
	for (size_t j = 0; j < p->port_level_settings.n; j++) {
		uint32_t port = p->port_level_settings.v[j].port;

		for (size_t i = 0; port && i < j; i++) {
			if (p->port_level_settings.v[i].port == port) {
				ditem(c, DIAG_WARNING, map, "portLevelSettings", j, "port", "port %u "
				      "already has settings in portLevelSettings[%zu]; only the first "
				      "applies", port, i);
				break;
			}
		}
	}
}

void post_dr_subset(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_subset *s = obj;

	if (!s->name && !ynode_get(map, "name"))
		derr_required(c, map, "name");
}

void post_dr_selector(struct dctx *c, const struct ynode *map, void *obj)
{
	struct dr_workload_selector *s = obj;

	if (s->match_labels.n == 0)
		dwarn(c, map, "workload selector specified without labels");
}

void post_dr(struct dctx *c, const struct ynode *map, void *obj)
{
	struct destinationrule *dr = obj;

	if (!dr->host && !ynode_get(map, "host"))
		derr_required(c, map, "host");
	for (size_t j = 0; j < dr->subsets.n; j++) {
		const char *nj = dr->subsets.v[j].name;

		for (size_t i = 0; nj && i < j; i++) {
			if (dr->subsets.v[i].name && strcmp(dr->subsets.v[i].name, nj) == 0) {
				ditem(c, DIAG_ERROR, map, "subsets", j, "name", "duplicate subset names: "
				      "%.60s", nj);
				break;
			}
		}
	}
	check_export_list(c, map, &dr->export_to);
	if (dr->workload_selector && dr->export_to.n) {
		bool self = false, other = false;

		for (size_t i = 0; i < dr->export_to.n; i++) {
			const char *e = dr->export_to.v[i];

			if (e && (strcmp(e, ".") == 0 || strcmp(e, c->ns) == 0))
				self = true;
			else
				other = true;
		}
		if (!self)
			derr_field(c, map, "exportTo", "destination rule with workload selector cannot "
			           "have exportTo beyond current namespace");
		else if (other)
			derr_field(c, map, "exportTo", "destination rule with workload selector cannot "
			           "have multiple entries in exportTo");
	}
}
