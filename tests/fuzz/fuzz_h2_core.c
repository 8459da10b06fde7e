/* libFuzzer harness: arbitrary HTTP/2 frames through the whole request path.
 *
 * fuzz_h2_server.c stops at the parsed head (h2_request_msg); this one goes on: a real
 * worker (proxy_start, one worker, its loop turned here) with a snapshot built from Istio
 * YAML by store_load + snap_build (ServiceEntries, a DestinationRule with circuit
 * breakers, a VirtualService with matches, a timeout, a rewrite, a redirect, retries, and
 * a DENY AuthorizationPolicy), in the sidecar role, whose capture listener takes HTTP/2
 * with prior knowledge on plain TCP: the same server session and virtual connections
 * (fwd_h2.c, fwd_vconn.c) as the gateway's ALPN h2 streams, without a TLS handshake per
 * input. Requests are routed, authorized, sent over HTTP/1.1 to a loopback upstream this
 * harness answers, and the answers relayed back as HTTP/2.
 *
 * Input: byte 0 chooses how the rest is written (how many bytes per write, the loop
 * turned between writes) and how the upstream answers (content-length, chunked with a
 * trailer, until close, or not at all); the rest follows the client connection preface
 * (added here). After the input the loop settles, the client goes away, and every
 * downstream connection must be gone within a bounded number of turns (a stream or
 * connection that outlives its client is a leak the harness traps); pooled upstream
 * connections are closed so inputs do not share state.
 *
 * Seeds: tests/fuzz/corpus/h2_core/ (made by tests/fuzz/make_h2_core_seeds.py, with
 * python3-h2). Requests name up.test, cb.test or down.test without a port: the sidecar
 * routes them on port 80, whose endpoint port maps to the harness's ephemeral ports. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/store.h"
#include "core/diag.h"
#include "core/log.h"
#include "core/util.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/fwd.h"
#include "proxy/fwd_int.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_UP 32

static const char cfg_fmt[] =
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: up, namespace: default}\n"
	"spec:\n"
	"  hosts: [up.test, cb.test]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1, ports: {http: %u}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: down, namespace: default}\n"
	"spec:\n"
	"  hosts: [down.test]\n"
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1, ports: {http: %u}}]\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: DestinationRule\n"
	"metadata: {name: cb, namespace: default}\n"
	"spec:\n"
	"  host: cb.test\n"
	"  trafficPolicy:\n"
	"    connectionPool:\n"
	"      tcp: {maxConnections: 1}\n"
	"      http: {http1MaxPendingRequests: 1, http2MaxRequests: 4}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1beta1\n"
	"kind: VirtualService\n"
	"metadata: {name: up, namespace: default}\n"
	"spec:\n"
	"  hosts: [up.test]\n"
	"  http:\n"
	"  - name: slow\n"
	"    match: [{uri: {prefix: /slow}}]\n"
	"    timeout: 0.02s\n"
	"    route: [{destination: {host: up.test}}]\n"
	"  - name: rw\n"
	"    match: [{uri: {prefix: /rw/}, headers: {x-a: {exact: b}}}]\n"
	"    rewrite: {uri: /new/, authority: cb.test}\n"
	"    route: [{destination: {host: up.test}}]\n"
	"  - name: redir\n"
	"    match: [{uri: {exact: /redir}}]\n"
	"    redirect: {uri: /there, authority: down.test}\n"
	"  - name: retry\n"
	"    match: [{method: {exact: PUT}}]\n"
	"    retries: {attempts: 2, perTryTimeout: 0.02s, retryOn: \"5xx,reset\"}\n"
	"    route: [{destination: {host: up.test}}]\n"
	"  - name: split\n"
	"    route:\n"
	"    - {destination: {host: up.test}, weight: 50}\n"
	"    - {destination: {host: cb.test}, weight: 50}\n"
	"---\n"
	"apiVersion: security.istio.io/v1\n"
	"kind: AuthorizationPolicy\n"
	"metadata: {name: deny, namespace: default}\n"
	"spec:\n"
	"  action: DENY\n"
	"  rules: [{to: [{operation: {paths: [/deny*], methods: [GET, POST]}}]}]\n";

/* One upstream connection the harness serves. */
struct up {
	int fd;
	size_t seen;          /* request heads answered */
	char tail[4];         /* the last bytes read, for a head end split across reads */
	bool closed;
};

