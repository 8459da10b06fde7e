/* egressctl proxy-config endpoint [ADMIN_ADDR]: istioctl's endpoint table (ENDPOINT, STATUS,
 * OUTLIER CHECK, CLUSTER), from a running proxy's GET /clusters?format=json.
 *
 * istioctl makes one row per host of every cluster status, keeps the hosts the filters
 * select (--address and --cluster compared without case, --port, --status against the
 * EDS health status name) and sorts the rows by address (as text), port, then cluster; its
 * -o json prints the cluster statuses that have at least one selected host. This does the
 * same. One difference, because egressgw's outlier detection runs per worker
 * (src/proxy/outlier.h): an endpoint ejected on some workers only shows "FAILED (N/M
 * workers)"; ejected on all of them (always the case with one worker) it shows istioctl's
 * "FAILED". The per-endpoint counters (cx_total, rq_total, ...) are in the JSON. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/egressctl/ctl.h"
#include "cmd/egressctl/pc.h"
#include "core/util.h"

const char ctl_pc_endpoint_usage[] =
	"Show the endpoints of the proxy's clusters, as `istioctl proxy-config endpoint` does:\n"
	"one row per endpoint (the addresses resolved or listed for each cluster), its health\n"
	"and whether outlier detection has taken it out of service. Read from GET\n"
	"/clusters?format=json, which also has each endpoint's counters (cx_active, cx_total,\n"
	"rq_total, rq_success, rq_error, rq_timeout: -o json).\n"
	"\n"
	"Usage:\n"
	"  egressctl proxy-config endpoint [ADMIN_ADDR] [--cluster NAME] [--address IP]\n"
	"                                  [--port N] [--status S] [-o short|json|yaml]\n"
	"\n"
	"Columns: ENDPOINT (IP:PORT), STATUS (HEALTHY: egressgw does no active health checks),\n"
	"OUTLIER CHECK (OK, or FAILED: ejected by the DestinationRule's outlierDetection;\n"
	"outlier detection runs in each worker thread, as in each Envoy, so an endpoint ejected\n"
	"on some of the workers only shows FAILED (N/M workers)), CLUSTER.\n"
	"\n"
	"Examples:\n"
	"  egressctl proxy-config endpoints\n"
	"  egressctl proxy-config endpoint --cluster 'outbound|443||edition.cnn.com'\n"
	"  egressctl proxy-config endpoint --status healthy -o json\n"
	"\n"
	"Flags:\n"
	"      --cluster NAME        only endpoints of cluster NAME\n"
	"      --address IP          only endpoints with address IP\n"
	"      --port N              only endpoints on port N\n"
	"      --status S            only endpoints whose STATUS is S (HEALTHY, UNHEALTHY, ...)\n";

struct ep_row {
	const char *address, *cluster, *status;
	long port;
	long ejected, workers;          /* workers on which it is ejected, of how many */
	bool failed;
};

static const char *ep_str(const struct ynode *map, const char *key)
{
	const struct ynode *v = map && map->type == YNODE_MAP ? ynode_get(map, key) : NULL;

	return v && v->type == YNODE_SCALAR ? v->str : NULL;
}

static long ep_num(const struct ynode *map, const char *key)
{
	const char *s = ep_str(map, key);

	return s ? strtol(s, NULL, 10) : 0;
}

static const struct ynode *ep_sub(const struct ynode *map, const char *key)
{
	return map && map->type == YNODE_MAP ? ynode_get(map, key) : NULL;
}

static void ep_read(const struct ynode *host, const char *cluster, struct ep_row *r)
{
	const struct ynode *sa = ep_sub(ep_sub(host, "address"), "socket_address");
	const struct ynode *hs = ep_sub(host, "health_status");
	const struct ynode *od = ep_sub(host, "outlier_detection");
	const char *failed = ep_str(hs, "failed_outlier_check");

	memset(r, 0, sizeof(*r));
	r->address = ep_str(sa, "address") ? ep_str(sa, "address") : "";
	r->port = ep_num(sa, "port_value");
	r->cluster = cluster;
	/* Go's name for an unset HealthStatus. */
	r->status = ep_str(hs, "eds_health_status") ? ep_str(hs, "eds_health_status") : "UNKNOWN";
	r->failed = failed && strcmp(failed, "true") == 0;
	r->ejected = ep_num(od, "ejected_workers");
	r->workers = ep_num(od, "workers");
}

