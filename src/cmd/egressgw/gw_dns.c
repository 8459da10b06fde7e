/* gw_dns: the clusters' endpoints by DNS, on the main thread (see gw.h).
 *
 * Each STRICT_DNS / LOGICAL_DNS cluster of the serving snapshot has a job that resolves its
 * names (hosts file first, then c-ares), swaps the cluster's endpoint set atomically and
 * re-resolves at the TTL (within DNS_MIN/MAX_REFRESH_MS). A replaced endpoint set is
 * retired, not freed, until every worker has passed a quiescent point (proxy.h). A reload
 * seeds each new cluster with its namesake's endpoints and restarts those resolutions in
 * batches, so that a reload of 10,000 clusters neither empties one nor holds the main
 * thread; a namesake that resolved the same names by query keeps its refresh time
 * instead (gw_dns_restart), so that a reload asks the DNS only about what changed. */
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

void gw_retire_collect(struct gw *g, bool all)
{
	uint64_t q = proxy_quiescent(&g->proxy);
	struct retired **pp = &g->retired, *r;

	while ((r = *pp)) {
		/* Every worker has passed a quiescent point since r was retired. */
		if (all || q > r->epoch + 1) {
			*pp = r->next;
			cluster_eps_free(r->eps);
			free(r);
		} else {
			pp = &r->next;
		}
	}
}

void gw_on_retire_timer(struct loop *loop, struct loop_timer *t)
{
	struct gw *g = (struct gw *)((char *)t - offsetof(struct gw, retire_timer));

	gw_retire_collect(g, false);
	loop_timer_arm(loop, t, 200);
}

/* The summary of a snapshot's first round, once every cluster has its answer. */
static void dns_log_first_round(struct gw *g)
{
	if (g->dns_first_logged)
		return;
	g->dns_first_logged = true;
	log_info("dns", "%zu DNS cluster(s) resolved in %llu ms: %zu with endpoints, %zu failed",
	         g->dns_first_ok + g->dns_first_failed + g->dns_first_kept,
	         (unsigned long long)(loop_now_ms(g->loop) - g->dns_first_start_ms),
	         g->dns_first_ok + g->dns_first_kept, g->dns_first_failed);
	if (g->dns_first_kept)
		log_info("dns", "%zu of them kept their endpoints until their refresh (same names "
		         "as before the reload; nothing asked)", g->dns_first_kept);
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
			cluster_eps_hash(cl, eps);
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
			dns_log_first_round(g);
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
		free(j->reason);
		j->reason = xasprintf("resolving %s: %s", j->cl->names[idx].host, res->reason);
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
	free(j->reason);
	j->reason = NULL;
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
	/* Kept whole on reload (dns_start) only when the DNS answered every name: a name the
	 * hosts file answers is resolved again then, so a cluster mixing both is too. */
	j->queried = j->pending > 0 && j->pending == cl->nnames;
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

static void dns_jobs_free(struct gw *g, struct dns_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct dns_job *j = &jobs[i];

		loop_timer_cancel(g->loop, &j->timer);
		for (size_t k = 0; k < j->nqueries; k++) {
			if (j->queries && j->queries[k]) {
				dns_cancel(j->queries[k]);
			}
		}
		free(j->queries);
		free(j->args);
		free(j->reason);
		free(j->addrs);
		free(j->ports);
		free(j->weights);
	}
	free(jobs);
}

void gw_dns_stop(struct gw *g)
{
	dns_jobs_free(g, g->jobs, g->njobs);
	g->jobs = NULL;
	g->njobs = 0;
}

/* Whether two clusters resolve the same names to the same ports and weights in the same
 * way: then the endpoints one resolved are what resolving the other would give. */
static bool dns_same_names(const struct cluster *a, const struct cluster *b)
{
	if (a->discovery != b->discovery || a->nnames != b->nnames)
		return false;
	for (size_t i = 0; i < a->nnames; i++)
		if (strcmp(a->names[i].host, b->names[i].host) != 0 ||
		    a->names[i].port != b->names[i].port || a->names[i].weight != b->names[i].weight)
			return false;
	return true;
}

/* The jobs of the snapshot being replaced, by their cluster: open addressing over the
 * cluster pointer (slot = job index + 1, 0 = empty). */
struct dns_old {
	const struct dns_job *jobs;
	size_t *slot, mask;
};

static size_t dns_old_hash(const struct dns_old *o, const struct cluster *cl)
{
	uintptr_t p = (uintptr_t)cl;

	return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull) & o->mask;
}

static void dns_old_init(struct dns_old *o, const struct dns_job *jobs, size_t n)
{
	o->jobs = jobs;
	o->mask = 15;
	while (o->mask + 1 < 2 * n + 2)
		o->mask = o->mask * 2 + 1;
	o->slot = xcalloc(o->mask + 1, sizeof(*o->slot));
	for (size_t i = 0; i < n; i++) {
		size_t k = dns_old_hash(o, jobs[i].cl);

		while (o->slot[k])
			k = (k + 1) & o->mask;
		o->slot[k] = i + 1;
	}
}

