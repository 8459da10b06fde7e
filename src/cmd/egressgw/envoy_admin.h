/* envoy_admin: the admin endpoints egressgw answers under Envoy's names and with Envoy's
 * meaning (issue 16): /server_info, /clusters, /listeners, /stats, /memory, /logging.
 *
 * Kept out of main.c's handler so that each endpoint is one function here; main.c asks
 * envoy_admin_handle first and falls through to its own endpoints when it answers 0.
 * Main thread only (the admin endpoint runs on the control loop). */
#ifndef EGRESS_CMD_EGRESSGW_ENVOY_ADMIN_H
#define EGRESS_CMD_EGRESSGW_ENVOY_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "proxy/worker.h"

struct lc;

struct envoy_admin {
	struct proxy *proxy;
	struct snap *const *snap;       /* the snapshot serving now (may be NULL) */
	const struct lc *lc;            /* draining (lc_draining): state DRAINING */
	int argc;
	char **argv;                    /* the command line, for server_info */
	int workers;                    /* --concurrency's equivalent */
	const char *admin_addr;
	int64_t start_ms;               /* wall clock when the process started */
	/* /stats: the Prometheus text of /stats/prometheus, converted. */
	void (*prometheus)(void *arg, struct sbuf *out);
	void *arg;
};

/* Answers the request when path is one of the endpoints above: returns the HTTP status
 * with body and *ctype filled. Returns 0 for any other path. */
int envoy_admin_handle(const struct envoy_admin *ea, const char *method, const char *path,
                       struct sbuf *body, const char **ctype);

#endif
