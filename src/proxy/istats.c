/* istats: Istio's standard metrics and Envoy's per-cluster series (see istats.h).
 *
 * Label values, from what the proxy knows (Istio's reporter="source" in both roles):
 * - gateway: the source is the downstream peer, as Istio's gateways report it: its SPIFFE
 *   identity (source_principal), the namespace in it (source_workload_namespace); the
 *   workload name is not in the certificate and no metadata exchange happens, so
 *   source_workload is "unknown". connection_security_policy is "mutual_tls" when the peer
 *   presented a certificate, else "none".
 * - sidecar: the source is this proxy (--labels app/version and Istio's canonical-name
 *   and canonical-revision labels, --namespace, the SPIFFE identity of --identity);
 *   connection_security_policy is "unknown", as Istio's client side reports it.
 * - destination_service is the cluster's host; destination_service_name and _namespace
 *   are split from NAME.NS.svc.* hosts, else the host and "unknown".
 *   destination_workload, _principal, _app, _version are "unknown" (no metadata exchange).
 *
 * Tables: open addressing, linear probing, capacity twice the bound so probes stay
 * short; an entry is never moved, so the admin thread may read while the worker inserts. */
#include "proxy/istats.h"
#include "proxy/alog.h"
#include "proxy/hstats.h"
#include "proxy/worker.h"
#include "core/util.h"
#include "net/tls.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(ISTATS_TLS_CATS == STATS_TLS_CATS, "TLS categories differ from worker.h");

/* Envoy's default histogram buckets, kept by Istio for all three histograms. */
static const char *const istats_le[] = {
	"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
	"10000", "30000", "60000", "300000", "600000", "1800000", "3600000",
};
static const uint64_t istats_le_int[] = {
	0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
	10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
};
#define NB (sizeof(istats_le_int) / sizeof(istats_le_int[0]))

#define ISTATS_HTTP_MAX 1024
#define ISTATS_TCP_MAX 512
#define ISTATS_CL_MAX 1024

/* Non-cumulative bucket counts (the last one is +Inf), made cumulative when printed. */
struct ihist {
	_Atomic uint64_t b[NB + 1], sum;
};

struct ihttp {
	_Atomic uint64_t requests;
	struct ihist dur, req, resp;
	_Atomic bool used;
	uint64_t hash;
	char *peer, *svc, *svc_name;    /* NULL: unknown / derived */
	int code, grpc_status;
	unsigned flags;
	bool grpc;
};

struct itcp {
	_Atomic uint64_t opened, closed, sent, received;
	_Atomic bool used;
	uint64_t hash;
	char *peer, *svc, *svc_name;
	unsigned flags;
};

struct istats {
	struct ihttp http[2 * ISTATS_HTTP_MAX], http_other;
	struct itcp tcp[2 * ISTATS_TCP_MAX], tcp_other;
	struct istats_cluster cl[2 * ISTATS_CL_MAX], cl_other;
	size_t nhttp, ntcp, ncl;
	/* The slots in use, in the order they were published (the worker appends, then
	 * release-stores the count): the scrape reads these entries only. Reading every
	 * slot's `used` made all of the tables resident at the first scrape where the kernel
	 * backs a read of an untouched page with a page of its own (no shared zero page):
	 * 3.8 MiB for two workers, 40% of an idle gateway. */
	uint16_t http_idx[ISTATS_HTTP_MAX], tcp_idx[ISTATS_TCP_MAX], cl_idx[ISTATS_CL_MAX];
	_Atomic size_t nhttp_pub, ntcp_pub, ncl_pub;
	/* The last entry each request found (worker thread only): consecutive requests mostly
	 * share their label set and cluster, and comparing the key costs a fraction of hashing
	 * its strings (scenario 1 of make bench: about 470 fewer instructions per request). */
	struct ihttp *http_last;
	struct istats_cluster *cl_last;
	_Atomic uint64_t overflow;
	struct hstats *hosts;           /* per-endpoint counters (hstats.h) */
};

struct istats *istats_new(void)
{
	/* About 3 MiB of address space, untouched until a series is used (the scrape reads
	 * only the slots in use: http_idx). */
	struct istats *s = xcalloc(1, sizeof(struct istats));

