/* egressgw: the proxy binary.
 *
 * The main thread is the control path: it loads the store, compiles a snapshot, starts the
 * workers, then runs its own loop for the store watcher (inotify), DNS re-resolution of
 * cluster endpoints, the admin endpoint and signals. Workers (proxy/worker.c) run the
 * data path. */
#include "admin/admin.h"
#include "cmd/egressgw/lifecycle.h"
#include "cmd/egressgw/load.h"
#include "cmd/egressgw/envoy_admin.h"
#include "config/store.h"
#include "core/diag.h"
#include "core/log.h"
#include "core/util.h"
#include "core/version.h"
#include "net/dns.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/tls.h"
#include "net/tls_mem.h"
#include "proxy/pool.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "secrets/secret.h"

#include <ares.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <yaml.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RELOAD_DEBOUNCE_MS 100
/* DNS jobs restarted per millisecond after a reload (dns_jobs_start). */
#define DNS_RESTART_BATCH  256
#define PUBLISH_WAIT_MS 1000    /* at most, for every worker to take a new snapshot */
/* OpenSSL's secure heap for private keys: a power of two, within the usual 8 MiB
 * RLIMIT_MEMLOCK; room for about a thousand RSA-2048 credentials (a buddy allocator:
 * ~2 KiB for the cached PEM, ~2 KiB of BIGNUMs) and the temporaries of private-key
 * operations. */
#define SECURE_HEAP_SIZE (4 * 1024 * 1024)
#define DNS_MIN_REFRESH_MS 1000
#define DNS_DEFAULT_REFRESH_MS 5000
#define DNS_MAX_REFRESH_MS 300000
/* Failures of a first round logged one by one at warning level; the rest at debug. */
#define DNS_FIRST_FAILED_LOGGED 10
/* A reload needs a few descriptors (the inotify instance, directories, files, TLS files);
 * when the connections have taken them all it waits and tries again. */
#define RELOAD_FDS_NEEDED 8
#define RELOAD_RETRY_MS 1000

static const char usage[] =
"Usage: egressgw --role gateway|sidecar [options]\n"
"\n"
"An egress gateway that reads Istio's ServiceEntry, Gateway, VirtualService,\n"
"DestinationRule and AuthorizationPolicy resources (and Secrets) from a store managed\n"
"by egressctl. AuthorizationPolicies of the proxy's namespace and of istio-system apply\n"
"(selector against --labels) to every HTTP request, HTTP/1.1 and HTTP/2, and to every\n"
"TCP and TLS passthrough connection, before it is connected upstream.\n"
"\n"
"Options:\n"
"  --role ROLE              gateway (terminates mesh mTLS, originates TLS) or sidecar\n"
"  --store DIR              the store (default: $EGRESSGW_STORE, else ./egressgw-store)\n"
"  --namespace NS           the proxy's namespace (default istio-system for a gateway,\n"
"                           default for a sidecar); credentialName Secrets are read here\n"
"  --labels K=V[,K=V...]    the proxy's labels; Gateways and AuthorizationPolicies whose\n"
"                           selector matches apply (default istio=egressgateway; none\n"
"                           for a sidecar, whose labels also matter to sourceLabels); a\n"
"                           Gateway API Gateway NAME is served with gateway.networking.k8s.io/\n"
"                           gateway-name=NAME, by a proxy in its own namespace\n"
"  --identity DIR           workload identity: cert-chain.pem, key.pem, root-cert.pem\n"
"  --mesh-hosts H[,H...]    services whose endpoints are mesh workloads (automatic mutual\n"
"                           TLS: ISTIO_MUTUAL to them unless a DestinationRule sets tls;\n"
"                           default istio-egressgateway.istio-system.svc.cluster.local;\n"
"                           ServiceEntries with location MESH_INTERNAL, and endpoints\n"
"                           labelled security.istio.io/tlsMode=istio, count too)\n"
"  --listen-address ADDR    address the Gateway listeners bind (default 0.0.0.0)\n"
"  --outbound ADDR:PORT     sidecar: where the application's outbound traffic arrives,\n"
"                           as an HTTP proxy (http_proxy=http://ADDR:PORT, CONNECT for\n"
"                           https) or redirected by iptables (see egressctl iptables)\n"
"                           (default 127.0.0.1:15001)\n"
"  --outbound-policy ALLOW_ANY|REGISTRY_ONLY\n"
"                           sidecar: traffic to hosts without a route passes through\n"
"                           to its destination, or is refused (502) (default ALLOW_ANY)\n"
"  --admin ADDR:PORT        admin endpoint (default 127.0.0.1:15000); keep it on\n"
"                           loopback: it takes POSTs that drain the proxy\n"
"  --status ADDR:PORT       read-only status port for probes and scrapers (default off;\n"
"                           0.0.0.0:15021 in a pod, as Istio's): GET /healthz/ready\n"
"                           (/ready), /healthz/live, /stats/prometheus\n"
"  --access-log PATH|-      access log file, - for stdout (default: off)\n"
"  --access-log-format text|json   (default text, Istio's default format)\n"
"  --hosts-file PATH        names looked up here first (/etc/hosts format), then DNS\n"
"  --dns-servers IP[:PORT],...     DNS servers instead of /etc/resolv.conf\n"
"  --workers N              worker threads (default: number of CPUs)\n"
"  --drain-announce DURATION\n"
"                           on SIGTERM or SIGINT: how long /ready answers 503\n"
"                           while the listeners keep accepting, so that load balancers\n"
"                           stop sending first (Istio's terminationDrainDuration;\n"
"                           default 5s; 0 closes the listeners at once)\n"
"  --drain-timeout DURATION then, with the listeners closed, how long requests in\n"
"                           flight may take to finish (default 5s)\n"
"  --request-headers-timeout DURATION\n"
"                           a request head must be whole this long after its first\n"
"                           byte (and the first one after accept), else the connection\n"
"                           is closed (default 60s; slow clients, slowloris)\n"
"  --idle-timeout DURATION  idle downstream keep-alive connections are closed (default 1h)\n"
"  --max-connections N      downstream connections open at once, all workers together;\n"
"                           past it, a connection serving nothing (no request yet,\n"
"                           an incomplete head, idle keep-alive) gives way, oldest\n"
"                           first, taken from another source than the newcomer's\n"
"                           when that one holds under half, else only one quiet for\n"
"                           10s (downstream_cx_evicted); with none, the new connection\n"
"                           is accepted and closed at once (downstream_cx_overflow).\n"
"                           Default: (RLIMIT_NOFILE - 64 -\n"
"                           4 x workers) / 2, at least RLIMIT_NOFILE / 4, after the\n"
"                           soft RLIMIT_NOFILE is raised to the hard one at start: each\n"
"                           connection may need an upstream descriptor too, and the\n"
"                           rest is kept for listeners, DNS, admin and reloads. 0: no\n"
"                           limit (a connection that finds no descriptor is closed)\n"
"  --log-level LEVEL        debug, info, warn, error (default info)\n"
"  --user NAME              after binding the listeners and the admin port and opening\n"
"                           the access log, run as NAME (its uid, gid and groups);\n"
"                           listeners on ports < 1024 added later by a reload then\n"
"                           cannot be bound (restart to bind them)\n"
"  --no-http2               never negotiate HTTP/2: the gateway's TLS listeners offer\n"
"                           only http/1.1 by ALPN, and upstream connections (the\n"
"                           sidecar's ISTIO_MUTUAL hop, h2UpgradePolicy: UPGRADE) speak\n"
"                           HTTP/1.1 (default: HTTP/2 where negotiated)\n"
"  --allow-core-dumps       keep the process dumpable (core files, ptrace by the same\n"
"                           user); off by default: a core would hold private keys\n"
"  -h, --help               this text\n"
"      --version            the version (git describe at build time), the commit and the\n"
"                           libraries\n"
"\n"
"Admin endpoint: /ready, /stats/prometheus (Istio's standard metrics too), /config_dump,\n"
"/certs; POST /healthcheck/fail and /healthcheck/ok (/ready answers 503 while failed),\n"
"POST /drain_listeners (close the listeners and drain; the process and its admin endpoint\n"
"stay up), POST /reopen_logs; Envoy's /clusters, /server_info, /stats, /listeners, /memory\n"
"(GET; ?format=json where Envoy has it), /logging (GET lists, POST ?level=LEVEL sets),\n"
"and /explain?url=URL (how a request would be handled; egressctl explain-request).\n"
"\n"
"Signals: SIGTERM and SIGINT drain (--drain-announce, then --drain-timeout) and\n"
"exit 0; the admin endpoint answers until the end. SIGHUP reloads the configuration\n"
"and reopens the access log; SIGUSR1 reopens the access log (logrotate's postrotate).\n"
"A listener address another process already holds is refused at start.\n"
"\n"
"Sidecar: --role sidecar --namespace default --identity DIR --outbound 127.0.0.1:15001\n"
"routes the application's requests with the VirtualServices bound to mesh and the\n"
"ServiceEntries, and connects to the egress gateway with the workload certificate\n"
"(ISTIO_MUTUAL). Its access log shows clusters such as\n"
"outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local, PassthroughCluster\n"
"and BlackHoleCluster. TLS (by its ClientHello's SNI, or the CONNECT host) and TCP follow\n"
"the tls: and tcp: routes bound to mesh first, unterminated; a route that matches is\n"
"followed or the connection refused (NR, UF), never sent direct.\n"
"\n"
"Gateway: a port whose servers are all TLS PASSTHROUGH is routed on the ClientHello's\n"
"SNI by the tls: routes bound to the Gateway, a TCP port by its tcp: routes; anything\n"
"else on such a port is closed (NR filter_chain_not_found).\n";

