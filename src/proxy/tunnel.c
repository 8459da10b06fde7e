/* tunnel: opaque TCP relays (see tunnel.h).
 *
 * Lifetime: a tunnel is freed only at its settle point (tun_settle, the end of each
 * top-level handler: socket events, timers, the DNS callback); code below marks it dead.
 * Registration: each socket is registered once, edge-triggered, for both directions and
 * the peer's half-close (TUN_IO), as nginx registers a connection: no epoll_ctl while the
 * tunnel relays, none when a direction ends, none at close (loop_io_forget: the sockets
 * are the proxy's own, close() takes them out of the epoll set). The downstream socket
 * usually arrives registered by the HTTP side, whose registration is handed over with
 * one EPOLL_CTL_MOD (loop_io_move). Edge-triggering means the tunnel keeps what the loop
 * said: a direction's source is "ready" from a read edge until a read drains it (EAGAIN,
 * a short read, or the end), its destination "blocked" from a write that would block
 * until a write edge; work left when the per-event budget runs out goes to a task. */
#include "proxy/tunnel.h"
#include "proxy/fwd.h"
#include "proxy/l4tls.h"
#include "proxy/sidecar.h"
#include "proxy/worker.h"
#include "core/log.h"
#include "core/util.h"
#include "net/dns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TUN_BUF      (64 * 1024)
#define TUN_IDLE_MS  (3600 * 1000)   /* Envoy's tcp_proxy idle_timeout default */
#define TUN_ROUNDS   16              /* reads per direction per event (fairness) */


/* One direction: bytes read from src and not yet written to dst. */
struct tdir {
	char *buf;         /* cap bytes, from the worker's buffer cache (fwd_buf_get) */
	size_t cap;
	size_t off, len;
	bool eof;          /* src ended (read returned 0, or a short read after rdhup) */
	bool shut;         /* dst's write side has been shut down after eof */
	bool ready;        /* src had a read edge and no read has drained it since */
	bool rdhup;        /* src's peer has shut its side (EPOLLRDHUP): a short read is the end */
	bool blocked;      /* a write to dst would block: wait for its write edge */
	uint64_t bytes;    /* read from src (initial bytes included) */
};

enum tun_state {
	TUN_RESOLVING,
	TUN_CONNECTING,
	TUN_HANDSHAKE,                 /* connected; l4tls.c's TLS handshake under way */
	TUN_OPEN,
};

struct tun {
	struct worker *w;
	struct snap *snap;
	struct cluster *cl;
	const char *route_name;        /* static string or NULL */
	struct loop_io dio, uio;
	struct loop_timer timer;       /* connect timeout, then idle timeout */
	struct loop_task task;         /* relaying left over when TUN_ROUNDS ran out */
	struct dns_query *dnsq;
	enum tun_state state;
	bool dead;
	bool connect;                  /* CONNECT: reply with a status line */
	bool up_counted;               /* counted in ucx_active */
	struct hstats_host *hs;        /* its endpoint's counters (hstats.h), or NULL */
	bool originate_tls;            /* tun_req.originate_tls */
	struct l4tls *l4;              /* the TLS relay while its handshake is under way */
	struct tdir d2u, u2d;
	uint64_t last_bytes;           /* d2u.bytes + u2d.bytes at the last idle check */
	char name[256];
	uint16_t port;
	struct sock_addr ep;
	char ep_str[SOCK_ADDR_STRLEN], up_local[SOCK_ADDR_STRLEN];
	char local_s[SOCK_ADDR_STRLEN], remote_s[SOCK_ADDR_STRLEN];
	char sni[256], authority[300], ua[256], reqid[64], protocol[12];
	int code;
	unsigned flags;
	const char *details;
	char reason[600];
	int64_t start_wall_ms;
	uint64_t start_ms;
	struct tun *next, *prev;
};

static void tun_connect(struct tun *t);
static void tun_settle(struct tun *t);

/* Every socket's one registration (see the file comment). */
#define TUN_IO (LOOP_READ | LOOP_WRITE | LOOP_EDGE | LOOP_RDHUP)