	s->hosts = hstats_new();
	return s;
}

struct hstats *istats_hosts(const struct istats *s)
{
	return s->hosts;
}

void istats_host_sum(const struct proxy *p, const char *cluster, const char *addr,
                     struct hstats_sum *out)
{
	memset(out, 0, sizeof(*out));
	for (int w = 0; w < p->nworkers; w++)
		hstats_add(p->workers[w].istats ? istats_hosts(p->workers[w].istats) : NULL,
		           cluster, addr, out);
}

void istats_free(struct istats *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < 2 * ISTATS_HTTP_MAX; i++) {
		free(s->http[i].peer);
		free(s->http[i].svc);
		free(s->http[i].svc_name);
	}
	for (size_t i = 0; i < 2 * ISTATS_TCP_MAX; i++) {
		free(s->tcp[i].peer);
		free(s->tcp[i].svc);
		free(s->tcp[i].svc_name);
	}
	for (size_t i = 0; i < 2 * ISTATS_CL_MAX; i++)
		free(s->cl[i].name);
	hstats_free(s->hosts);
	free(s);
}

static const char *label_get(const char *const *labels, const char *key)
{
	size_t n = strlen(key);

	for (size_t i = 0; labels && labels[i]; i++)
		if (strncmp(labels[i], key, n) == 0 && labels[i][n] == '=')
			return labels[i] + n + 1;
	return NULL;
}

void istats_self_init(struct istats_self *self, bool gateway, const char *ns,
                      const char *const *labels, const char *identity_dir)
{
	const char *app = label_get(labels, "app"), *version = label_get(labels, "version");
	const char *cs = label_get(labels, "service.istio.io/canonical-name");
	const char *cr = label_get(labels, "service.istio.io/canonical-revision");

	memset(self, 0, sizeof(*self));
	self->gateway = gateway;
	self->ns = ns;
	self->app = app;
	self->version = version;
	self->workload = app;
	/* Istio's defaults: the canonical service is the app label, the revision the version
	 * label, else "latest". */
	self->canonical_service = cs ? cs : app;
	self->canonical_revision = cr ? cr : version ? version : "latest";
	if (identity_dir) {
		struct tls_identity_files *idf = xmalloc(sizeof(*idf));
		struct tls_pem cert, key, root;
		struct tls_cert_info info;
		char *pem = NULL;
		size_t len;

		tls_identity_files(identity_dir, idf, &cert, &key, &root);
		if (file_read_all(idf->cert, &pem, &len) == 0 &&
		    tls_cert_info_pem(pem, len, &info, NULL) == 0 && info.uri_san[0]) {
			snprintf(self->principal_buf, sizeof(self->principal_buf), "%s", info.uri_san);
			self->principal = self->principal_buf;
		}
		free(pem);
		free(idf);
	}
}

int istats_bucket(uint64_t v)
{
	for (size_t i = 0; i < NB; i++)
		if (v <= istats_le_int[i])
			return (int)i;
	return (int)NB;
}