static struct {
	char root[64];
	struct store_contents contents;
	struct diags d;
	struct snap *s;
	struct proxy p;
	struct worker *w;
	int up_lfd;
	uint16_t cap_port;
	struct up up[MAX_UP];
	size_t nup;
} g;

static void fz_trap(void)
{
	__builtin_trap();
}

static int listen_any(uint16_t *port)
{
	struct sock_addr a;
	int fd;

	if (sock_addr_from_ip("127.0.0.1", 0, &a) < 0)
		fz_trap();
	fd = sock_listen(&a, 0, 0);
	if (fd < 0 || sock_local_addr(fd, &a) < 0)
		fz_trap();
	*port = sock_addr_port(&a);
	return fd;
}

/* Once per process: store, snapshot, worker. Failing here is a broken harness: trap. */
static void setup(void)
{
	static const char *labels[] = { "app=client", NULL };
	struct snap_params sp;
	uint16_t up_port, dead_port;
	char *path, *yaml;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	log_min_level = LOG_ERROR + 1;       /* the fuzzer's output stays its own */
	snprintf(g.root, sizeof(g.root), "/tmp/fuzz_h2_core.XXXXXX");
	if (!mkdtemp(g.root))
		fz_trap();
	g.up_lfd = listen_any(&up_port);
	fd = listen_any(&dead_port);
	close(fd);
	fd = listen_any(&g.cap_port);
	close(fd);

	path = xasprintf("%s/config", g.root);
	if (mkdir_p(path, 0700) < 0)
		fz_trap();
	free(path);
	path = xasprintf("%s/config/core.yaml", g.root);
	yaml = xasprintf(cfg_fmt, up_port, dead_port);
	if (file_write_atomic(path, yaml, strlen(yaml), 0600) < 0)
		fz_trap();
	free(yaml);
	free(path);
	if (store_load(g.root, "default", &g.contents, &g.d) < 0) {
		diags_print(&g.d, stderr);
		fz_trap();
	}
	memset(&sp, 0, sizeof(sp));
	sp.role = SNAP_ROLE_SIDECAR;
	sp.namespace = "default";
	sp.labels = labels;
	sp.listen_address = "127.0.0.1";
	sp.store_root = g.root;
	g.s = snap_build(&g.contents, &sp, &g.d);
	if (!g.s) {
		diags_print(&g.d, stderr);
		fz_trap();
	}
	g.p.role = SNAP_ROLE_SIDECAR;
	if (sock_addr_from_ip("127.0.0.1", g.cap_port, &g.p.outbound) < 0)
		fz_trap();
	g.p.outbound_addr = "127.0.0.1";
	g.p.outbound_on = true;
	g.p.outbound_policy = PROXY_REGISTRY_ONLY;
	g.p.alog_fd = -1;
	g.p.worker_stuck_ms = 10000;
	g.p.header_timeout_ms = 10000;
	g.p.idle_timeout_ms = 60000;
	if (proxy_start(&g.p, 1, g.s) < 0)
		fz_trap();
	g.w = &g.p.workers[0];
}

/* The upstream's answer, by mode. */
static void up_answer(struct up *u, unsigned mode)
{
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
		"grpc-status: 0\r\n\r\n",
		"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
	};
	const char *a;

	if (mode == 4)
		return;                       /* never answers: the route's timeout does */
	a = answers[mode];
	if (send(u->fd, a, strlen(a), MSG_NOSIGNAL) < 0)
		u->closed = true;
	if (mode == 3) {
		shutdown(u->fd, SHUT_WR);
		u->closed = true;
	}
}