static void copy_str(char *dst, size_t n, const char *src)
{
	str_copy(dst, n, src ? src : "");
}

/* ---- registration and readiness ---- */

/* Registers io once (TUN_IO); a tunnel that cannot be registered would never be woken,
 * so it ends. */
static void tun_io_reg(struct tun *t, struct loop_io *io)
{
	if (io->fd < 0 || io->registered)
		return;
	if (loop_io_add(t->w->loop, io, TUN_IO) < 0) {
		snprintf(t->reason, sizeof(t->reason), "epoll_ctl: %s", strerror(errno));
		t->dead = true;
	}
}

/* What the loop reported on the socket that src reads from and out writes to. */
static void tun_note(struct tdir *src, struct tdir *out, unsigned ev)
{
	if (ev & (LOOP_READ | LOOP_ERROR))
		src->ready = true;
	if (ev & LOOP_RDHUP)
		src->rdhup = true;
	if (ev & (LOOP_WRITE | LOOP_ERROR))
		out->blocked = false;
}

/* d's buffer: taken from the worker thread's cache rather than malloc'd and freed per
 * connection (two 64 KiB buffers per tunnel made glibc trim and refault its heap: 4-7% of
 * a short connection's CPU in scenario 6's profile). */
static void tdir_buf(struct tdir *d, size_t cap)
{
	d->buf = fwd_buf_get(cap);
	d->cap = cap;
}

static bool tdir_pending(const struct tdir *d)
{
	return d->len > d->off;
}

/* Registers what is not yet: the downstream socket from the start (its events before the
 * tunnel opens are kept as readiness), the upstream one once it connects (during TLS
 * origination it is l4tls.c's plain end, registered when the handshake is done). */
static void tun_update(struct tun *t)
{
	if (t->dead)
		return;
	tun_io_reg(t, &t->dio);
	if (t->state == TUN_CONNECTING || t->state == TUN_OPEN)
		tun_io_reg(t, &t->uio);
}

/* ---- the end ---- */

static void tun_log(struct tun *t)
{
	struct worker *w = t->w;
	struct alog_entry e;
	struct alog_str none = { NULL, 0 };

	if (t->connect)
		STAT_INC(w->st.resp[t->code >= 100 && t->code < 600 ? t->code / 100 : 0]);
	if (!w->proxy->alog_on)
		return;
	memset(&e, 0, sizeof(e));
	e.start_ms = t->start_wall_ms;
	if (t->connect) {
		e.method.p = "CONNECT";
		e.method.len = 7;
		e.protocol.p = t->protocol;
		e.protocol.len = strlen(t->protocol);
		e.user_agent.p = t->ua;
		e.user_agent.len = strlen(t->ua);
		e.request_id.p = t->reqid;
		e.request_id.len = strlen(t->reqid);
		e.authority.p = t->authority;
		e.authority.len = strlen(t->authority);
	}
	e.path = none;
	e.response_code = t->code;
	e.flags = t->flags;
	e.details.p = t->details;
	e.details.len = t->details ? strlen(t->details) : 0;
	e.tls_failure.p = t->reason;
	e.tls_failure.len = strlen(t->reason);
	e.bytes_received = t->d2u.bytes;
	e.bytes_sent = t->u2d.bytes;
	e.duration_ms = (int64_t)(loop_now_ms(w->loop) - t->start_ms);
	e.upstream_service_time = -1;
	e.upstream_host.p = t->ep_str;
	e.upstream_host.len = strlen(t->ep_str);
	e.upstream_cluster.p = t->cl ? t->cl->name : NULL;
	e.upstream_cluster.len = t->cl ? strlen(t->cl->name) : 0;
	e.upstream_local.p = t->up_local;
	e.upstream_local.len = strlen(t->up_local);
	e.downstream_local.p = t->local_s;
	e.downstream_local.len = strlen(t->local_s);
	e.downstream_remote.p = t->remote_s;
	e.downstream_remote.len = strlen(t->remote_s);
	e.sni.p = t->sni;
	e.sni.len = strlen(t->sni);
	e.route_name.p = t->route_name;
	e.route_name.len = t->route_name ? strlen(t->route_name) : 0;
	worker_alog(w, &e);
}

