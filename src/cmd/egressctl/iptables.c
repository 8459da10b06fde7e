/* egressctl iptables: the NAT rules that send an application's outbound TCP to the
 * sidecar's --outbound port, as Istio's init container (istio-iptables) installs them for
 * a pod, minus inbound capture.
 *
 * The rules live in two chains of the nat table, hooked into OUTPUT:
 *   EGRESSGW_OUTPUT    what is NOT captured returns early: the sidecar's own traffic (by
 *                      uid or gid: without this every connection the sidecar makes would
 *                      come back to it), loopback, excluded CIDRs and ports
 *   EGRESSGW_REDIRECT  the rest: REDIRECT --to-ports OUTBOUND, which keeps the original
 *                      destination in conntrack for SO_ORIGINAL_DST
 * Printed as shell commands by default (review, or pipe to sh); --apply runs them;
 * --clean removes them. Commands are run directly (execvp), never through a shell. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"

#define IPT_OUTPUT   "EGRESSGW_OUTPUT"
#define IPT_REDIRECT "EGRESSGW_REDIRECT"
#define IPT_MAX_ARGS 24

static const char ipt_usage[] =
	"Print (or apply) the iptables rules that redirect an application's outbound TCP\n"
	"connections to the sidecar (egressgw --role sidecar --outbound 127.0.0.1:PORT), as\n"
	"Istio's init container does for a pod. The sidecar reads each connection's original\n"
	"destination with SO_ORIGINAL_DST, routes HTTP by its Host and TLS by its SNI.\n"
	"\n"
	"The sidecar's own connections must not be redirected back to it: run it as a user\n"
	"(or group) of its own and name it with --uid (or --gid), as Istio runs its proxy as\n"
	"uid 1337. Loopback traffic is never captured.\n"
	"\n"
	"Usage:\n"
	"  egressctl iptables --uid UID [--gid GID] [--outbound-port 15001]\n"
	"                     [--exclude-cidr CIDR]... [--exclude-ports P,P...]\n"
	"                     [--include-ports P,P...] [--ipv6] [--apply] [--clean]\n"
	"\n"
	"Examples:\n"
	"  egressctl iptables --uid 1337                  # print the rules\n"
	"  egressctl iptables --uid 1337 --apply          # install them (as root, in the\n"
	"                                                 # application's network namespace)\n"
	"  egressctl iptables --clean --apply             # remove them\n"
	"\n"
	"Flags:\n"
	"      --uid UID             the sidecar's user (number or name); repeatable\n"
	"      --gid GID             the sidecar's group (number or name); repeatable\n"
	"      --outbound-port PORT  the sidecar's --outbound port (default 15001)\n"
	"      --exclude-cidr CIDR   destinations never captured (repeatable), e.g. a node's\n"
	"                            metadata server or the cluster's own networks\n"
	"      --exclude-ports LIST  destination ports never captured, e.g. 22,53\n"
	"      --include-ports LIST  capture only these destination ports (default: all)\n"
	"      --ipv6                the same rules for IPv6 (ip6tables) too\n"
	"      --apply               run the commands (needs CAP_NET_ADMIN) instead of printing\n"
	"      --clean               the commands that remove the rules (errors are ignored:\n"
	"                            a rule or chain that is not there is no problem)\n";

struct ipt_opts {
	struct ctl_strs uids, gids, cidrs;
	const char *port;
	const char *exclude_ports, *include_ports;
	bool ipv6, apply, clean;
};

/* One command: argv for execvp. */
struct ipt_cmd {
	const char *argv[IPT_MAX_ARGS];
	size_t argc;
};

struct ipt_cmds {
	struct ipt_cmd *v;
	size_t n;
};

static void ipt_add(struct ipt_cmds *cs, const char *tool, ...)
{
	struct ipt_cmd *c;
	va_list ap;
	const char *a;

	cs->v = xrealloc(cs->v, (cs->n + 1) * sizeof(*cs->v));
	c = &cs->v[cs->n++];
	memset(c, 0, sizeof(*c));
	c->argv[c->argc++] = tool;
	c->argv[c->argc++] = "-t";
	c->argv[c->argc++] = "nat";
	va_start(ap, tool);
	while ((a = va_arg(ap, const char *)) != NULL && c->argc < IPT_MAX_ARGS - 1)
		c->argv[c->argc++] = a;
	va_end(ap);
	c->argv[c->argc] = NULL;
}

