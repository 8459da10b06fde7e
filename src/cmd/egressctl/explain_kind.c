/* egressctl explain KIND[.field]: kubectl explain, from the keyword tables that decode the
 * YAML (config/res_explain.c). */
#include <stdio.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"

static const char explain_usage[] =
	"Describe the fields of a kind, as kubectl explain does, from the tables that decode\n"
	"the YAML: what is listed is what apply accepts. Fields of Istio's API that egressgw\n"
	"does not implement are listed and say so.\n"
	"\n"
	"Usage:\n"
	"  egressctl explain KIND[.FIELD[.FIELD...]]\n"
	"\n"
	"Examples:\n"
	"  egressctl explain serviceentry\n"
	"  egressctl explain dr.spec.trafficPolicy.tls\n"
	"  egressctl explain virtualservice.spec.http.retries\n";

int ctl_cmd_explain(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = { { NULL, 0, CTL_FLAG_BOOL, NULL } };
	struct sbuf out = SBUF_INIT, err = SBUF_INIT;
	const struct res_kind_info *k;
	char kind[128];
	const char *dot;
	bool help = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(explain_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n != 1) {
		fprintf(stderr, "error: You must specify the type of resource to explain. Use "
		        "\"egressctl explain --help\" for the kinds.\n");
		goto out;
	}
	/* KIND may itself carry a group (gateway.networking.istio.io): the longest prefix
	 * that names a kind wins. */
	dot = pos.v[0] + strlen(pos.v[0]);
	for (;;) {
		snprintf(kind, sizeof(kind), "%.*s", (int)(dot - pos.v[0]), pos.v[0]);
		k = res_kind_lookup(kind);
		if (k || dot == pos.v[0])
			break;
		while (dot > pos.v[0] && *--dot != '.')
			;
	}
	if (!k) {
		/* kubectl's "doesn't have a resource type" error, for the first word */
		snprintf(kind, sizeof(kind), "%.*s", (int)strcspn(pos.v[0], "."), pos.v[0]);
		ctl_kind(kind);
		goto out;
	}
	if (res_explain(k, *dot ? dot + 1 : "", &out, &err) < 0) {
		fprintf(stderr, "error: %s\n", sbuf_str(&err));
		goto out;
	}
	fputs(sbuf_str(&out), stdout);
	rc = 0;
out:
	sbuf_free(&out);
	sbuf_free(&err);
	ctl_strs_free(&pos);
	return rc;
}
