/* l4tls: TLS under a tunnel, both sides (see l4tls.h). */
#include "proxy/l4tls.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "proxy/cluster.h"
#include "proxy/worker.h"

#define L4TLS_BUF 16384
/* How long the relay waits for a handshake, and for the TLS peer to end once the tunnel
 * side has ended (sent close_notify): a peer that stays silent must not hold the
 * descriptors and buffers for ever (Envoy closes the downstream when the upstream closes,
 * after its own close timeout). */
#define L4TLS_HANDSHAKE_MS 10000
#define L4TLS_LINGER_MS    5000

/* One direction: bytes read from one side, not yet all written to the other. */
struct l4tls_dir {
	char buf[L4TLS_BUF];
	size_t len, off;
	bool eof;          /* the reading side ended; passed on once the buffer is out */
	bool shut;         /* the half-close was passed on */
};

struct l4tls {
	struct worker *w;
	struct tls_conn *tls;
	struct loop_io tio, pio;     /* the TLS socket; the plain socketpair end */
	struct loop_timer timer;     /* the handshake's, then the linger after the tunnel ended */
	bool hs_done;
	bool dead;
	/* Client side: told once how the handshake ended (l4tls_wrap_client); NULL after
	 * that, or once the owner cancelled. */
	void (*done)(void *arg, const char *err);
	void *done_arg;
	struct l4tls_dir t2p, p2t;   /* decrypted -> plain; plain -> TLS */
	char peer[128];              /* for messages */
	struct l4tls *next, *prev;
};

static void l4tls_free(struct l4tls *r)
{
	struct worker *w = r->w;

	loop_timer_cancel(w->loop, &r->timer);
	/* Both are closed below and never shared: close() unregisters them. */
	loop_io_forget(w->loop, &r->tio);
	loop_io_forget(w->loop, &r->pio);
	if (r->tls)
		tls_conn_free(r->tls);
	if (r->tio.fd >= 0)
		close(r->tio.fd);
	if (r->pio.fd >= 0)
		close(r->pio.fd);
	if (r->prev)
		r->prev->next = r->next;
	else
		w->l4tls = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r);
}

static void l4tls_set(struct l4tls *r, struct loop_io *io, unsigned interest)
{
	struct loop *loop = r->w->loop;

	if (interest == 0) {
		if (io->registered)
			loop_io_del(loop, io);
	} else if (!io->registered) {
		loop_io_add(loop, io, interest);
	} else if (io->interest != interest) {
		loop_io_mod(loop, io, interest);
	}
}

static bool dir_pending(const struct l4tls_dir *d)
{
	return d->len > d->off;
}

/* TLS -> plain: moves what can move now. Returns -1 when the relay is to end. want_t
 * collects what the TLS side waits for. */
static int l4tls_pump_t2p(struct l4tls *r, unsigned *want_t)
{
	ssize_t n;

	for (;;) {
		if (dir_pending(&r->t2p)) {
			n = send(r->pio.fd, r->t2p.buf + r->t2p.off, r->t2p.len - r->t2p.off,
			         MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0)
				return -1;
			r->t2p.off += (size_t)n;
			if (dir_pending(&r->t2p))
				break;
			r->t2p.len = r->t2p.off = 0;
		}
		if (r->t2p.eof)
			break;
		n = tls_read(r->tls, r->t2p.buf, sizeof(r->t2p.buf));
		if (n == TLS_WANT_READ) {
			*want_t |= LOOP_READ;
			break;
		}
		if (n == TLS_WANT_WRITE) {
			*want_t |= LOOP_WRITE;
			break;
		}
		if (n < 0) {
			log_debug("l4tls", "%s: TLS read: %s", r->peer, tls_conn_error(r->tls));
			return -1;
		}
		if (n == 0)
			r->t2p.eof = true;
		else
			r->t2p.len = (size_t)n;
	}
	if (r->t2p.eof && !dir_pending(&r->t2p) && !r->t2p.shut) {
		shutdown(r->pio.fd, SHUT_WR);
		r->t2p.shut = true;
	}
	return 0;
}