/* A user or group: digits, or a name as useradd allows. */
static bool ipt_valid_owner(const char *s)
{
	if (!*s || strlen(s) > 32)
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return false;
	return true;
}

/* "80,443" or "8000:8080": ports and ranges as iptables' multiport takes them. */
static bool ipt_valid_ports(const char *s)
{
	int items = 0;

	if (!*s)
		return false;
	for (const char *p = s; *p;) {
		long v;
		char *end;

		if (!isdigit((unsigned char)*p))
			return false;
		v = strtol(p, &end, 10);
		if (v < 1 || v > 65535)
			return false;
		p = end;
		if (*p == ',' || *p == ':')
			p++;
		else if (*p)
			return false;
		items++;
	}
	return items <= 15;          /* multiport's limit */
}

static bool ipt_valid_cidr(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != '.' && *p != ':' && *p != '/')
			return false;
	return true;
}

static void ipt_rules(const struct ipt_opts *o, const char *tool, struct ipt_cmds *cs)
{
	if (o->clean) {
		ipt_add(cs, tool, "-D", "OUTPUT", "-p", "tcp", "-j", IPT_OUTPUT, NULL);
		ipt_add(cs, tool, "-F", IPT_OUTPUT, NULL);
		ipt_add(cs, tool, "-X", IPT_OUTPUT, NULL);
		ipt_add(cs, tool, "-F", IPT_REDIRECT, NULL);
		ipt_add(cs, tool, "-X", IPT_REDIRECT, NULL);
		return;
	}
	ipt_add(cs, tool, "-N", IPT_REDIRECT, NULL);
	ipt_add(cs, tool, "-A", IPT_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", o->port,
	        NULL);
	ipt_add(cs, tool, "-N", IPT_OUTPUT, NULL);
	ipt_add(cs, tool, "-A", "OUTPUT", "-p", "tcp", "-j", IPT_OUTPUT, NULL);
	for (size_t i = 0; i < o->uids.n; i++)
		ipt_add(cs, tool, "-A", IPT_OUTPUT, "-m", "owner", "--uid-owner", o->uids.v[i], "-j",
		        "RETURN", NULL);
	for (size_t i = 0; i < o->gids.n; i++)
		ipt_add(cs, tool, "-A", IPT_OUTPUT, "-m", "owner", "--gid-owner", o->gids.v[i], "-j",
		        "RETURN", NULL);
	/* Loopback: the application's own local services (and the sidecar's ports). */
	ipt_add(cs, tool, "-A", IPT_OUTPUT, "-o", "lo", "-j", "RETURN", NULL);
	for (size_t i = 0; i < o->cidrs.n; i++) {
		bool v6 = strchr(o->cidrs.v[i], ':') != NULL;

		if (v6 == (strcmp(tool, "ip6tables") == 0))
			ipt_add(cs, tool, "-A", IPT_OUTPUT, "-d", o->cidrs.v[i], "-j", "RETURN", NULL);
	}
	if (o->exclude_ports)
		ipt_add(cs, tool, "-A", IPT_OUTPUT, "-p", "tcp", "-m", "multiport", "--dports",
		        o->exclude_ports, "-j", "RETURN", NULL);
	if (o->include_ports)
		ipt_add(cs, tool, "-A", IPT_OUTPUT, "-p", "tcp", "-m", "multiport", "--dports",
		        o->include_ports, "-j", IPT_REDIRECT, NULL);
	else
		ipt_add(cs, tool, "-A", IPT_OUTPUT, "-j", IPT_REDIRECT, NULL);
}

static void ipt_print(const struct ipt_cmd *c, FILE *out)
{
	for (size_t i = 0; i < c->argc; i++)
		fprintf(out, "%s%s", i ? " " : "", c->argv[i]);
	fputc('\n', out);
}