struct retired {
	struct cluster_eps *eps;
	uint64_t epoch;
	struct retired *next;
};

/* One DNS-discovered cluster's resolution state, rebuilt with each snapshot. */
struct dns_job {
	struct gw *gw;
	struct snap *snap;              /* the snapshot the cluster belongs to (borrowed) */
	struct cluster *cl;
	size_t pending;                 /* names still resolving in this round */
	struct dns_addr *addrs;         /* collected in this round, with per-name ports */
	uint16_t *ports;
	uint32_t *weights;              /* the ServiceEntry endpoint's weight, per address */
	size_t naddrs;
	uint32_t min_ttl;
	bool failed;
	bool first_done;                /* the snapshot's first round has finished */
	char reason[200];
	struct loop_timer timer;
	struct dns_query **queries;
	/* Callback arguments, one per name: owned by the job, so a query cancelled by
	 * dns_jobs_stop (whose callback never runs) leaks nothing. */
	struct dns_cb_arg *args;
	size_t nqueries;
};

struct gw {
	struct loop *loop;
	struct proxy proxy;
	struct snap *snap;
	struct snap_params params;
	const char *store;
	const char *default_ns;
	struct dns *dns;
	struct admin *admin;
	int inotify_fd;
	struct loop_io inotify_io;
	struct loop_timer reload_timer;
	struct loop_timer retire_timer;
	struct lc lc;                   /* signals, drain, readiness (lifecycle.c) */
	struct retired *retired;
	struct dns_job *jobs;
	size_t njobs;
	/* The first round of a snapshot's resolutions, summarised in one log line when the
	 * last finishes (per cluster only at debug level: 10,000 clusters are 10,000 lines). */
	size_t dns_first_pending, dns_first_ok, dns_first_failed;
	uint64_t dns_first_start_ms;
	/* A reload's store read runs on a thread (load.h); a change seen meanwhile starts
	 * another read when this one is done. */
	struct gw_load load;
	struct loop_io load_io;
	pthread_mutex_t secrets_mu;     /* the secret cache: builds and /certs */
	bool reload_pending;
	/* The inotify watch set must be walked again: a directory appeared, moved or went,
	 * a kubelet "..data" link was swapped, the queue overflowed, or SIGHUP. Other
	 * changes (files) leave it as it is: walking a store of 30,000 files on the main
	 * thread for every change held /ready for up to 125 ms. */
	bool watch_dirty;
	struct envoy_admin ea;          /* Envoy's admin endpoints (envoy_admin.c) */
};

/* ---- DNS ---- */

static void dns_job_start(struct dns_job *j);

static void retire_eps(struct gw *g, struct cluster_eps *eps)
{
	struct retired *r;

	if (!eps)
		return;
	r = xmalloc(sizeof(*r));
	r->eps = eps;
	r->epoch = proxy_quiescent(&g->proxy);
	r->next = g->retired;
	g->retired = r;
}

static void retire_collect(struct gw *g, bool all)
{
	uint64_t q = proxy_quiescent(&g->proxy);
	struct retired **pp = &g->retired, *r;

	while ((r = *pp)) {
		/* Every worker has passed a quiescent point since r was retired. */
		if (all || q > r->epoch + 1) {
			*pp = r->next;
			free(r->eps);
			free(r);
		} else {
			pp = &r->next;
		}
	}
}

static void on_retire_timer(struct loop *loop, struct loop_timer *t)
{
	struct gw *g = (struct gw *)((char *)t - offsetof(struct gw, retire_timer));

	retire_collect(g, false);
	loop_timer_arm(loop, t, 200);
}

static void dns_job_finish(struct dns_job *j)
{
	struct cluster *cl = j->cl;
	struct gw *g = j->gw;
	uint64_t refresh;

	if (j->naddrs > 0) {
		size_t n = cl->discovery == CLUSTER_DNS_ROUND_ROBIN ? 1 : j->naddrs;
		struct cluster_eps *eps = cluster_eps_new(n), *old;

		for (size_t i = 0; i < n; i++) {
			eps->v[i].addr = j->addrs[i].addr;
			sock_addr_set_port(&eps->v[i].addr, j->ports[i]);
			sock_addr_str(&eps->v[i].addr, eps->v[i].str, sizeof(eps->v[i].str));
			eps->v[i].weight = j->weights[i];
		}
		cluster_eps_weigh(eps);
		old = atomic_load(&cl->eps);
		if (cluster_eps_equal(old, eps)) {
			free(eps);
		} else {
			atomic_store_explicit(&cl->eps, eps, memory_order_release);
			/* Workers drain connections to endpoints that left (worker_tick). */
			atomic_fetch_add_explicit(&g->proxy.eps_gen, 1, memory_order_release);
			retire_eps(g, old);
			if (j->first_done)
				log_info("dns", "cluster %s: %zu endpoint(s), first %s", cl->name, n,
				         eps->v[0].str);
			else
				log_debug("dns", "cluster %s: %zu endpoint(s), first %s", cl->name, n,
				          eps->v[0].str);
		}
		atomic_store(&cl->dns_failed, false);
	} else if (j->failed) {
		/* Keep the last good endpoints (as Envoy does); fail only if there never were any. */
		if (!atomic_load(&cl->eps))
			atomic_store(&cl->dns_failed, true);
		/* The first round's failures: the first few by name, the rest in the summary. */
		if (j->first_done || g->dns_first_failed < DNS_FIRST_FAILED_LOGGED)
			log_warn("dns", "cluster %s: %s", cl->name, j->reason);
		else
			log_debug("dns", "cluster %s: %s", cl->name, j->reason);
	}
	if (!j->first_done) {
		j->first_done = true;
		if (j->naddrs > 0)
			g->dns_first_ok++;
		else
			g->dns_first_failed++;
		if (g->dns_first_pending && --g->dns_first_pending == 0)
			log_info("dns", "%zu DNS cluster(s) resolved in %llu ms: %zu with endpoints, "
			         "%zu failed", g->dns_first_ok + g->dns_first_failed,
			         (unsigned long long)(loop_now_ms(g->loop) - g->dns_first_start_ms),
			         g->dns_first_ok, g->dns_first_failed);
	}
	refresh = j->min_ttl ? (uint64_t)j->min_ttl * 1000 : DNS_DEFAULT_REFRESH_MS;
	if (refresh < DNS_MIN_REFRESH_MS)
		refresh = DNS_MIN_REFRESH_MS;
	if (refresh > DNS_MAX_REFRESH_MS)
		refresh = DNS_MAX_REFRESH_MS;
	free(j->addrs);
	free(j->ports);
	free(j->weights);
	j->addrs = NULL;
	j->ports = NULL;
	j->weights = NULL;
	j->naddrs = 0;
	loop_timer_arm(g->loop, &j->timer, refresh);
}

struct dns_cb_arg {
	struct dns_job *j;
	size_t idx;
};

static void dns_add_result(struct dns_job *j, size_t idx, const struct dns_result *res)
{
	if (res->status != DNS_OK) {
		j->failed = true;
		snprintf(j->reason, sizeof(j->reason), "resolving %s: %s", j->cl->names[idx].host,
		         res->reason);
		return;
	}
	j->addrs = xrealloc(j->addrs, (j->naddrs + res->n) * sizeof(*j->addrs));
	j->ports = xrealloc(j->ports, (j->naddrs + res->n) * sizeof(*j->ports));
	j->weights = xrealloc(j->weights, (j->naddrs + res->n) * sizeof(*j->weights));
	for (size_t i = 0; i < res->n; i++) {
		j->addrs[j->naddrs] = res->addrs[i];
		j->ports[j->naddrs] = j->cl->names[idx].port;
		j->weights[j->naddrs] = j->cl->names[idx].weight ? j->cl->names[idx].weight : 1;
		if (res->addrs[i].ttl && (!j->min_ttl || res->addrs[i].ttl < j->min_ttl))
			j->min_ttl = res->addrs[i].ttl;
		j->naddrs++;
	}
}