/* The tunnel's label set in Istio's TCP families (istats.h). */
static void tun_istats_rec(const struct tun *t, unsigned flags, struct istats_tcp_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->flags = flags;
	if (t->cl == &sidecar_passthrough_cluster || t->cl == &sidecar_blackhole_cluster) {
		r->dst_service = t->name[0] ? t->name : t->sni[0] ? t->sni : NULL;
		r->dst_name = t->cl->name;
	} else if (t->cl) {
		r->dst_service = t->cl->host;
	}
}

static void tun_free(struct tun *t)
{
	struct worker *w = t->w;
	struct istats_tcp_rec rec;

	tun_istats_rec(t, t->flags, &rec);
	istats_tcp_close(w->istats, &rec, t->u2d.bytes, t->d2u.bytes);

	if (t->dnsq)
		dns_cancel(t->dnsq);
	if (t->l4)
		l4tls_cancel(t->l4);
	loop_timer_cancel(w->loop, &t->timer);
	loop_task_cancel(w->loop, &t->task);
	/* Closed right below, never shared: close() unregisters them. */
	loop_io_forget(w->loop, &t->dio);
	loop_io_forget(w->loop, &t->uio);
	if (t->dio.fd >= 0) {
		close(t->dio.fd);
		worker_dcx_closed(w);
	}
	if (t->uio.fd >= 0)
		close(t->uio.fd);
	if (t->up_counted)
		STAT_DEC(w->st.ucx_active);
	hstats_cx_close(t->hs);
	if (t->prev)
		t->prev->next = t->next;
	else
		w->tunnels = t->next;
	if (t->next)
		t->next->prev = t->prev;
	if (t->snap)
		snap_unref(t->snap);
	STAT_ADD(w->st.bytes_in, t->d2u.bytes);
	STAT_ADD(w->st.bytes_out, t->u2d.bytes);
	STAT_DEC(w->st.tun_active);
	STAT_DEC(w->st.dcx_active);
	w->nconns--;
	fwd_buf_put(t->d2u.buf, t->d2u.cap);
	fwd_buf_put(t->u2d.buf, t->u2d.cap);
	free(t);
}

static void tun_settle(struct tun *t)
{
	if (!t->dead && t->d2u.shut && t->u2d.shut)
		t->dead = true;
	if (!t->dead)
		return;
	tun_log(t);
	tun_free(t);
}

/* The tunnel cannot be made. A CONNECT client gets an HTTP answer (best effort: a short
 * reply fits in any socket buffer), others see the connection close. */
static void tun_fail(struct tun *t, int code, unsigned flag, const char *details,
                     const char *reason)
{
	t->flags |= flag;
	t->details = details;
	copy_str(t->reason, sizeof(t->reason), reason);
	if (t->connect) {
		char msg[512];
		int n;

		t->code = code;
		n = snprintf(msg, sizeof(msg),
		             "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\ncontent-type: text/plain\r\n"
		             "connection: close\r\n\r\n%s%s%s\n",
		             code, code == 502 ? "Bad Gateway" : code == 403 ? "Forbidden" :
		             code == 404 ? "Not Found" : "Service Unavailable",
		             strlen(details) + (reason && *reason ? strlen(reason) + 2 : 0) + 1,
		             details, reason && *reason ? ": " : "", reason ? reason : "");
		if (n > 0 && write(t->dio.fd, msg, (size_t)n) < 0)
			log_debug("tunnel", "CONNECT reply to %s: %s", t->remote_s, strerror(errno));
	}
	t->dead = true;
}

/* ---- relaying ---- */

