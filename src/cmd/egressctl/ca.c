/* egressctl ca init|issue: the mesh CA (see ca/ca.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ca/ca.h"
#include "cmd/egressctl/ctl.h"
#include "core/util.h"

static const char ca_usage[] =
	"Mesh CA: create a root, and issue SPIFFE workload certificates signed by it.\n"
	"\n"
	"\"ca init\" creates DIR with root-cert.pem, root-key.pem (mode 0600) and\n"
	"trust-domain: a self-signed ECDSA P-256 root valid for 10 years. It refuses a DIR\n"
	"that already holds a CA.\n"
	"\n"
	"\"ca issue\" writes a workload identity into OUTDIR, as Istio mounts it:\n"
	"cert-chain.pem (the certificate), key.pem (its ECDSA P-256 key, mode 0600) and\n"
	"root-cert.pem. The certificate's identity is the URI SAN\n"
	"    spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT\n"
	"with extended key usages serverAuth and clientAuth.\n"
	"Issuing again into the same OUTDIR renews the identity in place (each file\n"
	"replaced atomically, the key first); an egressgw whose --identity is OUTDIR serves\n"
	"the new certificate within a second.\n"
	"\n"
	"Usage:\n"
	"  egressctl ca init --dir DIR [--trust-domain cluster.local]\n"
	"  egressctl ca issue --dir DIR --namespace NS --service-account SA --out OUTDIR\n"
	"                     [--ttl 24h] [--dns NAME]...\n"
	"\n"
	"Examples:\n"
	"  egressctl ca init --dir ./mesh-ca\n"
	"  egressctl ca issue --dir ./mesh-ca --namespace istio-system \\\n"
	"      --service-account istio-egressgateway-service-account --out ./gw-certs\n"
	"\n"
	"Flags:\n"
	"      --dir DIR               the CA directory\n"
	"      --trust-domain TD       init: the trust domain (default cluster.local)\n"
	"  -n, --namespace NS          issue: the workload's namespace\n"
	"      --service-account SA    issue: the workload's service account\n"
	"      --out OUTDIR            issue: where to write the three files\n"
	"      --ttl DURATION          issue: validity, Go syntax: 24h, 90m, 1h30m (default 24h)\n"
	"      --dns NAME              issue: also a DNS SAN (repeatable)\n";

struct ctl_ca_opts {
	const char *dir;
	const char *trust_domain;
	const char *sa;
	const char *out;
	const char *ttl;
	struct ctl_strs dns;
};

static int ctl_ca_init(const struct ctl_ca_opts *o)
{
	struct sbuf err = SBUF_INIT;
	int rc = 0;

	if (!o->dir) {
		fprintf(stderr, "error: --dir is required\n");
		return -1;
	}
	if (ca_create(o->dir, o->trust_domain, &err) < 0) {
		fprintf(stderr, "error: %s\n", sbuf_str(&err));
		rc = -1;
	} else {
		printf("root CA created in %s (trust domain %s)\n", o->dir,
		       o->trust_domain ? o->trust_domain : CA_DEFAULT_TRUST_DOMAIN);
	}
	sbuf_free(&err);
	return rc;
}

static int ctl_ca_issue(const struct ctl *c, const struct ctl_ca_opts *o)
{
	struct sbuf err = SBUF_INIT, id = SBUF_INIT;
	struct ca ca;
	struct ca_leaf leaf;
	struct ca_issue_req req;
	char until[32] = "";
	time_t end;
	int64_t ttl = CA_DEFAULT_TTL_SEC;
	int rc = -1;

	memset(&ca, 0, sizeof(ca));
	memset(&leaf, 0, sizeof(leaf));
	if (!o->dir || !c->ns_flag || !o->sa || !o->out) {
		fprintf(stderr, "error: --dir, --namespace, --service-account and --out are "
		        "required\n");
		return -1;
	}
	if (o->ttl && ca_parse_duration(o->ttl, &ttl) < 0) {
		fprintf(stderr, "error: invalid --ttl \"%s\": want a duration such as 24h, 90m or "
		        "1h30m\n", o->ttl);
		return -1;
	}
	if (ca_load(o->dir, &ca, &err) < 0)
		goto out;
	memset(&req, 0, sizeof(req));
	req.ns = c->ns_flag;
	req.sa = o->sa;
	req.dns = o->dns.v;
	req.ndns = o->dns.n;
	req.ttl_sec = ttl;
	if (ca_issue(&ca, &req, &leaf, &err) < 0 || ca_write_workload(&ca, &leaf, o->out, &err) < 0)
		goto out;
	ca_spiffe_id(ca.trust_domain, req.ns, req.sa, &id);
	if (ca_cert_not_after(leaf.cert, &end) == 0) {
		struct tm tm;

		gmtime_r(&end, &tm);
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	printf("issued %s (valid until %s) into %s: %s, %s, %s\n", sbuf_str(&id), until, o->out,
	       CA_WORKLOAD_CHAIN_FILE, CA_WORKLOAD_KEY_FILE, CA_WORKLOAD_ROOT_FILE);
	rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "error: %s\n", sbuf_str(&err));
	ca_leaf_fini(&leaf);
	ca_fini(&ca);
	sbuf_free(&id);
	sbuf_free(&err);
	return rc;
}

int ctl_cmd_ca(struct ctl *c, int argc, char **argv)
{
	struct ctl_ca_opts o;
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = {
		{ "dir", 0, CTL_FLAG_STR, &o.dir },
		{ "trust-domain", 0, CTL_FLAG_STR, &o.trust_domain },
		{ "service-account", 0, CTL_FLAG_STR, &o.sa },
		{ "out", 0, CTL_FLAG_STR, &o.out },
		{ "ttl", 0, CTL_FLAG_STR, &o.ttl },
		{ "dns", 0, CTL_FLAG_LIST, &o.dns },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	bool help = false;
	int rc = 1;

	memset(&o, 0, sizeof(o));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(ca_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n != 1 || (strcmp(pos.v[0], "init") != 0 && strcmp(pos.v[0], "issue") != 0)) {
		fprintf(stderr, "error: want \"ca init\" or \"ca issue\"\n"
		        "See 'egressctl ca --help' for usage.\n");
		goto out;
	}
	if (strcmp(pos.v[0], "init") == 0)
		rc = ctl_ca_init(&o) < 0 ? 1 : 0;
	else
		rc = ctl_ca_issue(c, &o) < 0 ? 1 : 0;
out:
	ctl_strs_free(&o.dns);
	ctl_strs_free(&pos);
	return rc;
}