static void hist_add(struct ihist *h, uint64_t v)
{
	/* The index once: STAT_INC names its counter twice (a load, then a store). */
	int i = istats_bucket(v);

	STAT_INC(h->b[i]);
	STAT_ADD(h->sum, v);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return (h ^ hash_bytes(s ? s : "", n)) * 0x100000001b3ULL + n;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static char *str_dup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static uint64_t http_hash(const struct istats_http_rec *r)
{
	uint64_t h = hash_str(hash_str(hash_str(0, r->peer), r->dst_service), r->dst_name);

	return h ^ ((uint64_t)(unsigned)r->code << 40 | (uint64_t)r->flags << 8 |
	            (uint64_t)r->grpc << 7) ^ (uint64_t)(r->grpc_status + 1) * 0x9e3779b97f4a7c15ULL;
}

static bool http_eq(const struct ihttp *e, const struct istats_http_rec *r)
{
	return e->code == r->code && e->flags == r->flags && e->grpc == r->grpc &&
	       e->grpc_status == r->grpc_status && str_eq(e->peer, r->peer) &&
	       str_eq(e->svc, r->dst_service) && str_eq(e->svc_name, r->dst_name);
}

static struct ihttp *http_find(struct istats *s, const struct istats_http_rec *r)
{
	uint64_t h;
	size_t mask = 2 * ISTATS_HTTP_MAX - 1, i;

	if (s->http_last && http_eq(s->http_last, r))
		return s->http_last;
	h = http_hash(r);
	for (i = h & mask;; i = (i + 1) & mask) {
		struct ihttp *e = &s->http[i];

		if (!atomic_load_explicit(&e->used, memory_order_relaxed))
			break;
		if (e->hash == h && http_eq(e, r))
			return s->http_last = e;
	}
	if (s->nhttp >= ISTATS_HTTP_MAX) {
		STAT_INC(s->overflow);
		return &s->http_other;
	}
	{
		struct ihttp *e = &s->http[i];

		e->hash = h;
		e->peer = str_dup(r->peer);
		e->svc = str_dup(r->dst_service);
		e->svc_name = str_dup(r->dst_name);
		e->code = r->code;
		e->flags = r->flags;
		e->grpc = r->grpc;
		e->grpc_status = r->grpc_status;
		s->http_idx[s->nhttp++] = (uint16_t)i;
		atomic_store_explicit(&e->used, true, memory_order_release);
		atomic_store_explicit(&s->nhttp_pub, s->nhttp, memory_order_release);
		return s->http_last = e;
	}
}

void istats_http(struct istats *s, const struct istats_http_rec *r)
{
	struct ihttp *e = http_find(s, r);

	STAT_INC(e->requests);
	hist_add(&e->dur, r->duration_ms);
	hist_add(&e->req, r->req_bytes);
	hist_add(&e->resp, r->resp_bytes);
}

static uint64_t tcp_hash(const struct istats_tcp_rec *r)
{
	return hash_str(hash_str(hash_str(0, r->peer), r->dst_service), r->dst_name) ^
	       (uint64_t)r->flags << 8;
}

static struct itcp *tcp_find(struct istats *s, const struct istats_tcp_rec *r)
{
	uint64_t h = tcp_hash(r);
	size_t mask = 2 * ISTATS_TCP_MAX - 1, i = h & mask;

	for (;; i = (i + 1) & mask) {
		struct itcp *e = &s->tcp[i];

		if (!atomic_load_explicit(&e->used, memory_order_relaxed))
			break;
		if (e->hash == h && e->flags == r->flags && str_eq(e->peer, r->peer) &&
		    str_eq(e->svc, r->dst_service) && str_eq(e->svc_name, r->dst_name))
			return e;
	}
	if (s->ntcp >= ISTATS_TCP_MAX) {
		STAT_INC(s->overflow);
		return &s->tcp_other;
	}
	{
		struct itcp *e = &s->tcp[i];

		e->hash = h;
		e->peer = str_dup(r->peer);
		e->svc = str_dup(r->dst_service);
		e->svc_name = str_dup(r->dst_name);
		e->flags = r->flags;
		s->tcp_idx[s->ntcp++] = (uint16_t)i;
		atomic_store_explicit(&e->used, true, memory_order_release);
		atomic_store_explicit(&s->ntcp_pub, s->ntcp, memory_order_release);
		return e;
	}
}

void istats_tcp_open(struct istats *s, const struct istats_tcp_rec *r)
{
	struct itcp *e = tcp_find(s, r);   /* once: STAT_INC names its counter twice */

	STAT_INC(e->opened);
}

void istats_tcp_close(struct istats *s, const struct istats_tcp_rec *r, uint64_t sent,
                      uint64_t received)
{
	struct itcp *e = tcp_find(s, r);

	STAT_INC(e->closed);
	STAT_ADD(e->sent, sent);
	STAT_ADD(e->received, received);
}

struct istats_cluster *istats_cluster(struct istats *s, const char *name)
{
	uint64_t h;
	size_t mask = 2 * ISTATS_CL_MAX - 1, i;

	if (s->cl_last && strcmp(s->cl_last->name, name) == 0)
		return s->cl_last;
	h = hash_bytes(name, strlen(name));
	for (i = h & mask;; i = (i + 1) & mask) {
		struct istats_cluster *c = &s->cl[i];

		if (!atomic_load_explicit(&c->used, memory_order_relaxed))
			break;
		if (c->hash == h && strcmp(c->name, name) == 0)
			return s->cl_last = c;
	}
	if (s->ncl >= ISTATS_CL_MAX) {
		STAT_INC(s->overflow);
		return &s->cl_other;
	}
	s->cl[i].hash = h;
	s->cl[i].name = xstrdup(name);
	s->cl_idx[s->ncl++] = (uint16_t)i;
	atomic_store_explicit(&s->cl[i].used, true, memory_order_release);
	atomic_store_explicit(&s->ncl_pub, s->ncl, memory_order_release);
	return s->cl_last = &s->cl[i];
}

/* ---- scrape: merge the workers' entries, print ---- */

/* Counters of one merged series, in the order of the struct they come from. */
#define HTTP_NV (1 + 3 * (NB + 2))
#define TCP_NV 4
#define CL_NV (sizeof(struct istats_cluster) / sizeof(_Atomic uint64_t))

struct merged {
	const void *key;                /* the first worker's entry (its labels), NULL: other */
	uint64_t hash;
	uint64_t v[HTTP_NV > CL_NV ? HTTP_NV : CL_NV];
};

struct mset {
	struct merged *m;
	size_t n, cap;
	size_t *slots;                  /* index in m + 1, 0: free; twice cap */
	size_t mask;
};

typedef bool (*key_eq_fn)(const void *a, const void *b);

static void mset_init(struct mset *ms)
{
	ms->cap = 64;
	ms->m = xcalloc(ms->cap, sizeof(*ms->m));
	ms->n = 0;
	ms->mask = 2 * ms->cap - 1;
	ms->slots = xcalloc(ms->mask + 1, sizeof(*ms->slots));
}

static void mset_fini(struct mset *ms)
{
	free(ms->m);
	free(ms->slots);
}

static void mset_grow(struct mset *ms)
{
	ms->cap *= 2;
	ms->m = xrealloc(ms->m, ms->cap * sizeof(*ms->m));
	memset(ms->m + ms->n, 0, (ms->cap - ms->n) * sizeof(*ms->m));
	free(ms->slots);
	ms->mask = 2 * ms->cap - 1;
	ms->slots = xcalloc(ms->mask + 1, sizeof(*ms->slots));
	for (size_t k = 0; k < ms->n; k++) {
		size_t i = ms->m[k].hash & ms->mask;

		while (ms->slots[i])
			i = (i + 1) & ms->mask;
		ms->slots[i] = k + 1;
	}
}

/* Adds the n counters at src (relaxed loads) to the series of key (NULL: the "unknown"
 * series of overflowing label sets). */
static void mset_add(struct mset *ms, const void *key, uint64_t hash, key_eq_fn eq,
                     const _Atomic uint64_t *src, size_t n)
{
	struct merged *m = NULL;
	size_t i;

	if (ms->n == ms->cap)
		mset_grow(ms);
	for (i = hash & ms->mask; ms->slots[i]; i = (i + 1) & ms->mask) {
		struct merged *c = &ms->m[ms->slots[i] - 1];

		if (c->hash == hash && ((!c->key && !key) || (c->key && key && eq(c->key, key)))) {
			m = c;
			break;
		}
	}
	if (!m) {
		m = &ms->m[ms->n++];
		m->key = key;
		m->hash = hash;
		ms->slots[i] = ms->n;
	}
	for (size_t k = 0; k < n; k++)
		m->v[k] += atomic_load_explicit(&src[k], memory_order_relaxed);
}

static bool any_nonzero(const _Atomic uint64_t *v, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (atomic_load_explicit(&v[k], memory_order_relaxed))
			return true;
	return false;
}

static bool http_key_eq(const void *a, const void *b)
{
	const struct ihttp *x = a, *y = b;
	struct istats_http_rec r = {
		.peer = y->peer, .dst_service = y->svc, .dst_name = y->svc_name, .code = y->code,
		.flags = y->flags, .grpc = y->grpc, .grpc_status = y->grpc_status,
	};

	return http_eq(x, &r);
}

static bool tcp_key_eq(const void *a, const void *b)
{
	const struct itcp *x = a, *y = b;

	return x->flags == y->flags && str_eq(x->peer, y->peer) && str_eq(x->svc, y->svc) &&
	       str_eq(x->svc_name, y->svc_name);
}

static bool cl_key_eq(const void *a, const void *b)
{
	return strcmp(((const struct istats_cluster *)a)->name,
	              ((const struct istats_cluster *)b)->name) == 0;
}

/* A label value, escaped as the text format wants (backslash, quote, newline). */
static void lv(struct sbuf *out, const char *name, const char *v, bool comma)
{
	if (comma)
		sbuf_addc(out, ',');
	sbuf_adds(out, name);
	sbuf_adds(out, "=\"");
	for (const char *p = v ? v : "unknown"; *p; p++) {
		if (*p == '\\' || *p == '"')
			sbuf_addc(out, '\\');
		if (*p == '\n')
			sbuf_adds(out, "\\n");
		else
			sbuf_addc(out, *p);
	}
	sbuf_addc(out, '"');
}

static void lvn(struct sbuf *out, const char *name, const char *v, size_t n)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%.*s", (int)(n < sizeof(buf) ? n : sizeof(buf) - 1), v);
	lv(out, name, buf, true);
}