/* Moves bytes src -> dst until either would block. Returns -1 when the tunnel must end
 * (reason set), 1 when the round budget ran out with bytes still to move (the caller
 * posts the task), else 0. src is read while it is ready (see the file comment): not
 * again after a short read, which emptied its receive queue (a read that would only say
 * EAGAIN is a system call per event saved, as in HAProxy's and nginx's relays), and a
 * short read after the peer's half-close is the end of the stream without the read that
 * would return 0. other is the opposite direction: when it has ended too, the half-close
 * is left to close(). */
static int tdir_pump(struct tun *t, struct tdir *d, const struct tdir *other, int src, int dst,
                     const char *src_name)
{
	int rounds;

	for (rounds = 0; rounds < TUN_ROUNDS; rounds++) {
		ssize_t n;

		if (tdir_pending(d)) {
			if (d->blocked)
				break;
			n = write(dst, d->buf + d->off, d->len - d->off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				d->blocked = true;
				break;
			}
			if (n <= 0) {
				snprintf(t->reason, sizeof(t->reason), "write to %s: %s",
				         src_name[0] == 'd' ? "upstream" : "downstream", strerror(errno));
				return -1;
			}
			d->off += (size_t)n;
			if (d->off < d->len) {
				d->blocked = true;   /* the socket is full: its write edge follows */
				break;
			}
			d->off = d->len = 0;
			continue;
		}
		if (d->eof || !d->ready)
			break;
		if (!d->buf)
			tdir_buf(d, TUN_BUF);
		n = read(src, d->buf, TUN_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			d->ready = false;
			break;
		}
		if (n < 0) {
			snprintf(t->reason, sizeof(t->reason), "read from %s: %s", src_name,
			         strerror(errno));
			return -1;
		}
		if (n == 0) {
			d->eof = true;
			break;
		}
		d->len = (size_t)n;
		d->bytes += (uint64_t)n;
		if ((size_t)n < TUN_BUF) {
			/* The queue is empty: write this out, then wait for the next edge. */
			d->ready = false;
			if (d->rdhup)
				d->eof = true;
		}
	}
	if (d->eof && !tdir_pending(d) && !d->shut) {
		/* Pass the half-close on: the other side may still answer. Once the other way
		 * has ended too, the tunnel closes both sockets now, and close() sends the FIN
		 * (nothing is left unread on dst: the other way read it to its end). */
		if (!other->shut)
			shutdown(dst, SHUT_WR);
		d->shut = true;
	}
	if (rounds == TUN_ROUNDS && (tdir_pending(d) ? !d->blocked : d->ready && !d->eof))
		return 1;
	return 0;
}

/* Relays what can move, both ways (after an event, the task, or the opening). */
static void tun_pump(struct tun *t)
{
	int a, b = 0;

	if (t->dead || t->state != TUN_OPEN)
		return;
	a = tdir_pump(t, &t->d2u, &t->u2d, t->dio.fd, t->uio.fd, "downstream");
	if (a >= 0)
		b = tdir_pump(t, &t->u2d, &t->d2u, t->uio.fd, t->dio.fd, "upstream");
	if (a < 0 || b < 0) {
		/* A reset on either side ends both, as Envoy's tcp_proxy does. */
		log_debug("tunnel", "%s -> %s (%s): %s", t->remote_s, t->ep_str, t->cl->name, t->reason);
		t->reason[0] = '\0';
		t->dead = true;
		return;
	}
	/* Edge-triggered: no event will come for what is left; the task comes back to it
	 * after the other connections' events (fairness). */
	if (a > 0 || b > 0)
		loop_task_post(t->w->loop, &t->task);
}

static void tun_on_task(struct loop *loop, struct loop_task *task)
{
	struct tun *t = container_of(task, struct tun, task);

	(void)loop;
	tun_pump(t);
	tun_settle(t);
}

/* ---- events ---- */

/* The upstream connection is made (and its TLS, if any): bytes flow; a CONNECT client
 * gets its 200 first. */