/* Accepts, reads and answers what the worker sent upstream. Returns true on progress. */
static bool up_serve(unsigned mode)
{
	bool moved = false;
	int fd;

	while (g.nup < MAX_UP && (fd = sock_accept(g.up_lfd, NULL)) >= 0) {
		memset(&g.up[g.nup], 0, sizeof(g.up[g.nup]));
		g.up[g.nup++].fd = fd;
		moved = true;
	}
	for (size_t i = 0; i < g.nup; i++) {
		struct up *u = &g.up[i];
		char buf[16384 + 4];
		ssize_t n;

		if (u->closed)
			continue;
		while ((n = read(u->fd, buf + 4, sizeof(buf) - 4)) > 0) {
			moved = true;
			memcpy(buf, u->tail, 4);
			/* A head end that ends in the new bytes (one wholly in the tail was
			 * counted with the read before). */
			for (const char *p = buf + 1;
			     (p = memmem(p, (size_t)n + 4 - (size_t)(p - buf), "\r\n\r\n", 4)) != NULL;
			     p += 4)
				up_answer(u, mode), u->seen++;
			memcpy(u->tail, buf + n, 4);
		}
		if (n == 0) {
			u->closed = true;
			moved = true;
		}
	}
	return moved;
}

static void up_close_all(void)
{
	for (size_t i = 0; i < g.nup; i++)
		close(g.up[i].fd);
	g.nup = 0;
}

/* Reads and drops what the worker sent the client. Returns true on progress. */
static bool client_drain(int c)
{
	char buf[65536];
	bool moved = false;

	while (read(c, buf, sizeof(buf)) > 0)
		moved = true;
	return moved;
}

/* Turns the loop (waiting at most wait_ms for events), serving both peers, until three
 * quiet rounds in a row (or max). */
static void settle(int c, unsigned mode, int max, int wait_ms)
{
	for (int quiet = 0, i = 0; quiet < 3 && i < max; i++) {
		bool moved = up_serve(mode);

		if (c >= 0)
			moved |= client_drain(c);
		if (loop_run_once(g.w->loop, wait_ms) > 0)
			moved = true;
		quiet = moved ? 0 : quiet + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct sock_addr a;
	size_t step, off = 0;
	unsigned mode;
	int c, i;

	if (size < 1)
		return 0;
	if (!g.w)
		setup();
	mode = (data[0] >> 4) % 5;
	step = 1 + (size_t)(data[0] & 0x0f) * 193;
	data++;
	size--;

	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || sock_addr_from_ip("127.0.0.1", g.cap_port, &a) < 0 ||
	    connect(c, &a.u.sa, a.len) < 0 || sock_set_nonblock(c) < 0)
		fz_trap();
	if (send(c, preface, 24, MSG_NOSIGNAL) != 24)
		fz_trap();
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		ssize_t k = send(c, data + off, n, MSG_NOSIGNAL);

		if (k > 0)
			off += (size_t)k;
		else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break;                    /* the worker closed: the rest is moot */
		settle(c, mode, k > 0 ? 4 : 50, 0);
	}
	settle(c, mode, 200, 1);
	close(c);

	/* The client is gone: so must be its connection and streams, whatever they were
	 * waiting for. */
	for (i = 0; i < 2000 && g.w->dconns; i++)
		settle(-1, mode, 1, 1);
	if (getenv("FUZZ_H2_CORE_DEBUG"))
		fprintf(stderr, "settled after close: %d turns; %zu upstream connections, "
		        "%llu upstream requests so far\n", i, g.nup,
		        (unsigned long long)STAT_GET(g.w->st.urq_total));
	if (g.w->dconns)
		fz_trap();
	up_close_all();
	fwd_pool_close_all(g.w);
	settle(-1, mode, 20, 0);
	return 0;
}