/* "spiffe://TD/ns/NS/sa/SA": the NS part, or NULL. */
static const char *spiffe_ns(const char *id, size_t *n)
{
	const char *p = id ? strstr(id, "/ns/") : NULL, *e;

	if (!p || strncmp(id, "spiffe://", 9) != 0)
		return NULL;
	p += 4;
	e = strchr(p, '/');
	*n = e ? (size_t)(e - p) : strlen(p);
	return *n ? p : NULL;
}

/* The labels shared by the HTTP and TCP families, up to destination_cluster. */
static void labels_common(struct sbuf *out, const struct istats_self *self, const char *peer,
                          const char *svc, const char *svc_name)
{
	const char *dot, *ns = NULL;
	size_t nslen = 0, namelen = svc ? strlen(svc) : 0;

	lv(out, "reporter", "source", false);
	if (self->gateway) {
		const char *pns = spiffe_ns(peer, &nslen);

		lv(out, "source_workload", NULL, true);
		lv(out, "source_canonical_service", NULL, true);
		lv(out, "source_canonical_revision", NULL, true);
		if (pns)
			lvn(out, "source_workload_namespace", pns, nslen);
		else
			lv(out, "source_workload_namespace", NULL, true);
		lv(out, "source_principal", peer, true);
		lv(out, "source_app", NULL, true);
		lv(out, "source_version", NULL, true);
	} else {
		lv(out, "source_workload", self->workload, true);
		lv(out, "source_canonical_service", self->canonical_service, true);
		lv(out, "source_canonical_revision", self->canonical_revision, true);
		lv(out, "source_workload_namespace", self->ns, true);
		lv(out, "source_principal", self->principal, true);
		lv(out, "source_app", self->app, true);
		lv(out, "source_version", self->version, true);
	}
	lv(out, "source_cluster", NULL, true);
	lv(out, "destination_workload", NULL, true);
	lv(out, "destination_workload_namespace", NULL, true);
	lv(out, "destination_principal", NULL, true);
	lv(out, "destination_app", NULL, true);
	lv(out, "destination_version", NULL, true);
	lv(out, "destination_service", svc, true);
	lv(out, "destination_canonical_service", NULL, true);
	lv(out, "destination_canonical_revision", NULL, true);
	/* NAME.NS.svc[.cluster.local]: a Kubernetes service; other hosts (ServiceEntry)
	 * are their own name. */
	if (svc && (dot = strchr(svc, '.'))) {
		const char *d2 = strchr(dot + 1, '.');

		if (d2 && strncmp(d2, ".svc", 4) == 0 && (d2[4] == '\0' || d2[4] == '.')) {
			namelen = (size_t)(dot - svc);
			ns = dot + 1;
			nslen = (size_t)(d2 - ns);
		}
	}
	if (svc_name)
		lv(out, "destination_service_name", svc_name, true);
	else if (svc)
		lvn(out, "destination_service_name", svc, namelen);
	else
		lv(out, "destination_service_name", NULL, true);
	if (ns)
		lvn(out, "destination_service_namespace", ns, nslen);
	else
		lv(out, "destination_service_namespace", NULL, true);
	lv(out, "destination_cluster", NULL, true);
}

