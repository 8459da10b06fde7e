/* load: the store read (files, YAML, decoding and validation) on a thread of its own, so
 * that the main thread keeps serving the admin endpoint (/ready, /stats) while a large or
 * hostile configuration is read. The thread touches nothing but its struct gw_load: the
 * secret cache, the snapshot and the loop stay the main thread's.
 *
 * Use: gw_load_start; when load->efd turns readable, gw_load_finish, then use (and free)
 * load->contents and load->diags as store_load left them. */
#ifndef EGRESS_CMD_EGRESSGW_LOAD_H
#define EGRESS_CMD_EGRESSGW_LOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/store.h"
#include "core/diag.h"

struct gw_load {
	int efd;                        /* eventfd, readable when the thread is done; -1 none */
	bool running;                   /* started and not yet finished */
	pthread_t thread;
	const char *root, *default_ns;  /* borrowed: they outlive the process's loads */
	struct store_contents contents; /* results, valid after gw_load_finish */
	struct diags diags;
	int rc;                         /* store_load's */
	uint64_t ms;                    /* how long store_load took */
};

/* Creates the eventfd. Returns 0, or -1 with errno set. */
int gw_load_init(struct gw_load *l);
/* Starts reading root on a new thread. Returns 0, or -1 with errno set (nothing started). */
int gw_load_start(struct gw_load *l, const char *root, const char *default_ns);
/* Waits for the thread (at once when efd was readable) and resets efd. */
void gw_load_finish(struct gw_load *l);
/* Waits for a running load, frees its results and closes efd. */
void gw_load_fini(struct gw_load *l);

#endif