static bool ep_keep(const struct ep_row *r, const struct pc_opts *o)
{
	return (!o->address || strcasecmp(r->address, o->address) == 0) &&
	       (!o->port || r->port == o->port) &&
	       (!o->cluster || strcasecmp(r->cluster, o->cluster) == 0) &&
	       (!o->status || strcasecmp(r->status, o->status) == 0);
}

static int ep_cmp(const void *a, const void *b)
{
	const struct ep_row *x = a, *y = b;
	int c = strcmp(x->address, y->address);

	if (c)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return strcmp(x->cluster, y->cluster);
}

static void ep_table(struct ep_row *rows, size_t n)
{
	struct ctl_table t;
	struct sbuf cell = SBUF_INIT;
	static const char *const hdr[] = { "ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER" };

	if (n)
		qsort(rows, n, sizeof(*rows), ep_cmp);
	ctl_table_init(&t, 4);
	t.minwidth = 0;
	t.padding = 5;                  /* istioctl's tabwriter: 0, 8, 5, ' ', 0 */
	for (size_t i = 0; i < ARRAY_SIZE(hdr); i++)
		ctl_table_add(&t, hdr[i]);
	for (size_t i = 0; i < n; i++) {
		sbuf_reset(&cell);
		if (rows[i].port)
			sbuf_addf(&cell, "%s:%ld", rows[i].address, rows[i].port);
		else
			sbuf_adds(&cell, rows[i].address);
		ctl_table_add(&t, sbuf_str(&cell));
		ctl_table_add(&t, rows[i].status);
		sbuf_reset(&cell);
		if (!rows[i].failed)
			sbuf_adds(&cell, "OK");
		else if (rows[i].workers > 1 && rows[i].ejected < rows[i].workers)
			sbuf_addf(&cell, "FAILED (%ld/%ld workers)", rows[i].ejected, rows[i].workers);
		else
			sbuf_adds(&cell, "FAILED");
		ctl_table_add(&t, sbuf_str(&cell));
		ctl_table_add(&t, rows[i].cluster);
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	sbuf_free(&cell);
}

int ctl_pc_endpoints(const struct pc_opts *o, enum pc_format f, const struct sock_addr *a,
                     const char *addr)
{
	struct sbuf body = SBUF_INIT, where = SBUF_INIT;
	struct ystream s;
	const struct ynode *list;
	const struct ynode **items = NULL;
	struct ep_row *rows = NULL;
	size_t nitems = 0, nrows = 0, cap = 0;
	int rc = 1;

	memset(&s, 0, sizeof(s));
	if (ctl_admin_get(a, addr, "/clusters?format=json", &body) < 0)
		goto out;
	sbuf_addf(&where, "http://%s/clusters?format=json", addr);
	if (ctl_pc_parse(sbuf_str(&where), &body, "cluster statuses", &s) < 0)
		goto out;
	list = ep_sub(s.ndocs ? s.docs[0].root : NULL, "cluster_statuses");
	if (!list || list->type != YNODE_SEQ) {
		fprintf(stderr, "error: %s has no cluster_statuses list\n", sbuf_str(&where));
		goto out;
	}
	items = xcalloc(list->n + 1, sizeof(*items));
	for (size_t i = 0; i < list->n; i++) {
		const struct ynode *cl = list->items[i];
		const struct ynode *hosts = ep_sub(cl, "host_statuses");
		const char *name = ep_str(cl, "name") ? ep_str(cl, "name") : "";
		bool any = false;

		for (size_t k = 0; hosts && hosts->type == YNODE_SEQ && k < hosts->n; k++) {
			struct ep_row r;

			ep_read(hosts->items[k], name, &r);
			if (!ep_keep(&r, o))
				continue;
			any = true;
			if (nrows == cap) {
				cap = cap ? 2 * cap : 64;
				rows = xrealloc(rows, cap * sizeof(*rows));
			}
			rows[nrows++] = r;
		}
		if (any)
			items[nitems++] = cl;
	}
	if (f == PC_SHORT)
		ep_table(rows, nrows);
	else
		ctl_pc_print_doc(&s, items, nitems, f);
	rc = 0;
out:
	free(rows);
	free(items);
	ystream_free(&s);
	sbuf_free(&body);
	sbuf_free(&where);
	return rc;
}