static void labels_tail(struct sbuf *out, const struct istats_self *self, const char *peer,
                        unsigned flags)
{
	struct sbuf f = SBUF_INIT;

	alog_flags_str(flags, &f);
	lv(out, "response_flags", f.s, true);
	sbuf_free(&f);
	lv(out, "connection_security_policy",
	   !self->gateway ? "unknown" : peer ? "mutual_tls" : "none", true);
}

static void http_labels(struct sbuf *out, const struct istats_self *self, const struct ihttp *e)
{
	char code[16], gs[16];

	if (!e) {
		static const struct ihttp unknown = { .grpc_status = -1 };

		e = &unknown;
	}
	labels_common(out, self, e->peer, e->svc, e->svc_name);
	lv(out, "request_protocol", e->grpc ? "grpc" : "http", true);
	snprintf(code, sizeof(code), "%d", e->code);
	lv(out, "response_code", code, true);
	snprintf(gs, sizeof(gs), "%d", e->grpc_status);
	lv(out, "grpc_response_status", e->grpc_status >= 0 ? gs : "", true);
	labels_tail(out, self, e->peer, e->flags);
}

static void tcp_labels(struct sbuf *out, const struct istats_self *self, const struct itcp *e)
{
	static const struct itcp unknown;

	if (!e)
		e = &unknown;
	labels_common(out, self, e->peer, e->svc, e->svc_name);
	lv(out, "request_protocol", "tcp", true);
	labels_tail(out, self, e->peer, e->flags);
}