static void dns_on_result(void *arg, const struct dns_result *res)
{
	struct dns_cb_arg *a = arg;
	struct dns_job *j = a->j;

	j->queries[a->idx] = NULL;
	dns_add_result(j, a->idx, res);
	if (--j->pending == 0)
		dns_job_finish(j);
}

static void dns_job_start(struct dns_job *j)
{
	struct cluster *cl = j->cl;

	j->failed = false;
	j->min_ttl = 0;
	j->reason[0] = '\0';
	j->pending = 0;
	if (!j->queries)
		j->queries = xcalloc(cl->nnames ? cl->nnames : 1, sizeof(*j->queries));
	if (!j->args)
		j->args = xcalloc(cl->nnames ? cl->nnames : 1, sizeof(*j->args));
	j->nqueries = cl->nnames;
	/* Names the hosts file or an IP literal answers are resolved now, synchronously, so a
	 * new snapshot never starts without them. */
	for (size_t i = 0; i < cl->nnames; i++) {
		struct dns_result res;

		if (dns_resolve_local(j->gw->dns, cl->names[i].host, AF_UNSPEC, &res) == 0) {
			dns_add_result(j, i, &res);
			continue;
		}
		j->pending++;
	}
	if (j->pending == 0) {
		dns_job_finish(j);
		return;
	}
	for (size_t i = 0; i < cl->nnames; i++) {
		struct dns_result res;
		struct dns_cb_arg *a;

		if (dns_resolve_local(j->gw->dns, cl->names[i].host, AF_UNSPEC, &res) == 0)
			continue;
		a = &j->args[i];
		a->j = j;
		a->idx = i;
		j->queries[i] = dns_resolve(j->gw->dns, cl->names[i].host, AF_UNSPEC, dns_on_result, a);
	}
}

static void dns_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct dns_job *j = (struct dns_job *)((char *)t - offsetof(struct dns_job, timer));

	(void)loop;
	if (j->pending == 0)
		dns_job_start(j);
}

static void dns_jobs_stop(struct gw *g)
{
	for (size_t i = 0; i < g->njobs; i++) {
		struct dns_job *j = &g->jobs[i];

		loop_timer_cancel(g->loop, &j->timer);
		for (size_t k = 0; k < j->nqueries; k++) {
			if (j->queries && j->queries[k]) {
				dns_cancel(j->queries[k]);
			}
		}
		free(j->queries);
		free(j->args);
		free(j->addrs);
		free(j->ports);
		free(j->weights);
	}
	free(g->jobs);
	g->jobs = NULL;
	g->njobs = 0;
}

/* Starts resolution for every DNS cluster of snapshot s, seeding each with the endpoints
 * its namesake had in the previous snapshot so that a reload never empties a cluster. */
static void dns_jobs_start(struct gw *g, struct snap *s, struct snap *old)
{
	size_t n = 0, nseeded = 0;

	for (size_t i = 0; i < s->nclusters; i++)
		if (s->clusters[i]->discovery == CLUSTER_DNS ||
		    s->clusters[i]->discovery == CLUSTER_DNS_ROUND_ROBIN)
			n++;
	g->jobs = xcalloc(n ? n : 1, sizeof(*g->jobs));
	g->njobs = 0;
	g->dns_first_pending = n;
	g->dns_first_ok = g->dns_first_failed = 0;
	g->dns_first_start_ms = loop_now_ms(g->loop);
	for (size_t i = 0; i < s->nclusters; i++) {
		struct cluster *cl = s->clusters[i];
		struct dns_job *j;

		if (cl->discovery != CLUSTER_DNS && cl->discovery != CLUSTER_DNS_ROUND_ROBIN)
			continue;
		bool seeded = false;

		if (old) {
			struct cluster *oc = snap_cluster_find(old, cl->name);
			struct cluster_eps *oe = oc ? atomic_load(&oc->eps) : NULL;

			if (oe && !atomic_load(&cl->eps)) {
				struct cluster_eps *copy = cluster_eps_new(oe->n);

				memcpy(copy->v, oe->v, oe->n * sizeof(oe->v[0]));
				copy->total_weight = oe->total_weight;
				atomic_store(&cl->eps, copy);
				seeded = true;
			}
		}
		j = &g->jobs[g->njobs++];
		j->gw = g;
		j->snap = s;
		j->cl = cl;
		loop_timer_init(&j->timer, dns_on_timer);
		/* A cluster its namesake's endpoints serve meanwhile is resolved again soon,
		 * DNS_RESTART_BATCH per millisecond, so that a reload of 10,000 clusters does
		 * not hold the main thread (and /ready) for the whole round at once. A new
		 * cluster is resolved now: it has nothing to serve with. */
		if (seeded)
			loop_timer_arm(g->loop, &j->timer, 1 + nseeded++ / DNS_RESTART_BATCH);
		else
			dns_job_start(j);
	}
}

/* ---- configuration ---- */

static void gw_log_applied(const struct snap *s, const struct gw_build_stats *st)
{
	log_info("config", "configuration version %llu applied: %zu listener(s), %zu cluster(s) "
	         "from %zu resource(s) in %zu file(s) (%zu parsed, %zu unchanged); read %llu ms, "
	         "compile %llu ms, free %llu ms",
	         (unsigned long long)s->version, s->nlisteners, s->nclusters, st->resources,
	         st->files, st->parsed, st->reused, (unsigned long long)st->read_ms, (unsigned long long)st->compile_ms,
	         (unsigned long long)st->free_ms);
}

static void log_diags(const struct diags *d, enum log_level lvl_err)
{
	struct sbuf line = SBUF_INIT;

	for (size_t i = 0; i < d->n; i++) {
		sbuf_reset(&line);
		diag_format(&d->v[i], &line);
		log_msg(d->v[i].level == DIAG_ERROR ? lvl_err : LOG_WARN, "config", "%s", sbuf_str(&line));
	}
	sbuf_free(&line);
}

static void hyg_check_new_listeners(const struct snap *old, const struct snap *s);

/* True when a diagnostic says a file could not be opened for want of descriptors: the
 * configuration read is then incomplete through no fault of its own. */
static bool diags_fd_exhausted(const struct diags *d)
{
	char emfile[64], enfile[64];

	snprintf(emfile, sizeof(emfile), "%s", strerror(EMFILE));
	snprintf(enfile, sizeof(enfile), "%s", strerror(ENFILE));
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].msg && (strstr(d->v[i].msg, emfile) || strstr(d->v[i].msg, enfile)))
			return true;
	return false;
}

