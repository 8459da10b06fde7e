/* egressgw: the proxy binary.
 *
 * The main thread is the control path: it loads the store, compiles a snapshot, starts the
 * workers, then runs its own loop for the store watcher (inotify), DNS re-resolution of
 * cluster endpoints, the admin endpoint and signals. Workers (proxy/worker.c) run the
 * data path. */
#include "cmd/egressgw/gw.h"

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
#include "proxy/fwd.h"
#include "proxy/overload.h"
#include "proxy/pool.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "http/h2_mem.h"
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
"                           watched: a change reloads it, reading only the files\n"
"                           that changed (the log's summary line counts them)\n"
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
"  --worker-stuck-timeout DURATION\n"
"                           how long a reload waits for each worker thread to take\n"
"                           it (default 10s); a worker still behind is stuck: logged\n"
"                           as NOT applying it, egressgw_worker_stuck, /ready and\n"
"                           /healthz/live answer 503 until it runs again, and later\n"
"                           reloads go on for the other workers without waiting\n"
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
"                           rest is kept for listeners, DNS, admin and reloads.\n"
"                           Upstream connections, all together, are held to the same\n"
"                           number: past it an idle pooled one is closed, else the\n"
"                           request is answered 503 UO (upstream_cx_budget_*). 0: no\n"
"                           limit (a connection that finds no descriptor is closed)\n"
"  --overload-max-heap BYTES\n"
"                           a heap budget, as Envoy's overload manager's fixed_heap\n"
"                           monitor (e.g. 512Mi, 1G; default 0: none): the bytes malloc\n"
"                           has handed out, sampled every --overload-refresh-interval\n"
"                           (default 250ms). At --overload-shrink-heap of it (default\n"
"                           0.90) free heap is returned to the system (malloc_trim);\n"
"                           at --overload-stop-requests (0.95) new requests are answered\n"
"                           503 \"envoy overloaded\" (flag OM); at\n"
"                           --overload-reject-connections (0.98) new connections are\n"
"                           accepted and closed. Metrics envoy_overload_*, /server_info\n"
"  --max-h2-streams N       HTTP/2 streams in flight on downstream connections, all\n"
"                           together (each may hold an upstream connection): default\n"
"                           --max-connections' value, 0: no limit\n"
"  --max-h2-buffer BYTES    response bytes HTTP/2 streams may hold, all together\n"
"                           (default 256Mi, 0: no limit); each stream reserves 128 KiB\n"
"                           of it (a client that does not read stops the upstream read\n"
"                           there). Past either budget, or past half of it on a\n"
"                           connection with 10 streams already, a new stream is\n"
"                           refused (RST_STREAM REFUSED_STREAM); from half of it on,\n"
"                           until a quarter, connections advertise a stream window of\n"
"                           16 KiB instead of 256 KiB. See the user guide,\n"
"                           \"Running it safely\"\n"
"  --log-level LEVEL        debug, info, warn, error (default info)\n"
"  --user NAME              after binding the listeners and the admin port and opening\n"
"                           the access log, and before serving anything, run as NAME\n"
"                           (its uid, gid and groups);\n"
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

/* ---- process hygiene ----
 *
 * Key material lives in this process's memory (TLS contexts, Secrets), so by default the
 * process is not dumpable: no core file, and /proc/PID/mem, environ, fd/ and ptrace are
 * closed to other unprivileged processes of the same user (PR_SET_DUMPABLE 0).
 * --allow-core-dumps keeps it dumpable for debugging.
 *
 * --user NAME drops root once everything that needs it is done: the listeners of the
 * first configuration and the admin port are bound and the access log is open; the
 * worker threads start after it (proxy_run), so no connection is served as root. What the
 * process opens later must be readable by NAME: the store (reloads), the --hosts-file,
 * the --identity files, the files DestinationRules name. A listener on a privileged port
 * (< net.ipv4.ip_unprivileged_port_start, usually 1024) that a reload adds cannot be
 * bound any more; gw_hyg_check_new_listeners says so. Every descriptor the process creates
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
void gw_hyg_check_new_listeners(const struct snap *old, const struct snap *s)
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

/* overload.h: on a worker's thread, after a burst of HTTP/2 streams: its spare stream
 * structs, cached I/O buffers and nghttp2 blocks (a few hundred streams leave about
 * 3.5 MiB a worker, the small blocks scattered over the pages the burst used) are freed
 * before the heap is trimmed. */