static void family(struct sbuf *out, const char *name, const char *type, const char *help)
{
	sbuf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_print(struct sbuf *out, const char *name, const char *labels,
                       const uint64_t *v)
{
	uint64_t cum = 0;

	for (size_t i = 0; i <= NB; i++) {
		cum += v[i];
		sbuf_addf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels,
		          i < NB ? istats_le[i] : "+Inf", (unsigned long long)cum);
	}
	sbuf_addf(out, "%s_sum{%s} %llu\n%s_count{%s} %llu\n", name, labels,
	          (unsigned long long)v[NB + 1], name, labels, (unsigned long long)cum);
}

static void print_http(struct sbuf *out, const struct istats_self *self, const struct mset *ms)
{
	static const struct {
		const char *name, *help;
	} h[] = {
		{ "istio_request_duration_milliseconds", "Duration of requests, in milliseconds." },
		{ "istio_request_bytes", "HTTP request body sizes, in bytes." },
		{ "istio_response_bytes", "HTTP response body sizes, in bytes." },
	};
	struct sbuf *lab = xcalloc(ms->n ? ms->n : 1, sizeof(*lab));

	for (size_t i = 0; i < ms->n; i++)
		http_labels(&lab[i], self, ms->m[i].key);
	family(out, "istio_requests_total", "counter", "Requests handled by this proxy.");
	for (size_t i = 0; i < ms->n; i++)
		sbuf_addf(out, "istio_requests_total{%s} %llu\n", lab[i].s,
		          (unsigned long long)ms->m[i].v[0]);
	for (size_t k = 0; k < ARRAY_SIZE(h); k++) {
		family(out, h[k].name, "histogram", h[k].help);
		for (size_t i = 0; i < ms->n; i++)
			hist_print(out, h[k].name, lab[i].s, &ms->m[i].v[1 + k * (NB + 2)]);
	}
	for (size_t i = 0; i < ms->n; i++)
		sbuf_free(&lab[i]);
	free(lab);
}