/* Whether n descriptors can be opened now (they are closed again at once). */
static bool fd_headroom(int n)
{
	int fds[RELOAD_FDS_NEEDED], k;

	if (n > RELOAD_FDS_NEEDED)
		n = RELOAD_FDS_NEEDED;
	for (k = 0; k < n; k++)
		if ((fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			break;
	for (int i = 0; i < k; i++)
		close(fds[i]);
	return k == n;
}

/* Switches to what a reload built (s may be NULL: rejected; d: taken), or keeps the
 * running configuration. */
static void gw_reload(struct gw *g, struct snap *s, struct diags *dp,
                      const struct gw_build_stats *st)
{
	struct diags d = *dp;
	struct snap *old = g->snap;

	if (diags_fd_exhausted(&d)) {
		/* Not the configuration's fault: keep serving the running one, and try again
		 * when connections may have given descriptors back. */
		secret_cache_log_events(g->params.secrets);
		log_diags(&d, LOG_WARN);
		log_error("config", "reload: out of file descriptors while reading the store; still "
		          "serving version %llu, trying again in %d ms",
		          (unsigned long long)(old ? old->version : 0), RELOAD_RETRY_MS);
		if (s)
			snap_unref(s);
		diags_free(&d);
		loop_timer_arm(g->loop, &g->reload_timer, RELOAD_RETRY_MS);
		return;
	}
	if (!s)
		secret_cache_log_events(g->params.secrets);
	log_diags(&d, LOG_ERROR);
	if (!s) {
		atomic_fetch_add(&g->proxy.config_rejects, 1);
		log_error("config", "configuration rejected (%zu error(s)); still serving version %llu",
		          d.nerrors, (unsigned long long)(old ? old->version : 0));
		diags_free(&d);
		return;
	}
	diags_free(&d);
	dns_jobs_stop(g);
	dns_jobs_start(g, s, old);
	g->snap = s;
	proxy_publish(&g->proxy, s);
	/* "Applied" (the log lines, config_reloads, a credential's "in use") means every
	 * worker serves it: the next request gets it, over pooled connections too. */
	if (proxy_wait_adopted(&g->proxy, s->version, PUBLISH_WAIT_MS) < 0)
		log_warn("config", "version %llu: not every worker took it within %d ms",
		         (unsigned long long)s->version, PUBLISH_WAIT_MS);
	secret_cache_log_events(g->params.secrets);
	hyg_check_new_listeners(old, s);
	atomic_fetch_add(&g->proxy.config_reloads, 1);
	gw_log_applied(s, st);
	gw_snap_release(old);
}

/* SIGHUP: the store read again now, as if it had changed. */
static void watch_rebuild(struct gw *g);

static void gw_reload_now(void *arg)
{
	struct gw *g = arg;

	/* The same path as a change the watcher saw, without the debounce: the build runs on
	 * the load thread (or waits for the one running). */
	g->watch_dirty = true;
	loop_timer_arm(g->loop, &g->reload_timer, 0);
}

/* ---- store watcher ---- */

static void watch_tree(struct gw *g, const char *dir)
{
	DIR *dh;
	struct dirent *e;

	/* IN_DONT_FOLLOW is not set: a ConfigMap mount's ..data is a symlink to a directory
	 * and the swap of that link is what changes. */
	if (inotify_add_watch(g->inotify_fd, dir,
	                      IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM |
	                      IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR) < 0)
		return;
	dh = opendir(dir);
	if (!dh)
		return;
	while ((e = readdir(dh))) {
		char *sub;
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		/* d_type spares a stat per file (30,000 in a store of 10,000 hosts); links
		 * and file systems that do not fill it in are stat()ed. */
		if (e->d_type != DT_DIR && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN)
			continue;
		sub = xasprintf("%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR || (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)))
			watch_tree(g, sub);
		free(sub);
	}
	closedir(dh);
}

static void on_inotify(struct loop *loop, struct loop_io *io, unsigned ev);

static void watch_rebuild(struct gw *g)
{
	char *cfg = xasprintf("%s/%s", g->store, STORE_CONFIG_DIR);
	char *sec = xasprintf("%s/%s", g->store, STORE_SECRETS_DIR);

	/* Rebuilding the watch set on every change is simple and cheap for a store of this
	 * size, and catches directories created or swapped in since the last look. The new
	 * instance is made before the old one is closed: without a descriptor for it, the
	 * old watches stay. */
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0) {
		log_error("watch", "inotify: %s; %s", strerror(errno), g->inotify_fd >= 0
		          ? "keeping the current watches" : "store changes need a restart");
		goto out;
	}
	if (g->inotify_fd >= 0) {
		loop_io_del(g->loop, &g->inotify_io);
		close(g->inotify_fd);
	}
	g->inotify_fd = fd;
	mkdir_p(g->store, 0755);
	watch_tree(g, g->store);
	watch_tree(g, cfg);
	watch_tree(g, sec);
	/* The workload identity too: a renewed certificate written there (in place, or by a
	 * kubelet's ..data swap) is picked up like a store change. */
	if (g->params.identity_dir)
		watch_tree(g, g->params.identity_dir);
	loop_io_init(&g->inotify_io, g->inotify_fd, on_inotify);
	loop_io_add(g->loop, &g->inotify_io, LOOP_READ);
out:
	free(cfg);
	free(sec);
}

/* Whether e may have changed the set of directories to watch: a directory's event, a
 * kubelet "..data" swap, an overflow, or a name created or moved in that is neither a
 * config file nor egressctl's temporary file (it may be a symlink to a directory). */
static bool watch_event_dirty(const struct inotify_event *e)
{
	if (e->mask & (IN_ISDIR | IN_IGNORED | IN_DELETE_SELF | IN_Q_OVERFLOW))
		return true;
	if (!e->len)
		return false;
	if (strncmp(e->name, "..", 2) == 0)
		return true;
	if (!(e->mask & (IN_CREATE | IN_MOVED_TO)))
		return false;
	return !str_has_suffix(e->name, ".yaml") && !str_has_suffix(e->name, ".yml") &&
	       !str_has_suffix(e->name, ".json") && !strstr(e->name, ".tmp.");
}

static void on_inotify(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct gw *g = (struct gw *)((char *)io - offsetof(struct gw, inotify_io));
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	(void)ev;
	while ((n = read(g->inotify_fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			const struct inotify_event *e = (const struct inotify_event *)(buf + off);

			if (watch_event_dirty(e))
				g->watch_dirty = true;
			off += (ssize_t)(sizeof(*e) + e->len);
		}
	}
	/* Debounce: egressctl and the kubelet change several files per update. */
	loop_timer_arm(loop, &g->reload_timer, RELOAD_DEBOUNCE_MS);
}

static void on_reload_timer(struct loop *loop, struct loop_timer *t)
{
	struct gw *g = (struct gw *)((char *)t - offsetof(struct gw, reload_timer));

	if (lc_draining(&g->lc))
		return;   /* the workers take no snapshot any more */
	if (!fd_headroom(RELOAD_FDS_NEEDED)) {
		log_error("config", "reload: out of file descriptors; still serving version %llu, "
		          "trying again in %d ms", (unsigned long long)(g->snap ? g->snap->version : 0),
		          RELOAD_RETRY_MS);
		loop_timer_arm(loop, t, RELOAD_RETRY_MS);
		return;
	}
	if (g->watch_dirty || g->inotify_fd < 0) {
		g->watch_dirty = false;
		watch_rebuild(g);
	}
	if (g->load.running) {
		g->reload_pending = true;
		return;
	}
	if (gw_load_start(&g->load) < 0) {
		/* No thread: build here, with the admin endpoint waiting meanwhile. */
		gw_load_build(&g->load);
		gw_reload(g, g->load.snap, &g->load.diags, &g->load.stats);
	}
}

/* The reload's build is done: publish it, then start the next build if the store
 * changed meanwhile. */
static void on_load_done(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct gw *g = (struct gw *)((char *)io - offsetof(struct gw, load_io));

	(void)ev;
	if (!g->load.running)
		return;
	gw_load_finish(&g->load);
	if (lc_draining(&g->lc)) {
		/* The drain began while this build ran: the workers take no snapshot any more
		 * (a posted one would never be adopted, nor freed). */
		if (g->load.snap)
			snap_unref(g->load.snap);
		g->load.snap = NULL;
		diags_free(&g->load.diags);
		return;
	}
	gw_reload(g, g->load.snap, &g->load.diags, &g->load.stats);
	if (g->reload_pending && !lc_draining(&g->lc)) {
		g->reload_pending = false;
		loop_timer_arm(loop, &g->reload_timer, 0);
	}
}

/* ---- admin ---- */

/* /stats/prometheus: the workers' counters (struct wstats, summed), one family each, in
 * this order; the labelled families and the process's own values are written around
 * them in prom_render, then Istio's standard metrics and the per-cluster series
 * (proxy/istats.c). Counters end in _total, as Prometheus names them. */
#define WSTAT(field) (offsetof(struct wstats, field) / sizeof(stat_t))

struct prom_stat {
	const char *name;               /* after "egressgw_" */
	bool gauge;
	size_t idx;                     /* in struct wstats_sum */
	const char *help;
};

static const struct prom_stat prom_downstream[] = {
	{ "downstream_cx_total", false, WSTAT(dcx_total), "Downstream connections accepted." },
	{ "downstream_cx_active", true, WSTAT(dcx_active), "Downstream connections open." },
	{ "downstream_cx_ssl_handshake_failed_total", false, WSTAT(dcx_tls_fail),
	  "Downstream TLS handshakes that failed." },
	{ "downstream_rq_total", false, WSTAT(rq_total), "Downstream requests." },
	{ "downstream_rq_active", true, WSTAT(rq_active), "Downstream requests in progress." },
};

static const struct prom_stat prom_upstream[] = {
	{ "upstream_cx_total", false, WSTAT(ucx_total), "Upstream connections opened." },
	{ "upstream_cx_active", true, WSTAT(ucx_active), "Upstream connections open." },
	{ "upstream_cx_connect_fail_total", false, WSTAT(ucx_connect_fail),
	  "Upstream connections that failed to connect." },
	{ "upstream_cx_connect_timeout_total", false, WSTAT(ucx_connect_timeout),
	  "Upstream connections that timed out connecting." },
	{ "upstream_rq_total", false, WSTAT(urq_total), "Upstream requests (attempts)." },
	{ "upstream_rq_retry_total", false, WSTAT(urq_retry), "Upstream requests retried." },
	{ "upstream_rq_reused_total", false, WSTAT(urq_reused),
	  "Upstream requests sent on a pooled connection." },
	{ "upstream_rq_timeout_total", false, WSTAT(urq_timeout), "Requests that timed out (UT)." },
	{ "upstream_pool_idle", true, WSTAT(pool_idle), "Idle upstream connections in the pools." },
	{ "no_route_total", false, WSTAT(no_route), "Requests without a route (NR)." },
	{ "no_healthy_upstream_total", false, WSTAT(no_healthy),
	  "Requests whose cluster had no endpoint (UH)." },
	{ "dns_failure_total", false, WSTAT(dns_fail), "Requests failed by name resolution (DF)." },
	{ "upstream_cx_http2_total", false, WSTAT(ucx_h2),
	  "Upstream connections that negotiated HTTP/2." },
	{ "upstream_cx_http2_fallback_total", false, WSTAT(ucx_h2_fallback),
	  "Upstream connections offered h2 whose server chose HTTP/1.1." },
};

static const struct prom_stat prom_mesh[] = {
	{ "downstream_cx_peer_identity_total", false, WSTAT(dcx_peer_identity),
	  "Downstream connections whose client presented a SPIFFE identity." },
	{ "tunnel_total", false, WSTAT(tun_total), "Opaque TCP tunnels (sidecar)." },
	{ "tunnel_active", true, WSTAT(tun_active), "Opaque TCP tunnels open (sidecar)." },
	{ "passthrough_total", false, WSTAT(passthrough), "Requests and tunnels to PassthroughCluster." },
	{ "blackhole_total", false, WSTAT(blackhole), "Requests and tunnels to BlackHoleCluster." },
	/* tls:/tcp: routes (l4fwd.c): connections they sent on, and those refused (no
	 * route at a gateway port, a route that cannot be served). */
	{ "l4_route_total", false, WSTAT(l4_routed), "Connections tls:/tcp: routes sent on." },
	{ "l4_refused_total", false, WSTAT(l4_refused),
	  "Connections refused by tls:/tcp: routing (no route, or one that cannot be served)." },
	/* Circuit breakers and outlier detection (Envoy's names). */
	{ "upstream_cx_overflow_total", false, WSTAT(ucx_overflow),
	  "Times the maxConnections circuit breaker made a request wait." },
	{ "upstream_rq_pending_overflow_total", false, WSTAT(urq_pending_overflow),
	  "Requests refused by the pending requests circuit breaker (UO)." },
	{ "upstream_rq_pending_total", false, WSTAT(urq_pending_total),
	  "Requests that waited for a connection." },
	{ "upstream_rq_pending_active", true, WSTAT(urq_pending_active),
	  "Requests waiting for a connection." },
	{ "outlier_detection_ejections_enforced_total", false, WSTAT(od_ejections_enforced),
	  "Endpoints ejected by outlier detection." },
	{ "outlier_detection_ejections_active", true, WSTAT(od_ejections_active),
	  "Endpoints ejected now." },
	{ "outlier_detection_ejections_overflow_total", false, WSTAT(od_ejections_overflow),
	  "Ejections not made because maxEjectionPercent was reached." },
};

/* Refused connections: past --max-connections, or no descriptor left. */
static const struct prom_stat prom_refused[] = {
	{ "downstream_cx_overflow_total", false, WSTAT(dcx_overflow),
	  "Connections closed at once because --max-connections were open." },
	{ "downstream_cx_no_fd_total", false, WSTAT(dcx_no_fd),
	  "Connections closed at once for want of a file descriptor." },
	{ "downstream_cx_evicted_total", false, WSTAT(dcx_evicted),
	  "Connections serving nothing closed to make room for a new one." },
};

/* AuthorizationPolicy decisions (Envoy's RBAC filter: rbac.allowed, rbac.denied,
 * rbac.shadow_allowed, rbac.shadow_denied). */
static const struct prom_stat prom_rbac[] = {
	{ "rbac_allowed_total", false, WSTAT(rbac_allowed), "Requests AuthorizationPolicy allowed." },
	{ "rbac_denied_total", false, WSTAT(rbac_denied), "Requests AuthorizationPolicy denied." },
	{ "rbac_shadow_allowed_total", false, WSTAT(rbac_shadow_allowed),
	  "Requests dry-run AuthorizationPolicies would allow." },
	{ "rbac_shadow_denied_total", false, WSTAT(rbac_shadow_denied),
	  "Requests dry-run AuthorizationPolicies would deny." },
};

static void prom_family(struct sbuf *body, const char *name, bool gauge, const char *help)
{
	sbuf_addf(body, "# HELP egressgw_%s %s\n# TYPE egressgw_%s %s\n", name, help, name,
	          gauge ? "gauge" : "counter");
}

static void prom_line(struct sbuf *body, const char *name, bool gauge, const char *help,
                      unsigned long long v)
{
	prom_family(body, name, gauge, help);
	sbuf_addf(body, "egressgw_%s %llu\n", name, v);
}

static void prom_lines(struct sbuf *body, const struct wstats_sum *sum,
                       const struct prom_stat *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		prom_line(body, t[i].name, t[i].gauge, t[i].help, (unsigned long long)sum->v[t[i].idx]);
}

static void admin_draining(struct gw *g, struct sbuf *body);

static void prom_render(void *arg, struct sbuf *body)
{
	struct gw *g = arg;
	struct wstats_sum sum;

	proxy_stats(&g->proxy, &sum);
	prom_lines(body, &sum, prom_downstream, ARRAY_SIZE(prom_downstream));
	prom_family(body, "downstream_rq_xx_total", false,
	            "Downstream responses by status class (\"none\": no response).");
	for (int c = 1; c <= 5; c++)
		sbuf_addf(body, "egressgw_downstream_rq_xx_total{response_code_class=\"%dxx\"} %llu\n", c,
		          (unsigned long long)sum.v[WSTAT(resp) + (size_t)c]);
	sbuf_addf(body, "egressgw_downstream_rq_xx_total{response_code_class=\"none\"} %llu\n",
	          (unsigned long long)sum.v[WSTAT(resp)]);
	prom_lines(body, &sum, prom_upstream, ARRAY_SIZE(prom_upstream));
	prom_family(body, "upstream_tls_handshake_total", false,
	            "Upstream TLS handshakes completed, full or resumed.");
	sbuf_addf(body,
	          "egressgw_upstream_tls_handshake_total{resumed=\"false\"} %llu\n"
	          "egressgw_upstream_tls_handshake_total{resumed=\"true\"} %llu\n",
	          (unsigned long long)sum.v[WSTAT(ucx_tls_full)],
	          (unsigned long long)sum.v[WSTAT(ucx_tls_resumed)]);
	prom_lines(body, &sum, prom_mesh, ARRAY_SIZE(prom_mesh));
	prom_family(body, "upstream_tls_failure_total", false,
	            "Upstream TLS handshakes that failed, by reason.");
	for (int i = 0; i < STATS_TLS_CATS; i++)
		sbuf_addf(body, "egressgw_upstream_tls_failure_total{reason=\"%s\"} %llu\n",
		          stats_tls_cat_name(i), (unsigned long long)sum.v[WSTAT(ucx_tls_fail) + (size_t)i]);
	prom_line(body, "config_reloads_total", false, "Configurations loaded and applied.",
	          (unsigned long long)atomic_load(&g->proxy.config_reloads));
	prom_line(body, "config_rejects_total", false,
	          "Configurations rejected (the previous one kept serving).",
	          (unsigned long long)atomic_load(&g->proxy.config_rejects));
	prom_line(body, "config_version", true, "Version of the configuration serving.",
	          (unsigned long long)(g->snap ? g->snap->version : 0));
	prom_lines(body, &sum, prom_refused, ARRAY_SIZE(prom_refused));
	prom_line(body, "downstream_cx_max", true, "--max-connections (0: no limit).",
	          (unsigned long long)g->proxy.max_dcx);
	lc_prom(&g->lc, body);
	pthread_mutex_lock(&g->secrets_mu);
	secret_cache_prom(g->params.secrets, time(NULL), body);
	pthread_mutex_unlock(&g->secrets_mu);
	admin_draining(g, body);
	prom_lines(body, &sum, prom_rbac, ARRAY_SIZE(prom_rbac));
	istats_prometheus(&g->proxy, &g->proxy.istats_self, body);
}

/* egressgw_cluster_upstream_cx_draining: per cluster of the running snapshot, and for
 * clusters gone from it whose connections still drain. */
static void admin_draining(struct gw *g, struct sbuf *body)
{
	const char **names = NULL;
	size_t n = g->snap ? g->snap->nclusters : 0;

	if (n)
		names = xcalloc(n, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = g->snap->clusters[i]->name;
	pool_draining_prom(body, names, n);
	free(names);
}

static int admin_handle(void *arg, const char *method, const char *path, struct sbuf *body,
                        const char **ctype)
{
	struct gw *g = arg;
	size_t qlen = strcspn(path, "?");
	int st = lc_admin(&g->lc, method, path, body);

	if (st)
		return st;   /* lifecycle.c: /ready, /healthcheck/fail and ok, /drain_listeners, /reopen_logs */
	st = envoy_admin_handle(&g->ea, method, path, body, ctype);
	if (st)
		return st;   /* envoy_admin.c: /clusters, /server_info, /stats, /listeners, ... */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		sbuf_adds(body, "method not allowed\n");
		return 405;
	}
	if (qlen == 12 && strncmp(path, "/config_dump", 12) == 0) {
		*ctype = "application/json";
		if (g->snap)
			snap_config_dump(g->snap, body);
		else
			sbuf_adds(body, "{}\n");
		return 200;
	}
	if (qlen == 6 && strncmp(path, "/certs", 6) == 0) {
		/* The credentials in use (never key material), for proxy-config secret. */
		*ctype = "application/json";
		pthread_mutex_lock(&g->secrets_mu);
		secret_cache_json(g->params.secrets, body);
		pthread_mutex_unlock(&g->secrets_mu);
		return 200;
	}
	if (qlen == 17 && strncmp(path, "/stats/prometheus", 17) == 0) {
		*ctype = "text/plain; version=0.0.4";
		prom_render(g, body);
		return 200;
	}
	sbuf_adds(body, "not found; try /ready, /stats/prometheus, /config_dump, /certs\n");
	return 404;
}

/* ---- process hygiene ----
 *
 * Key material lives in this process's memory (TLS contexts, Secrets), so by default the
 * process is not dumpable: no core file, and /proc/PID/mem, environ, fd/ and ptrace are
 * closed to other unprivileged processes of the same user (PR_SET_DUMPABLE 0).
 * --allow-core-dumps keeps it dumpable for debugging.
 *
 * --user NAME drops root once everything that needs it is done: the listeners of the
 * first configuration and the admin port are bound and the access log is open. What the
 * process opens later must be readable by NAME: the store (reloads), the --hosts-file,
 * the --identity files, the files DestinationRules name. A listener on a privileged port
 * (< net.ipv4.ip_unprivileged_port_start, usually 1024) that a reload adds cannot be
 * bound any more; hyg_check_new_listeners says so. Every descriptor the process creates
 * is close-on-exec (tests/integration/test_process_hygiene.py checks them all). */

static struct {
	bool allow_core_dumps;
	const char *user;               /* --user, or NULL */
	uid_t uid;
	gid_t gid;
	bool dropped;                   /* privileges were dropped */
	int unpriv_port_start;          /* ports below need privileges (after the drop) */
} hyg;

/* dumpable 0: no core dumps, no same-user ptrace or /proc access. */
static void hyg_set_dumpable(bool dumpable)
{
	if (prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0, 0, 0, 0) < 0)
		log_warn("main", "prctl(PR_SET_DUMPABLE, %d): %s", dumpable ? 1 : 0, strerror(errno));
}

/* Resolves --user NAME (a name, or a numeric uid). Returns 0, or -1 with a message on
 * stderr. */
static int hyg_lookup_user(const char *name)
{
	struct passwd *pw;
	char *end;
	unsigned long id;

	errno = 0;
	pw = getpwnam(name);
	if (!pw) {
		id = strtoul(name, &end, 10);
		if (*name && !*end)
			pw = getpwuid((uid_t)id);
	}
	if (!pw) {
		fprintf(stderr, "egressgw: --user %s: %s\n", name,
		        errno ? strerror(errno) : "no such user");
		return -1;
	}
	hyg.user = name;
	hyg.uid = pw->pw_uid;
	hyg.gid = pw->pw_gid;
	return 0;
}

static int hyg_read_unpriv_port_start(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	int v = 1024;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = 1024;
		fclose(f);
	}
	return v;
}

static void hyg_check_access(const char *what, const char *path, int mode)
{
	if (path && access(path, mode) < 0)
		log_warn("main", "%s %s is not accessible to user %s (%s): changes to it will not "
		         "be seen", what, path, hyg.user, strerror(errno));
}

/* Drops to --user: supplementary groups, then gid, then uid (the order matters: after
 * setuid we could no longer change the others), and checks that root cannot be regained.
 * glibc applies each change to every thread. Returns 0, or -1 with a message on stderr. */
static int hyg_drop_privileges(const struct gw *g, const char *hosts_file)
{
	if (getuid() == hyg.uid && geteuid() == hyg.uid && getgid() == hyg.gid) {
		log_info("main", "--user %s: already running as uid %u", hyg.user, (unsigned)hyg.uid);
		return 0;
	}
	hyg.unpriv_port_start = hyg_read_unpriv_port_start();
	if (initgroups(hyg.user, hyg.gid) < 0 && setgroups(1, &hyg.gid) < 0) {
		fprintf(stderr, "egressgw: --user %s: setgroups: %s\n", hyg.user, strerror(errno));
		return -1;
	}
	if (setgid(hyg.gid) < 0) {
		fprintf(stderr, "egressgw: --user %s: setgid(%u): %s\n", hyg.user, (unsigned)hyg.gid,
		        strerror(errno));
		return -1;
	}
	if (setuid(hyg.uid) < 0) {
		fprintf(stderr, "egressgw: --user %s: setuid(%u): %s\n", hyg.user, (unsigned)hyg.uid,
		        strerror(errno));
		return -1;
	}
	if (hyg.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		fprintf(stderr, "egressgw: --user %s: root could be regained after the drop\n", hyg.user);
		return -1;
	}
	hyg.dropped = true;
	/* A uid change resets the dumpable flag to fs.suid_dumpable: set ours again. */
	hyg_set_dumpable(hyg.allow_core_dumps);
	log_info("main", "running as user %s (uid %u, gid %u)", hyg.user, (unsigned)hyg.uid,
	         (unsigned)hyg.gid);
	hyg_check_access("store", g->store, R_OK | X_OK);
	hyg_check_access("hosts file", hosts_file, R_OK);
	hyg_check_access("identity directory", g->params.identity_dir, R_OK | X_OK);
	return 0;
}

/* After a reload: a listener on a privileged port that the old snapshot did not have
 * cannot be bound once privileges are dropped. The worker logs the bind error; this says
 * why and what to do. */
static void hyg_check_new_listeners(const struct snap *old, const struct snap *s)
{
	if (!hyg.dropped || hyg.uid == 0)
		return;
	for (size_t i = 0; i < s->nlisteners; i++) {
		const struct snap_listener *l = &s->listeners[i];
		bool had = false;

		if (l->port >= hyg.unpriv_port_start)
			continue;
		for (size_t k = 0; old && k < old->nlisteners && !had; k++)
			had = sock_addr_equal(&old->listeners[k].addr, &l->addr);
		if (!had)
			log_error("main", "listener %s: port %u is privileged and this process runs as "
			          "user %s (--user): it cannot be bound until egressgw is restarted",
			          l->name, l->port, hyg.user);
	}
}

/* ---- main ---- */

static int parse_duration_ms(const char *s, int64_t *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		*out = (int64_t)v;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		*out = (int64_t)(v * 1000);
	else if (strcmp(end, "m") == 0)
		*out = (int64_t)(v * 60000);
	else
		return -1;
	return 0;
}

/* The descriptor limit's soft value raised to the hard one (as Envoy and nginx's
 * worker_rlimit_nofile let one do): a shell's default soft limit of 1024 would cap a proxy
 * at a few hundred connections while the hard limit allows far more. old/now are what it
 * was and is, for the start-up log line. */
static void raise_nofile(unsigned long long *old, unsigned long long *now)
{
	struct rlimit rl;

	*old = *now = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	*old = *now = rl.rlim_cur;
	if (rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_max == RLIM_INFINITY)
		rl.rlim_cur = 1u << 20;         /* the kernel's default fs.nr_open */
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		*now = rl.rlim_cur;
}

/* --max-connections when not given: half of what the descriptor limit leaves after a
 * reserve for the process itself (listeners, loops, DNS, admin, reload, files), because a
 * downstream connection may hold an upstream one; so connections are refused by the limit
 * (cleanly, counted) before accept() runs out of descriptors. */
static uint64_t default_max_connections(int workers)
{
	struct rlimit rl;
	uint64_t n, reserve = 64 + 4 * (uint64_t)workers;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	n = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 24) ? (1u << 24) : rl.rlim_cur;
	if (n / 4 >= (n > reserve ? (n - reserve) / 2 : 0))
		return n / 4 ? n / 4 : 1;
	return (n - reserve) / 2;
}

