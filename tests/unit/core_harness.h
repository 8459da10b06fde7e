/* core_harness: what the request core's unit tests share (test_core.c, test_core_h2.c).
 *
 * The core runs in a real worker (proxy_start with one worker, its thread never started)
 * whose event loop the test turns itself, one loop_run_once at a time, between moves of
 * its own peers on 127.0.0.1: clients of the worker's listener (the Gateway's, or the
 * sidecar's capture listener) and an upstream server the test accepts on (or a port
 * nobody listens on). The snapshot is built from the test's Istio YAML through store_load
 * and snap_build, as egressgw builds it. The codec tables the core calls (fwd_int.h
 * fwd_down, fwd_up) are replaced by recording ones that pass each call on to the codecs
 * fwd_init chose: what the core asked for (local replies with their status, access log
 * flags and details; response heads; upstream attempts) is checked next to what the
 * client got. Failures are cmocka assertions. */
#ifndef EGRESS_TESTS_CORE_HARNESS_H
#define EGRESS_TESTS_CORE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/store.h"
#include "core/diag.h"
#include "core/sbuf.h"
#include "proxy/snap.h"
#include "proxy/worker.h"

struct stream;

/* ---- the recording codec tables ---- */

#define REC_MAX 16

struct rec_reply {
	int code;
	unsigned flags;           /* as asked */
	unsigned st_flags;        /* the stream's flags after the reply (what the log shows) */
	char details[128];
};

struct core_rec {
	struct rec_reply local[REC_MAX];
	size_t nlocal;
	int resp[REC_MAX];        /* upstream response heads written, by status */
	size_t nresp;
	size_t sent;              /* bytes through fwd_down->send */
	unsigned send_head;       /* request heads the core had written upstream */
};

extern struct core_rec rec;

/* ---- the environment: store, snapshot, one worker, the peers' ports ---- */

struct env {
	char root[64];
	struct store_contents contents;
	struct diags d;
	struct snap *s;
	struct proxy p;
	struct worker *w;
	int up_lfd;                       /* the upstream server's listening socket */
	int alog[2];                      /* the access log: a pipe */
	/* gw_port: the worker's listener (the Gateway's port, or the sidecar's capture
	 * listener); up_port: up_lfd's; dead_port: nobody listens there. */
	uint16_t gw_port, up_port, dead_port;
	bool http2;                       /* snap_params.http2 (set before core_env_start) */
};

/* A temporary store root and the three ports; nothing started yet. */
struct env *core_env_new(void);
/* Writes yaml into the store, builds the snapshot for role (the gateway's in istio-system
 * with labels istio=egressgateway; the sidecar's in default, capture listener on gw_port),
 * starts one worker and installs the recording tables. Returns 0, or -1 (reasons on
 * stderr). */
int core_env_start(struct env *e, enum snap_role role, const char *yaml);
/* Everything core_env_start made, and the store root. Returns 0, or -1. */
int core_env_free(struct env *e);

/* ---- turning the loop, and the peers ---- */

#define WAIT_MS 5000

uint64_t now_ms(void);
/* A listening socket on 127.0.0.1, any port (*port set). */
int listen_any(uint16_t *port);
void turn(struct env *e);
void turn_for(struct env *e, int ms);
/* A client connected to the worker's listener (rcvbuf: SO_RCVBUF, 0 default). */
int client(struct env *e, int rcvbuf);
void put_all(int fd, const char *s);
void put_bytes(int fd, const void *p, size_t len);
/* Reads what fd has now into b; returns false once the peer closed. */
bool take(int fd, struct sbuf *b);
/* A whole HTTP/1.1 response at b->s + *off (see core_harness.c); 0 when not whole yet. */
int resp_at(const struct sbuf *b, size_t *off, const char **body, size_t *blen);
/* Turns the loop until the client on fd has a whole response after *off. */
int await_resp(struct env *e, int fd, struct sbuf *b, size_t *off, const char **body,
               size_t *blen);
/* The upstream server accepts the worker's next connection. */
int up_accept(struct env *e);
/* Turns the loop until b (what the upstream fd received) holds n request heads. */
void up_heads(struct env *e, int fd, struct sbuf *b, int n);
/* Turns the loop until the worker closes its end of the upstream connection s. */
void up_eof(struct env *e, int s);
bool contains(const char *p, size_t n, const char *s);
/* The access log lines written so far (NUL-terminated in b). */
void alog_take(struct env *e, struct sbuf *b);

#endif