static void tun_open(struct tun *t)
{
	struct worker *w = t->w;

	t->state = TUN_OPEN;
	loop_timer_arm(w->loop, &t->timer, TUN_IDLE_MS);
	if (t->connect) {
		static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

		/* The reply goes down before any upstream byte: u2d is empty until now. */
		t->code = 200;
		t->details = "via_upstream";
		tdir_buf(&t->u2d, TUN_BUF);
		memcpy(t->u2d.buf, ok, sizeof(ok) - 1);
		t->u2d.len = sizeof(ok) - 1;
	}
	/* What is here moves now (the initial bytes, the CONNECT's reply, what the loop
	 * reported readable while connecting); the rest follows the sockets' edges. */
	tun_update(t);
	tun_pump(t);
}

/* l4tls.c's handshake ended (a top-level handler: the loop's event on the relay). A
 * failure is Envoy's upstream connection failure: UF, with the TLS reason as
 * UPSTREAM_TRANSPORT_FAILURE_REASON; a CONNECT client gets 503, not 200. */
static void tun_on_tls(void *arg, const char *err)
{
	struct tun *t = arg;

	t->l4 = NULL;
	if (err) {
		STAT_INC(t->w->st.ucx_connect_fail);
		tun_fail(t, 503, ALOG_F_UF,
		         "upstream_reset_before_response_started{connection_failure}", err);
	} else {
		tun_open(t);
	}
	tun_settle(t);
}

static void tun_connected(struct tun *t)
{
	struct worker *w = t->w;
	struct sock_addr la;

	if (sock_connect_result(t->uio.fd) < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(w->st.ucx_connect_fail);
		tun_fail(t, 503, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
		         reason);
		return;
	}
	/* UPSTREAM_LOCAL_ADDRESS is only logged: no getsockname when nothing is. */
	if (w->proxy->alog_on && sock_local_addr(t->uio.fd, &la) == 0)
		sock_addr_str(&la, t->up_local, sizeof(t->up_local));
	/* A DestinationRule's TLS (the sidecar's ISTIO_MUTUAL hop around the application's
	 * TLS): l4tls.c speaks it on the socket, the tunnel relays plain bytes to it once the
	 * handshake is done (tun_on_tls); until then the connection is not made. */
	if (t->originate_tls) {
		/* uio becomes the plain end (unregistered, registered at tun_open): what the
		 * loop said of the TCP socket is l4tls.c's now. */
		t->u2d.ready = t->u2d.rdhup = false;
		t->d2u.blocked = false;
		if (l4tls_wrap_client(w, &t->uio, t->cl, t->sni[0] ? t->sni : t->name, tun_on_tls,
		                      t, &t->l4) < 0) {
			STAT_INC(w->st.ucx_connect_fail);
			tun_fail(t, 503, ALOG_F_UF,
			         "upstream_reset_before_response_started{connection_failure}",
			         t->cl->tls_ctx_error ? t->cl->tls_ctx_error : "no TLS context");
			return;
		}
		t->state = TUN_HANDSHAKE;
		return;
	}
	tun_open(t);
}

static void tun_on_uio(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct tun *t = container_of(io, struct tun, uio);

	(void)loop;
	tun_note(&t->u2d, &t->d2u, ev);
	if (t->state == TUN_CONNECTING) {
		if (ev & (LOOP_WRITE | LOOP_ERROR))
			tun_connected(t);
	} else {
		tun_pump(t);
	}
	tun_settle(t);
}

static void tun_on_dio(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct tun *t = container_of(io, struct tun, dio);

	(void)loop;
	tun_note(&t->d2u, &t->u2d, ev);
	if (t->state == TUN_OPEN) {
		tun_pump(t);
	} else if (tdir_pending(&t->u2d)) {
		t->dead = true;         /* only a failure reply is ever sent before OPEN */
	}
	/* Before OPEN the readiness is kept for tun_open: the client's early bytes or end. */
	tun_settle(t);
}