/* --version: the build (git describe, baked in by the Makefile) and the libraries it runs
 * with, as Envoy's --version names its commit and TLS library. */
static void print_version(void)
{
	const nghttp2_info *h2 = nghttp2_version(0);

	printf("egressgw version %s (commit %s, %s tree, commit date %s)\n", version_info.version,
	       version_info.commit, version_info.tree_state, version_info.date);
	printf("libraries: %s, nghttp2 %s, libyaml %s, c-ares %s\n",
	       OpenSSL_version(OPENSSL_VERSION), h2 ? h2->version_str : "?",
	       yaml_get_version_string(), ares_version(NULL));
}

static const char **split_labels(const char *s)
{
	size_t n = 1;
	const char **v;
	char *copy = xstrdup(s), *tok, *save = NULL;

	for (const char *p = s; *p; p++)
		n += *p == ',';
	v = xcalloc(n + 1, sizeof(*v));
	n = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		v[n++] = tok;   /* copy stays allocated for the process's lifetime */
	if (n == 0)
		free(copy);     /* no labels (a sidecar without --labels): v[0] is NULL */
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },
		{ "store", required_argument, NULL, 's' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "labels", required_argument, NULL, 'l' },
		{ "identity", required_argument, NULL, 'i' },
		{ "mesh-hosts", required_argument, NULL, 'm' },
		{ "listen-address", required_argument, NULL, 'L' },
		{ "admin", required_argument, NULL, 'a' },
		{ "access-log", required_argument, NULL, 'A' },
		{ "access-log-format", required_argument, NULL, 'F' },
		{ "hosts-file", required_argument, NULL, 'H' },
		{ "dns-servers", required_argument, NULL, 'D' },
		{ "workers", required_argument, NULL, 'w' },
		{ "drain-timeout", required_argument, NULL, 'T' },
		{ "drain-announce", required_argument, NULL, 'N' },
		{ "status", required_argument, NULL, 'S' },
		{ "version", no_argument, NULL, 'V' },
		{ "request-headers-timeout", required_argument, NULL, 'R' },
		{ "idle-timeout", required_argument, NULL, 'I' },
		{ "max-connections", required_argument, NULL, 'M' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "outbound", required_argument, NULL, 'o' },
		{ "outbound-policy", required_argument, NULL, 'P' },
		{ "user", required_argument, NULL, 'U' },
		{ "allow-core-dumps", no_argument, NULL, 'C' },
		{ "no-http2", no_argument, NULL, '2' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct gw g;
	const char *role = NULL, *store_flag = NULL, *ns = NULL, *labels = "istio=egressgateway";
	const char *admin_addr = "127.0.0.1:15000", *alog = NULL, *hosts = NULL, *dns_servers = NULL;
	unsigned long long nofile_old, nofile_now;
	/* Before OpenSSL allocates anything: keys never in a core file (net/tls_mem.h). */
	unsigned keymem = tls_mem_init(SECURE_HEAP_SIZE);
	const char *listen = "0.0.0.0", *status_addr = NULL;
	const char *mesh_hosts = "istio-egressgateway.istio-system.svc.cluster.local";
	const char *outbound = "127.0.0.1:15001";
	bool labels_given = false, no_http2 = false;
	long long max_conns = -1;      /* -1: derived from RLIMIT_NOFILE */
	int workers = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
	struct sock_addr aaddr, saddr;
	struct dns_opts dopts;
	struct sbuf err = SBUF_INIT;

	/* First of all: nothing read from here on may end up in a core file. */
	hyg_set_dumpable(false);
	memset(&g, 0, sizeof(g));
	g.inotify_fd = -1;
	g.proxy.alog_fd = -1;
	g.proxy.alog_format = ALOG_TEXT;
	g.proxy.drain_timeout_ms = 5000;
	g.lc.announce_ms = 5000;
	g.lc.sig_fd = -1;
	g.proxy.header_timeout_ms = 60000;
	g.proxy.idle_timeout_ms = 3600 * 1000;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': role = optarg; break;
		case 's': store_flag = optarg; break;
		case 'n': ns = optarg; break;
		case 'l': labels = optarg; labels_given = true; break;
		case 'o': outbound = optarg; break;
		case 'P':
			if (strcmp(optarg, "ALLOW_ANY") == 0) {
				g.proxy.outbound_policy = PROXY_ALLOW_ANY;
			} else if (strcmp(optarg, "REGISTRY_ONLY") == 0) {
				g.proxy.outbound_policy = PROXY_REGISTRY_ONLY;
			} else {
				fprintf(stderr, "egressgw: --outbound-policy: want ALLOW_ANY or REGISTRY_ONLY, "
				        "got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'i': g.params.identity_dir = optarg; break;
		case 'm': mesh_hosts = optarg; break;
		case '2': no_http2 = true; break;
		case 'L': listen = optarg; break;
		case 'a': admin_addr = optarg; break;
		case 'A': alog = optarg; break;
		case 'F':
			if (alog_format_parse(optarg, &g.proxy.alog_format) < 0) {
				fprintf(stderr, "egressgw: --access-log-format: want text or json, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'H': hosts = optarg; break;
		case 'D': dns_servers = optarg; break;
		case 'w':
			workers = atoi(optarg);
			if (workers < 1 || workers > 256) {
				fprintf(stderr, "egressgw: --workers: want 1..256, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (parse_duration_ms(optarg, &g.proxy.drain_timeout_ms) < 0) {
				fprintf(stderr, "egressgw: --drain-timeout: bad duration \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'N':
			if (parse_duration_ms(optarg, &g.lc.announce_ms) < 0) {
				fprintf(stderr, "egressgw: --drain-announce: bad duration \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'V':
			print_version();
			return 0;
		case 'S': status_addr = optarg; break;
		case 'R':
			if (parse_duration_ms(optarg, &g.proxy.header_timeout_ms) < 0 ||
			    g.proxy.header_timeout_ms < 1) {
				fprintf(stderr, "egressgw: --request-headers-timeout: bad duration \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'I':
			if (parse_duration_ms(optarg, &g.proxy.idle_timeout_ms) < 0 ||
			    g.proxy.idle_timeout_ms < 1) {
				fprintf(stderr, "egressgw: --idle-timeout: bad duration \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'M': {
			char *end;

			errno = 0;
			max_conns = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || max_conns < 0) {
				fprintf(stderr, "egressgw: --max-connections: want a number >= 0, got \"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		}
		case 'v':
			if (log_level_parse(optarg, &log_min_level) < 0) {
				fprintf(stderr, "egressgw: --log-level: want debug, info, warn or error\n");
				return 2;
			}
			break;
		case 'U':
			if (hyg_lookup_user(optarg) < 0)
				return 2;
			break;
		case 'C':
			hyg.allow_core_dumps = true;
			hyg_set_dumpable(true);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "egressgw: unexpected argument \"%s\"\n%s", argv[optind], usage);
		return 2;
	}
	if (!role || (strcmp(role, "gateway") != 0 && strcmp(role, "sidecar") != 0)) {
		fprintf(stderr, "egressgw: --role gateway or --role sidecar is required\n\n%s", usage);
		return 2;
	}
	g.proxy.role = SNAP_ROLE_GATEWAY;
	g.store = store_root(store_flag);
	g.default_ns = "default";
	g.params.role = SNAP_ROLE_GATEWAY;
	g.params.namespace = ns ? ns : "istio-system";
	if (strcmp(role, "sidecar") == 0) {
		/* The application's proxy: its namespace is the application's, and it has the
		 * application's labels (none unless given; they matter to sourceLabels and to
		 * AuthorizationPolicy selectors). */
		g.proxy.role = SNAP_ROLE_SIDECAR;
		g.params.role = SNAP_ROLE_SIDECAR;
		g.params.namespace = ns ? ns : "default";
		if (!labels_given)
			labels = "";
		if (sock_addr_parse(outbound, &g.proxy.outbound) < 0) {
			fprintf(stderr, "egressgw: --outbound: bad address \"%s\" (want ADDR:PORT)\n",
			        outbound);
			return 2;
		}
		g.proxy.outbound_on = true;
		g.proxy.outbound_addr = outbound;
		proxy_self_add(&g.proxy, &g.proxy.outbound);
		g.proxy.hosts_file = hosts;
		g.proxy.dns_servers = dns_servers;
	}
	raise_nofile(&nofile_old, &nofile_now);
	g.proxy.max_dcx = max_conns >= 0 ? (uint64_t)max_conns : default_max_connections(workers);
	g.params.labels = split_labels(labels);
	g.params.mesh_hosts = split_labels(mesh_hosts);
	g.params.http2 = !no_http2;
	g.params.listen_address = listen;
	g.params.store_root = g.store;
	g.params.secrets = secret_cache_new();
	if (sock_addr_parse(admin_addr, &aaddr) < 0) {
		fprintf(stderr, "egressgw: --admin: bad address \"%s\" (want ADDR:PORT)\n", admin_addr);
		return 2;
	}
	proxy_self_add(&g.proxy, &aaddr);
	if (alog) {
		g.lc.alog_path = alog;
		g.proxy.alog_on = true;
		g.proxy.alog_fd = strcmp(alog, "-") == 0
			? STDOUT_FILENO
			: open(alog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (g.proxy.alog_fd < 0) {
			fprintf(stderr, "egressgw: --access-log %s: %s\n", alog, strerror(errno));
			return 1;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* Blocked before the workers start so that only the main thread's signalfd sees them. */
	lc_block_signals();

	g.loop = loop_new();
	if (!g.loop) {
		fprintf(stderr, "egressgw: event loop: %s\n", strerror(errno));
		return 1;
	}
	memset(&dopts, 0, sizeof(dopts));
	dopts.hosts_file = hosts;
	dopts.servers = dns_servers;
	/* From here a refusal to start exits at once: what main holds (g, on this frame) is
	 * the process's own until then, and stays reachable for LeakSanitizer. */
	g.dns = dns_new(g.loop, &dopts, &err);
	if (!g.dns) {
		fprintf(stderr, "egressgw: DNS resolver: %s\n", sbuf_str(&err));
		exit(1);
	}

	pthread_mutex_init(&g.secrets_mu, NULL);
	if (gw_load_init(&g.load, g.store, g.default_ns, &g.params, &g.secrets_mu) < 0)
		fprintf(stderr, "egressgw: eventfd: %s; reloads will build on the main thread\n",
		        strerror(errno));
	gw_load_build(&g.load);
	g.snap = g.load.snap;
	secret_cache_log_events(g.params.secrets);
	if (!g.snap) {
		diags_print(&g.load.diags, stderr);
		fprintf(stderr, "egressgw: the configuration in %s has errors; not starting\n", g.store);
		exit(1);
	}
	log_diags(&g.load.diags, LOG_ERROR);
	diags_free(&g.load.diags);
	gw_log_applied(g.snap, &g.load.stats);
	dns_jobs_start(&g, g.snap, NULL);

	if (lc_check_listeners(g.snap, &g.proxy) < 0)
		exit(1);
	istats_self_init(&g.proxy.istats_self, g.proxy.role == SNAP_ROLE_GATEWAY, g.params.namespace,
	                 g.params.labels, g.params.identity_dir);
	if (proxy_start(&g.proxy, workers, g.snap) < 0) {
		if (g.proxy.outbound_on)
			fprintf(stderr, "egressgw: starting workers (--outbound %s): %s\n",
			        g.proxy.outbound_addr, strerror(errno));
		else
			fprintf(stderr, "egressgw: starting workers: %s\n", strerror(errno));
		exit(1);
	}
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		g.ea = (struct envoy_admin){
			.proxy = &g.proxy, .snap = &g.snap, .lc = &g.lc, .argc = argc,
			.argv = argv, .workers = workers, .admin_addr = admin_addr,
			.start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
			.prometheus = prom_render, .arg = &g,
		};
	}
	g.admin = admin_start(g.loop, &aaddr, admin_handle, &g);
	if (!g.admin) {
		fprintf(stderr, "egressgw: --admin %s: %s\n", admin_addr, strerror(errno));
		exit(1);
	}
	g.lc.reload = gw_reload_now;
	g.lc.arg = &g;
	g.lc.secrets = g.params.secrets;
	g.lc.secrets_mu = &g.secrets_mu;
	if (lc_start(&g.lc, g.loop, &g.proxy) < 0) {
		fprintf(stderr, "egressgw: signalfd: %s\n", strerror(errno));
		exit(1);
	}
	g.lc.admin = admin_handle;
	g.lc.admin_arg = &g;
	if (status_addr && (sock_addr_parse(status_addr, &saddr) < 0 ||
	                    lc_status_start(&g.lc, &saddr) < 0)) {
		fprintf(stderr, "egressgw: --status %s: %s\n", status_addr, strerror(errno));
		exit(1);
	}
	loop_timer_init(&g.reload_timer, on_reload_timer);
	if (g.load.efd >= 0) {
		loop_io_init(&g.load_io, g.load.efd, on_load_done);
		loop_io_add(g.loop, &g.load_io, LOOP_READ);
	}
	loop_timer_init(&g.retire_timer, on_retire_timer);
	loop_timer_arm(g.loop, &g.retire_timer, 200);
	if (hyg.user && hyg_drop_privileges(&g, hosts) < 0)
		exit(1);
	watch_rebuild(&g);
	if (g.proxy.role == SNAP_ROLE_SIDECAR)
		log_info("main", "egressgw sidecar capturing on %s (%s) with %d worker(s); %zu outbound "
		         "route table(s); admin on %s; store %s", g.proxy.outbound_addr,
		         g.proxy.outbound_policy == PROXY_REGISTRY_ONLY ? "REGISTRY_ONLY" : "ALLOW_ANY",
		         workers, g.snap->noutbound, admin_addr, g.store);
	else
		log_info("main", "egressgw gateway serving %zu listener(s) with %d worker(s); admin on %s; "
		         "store %s", g.snap->nlisteners, workers, admin_addr, g.store);
	/* Private keys (OpenSSL's BIGNUMs of loaded keys, the cached Secret values) live in
	 * the secure heap: never in a core file, and not swapped out when it is locked. */
	if ((keymem & (TLS_MEM_SECURE_HEAP | TLS_MEM_WIPE_ON_FREE | TLS_MEM_RSA_NO_CACHE)) ==
	    (TLS_MEM_SECURE_HEAP | TLS_MEM_WIPE_ON_FREE | TLS_MEM_RSA_NO_CACHE))
		log_info("main", "private keys: OpenSSL secure heap of %d KiB (%s, not in core dumps)",
		         SECURE_HEAP_SIZE / 1024, keymem & TLS_MEM_LOCKED ? "mlocked" :
		         "not locked: RLIMIT_MEMLOCK too low");
	else
		log_warn("main", "private keys may reach a core file:%s%s%s",
		         keymem & TLS_MEM_SECURE_HEAP ? "" : " no secure heap",
		         keymem & TLS_MEM_WIPE_ON_FREE ? "" : " freed memory not wiped",
		         keymem & TLS_MEM_RSA_NO_CACHE ? "" : " RSA primes cached");
	if (nofile_now != nofile_old)
		log_info("main", "RLIMIT_NOFILE: soft limit raised from %llu to %llu (the hard limit)",
		         nofile_old, nofile_now);
	else
		log_info("main", "RLIMIT_NOFILE: %llu (the soft limit is the hard limit)", nofile_now);
	if (g.proxy.max_dcx)
		log_info("main", "at most %llu downstream connections (--max-connections)",
		         (unsigned long long)g.proxy.max_dcx);
	else
		log_info("main", "no limit on downstream connections (--max-connections 0)");

	/* Until a stop signal's drain has finished (lifecycle.c). */
	loop_run(g.loop);

	proxy_stop(&g.proxy);
	admin_stop(g.admin);
	if (g.load.efd >= 0)
		loop_io_del(g.loop, &g.load_io);
	gw_load_fini(&g.load);
	dns_jobs_stop(&g);
	proxy_free(&g.proxy);
	retire_collect(&g, true);
	if (g.snap)
		snap_unref(g.snap);
	gw_snap_release_wait();
	secret_cache_free(g.params.secrets);
	if (g.inotify_fd >= 0) {
		loop_io_del(g.loop, &g.inotify_io);
		close(g.inotify_fd);
	}
	lc_fini(&g.lc);
	dns_free(g.dns);
	loop_free(g.loop);
	free((char *)g.params.labels[0]);
	free(g.params.labels);
	free((char *)g.params.mesh_hosts[0]);
	free(g.params.mesh_hosts);
	sbuf_free(&err);
	log_info("main", "drained; exiting");
	return 0;
}