static void gw_worker_shed(struct worker *w)
{
	fwd_streams_free(w);
	fwd_buf_cache_stop();
	fwd_buf_cache_start();
	h2_mem_cache_stop();
	h2_mem_cache_start();
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
		{ "worker-stuck-timeout", required_argument, NULL, 'K' },
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
		OVL_OPTIONS,
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
	struct ovl_config ovc;

	/* First of all: nothing read from here on may end up in a core file. */
	hyg_set_dumpable(false);
	memset(&g, 0, sizeof(g));
	g.inotify_fd = -1;
	g.proxy.alog_fd = -1;
	g.proxy.alog_format = ALOG_TEXT;
	g.proxy.drain_timeout_ms = 5000;
	g.proxy.worker_stuck_ms = 10000;
	g.lc.announce_ms = 5000;
	g.lc.sig_fd = -1;
	g.proxy.header_timeout_ms = 60000;
	g.proxy.idle_timeout_ms = 3600 * 1000;
	ovl_config_default(&ovc);
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
		case 'K':
			if (parse_duration_ms(optarg, &g.proxy.worker_stuck_ms) < 0 ||
			    g.proxy.worker_stuck_ms < 1) {
				fprintf(stderr, "egressgw: --worker-stuck-timeout: want a duration above "
				        "0, got \"%s\"\n", optarg);
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
		case OVL_OPT_MAX_HEAP: case OVL_OPT_SHRINK_HEAP: case OVL_OPT_STOP_REQUESTS:
		case OVL_OPT_REJECT_CONNECTIONS: case OVL_OPT_REFRESH:
		case OVL_OPT_MAX_H2_STREAMS: case OVL_OPT_MAX_H2_BUFFER:
			if (ovl_option(&ovc, c, optarg, &err) < 0) {
				fprintf(stderr, "egressgw: %s\n", sbuf_str(&err));
				sbuf_free(&err);
				return 2;
			}
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
	/* Each HTTP/2 stream may hold an upstream descriptor: as many as --max-connections
	 * keeps for upstream connections, unless --max-h2-streams says. */
	if (ovc.max_h2_streams == UINT64_MAX)
		ovc.max_h2_streams = g.proxy.max_dcx;
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
	/* On the load thread too, though nothing waits for it: glibc gives the next load
	 * thread the same malloc arena, so a reload's build reuses the memory the first one
	 * freed instead of growing the main thread's arena (10,000 hosts: 85 -> 124 MB after
	 * one reload when the first build ran here). */
	gw_load_build(&g.load);
	g.snap = g.load.snap;
	secret_cache_log_events(g.params.secrets);
	if (!g.snap) {
		diags_print(&g.load.diags, stderr);
		fprintf(stderr, "egressgw: the configuration in %s has errors; not starting\n", g.store);
		exit(1);
	}
	gw_log_diags(&g.load.diags, LOG_ERROR);
	diags_free(&g.load.diags);
	gw_log_applied(g.snap, &g.load.stats);
	gw_dns_start(&g, g.snap, NULL);

	if (lc_check_listeners(g.snap, &g.proxy) < 0)
		exit(1);
	istats_self_init(&g.proxy.istats_self, g.proxy.role == SNAP_ROLE_GATEWAY, g.params.namespace,
	                 g.params.labels, g.params.identity_dir);
	/* What the process runs under is logged before its listeners open: whoever sees it
	 * listening (an operator, a test) finds these lines already written.
	 * Private keys (OpenSSL's BIGNUMs of loaded keys, the cached Secret values) live in
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
			.prometheus = gw_prom_render, .arg = &g,
		};
	}
	g.admin = admin_start(g.loop, &aaddr, gw_admin_handle, &g);
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
	g.lc.admin = gw_admin_handle;
	g.lc.admin_arg = &g;
	if (status_addr && (sock_addr_parse(status_addr, &saddr) < 0 ||
	                    lc_status_start(&g.lc, &saddr) < 0)) {
		fprintf(stderr, "egressgw: --status %s: %s\n", status_addr, strerror(errno));
		exit(1);
	}
	loop_timer_init(&g.reload_timer, gw_on_reload_timer);
	if (g.load.efd >= 0) {
		loop_io_init(&g.load_io, g.load.efd, gw_on_load_done);
		loop_io_add(g.loop, &g.load_io, LOOP_READ);
	}
	loop_timer_init(&g.retire_timer, gw_on_retire_timer);
	loop_timer_arm(g.loop, &g.retire_timer, 200);
	ovl_start(g.loop, &ovc, &g.proxy, gw_worker_shed);
	if (hyg.user && hyg_drop_privileges(&g, hosts) < 0)
		exit(1);
	/* Only now do the workers take the connections queued on their listeners. */
	if (proxy_run(&g.proxy) < 0) {
		fprintf(stderr, "egressgw: starting worker threads: %s\n", strerror(errno));
		exit(1);
	}
	gw_watch_rebuild(&g);
	if (g.proxy.role == SNAP_ROLE_SIDECAR)
		log_info("main", "egressgw sidecar capturing on %s (%s) with %d worker(s); %zu outbound "
		         "route table(s); admin on %s; store %s", g.proxy.outbound_addr,
		         g.proxy.outbound_policy == PROXY_REGISTRY_ONLY ? "REGISTRY_ONLY" : "ALLOW_ANY",
		         workers, g.snap->noutbound, admin_addr, g.store);
	else
		log_info("main", "egressgw gateway serving %zu listener(s) with %d worker(s); admin on %s; "
		         "store %s", g.snap->nlisteners, workers, admin_addr, g.store);
	/* Until a stop signal's drain has finished (lifecycle.c). */
	loop_run(g.loop);

	proxy_stop(&g.proxy);
	ovl_stop(g.loop);
	admin_stop(g.admin);
	if (g.load.efd >= 0)
		loop_io_del(g.loop, &g.load_io);
	gw_load_fini(&g.load);
	gw_dns_stop(&g);
	proxy_free(&g.proxy);
	gw_retire_collect(&g, true);
	if (g.snap)
		snap_unref(g.snap);
	gw_snap_release_wait();
	secret_cache_free(g.params.secrets);
	if (g.inotify_fd >= 0) {
		loop_io_del(g.loop, &g.inotify_io);
		close(g.inotify_fd);
	}
	gw_watch_fini(&g);
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
