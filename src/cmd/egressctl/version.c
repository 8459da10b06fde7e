/* egressctl version: the build's version, as kubectl version prints it.
 *
 * egressctl talks to no server (the store is files), so there is no "Server Version" and
 * --client changes nothing; it is accepted because scripts written for kubectl pass it. A
 * running gateway tells its own version with `egressgw --version`. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "cmd/egressctl/ctl.h"
#include "core/version.h"

#if defined(__clang__)
#define CTL_VERSION_COMPILER "clang"
#else
#define CTL_VERSION_COMPILER "gcc"
#endif

static const char version_usage[] =
	"Print the egressctl version, as kubectl version --client does.\n"
	"\n"
	"Usage:\n"
	"  egressctl version [--client] [-o json|yaml]\n"
	"\n"
	"Flags:\n"
	"      --client        accepted as kubectl does; egressctl has no server to ask\n"
	"  -o, --output FMT    json or yaml: kubectl's clientVersion object (gitVersion,\n"
	"                      gitCommit, gitTreeState, buildDate (the commit's date),\n"
	"                      compiler, platform)\n";

/* kubectl's platform field: linux/amd64 from the kernel's machine name. */
static const char *ctl_version_arch(const char *machine)
{
	if (strcmp(machine, "x86_64") == 0)
		return "amd64";
	if (strcmp(machine, "aarch64") == 0)
		return "arm64";
	return machine;
}

int ctl_cmd_version(struct ctl *c, int argc, char **argv)
{
	const char *output = NULL;
	bool client = false, help = false;
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = {
		{ "client", 0, CTL_FLAG_BOOL, &client },
		{ "output", 'o', CTL_FLAG_STR, &output },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	const struct version_info *v = &version_info;
	struct utsname u;
	char platform[80];
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(version_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n > 0) {
		fprintf(stderr, "error: unexpected argument \"%s\"\n"
		        "See 'egressctl version --help' for usage.\n", pos.v[0]);
		goto out;
	}
	if (uname(&u) < 0)
		snprintf(u.machine, sizeof(u.machine), "unknown");
	snprintf(platform, sizeof(platform), "linux/%s", ctl_version_arch(u.machine));
	if (!output) {
		printf("Client Version: %s\n", v->version);
	} else if (strcmp(output, "json") == 0) {
		/* The values come from git and uname: no character needs JSON escaping. */
		printf("{\n  \"clientVersion\": {\n    \"gitVersion\": \"%s\",\n"
		       "    \"gitCommit\": \"%s\",\n    \"gitTreeState\": \"%s\",\n"
		       "    \"buildDate\": \"%s\",\n    \"compiler\": \"%s\",\n"
		       "    \"platform\": \"%s\"\n  }\n}\n",
		       v->version, v->commit, v->tree_state, v->date, CTL_VERSION_COMPILER, platform);
	} else if (strcmp(output, "yaml") == 0) {
		printf("clientVersion:\n  buildDate: \"%s\"\n  compiler: %s\n  gitCommit: %s\n"
		       "  gitTreeState: %s\n  gitVersion: %s\n  platform: %s\n",
		       v->date, CTL_VERSION_COMPILER, v->commit, v->tree_state, v->version, platform);
	} else {
		fprintf(stderr, "error: --output must be 'yaml' or 'json'\n");
		goto out;
	}
	(void)client;
	rc = 0;
out:
	ctl_strs_free(&pos);
	return rc;
}