static void tun_on_timer(struct loop *loop, struct loop_timer *tm)
{
	struct tun *t = container_of(tm, struct tun, timer);
	uint64_t total = t->d2u.bytes + t->u2d.bytes;

	(void)loop;
	if (t->state != TUN_OPEN) {
		STAT_INC(t->w->st.ucx_connect_timeout);
		tun_fail(t, 503, ALOG_F_UF,
		         "upstream_reset_before_response_started{connection_timeout}",
		         "connection timeout");
	} else if (total != t->last_bytes) {
		/* Bytes moved since the last check: not idle. One timer per tunnel, re-armed
		 * here rather than on every read. */
		t->last_bytes = total;
		loop_timer_arm(t->w->loop, &t->timer, TUN_IDLE_MS);
	} else {
		t->details = "idle_timeout";
		t->dead = true;
	}
	tun_settle(t);
}

static void tun_set_ep(struct tun *t, const struct sock_addr *a, uint16_t port)
{
	t->ep = *a;
	if (port)
		sock_addr_set_port(&t->ep, port);
	sock_addr_str(&t->ep, t->ep_str, sizeof(t->ep_str));
}

static void tun_resolved(struct tun *t, const struct dns_result *res);

static void tun_on_dns(void *arg, const struct dns_result *res)
{
	struct tun *t = arg;

	t->dnsq = NULL;
	tun_resolved(t, res);
	tun_settle(t);
}

/* ---- start ---- */

static void tun_connect(struct tun *t)
{
	struct worker *w = t->w;
	int fd, rc;

	STAT_INC(w->st.urq_total);
	if (proxy_is_self(w->proxy, &t->ep)) {
		log_warn("tunnel", "%s: refused: %s is this proxy's own listener or admin address",
		         t->remote_s, t->ep_str);
		tun_fail(t, 403, 0, "proxy_loop_detected", "the proxy's own address");
		return;
	}
	rc = sock_connect(&t->ep, NULL, &fd);
	if (rc < 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "delayed connect error: %s", strerror(errno));
		STAT_INC(w->st.ucx_connect_fail);
		tun_fail(t, 503, ALOG_F_UF, "upstream_reset_before_response_started{connection_failure}",
		         reason);
		return;
	}
	loop_io_init(&t->uio, fd, tun_on_uio);
	STAT_INC(w->st.ucx_total);
	STAT_INC(w->st.ucx_active);
	t->up_counted = true;
	t->hs = hstats_cx_open(istats_hosts(w->istats), t->cl, t->ep_str);
	t->state = TUN_CONNECTING;
	loop_timer_arm(w->loop, &t->timer,
	               (uint64_t)(t->cl->connect_timeout_ms > 0 ? t->cl->connect_timeout_ms : 10000));
	if (rc == 0)
		tun_connected(t);
	else
		tun_update(t);
}

/* Connects to the first address of a resolution, or fails with DF. */
static void tun_resolved(struct tun *t, const struct dns_result *res)
{
	if (res->status != DNS_OK || res->n == 0) {
		char reason[512];

		STAT_INC(t->w->st.dns_fail);
		snprintf(reason, sizeof(reason), "resolving %s: %s", t->name, res->reason);
		tun_fail(t, 503, ALOG_F_DF, "dns_resolution_failure", reason);
		return;
	}
	tun_set_ep(t, &res->addrs[0].addr, t->port);
	tun_connect(t);
}

