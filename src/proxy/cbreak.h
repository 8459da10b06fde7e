/* cbreak: a worker's per-cluster state for circuit breaking (DestinationRule
 * connectionPool) and outlier detection, keyed by cluster name.
 *
 * Why by name: a cluster's index changes from one snapshot to the next, but connections,
 * queued requests and outlier history outlive snapshots. An entry stays while anything
 * points at it (a connection, a request: refs) and while the worker's snapshot still has a
 * cluster of that name; the others are dropped now and then as new names come in.
 *
 * The counters (fwd_conn.c keeps them; see the semantics there, in st_connect):
 *   ncx       upstream HTTP/1.1 connections of the cluster open on this worker (connecting,
 *             busy or idle in the pool): the maxConnections circuit breaker;
 *   nrq       requests bound to a connection: http2MaxRequests;
 *   npending  requests waiting for a connection, in the queue or on a connection still
 *             connecting (Envoy's pending requests): http1MaxPendingRequests.
 * queue holds the waiting requests in arrival order; idle the cluster's pooled connections,
 * oldest first (the one to close when the limit is reached and a request needs a
 * connection to another endpoint).
 *
 * Per worker, no locks: the limits apply per worker (see fwd_conn.c). */
#ifndef EGRESS_PROXY_CBREAK_H
#define EGRESS_PROXY_CBREAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/outlier.h"

struct snap;

/* An intrusive doubly linked list (a sentinel head; next == NULL: not in a list). */
struct cb_link {
	struct cb_link *next, *prev;
};

static inline void cb_list_init(struct cb_link *head)
{
	head->next = head->prev = head;
}

static inline bool cb_list_empty(const struct cb_link *head)
{
	return head->next == head;
}

static inline void cb_list_add_tail(struct cb_link *head, struct cb_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void cb_list_add_head(struct cb_link *head, struct cb_link *l)
{
	cb_list_add_tail(head->next, l);
}

static inline void cb_list_del(struct cb_link *l)
{
	if (!l->next)
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = NULL;
}

struct cb_cluster {
	char *name;
	uint64_t hash;
	uint32_t ncx, nrq, npending;
	uint32_t nqueued, nwoken, nidle;
	uint32_t nretry;                /* requests being retried (fwd_conn.c: the retry budget) */
	struct cb_link queue;           /* waiting requests, oldest first */
	struct cb_link idle;            /* pooled connections, oldest first */
	uint32_t refs;
	struct od_set od;
};

struct cb_table;

struct cb_table *cb_table_new(void);
/* Mirror the entries' outlier state into pub (the worker's per-endpoint counters, read
 * by the admin thread: hstats.h). Call before the first cb_get. */
struct hstats;
void cb_table_publish(struct cb_table *t, struct hstats *pub);
/* Frees every entry (whatever still points at them must be gone). */
void cb_table_free(struct cb_table *t);
/* The entry for cluster name, created if needed, with a reference taken (cb_unref).
 * cur: the worker's snapshot, to tell which unused entries can be dropped. */
struct cb_cluster *cb_get(struct cb_table *t, const char *name, const struct snap *cur);
void cb_ref(struct cb_cluster *c);
void cb_unref(struct cb_cluster *c);
/* Number of entries (tests, status). */
size_t cb_count(const struct cb_table *t);

#endif