/* plain -> TLS: moves what can move now. Returns -1 when the relay is to end. want_t
 * collects what the TLS side waits for (a TLS write may need a read). */
static int l4tls_pump_p2t(struct l4tls *r, unsigned *want_t)
{
	ssize_t n;

	for (;;) {
		if (dir_pending(&r->p2t)) {
			n = tls_write(r->tls, r->p2t.buf + r->p2t.off, r->p2t.len - r->p2t.off);
			if (n == TLS_WANT_READ) {
				*want_t |= LOOP_READ;
				break;
			}
			if (n == TLS_WANT_WRITE) {
				*want_t |= LOOP_WRITE;
				break;
			}
			if (n < 0) {
				log_debug("l4tls", "%s: TLS write: %s", r->peer, tls_conn_error(r->tls));
				return -1;
			}
			r->p2t.off += (size_t)n;
			if (dir_pending(&r->p2t))
				continue;
			r->p2t.len = r->p2t.off = 0;
		}
		if (r->p2t.eof)
			break;
		n = recv(r->pio.fd, r->p2t.buf, sizeof(r->p2t.buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			return -1;
		if (n == 0)
			r->p2t.eof = true;
		else
			r->p2t.len = (size_t)n;
	}
	if (r->p2t.eof && !dir_pending(&r->p2t) && !r->p2t.shut) {
		int rc = tls_shutdown(r->tls);

		if (rc == TLS_WANT_WRITE)
			*want_t |= LOOP_WRITE;
		else
			r->p2t.shut = true;
	}
	return 0;
}

/* Moves what can move now, both ways; returns -1 when the relay is to end. want_t
 * collects what the TLS side waits for (a TLS write may need a read, and the reverse). */
static int l4tls_pump(struct l4tls *r, unsigned *want_t)
{
	if (l4tls_pump_t2p(r, want_t) < 0 || l4tls_pump_p2t(r, want_t) < 0)
		return -1;
	return r->t2p.shut && r->p2t.shut ? -1 : 0;
}

/* Tells the client side's owner how the handshake ended (err NULL: done), once. */
static void l4tls_tell(struct l4tls *r, const char *err)
{
	void (*done)(void *, const char *) = r->done;

	r->done = NULL;
	if (done)
		done(r->done_arg, err);
}

/* Runs the relay after an event; frees it when it has ended. */
static void l4tls_run(struct l4tls *r)
{
	unsigned want_t = 0, want_p = 0;

	if (!r->hs_done) {
		int rc = tls_handshake(r->tls);

		if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
			l4tls_set(r, &r->tio, rc == TLS_WANT_READ ? LOOP_READ : LOOP_WRITE);
			l4tls_set(r, &r->pio, 0);
			return;
		}
		if (rc < 0) {
			log_warn("l4tls", "TLS to %s failed: %s", r->peer, tls_conn_error(r->tls));
			l4tls_tell(r, tls_conn_error(r->tls));
			l4tls_free(r);
			return;
		}
		r->hs_done = true;
		loop_timer_cancel(r->w->loop, &r->timer);
		/* The owner (the tunnel) opens now: it may write to the plain end, which the
		 * pump below reads. */
		l4tls_tell(r, NULL);
	}
	if (l4tls_pump(r, &want_t) < 0) {
		l4tls_free(r);
		return;
	}
	if (r->p2t.shut && !loop_timer_armed(&r->timer))
		loop_timer_arm(r->w->loop, &r->timer, L4TLS_LINGER_MS);
	/* The plain side: read while the TLS side can take it, write while bytes wait. */
	if (!r->p2t.eof && !dir_pending(&r->p2t))
		want_p |= LOOP_READ;
	if (dir_pending(&r->t2p))
		want_p |= LOOP_WRITE;
	/* The TLS side: read while the plain side can take it (what tls_read asked for). */
	if (dir_pending(&r->t2p) || r->t2p.eof)
		want_t &= ~(unsigned)LOOP_READ;
	else
		want_t |= LOOP_READ;
	l4tls_set(r, &r->tio, want_t);
	l4tls_set(r, &r->pio, want_p);
}

static void l4tls_on_tio(struct loop *loop, struct loop_io *io, unsigned ev)
{
	(void)loop;
	(void)ev;
	l4tls_run(container_of(io, struct l4tls, tio));
}

static void l4tls_on_pio(struct loop *loop, struct loop_io *io, unsigned ev)
{
	(void)loop;
	(void)ev;
	l4tls_run(container_of(io, struct l4tls, pio));
}

/* The handshake took too long, or the TLS peer did not end within the linger after the
 * tunnel side ended: the relay ends (both sockets closed). */
static void l4tls_on_timer(struct loop *loop, struct loop_timer *t)
{
	struct l4tls *r = container_of(t, struct l4tls, timer);

	(void)loop;
	log_debug("l4tls", "%s: %s timed out", r->peer, r->hs_done ? "close" : "handshake");
	if (!r->hs_done)
		l4tls_tell(r, "TLS handshake timed out");
	l4tls_free(r);
}

/* A relay on fd (the TLS socket) with a new socketpair; *plain gets the tunnel's end. */
static struct l4tls *l4tls_new(struct worker *w, int fd, int *plain)
{
	int sp[2];
	struct l4tls *r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
		return NULL;
	r = xcalloc(1, sizeof(*r));
	r->w = w;
	loop_io_init(&r->tio, fd, l4tls_on_tio);
	loop_io_init(&r->pio, sp[0], l4tls_on_pio);
	loop_timer_init(&r->timer, l4tls_on_timer);
	*plain = sp[1];
	{
		struct sock_addr a;

		if (sock_peer_addr(fd, &a) == 0)
			sock_addr_str(&a, r->peer, sizeof(r->peer));
	}
	r->next = w->l4tls;
	if (r->next)
		r->next->prev = r;
	w->l4tls = r;
	return r;
}

int l4tls_wrap_client(struct worker *w, struct loop_io *io, const struct cluster *cl,
                      const char *host, void (*done)(void *arg, const char *err), void *arg,
                      struct l4tls **out)
{
	struct tls_verify_names names;
	struct l4tls *r;
	int plain;

	if (!cl->tls_ctx) {
		errno = EPROTO;
		return -1;
	}
	r = l4tls_new(w, io->fd, &plain);
	if (!r)
		return -1;
	memset(&names, 0, sizeof(names));
	if (cl->nsans) {
		names.sans = (const char *const *)cl->sans;
		names.nsans = cl->nsans;
	} else if (cl->verify_host_auto) {
		names.hostname = cl->host;
	}
	if (io->registered)
		loop_io_del(w->loop, io);
	r->tls = tls_client_new(cl->tls_ctx, io->fd, cl->sni ? cl->sni : host, &names);
	if (cl->h2_alpn) {
		/* The context offers h2 for HTTP; these are opaque bytes. */
		static const char *const none[] = { "http/1.1" };

		tls_client_alpn(r->tls, none, 1);
	}
	io->fd = plain;
	r->done = done;
	r->done_arg = arg;
	*out = r;
	loop_timer_arm(w->loop, &r->timer, L4TLS_HANDSHAKE_MS);
	/* The handshake starts when the loop reports the (connected) socket writable, not
	 * here: done is never called before this returns. */
	l4tls_set(r, &r->tio, LOOP_WRITE);
	return 0;
}

void l4tls_cancel(struct l4tls *r)
{
	r->done = NULL;
	if (!r->hs_done)
		l4tls_free(r);      /* nothing was relayed yet */
}

int l4tls_wrap_server(struct worker *w, struct tls_conn *tls, int fd)
{
	int plain;
	struct l4tls *r = l4tls_new(w, fd, &plain);

	if (!r)
		return -1;
	r->tls = tls;
	r->hs_done = true;
	l4tls_run(r);
	return plain;
}

void l4tls_close_all(struct worker *w)
{
	while (w->l4tls)
		l4tls_free(w->l4tls);
}