/* Runs one command; returns its exit status (127 when it cannot be run). */
static int ipt_run(const struct ipt_cmd *c, bool quiet)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 127;
	if (pid == 0) {
		if (quiet) {
			FILE *null = freopen("/dev/null", "w", stderr);

			(void)null;
		}
		execvp(c->argv[0], (char *const *)c->argv);
		fprintf(stderr, "error: %s: %s\n", c->argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 127;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int ipt_check(const struct ipt_opts *o)
{
	if (o->clean)
		return 0;
	if (o->uids.n == 0 && o->gids.n == 0) {
		fprintf(stderr, "error: --uid or --gid is required: the sidecar's own connections "
		        "must not be redirected back to it\nSee 'egressctl iptables --help' for "
		        "usage.\n");
		return -1;
	}
	for (size_t i = 0; i < o->uids.n; i++)
		if (!ipt_valid_owner(o->uids.v[i])) {
			fprintf(stderr, "error: invalid --uid \"%s\"\n", o->uids.v[i]);
			return -1;
		}
	for (size_t i = 0; i < o->gids.n; i++)
		if (!ipt_valid_owner(o->gids.v[i])) {
			fprintf(stderr, "error: invalid --gid \"%s\"\n", o->gids.v[i]);
			return -1;
		}
	for (size_t i = 0; i < o->cidrs.n; i++)
		if (!ipt_valid_cidr(o->cidrs.v[i])) {
			fprintf(stderr, "error: invalid --exclude-cidr \"%s\"\n", o->cidrs.v[i]);
			return -1;
		}
	if (!ipt_valid_ports(o->port) || strchr(o->port, ',') || strchr(o->port, ':')) {
		fprintf(stderr, "error: invalid --outbound-port \"%s\": want 1..65535\n", o->port);
		return -1;
	}
	if (o->exclude_ports && !ipt_valid_ports(o->exclude_ports)) {
		fprintf(stderr, "error: invalid --exclude-ports \"%s\": want P[,P...] (at most 15)\n",
		        o->exclude_ports);
		return -1;
	}
	if (o->include_ports && !ipt_valid_ports(o->include_ports)) {
		fprintf(stderr, "error: invalid --include-ports \"%s\": want P[,P...] (at most 15)\n",
		        o->include_ports);
		return -1;
	}
	return 0;
}

int ctl_cmd_iptables(struct ctl *c, int argc, char **argv)
{
	struct ipt_opts o;
	struct ctl_strs pos = { NULL, 0 };
	struct ipt_cmds cs = { NULL, 0 };
	const struct ctl_flag flags[] = {
		{ "uid", 0, CTL_FLAG_LIST, &o.uids },
		{ "gid", 0, CTL_FLAG_LIST, &o.gids },
		{ "outbound-port", 0, CTL_FLAG_STR, &o.port },
		{ "exclude-cidr", 0, CTL_FLAG_LIST, &o.cidrs },
		{ "exclude-ports", 0, CTL_FLAG_STR, &o.exclude_ports },
		{ "include-ports", 0, CTL_FLAG_STR, &o.include_ports },
		{ "ipv6", 0, CTL_FLAG_BOOL, &o.ipv6 },
		{ "apply", 0, CTL_FLAG_BOOL, &o.apply },
		{ "clean", 0, CTL_FLAG_BOOL, &o.clean },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	bool help = false;
	int rc = 1;

	memset(&o, 0, sizeof(o));
	o.port = "15001";
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(ipt_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n) {
		fprintf(stderr, "error: unexpected argument \"%s\"\nSee 'egressctl iptables --help' "
		        "for usage.\n", pos.v[0]);
		goto out;
	}
	if (ipt_check(&o) < 0)
		goto out;
	ipt_rules(&o, "iptables", &cs);
	if (o.ipv6)
		ipt_rules(&o, "ip6tables", &cs);
	rc = 0;
	for (size_t i = 0; i < cs.n; i++) {
		int st;

		ipt_print(&cs.v[i], stdout);
		if (!o.apply)
			continue;
		st = ipt_run(&cs.v[i], o.clean);
		if (st != 0 && !o.clean) {
			fprintf(stderr, "error: the command above failed (exit status %d)%s\n", st,
			        i < 4 ? "; rules from an earlier run? remove them with "
			                "'egressctl iptables --clean --apply'" : "");
			rc = 1;
			break;
		}
	}
out:
	free(cs.v);
	ctl_strs_free(&o.uids);
	ctl_strs_free(&o.gids);
	ctl_strs_free(&o.cidrs);
	ctl_strs_free(&pos);
	return rc;
}