static const struct dns_job *dns_old_find(const struct dns_old *o, const struct cluster *cl)
{
	size_t k;

	if (!o->slot || !cl)
		return NULL;
	for (k = dns_old_hash(o, cl); o->slot[k]; k = (k + 1) & o->mask)
		if (o->jobs[o->slot[k] - 1].cl == cl)
			return &o->jobs[o->slot[k] - 1];
	return NULL;
}

/* Starts resolution for every DNS cluster of snapshot s, seeding each with the endpoints
 * its namesake had in the previous snapshot so that a reload never empties a cluster. */
static void dns_start(struct gw *g, struct snap *s, struct snap *old, const struct dns_old *prev)
{
	size_t n = 0, nseeded = 0, nkept = 0;
	uint64_t now = loop_now_ms(g->loop);

	for (size_t i = 0; i < s->nclusters; i++)
		if (s->clusters[i]->discovery == CLUSTER_DNS ||
		    s->clusters[i]->discovery == CLUSTER_DNS_ROUND_ROBIN)
			n++;
	g->jobs = xcalloc(n ? n : 1, sizeof(*g->jobs));
	g->njobs = 0;
	g->dns_first_pending = n;
	g->dns_first_ok = g->dns_first_failed = g->dns_first_kept = 0;
	g->dns_first_logged = false;
	g->dns_first_start_ms = loop_now_ms(g->loop);
	for (size_t i = 0; i < s->nclusters; i++) {
		struct cluster *cl = s->clusters[i];
		struct dns_job *j;

		if (cl->discovery != CLUSTER_DNS && cl->discovery != CLUSTER_DNS_ROUND_ROBIN)
			continue;
		bool seeded = false;
		const struct dns_job *oj = NULL;
		struct cluster *oc = NULL;

		if (old) {
			oc = snap_cluster_find(old, cl->name);
			struct cluster_eps *oe = oc ? atomic_load(&oc->eps) : NULL;

			if (oe && !atomic_load(&cl->eps)) {
				struct cluster_eps *copy = cluster_eps_new(oe->n);

				memcpy(copy->v, oe->v, oe->n * sizeof(oe->v[0]));
				copy->total_weight = oe->total_weight;
				cluster_eps_hash(cl, copy);
				atomic_store(&cl->eps, copy);
				seeded = true;
			}
		}
		j = &g->jobs[g->njobs++];
		j->gw = g;
		j->snap = s;
		j->cl = cl;
		loop_timer_init(&j->timer, dns_on_timer);
		/* A cluster whose namesake resolved the same names by asking the DNS, and whose
		 * refresh is still ahead, keeps that refresh: the endpoints it was seeded with
		 * are what a query would answer until their TTL runs out. A reload that touches
		 * one resource of 10,000 then sends no query for the 9,999 others (it sent
		 * 10,000). Names the hosts file or an IP literal answers cost nothing to resolve
		 * again, and are, so that a hosts file changed before a reload shows in it as it
		 * always did: a cluster with any such name is not kept (j->queried), and is
		 * resolved again whole (its DNS names asked again too). */
		if (seeded)
			oj = dns_old_find(prev, oc);
		if (oj && oj->first_done && oj->queried && oj->pending == 0 &&
		    loop_timer_armed(&oj->timer) && dns_same_names(cl, oc)) {
			j->first_done = true;
			j->queried = true;
			g->dns_first_kept++;
			g->dns_first_pending--;
			nkept++;
			loop_timer_arm(g->loop, &j->timer,
			               oj->timer.when > now ? oj->timer.when - now : 1);
			continue;
		}
		/* A cluster its namesake's endpoints serve meanwhile is resolved again soon,
		 * DNS_RESTART_BATCH per millisecond, so that a reload of 10,000 clusters does
		 * not hold the main thread (and /ready) for the whole round at once. A new
		 * cluster is resolved now: it has nothing to serve with. */
		if (seeded)
			loop_timer_arm(g->loop, &j->timer, 1 + nseeded++ / DNS_RESTART_BATCH);
		else
			dns_job_start(j);
	}
	if (nkept && g->dns_first_pending == 0)
		dns_log_first_round(g);
}

void gw_dns_start(struct gw *g, struct snap *s, struct snap *old)
{
	struct dns_old none = { NULL, NULL, 0 };

	dns_start(g, s, old, &none);
}

void gw_dns_restart(struct gw *g, struct snap *s, struct snap *old)
{
	struct dns_job *jobs = g->jobs;
	size_t n = g->njobs;
	struct dns_old prev;

	/* The old jobs are stopped only once the new ones know their refresh times. */
	dns_old_init(&prev, jobs, n);
	g->jobs = NULL;
	g->njobs = 0;
	dns_start(g, s, old, &prev);
	dns_jobs_free(g, jobs, n);
	free(prev.slot);
}