static void print_tcp(struct sbuf *out, const struct istats_self *self, const struct mset *ms)
{
	static const struct {
		const char *name, *help;
		size_t idx;
	} t[] = {
		{ "istio_tcp_connections_opened_total", "TCP connections opened.", 0 },
		{ "istio_tcp_connections_closed_total", "TCP connections closed.", 1 },
		{ "istio_tcp_sent_bytes_total",
		  "Bytes sent to the downstream during responses on TCP connections (counted when "
		  "the connection closes).", 2 },
		{ "istio_tcp_received_bytes_total",
		  "Bytes received from the downstream on TCP connections (counted when the "
		  "connection closes).", 3 },
	};
	struct sbuf *lab = xcalloc(ms->n ? ms->n : 1, sizeof(*lab));

	for (size_t i = 0; i < ms->n; i++)
		tcp_labels(&lab[i], self, ms->m[i].key);
	for (size_t k = 0; k < ARRAY_SIZE(t); k++) {
		family(out, t[k].name, "counter", t[k].help);
		for (size_t i = 0; i < ms->n; i++)
			sbuf_addf(out, "%s{%s} %llu\n", t[k].name, lab[i].s,
			          (unsigned long long)ms->m[i].v[t[k].idx]);
	}
	for (size_t i = 0; i < ms->n; i++)
		sbuf_free(&lab[i]);
	free(lab);
}

#define CLV(field) (offsetof(struct istats_cluster, field) / sizeof(_Atomic uint64_t))

static void print_clusters(struct sbuf *out, const struct mset *ms)
{
	static const struct {
		const char *name, *help;
		size_t idx;
		bool gauge;
	} c[] = {
		{ "envoy_cluster_upstream_rq_total", "Requests sent to the cluster.", CLV(rq_total), false },
		{ "envoy_cluster_upstream_rq_retry_total", "Requests retried.", CLV(rq_retry), false },
		{ "envoy_cluster_upstream_rq_retry_success_total",
		  "Retried requests whose final response was not retriable.", CLV(rq_retry_success), false },
		{ "envoy_cluster_upstream_rq_retry_overflow_total",
		  "Retries refused by maxRetries or the retry budget (UO).", CLV(rq_retry_overflow), false },
		{ "envoy_cluster_upstream_rq_retry_limit_exceeded_total",
		  "Retriable answers with no retries left (URX).", CLV(rq_retry_limit_exceeded), false },
		{ "envoy_cluster_upstream_rq_timeout_total", "Requests that timed out (UT).",
		  CLV(rq_timeout), false },
		{ "envoy_cluster_upstream_rq_pending_overflow_total",
		  "Requests refused by the pending requests circuit breaker (UO).",
		  CLV(rq_pending_overflow), false },
		{ "envoy_cluster_upstream_cx_total", "Upstream connections opened.", CLV(cx_total), false },
		{ "envoy_cluster_upstream_cx_connect_fail_total", "Upstream connections that failed.",
		  CLV(cx_connect_fail), false },
		{ "envoy_cluster_upstream_cx_overflow_total",
		  "Times the maxConnections circuit breaker made a request wait.", CLV(cx_overflow), false },
		{ "envoy_cluster_ssl_handshake_total", "Upstream TLS handshakes completed.",
		  CLV(ssl_handshake), false },
		{ "envoy_cluster_outlier_detection_ejections_enforced_total",
		  "Endpoints ejected by outlier detection.", CLV(od_ejections_enforced), false },
	};
	struct sbuf *lab = xcalloc(ms->n ? ms->n : 1, sizeof(*lab));

	for (size_t i = 0; i < ms->n; i++) {
		const struct istats_cluster *k = ms->m[i].key;

		lv(&lab[i], "cluster_name", k ? k->name : NULL, false);
	}
	for (size_t k = 0; k < ARRAY_SIZE(c); k++) {
		family(out, c[k].name, c[k].gauge ? "gauge" : "counter", c[k].help);
		for (size_t i = 0; i < ms->n; i++)
			sbuf_addf(out, "%s{%s} %llu\n", c[k].name, lab[i].s,
			          (unsigned long long)ms->m[i].v[c[k].idx]);
	}
	family(out, "envoy_cluster_upstream_rq_xx_total", "counter",
	       "Requests by response code class (\"none\": no response).");
	for (size_t i = 0; i < ms->n; i++)
		for (size_t x = 0; x <= 5; x++) {
			static const char *const cls[] = { "none", "1", "2", "3", "4", "5" };

			/* A class appears once it has a request, as Envoy's upstream_rq_Nxx. */
			if (ms->m[i].v[CLV(rq_xx) + x] == 0)
				continue;
			sbuf_addf(out, "envoy_cluster_upstream_rq_xx_total{%s,response_code_class=\"%s\"} %llu\n",
			          lab[i].s, cls[x], (unsigned long long)ms->m[i].v[CLV(rq_xx) + x]);
		}
	family(out, "envoy_cluster_ssl_connection_error_total", "counter",
	       "Upstream TLS handshakes that failed, by reason.");
	for (size_t i = 0; i < ms->n; i++)
		for (int x = 0; x < ISTATS_TLS_CATS; x++) {
			uint64_t v = ms->m[i].v[CLV(ssl_fail) + (size_t)x];

			if (v)
				sbuf_addf(out, "envoy_cluster_ssl_connection_error_total{%s,reason=\"%s\"} %llu\n",
				          lab[i].s, stats_tls_cat_name(x), (unsigned long long)v);
		}
	for (size_t i = 0; i < ms->n; i++)
		sbuf_free(&lab[i]);
	free(lab);
}