/* Picks where to connect; connects, resolves, or fails. */
static void tun_route(struct tun *t, const struct tun_req *r)
{
	struct worker *w = t->w;
	struct cluster *cl = t->cl;
	struct dns_result res;

	if (r->fail_flags || r->fail_denied) {
		tun_fail(t, r->fail_code ? r->fail_code : 503, r->fail_flags, r->fail_details,
		         r->fail_reason);
		return;
	}
	if (cl == &sidecar_blackhole_cluster) {
		/* REGISTRY_ONLY: Envoy's BlackHoleCluster has no endpoints. */
		STAT_INC(w->st.blackhole);
		t->flags |= ALOG_F_UH;
		t->dead = true;
		return;
	}
	if (cl == &sidecar_passthrough_cluster)
		STAT_INC(w->st.passthrough);
	if (cl->discovery != CLUSTER_ORIGINAL_DST) {
		struct cluster_eps *eps = cluster_eps_load(cl);
		uint32_t *rr = cl->index < w->nrr ? &w->rr[cl->index] : &w->rr[0];
		const struct cluster_ep *ep = cluster_pick(cl, eps, rr, NULL, worker_rand(w));

		if (!ep) {
			if (atomic_load_explicit(&cl->dns_failed, memory_order_relaxed)) {
				STAT_INC(w->st.dns_fail);
				tun_fail(t, 503, ALOG_F_DF, "dns_resolution_failure", cl->dns_error);
			} else {
				STAT_INC(w->st.no_healthy);
				tun_fail(t, 503, ALOG_F_UH, "no_healthy_upstream", NULL);
			}
			return;
		}
		tun_set_ep(t, &ep->addr, 0);
		tun_connect(t);
	} else if (r->dst) {
		tun_set_ep(t, r->dst, 0);
		tun_connect(t);
	} else if (!w->dns || !t->name[0]) {
		tun_fail(t, 503, ALOG_F_DF, "dns_resolution_failure", "no name to resolve");
	} else if (dns_resolve_local(w->dns, t->name, AF_UNSPEC, &res) == 0) {
		tun_resolved(t, &res);
	} else {
		t->state = TUN_RESOLVING;
		t->dnsq = dns_resolve(w->dns, t->name, AF_UNSPEC, tun_on_dns, t);
	}
}

void tun_start(struct worker *w, const struct tun_req *r)
{
	struct tun *t = xcalloc(1, sizeof(*t));

	t->w = w;
	t->snap = r->snap ? snap_ref(r->snap) : NULL;
	t->cl = r->cl;
	t->route_name = r->route_name;
	t->connect = r->connect;
	t->originate_tls = r->originate_tls;
	t->start_wall_ms = r->start_wall_ms;
	t->start_ms = r->start_ms;
	t->port = r->port;
	copy_str(t->name, sizeof(t->name), r->name);
	copy_str(t->local_s, sizeof(t->local_s), r->local_s);
	copy_str(t->remote_s, sizeof(t->remote_s), r->remote_s);
	copy_str(t->sni, sizeof(t->sni), r->sni);
	copy_str(t->authority, sizeof(t->authority), r->authority);
	copy_str(t->ua, sizeof(t->ua), r->user_agent);
	copy_str(t->reqid, sizeof(t->reqid), r->request_id);
	copy_str(t->protocol, sizeof(t->protocol), r->protocol ? r->protocol : "HTTP/1.1");
	loop_io_init(&t->dio, r->fd, tun_on_dio);
	loop_io_init(&t->uio, -1, tun_on_uio);
	loop_timer_init(&t->timer, tun_on_timer);
	loop_task_init(&t->task, tun_on_task);
	/* The HTTP side's registration, taken over (one epoll_ctl instead of two); if that
	 * fails, tun_update registers the socket anew. */
	if (r->reg && loop_io_move(w->loop, r->reg, &t->dio, TUN_IO) < 0)
		t->dio.fd = r->fd;
	if (r->ninitial) {
		tdir_buf(&t->d2u, TUN_BUF > r->ninitial ? TUN_BUF : r->ninitial);
		memcpy(t->d2u.buf, r->initial, r->ninitial);
		t->d2u.len = r->ninitial;
		t->d2u.bytes = r->ninitial;
	}
	t->next = w->tunnels;
	if (t->next)
		t->next->prev = t;
	w->tunnels = t;
	w->nconns++;
	STAT_INC(w->st.dcx_active);
	STAT_INC(w->st.tun_total);
	STAT_INC(w->st.tun_active);
	{
		struct istats_tcp_rec rec;

		tun_istats_rec(t, 0, &rec);
		istats_tcp_open(w->istats, &rec);
	}
	tun_route(t, r);
	tun_settle(t);
}

void tun_close_all(struct worker *w)
{
	while (w->tunnels) {
		struct tun *t = w->tunnels;

		if (!t->details)
			t->details = "drain";
		t->dead = true;
		tun_settle(t);
	}
}
