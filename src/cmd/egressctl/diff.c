/* egressctl diff -f FILE: what apply would change, as kubectl diff shows it.
 *
 * Like kubectl: each object is written twice, as the store has it now (LIVE) and as apply
 * would write it (MERGED), into two temporary directories (file names
 * GROUP.VERSION.KIND.NAMESPACE.NAME), and `diff -u -N LIVE MERGED` prints the
 * difference. Exit status as kubectl's: 0 no differences, 1 differences, >1 an error.
 * Secrets are not compared (their data is key material; kubectl masks it): each is
 * named on stderr. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/egressctl/ctl.h"
#include "config/resource.h"
#include "core/util.h"

static const char diff_usage[] =
	"Diff the store against the configuration that would be applied.\n"
	"\n"
	"Each object of the files is compared with the store: the object as the store has it\n"
	"now (LIVE, empty when absent) and as apply would write it (MERGED), printed by\n"
	"`diff -u -N` as kubectl diff prints it. Nothing is written. Secrets are not compared.\n"
	"\n"
	"Exit status: 0 no differences, 1 differences found, >1 egressctl or diff failed.\n"
	"\n"
	"Usage:\n"
	"  egressctl diff -f FILENAME [-n NAMESPACE]\n"
	"\n"
	"Flags:\n"
	"  -f, --filename FILE     a file, a directory, or - for stdin (repeatable)\n"
	"  -n, --namespace NS      namespace for documents without metadata.namespace\n"
	"      --store DIR         the store directory\n";

/* Writes doc's YAML to DIR/GROUP.VERSION.KIND.NS.NAME. Returns 0 or -1 (message printed). */
static int diff_write(const char *dir, const struct resource *r, const char *api_version,
                      const struct ynode *doc)
{
	const struct res_kind_info *k = res_kind_info(r->kind);
	struct sbuf path = SBUF_INIT, text = SBUF_INIT;
	const char *slash = strchr(api_version, '/');
	int rc = 0;

	sbuf_addf(&path, "%s/%s%s%s.%s.%s.%s", dir, k->group, k->group[0] ? "." : "",
	          slash ? slash + 1 : api_version, k->kind_name, r->namespace, r->name);
	if (doc)
		ydoc_emit(doc, &text);
	if (file_write_atomic(sbuf_str(&path), text.s ? text.s : "", text.len, 0600) < 0) {
		fprintf(stderr, "error: %s: %s\n", sbuf_str(&path), strerror(errno));
		rc = -1;
	}
	sbuf_free(&path);
	sbuf_free(&text);
	return rc;
}

static void diff_rmdir(const char *dir)
{
	pid_t pid;

	if (!dir)
		return;
	pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Runs diff -u -N live merged. Returns diff's exit status, or 2 when it cannot run. */
static int diff_run(const char *live, const char *merged)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		execlp("diff", "diff", "-u", "-N", live, merged, (char *)NULL);
		fprintf(stderr, "error: diff: %s\n", strerror(errno));
		_exit(2);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return 2;
	return WEXITSTATUS(status);
}

int ctl_cmd_diff(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs files = { NULL, 0 }, pos = { NULL, 0 };
	const struct ctl_flag flags[] = {
		{ "filename", 'f', CTL_FLAG_LIST, &files },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	struct ystream **streams = NULL;
	size_t nstreams = 0;
	struct diags d = DIAGS_INIT;
	struct store_contents store;
	struct ystream out;
	const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *live = NULL, *merged = NULL;
	bool help = false, loaded = false;
	int rc = 2;

	memset(&out, 0, sizeof(out));
	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(diff_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n || files.n == 0) {
		fprintf(stderr, "error: must specify -f FILENAME\n"
		        "See 'egressctl diff --help' for usage.\n");
		goto out;
	}
	if (ctl_read_inputs(&files, &streams, &nstreams, &d) < 0) {
		ctl_print_diags(&d);
		goto out;
	}
	live = xasprintf("%s/LIVE-XXXXXX", tmp);
	merged = xasprintf("%s/MERGED-XXXXXX", tmp);
	if (!mkdtemp(live) || !mkdtemp(merged)) {
		fprintf(stderr, "error: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	ctl_load_store(c, &store, false);
	loaded = true;
	for (size_t i = 0; i < nstreams; i++) {
		struct ystream *s = streams[i];

		for (size_t j = 0; j < s->ndocs; j++) {
			struct resource r;
			const struct store_entry *e;
			const struct ynode *av;

			if (!s->docs[j].root || res_decode(s, &s->docs[j], ctl_namespace(c), &r, &d) < 0)
				continue;
			if (r.kind == RES_SECRET) {
				fprintf(stderr, "Secret %s/%s: not compared (its data is key material)\n",
				        r.namespace, r.name);
				res_free(&r);
				continue;
			}
			av = ynode_get(s->docs[j].root, "apiVersion");
			e = store_find(&store, r.kind, r.namespace, r.name);
			if (diff_write(live, &r, ynode_str(av), e ? ctl_output_doc(&out, e) : NULL) < 0 ||
			    diff_write(merged, &r, ynode_str(av), ctl_normalise(s, r.node, r.namespace)) < 0) {
				res_free(&r);
				goto out;
			}
			res_free(&r);
		}
	}
	ctl_print_diags(&d);
	if (diags_has_errors(&d))
		goto out;
	rc = diff_run(live, merged);
out:
	diff_rmdir(live);
	diff_rmdir(merged);
	free(live);
	free(merged);
	if (loaded)
		store_contents_free(&store);
	ystream_free(&out);
	ctl_free_streams(streams, nstreams);
	diags_free(&d);
	ctl_strs_free(&files);
	ctl_strs_free(&pos);
	return rc;
}