static void merge_http(struct mset *ms, const struct ihttp *e, const struct ihttp *key)
{
	_Atomic uint64_t v[HTTP_NV];
	const struct ihist *hs[3] = { &e->dur, &e->req, &e->resp };
	size_t k = 0;

	/* Flatten (one relaxed load each) into the order print_http reads. */
	atomic_init(&v[k++], atomic_load_explicit(&e->requests, memory_order_relaxed));
	for (size_t j = 0; j < 3; j++) {
		for (size_t b = 0; b <= NB; b++)
			atomic_init(&v[k++], atomic_load_explicit(&hs[j]->b[b], memory_order_relaxed));
		atomic_init(&v[k++], atomic_load_explicit(&hs[j]->sum, memory_order_relaxed));
	}
	mset_add(ms, key, key ? key->hash : 0, http_key_eq, v, k);
}

void istats_prometheus(const struct proxy *p, const struct istats_self *self, struct sbuf *out)
{
	struct mset mh, mt, mc;
	uint64_t overflow = 0;
	int nw = p->nworkers;

	mset_init(&mh);
	mset_init(&mt);
	mset_init(&mc);
	for (int w = 0; w < nw; w++) {
		const struct istats *s = p->workers[w].istats;
		size_t n;

		if (!s)
			continue;
		n = atomic_load_explicit(&s->nhttp_pub, memory_order_acquire);
		for (size_t k = 0; k < n; k++)
			merge_http(&mh, &s->http[s->http_idx[k]], &s->http[s->http_idx[k]]);
		if (atomic_load_explicit(&s->http_other.requests, memory_order_relaxed))
			merge_http(&mh, &s->http_other, NULL);
		n = atomic_load_explicit(&s->ntcp_pub, memory_order_acquire);
		for (size_t k = 0; k < n; k++) {
			const struct itcp *e = &s->tcp[s->tcp_idx[k]];

			mset_add(&mt, e, e->hash, tcp_key_eq, &e->opened, TCP_NV);
		}
		if (any_nonzero(&s->tcp_other.opened, TCP_NV))
			mset_add(&mt, NULL, 0, tcp_key_eq, &s->tcp_other.opened, TCP_NV);
		n = atomic_load_explicit(&s->ncl_pub, memory_order_acquire);
		for (size_t k = 0; k < n; k++) {
			const struct istats_cluster *c = &s->cl[s->cl_idx[k]];

			mset_add(&mc, c, c->hash, cl_key_eq, &c->rq_total, CLV(used));
		}
		if (any_nonzero(&s->cl_other.rq_total, CLV(used)))
			mset_add(&mc, NULL, 0, cl_key_eq, &s->cl_other.rq_total, CLV(used));
		overflow += atomic_load_explicit(&s->overflow, memory_order_relaxed);
	}
	print_http(out, self, &mh);
	print_tcp(out, self, &mt);
	print_clusters(out, &mc);
	family(out, "egressgw_istio_series_overflow_total", "counter",
	       "Samples counted in the \"unknown\" series because a worker's table of label sets "
	       "was full.");
	sbuf_addf(out, "egressgw_istio_series_overflow_total %llu\n", (unsigned long long)overflow);
	mset_fini(&mh);
	mset_fini(&mt);
	mset_fini(&mc);
}
