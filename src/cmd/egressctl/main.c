/* egressctl: entry point. Global flags, then the command table (see ctl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"
#include "core/version.h"

#define CTL_ENTRY(name, summary) { #name, summary, ctl_cmd_##name },
static const struct ctl_cmd ctl_cmds[] = {
	CTL_COMMANDS(CTL_ENTRY)
};
#undef CTL_ENTRY

/* The word a user types for a command: its table name with '_' as '-'. */
static void ctl_cmd_word(const char *name, char *buf, size_t n)
{
	size_t i = 0;

	for (; name[i] && i + 1 < n; i++)
		buf[i] = name[i] == '_' ? '-' : name[i];
	buf[i] = '\0';
}

static void ctl_usage(FILE *out)
{
	fprintf(out,
	        "egressctl manages egressgw's configuration store the way kubectl manages a cluster:\n"
	        "Istio resources (ServiceEntry, Gateway, VirtualService, DestinationRule,\n"
	        "AuthorizationPolicy), the Gateway API's (Gateway, HTTPRoute, ReferenceGrant) and\n"
	        "Secrets, with kubectl's commands and output, plus the mesh CA.\n"
	        "\n"
	        "Usage:\n"
	        "  egressctl [--store DIR] [-n NAMESPACE] COMMAND [ARGS] [flags]\n"
	        "\n"
	        "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		char name[32];

		ctl_cmd_word(ctl_cmds[i].name, name, sizeof(name));
		fprintf(out, "  %-13s %s\n", name, ctl_cmds[i].summary);
	}
	fprintf(out,
	        "\n"
	        "Global flags (accepted before or after the command):\n"
	        "      --store DIR         the store directory (default: $EGRESSGW_STORE, else\n"
	        "                          ./egressgw-store)\n"
	        "  -n, --namespace NS      the namespace to work in (default \"default\")\n"
	        "  -h, --help              help for egressctl, or for a command\n"
	        "      --version           the version (as \"egressctl version\")\n"
	        "\n"
	        "Use \"egressctl COMMAND --help\" for more about a command.\n");
}

static const struct ctl_cmd *ctl_find_cmd(const char *word)
{
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		char name[32];

		ctl_cmd_word(ctl_cmds[i].name, name, sizeof(name));
		if (strcmp(name, word) == 0)
			return &ctl_cmds[i];
	}
	return NULL;
}

/* Levenshtein distance between a and b (short words: a row on the stack). */
static size_t ctl_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64];

	if (lb >= ARRAY_SIZE(row))
		return lb;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* kubectl's (cobra's) "Did you mean this?": commands within 2 edits of word, or that
 * start with it. */
static void ctl_suggest(const char *word)
{
	bool any = false;

	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		char name[32];

		ctl_cmd_word(ctl_cmds[i].name, name, sizeof(name));
		if (ctl_distance(word, name) > 2 && strncasecmp(name, word, strlen(word)) != 0)
			continue;
		if (!any)
			fprintf(stderr, "\nDid you mean this?\n");
		fprintf(stderr, "\t%s\n", name);
		any = true;
	}
	if (any)
		fprintf(stderr, "\n");
}

/* Takes the value of a global flag written as "--store=X", "--store X", "-nX", "-n X".
 * Returns the number of words used (1 or 2), or 0 if argv[i] is not that flag, -1 if its
 * value is missing. */
static int ctl_global(int argc, char **argv, int i, const char *lname, char sname,
                      const char **dest)
{
	const char *a = argv[i];
	size_t l = strlen(lname);

	if (a[0] == '-' && a[1] == '-' && strncmp(a + 2, lname, l) == 0) {
		if (a[2 + l] == '=') {
			*dest = a + 3 + l;
			return 1;
		}
		if (a[2 + l] != '\0')
			return 0;
	} else if (sname && a[0] == '-' && a[1] == sname) {
		if (a[2] != '\0') {
			*dest = a + 2 + (a[2] == '=');
			return 1;
		}
	} else {
		return 0;
	}
	if (i + 1 >= argc) {
		fprintf(stderr, "error: flag needs an argument: %s\n", a);
		return -1;
	}
	*dest = argv[i + 1];
	return 2;
}

int main(int argc, char **argv)
{
	struct ctl c = { NULL, NULL, NULL };
	const struct ctl_cmd *cmd;
	int i = 1;

	while (i < argc && argv[i][0] == '-' && argv[i][1] != '\0') {
		int used;

		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			ctl_usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("egressctl version %s (commit %s, %s tree, commit date %s)\n",
			       version_info.version, version_info.commit, version_info.tree_state,
			       version_info.date);
			return 0;
		}
		used = ctl_global(argc, argv, i, "store", 0, &c.store_flag);
		if (used == 0)
			used = ctl_global(argc, argv, i, "namespace", 'n', &c.ns_flag);
		if (used < 0)
			return 1;
		if (used == 0) {
			fprintf(stderr, "error: unknown flag: %s\nSee 'egressctl --help' for usage.\n",
			        argv[i]);
			return 1;
		}
		i += used;
	}
	if (i >= argc) {
		ctl_usage(stderr);
		return 1;
	}
	if (strcmp(argv[i], "help") == 0) {
		if (i + 1 < argc && (cmd = ctl_find_cmd(argv[i + 1])) != NULL) {
			char help[] = "--help";
			char *hargv[] = { help, NULL };

			return cmd->run(&c, 1, hargv);
		}
		ctl_usage(stdout);
		return 0;
	}
	cmd = ctl_find_cmd(argv[i]);
	if (!cmd) {
		fprintf(stderr, "error: unknown command \"%s\" for \"egressctl\"\n", argv[i]);
		ctl_suggest(argv[i]);
		fprintf(stderr, "Run 'egressctl --help' for usage.\n");
		return 1;
	}
	c.root = store_root(c.store_flag);
	return cmd->run(&c, argc - i - 1, argv + i + 1);
}
