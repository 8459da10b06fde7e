/* egressctl edit KIND NAME | KIND/NAME: kubectl edit over the file store.
 *
 * As kubectl does it: the object's YAML (what `get -o yaml` shows) goes to a temporary
 * file under a comment header; the editor ($EDITOR, else $VISUAL, else vi, run by
 * /bin/sh so that "code --wait" works) opens it; on exit the file is read back. Unchanged
 * (comment lines aside): "Edit cancelled, no changes made." and nothing is written. Empty:
 * "Edit cancelled, saved file was empty.". Otherwise it is validated exactly as `apply`
 * validates a document (res_decode: the same errors, FILE:LINE:COL in the file being
 * edited, and the same "Warning:" lines for fields accepted and not applied), and must
 * still be one object of the same kind, namespace and name. Valid: it replaces the
 * object where it is in the store (store_put, as apply) and "KIND/NAME edited" is printed.
 * Invalid: "error: RESOURCE "NAME" is invalid" is printed and the editor reopens with
 * kubectl's header plus the problems as comments; saving the same invalid text again
 * gives up ("error: Edit cancelled, no valid changes were saved.") and leaves the file
 * where it is ("A copy of your changes has been stored to ...").
 *
 * Secrets are refused: their data would sit in a temporary file and in whatever swap or
 * backup files the editor keeps, where nothing can wipe it (key material never leaves
 * the store's files and the processes that load it). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/egressctl/ctl.h"
#include "config/resource.h"
#include "core/util.h"

static const char edit_usage[] =
	"Edit a resource in the store with your editor, as kubectl edit does.\n"
	"\n"
	"The resource's YAML (as `egressctl get KIND NAME -o yaml` shows it) is opened in\n"
	"$EDITOR, else $VISUAL, else vi (run by /bin/sh, so EDITOR=\"code --wait\" works).\n"
	"When the editor exits, the file is validated as `egressctl apply` validates it and,\n"
	"if valid, replaces the resource where it is stored. When it is not valid, the editor\n"
	"opens it again with the problems as comments at the top (FILE:LINE:COL refers to the\n"
	"file being edited); saving it unchanged then gives up, and the file is kept. Exiting\n"
	"without a change, or saving an empty file, cancels the edit. Lines beginning with '#'\n"
	"are ignored. The kind, namespace and name cannot be changed. Secrets are not edited\n"
	"this way (their keys would be left in temporary and editor files): apply a v1 Secret\n"
	"manifest over it (`egressctl apply -f secret.yaml`), or delete and create it again.\n"
	"\n"
	"Usage:\n"
	"  egressctl edit KIND NAME [-n NAMESPACE]\n"
	"  egressctl edit KIND/NAME [-n NAMESPACE]\n"
	"\n"
	"Examples:\n"
	"  egressctl edit virtualservice direct-cnn-through-egress-gateway\n"
	"  EDITOR=nano egressctl -n istio-system edit gateway/istio-egressgateway\n";

static const char edit_header[] =
	"# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
	"# and an empty file will abort the edit. If an error occurs while saving this file will be\n"
	"# reopened with the relevant failures.\n"
	"#\n";

/* kubectl's manualStrip: the text without its comment lines ('#' first after blanks). */
static void edit_strip(const char *s, size_t len, struct sbuf *out)
{
	const char *end = s + len;

	sbuf_reset(out);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl + 1 : end, *p = s;

		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		if (!(p < e && *p == '#'))
			sbuf_add(out, s, (size_t)(e - s));
		s = e;
	}
}

static bool edit_same(const struct sbuf *a, const struct sbuf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

static bool edit_blank(const struct sbuf *b)
{
	for (size_t i = 0; i < b->len; i++)
		if (b->s[i] != ' ' && b->s[i] != '\t' && b->s[i] != '\n' && b->s[i] != '\r')
			return false;
	return true;
}

/* Runs the editor on path. Returns 0, or -1 after printing kubectl's error. */
static int edit_launch(const char *path)
{
	const char *ed = getenv("EDITOR");
	pid_t pid;
	int status;

	if (!ed || !*ed)
		ed = getenv("VISUAL");
	if (!ed || !*ed)
		ed = "vi";
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "error: cannot start the editor: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* The editor's words as the shell reads them, then the file as one argument. */
		char *cmd = xasprintf("%s \"$1\"", ed);

		execl("/bin/sh", "sh", "-c", cmd, "sh", path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "error: there was a problem with the editor \"%s\"\n", ed);
			return -1;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "error: there was a problem with the editor \"%s\"\n", ed);
		return -1;
	}
	return 0;
}

static int edit_write(const char *path, const struct sbuf *text)
{
	FILE *f = fopen(path, "we");

	if (!f || fwrite(text->s ? text->s : "", 1, text->len, f) != text->len || fclose(f) != 0) {
		fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	return 0;
}

/* Checks the edited text: one object, of e's kind, namespace and name, that decodes as
 * apply decodes it. On success fills *r (from stream s). Problems go to d (errors) and
 * warnings to warn. */
static int edit_check(const struct store_entry *e, const char *path, const char *text,
                      size_t len, struct ystream *s, struct resource *r, struct diags *d)
{
	const struct ydoc *doc = NULL;

	if (ydoc_parse(path, text, len, s, d) < 0)
		return -1;
	for (size_t i = 0; i < s->ndocs; i++) {
		if (!s->docs[i].root)
			continue;
		if (doc) {
			diag_err(d, path, s->docs[i].line, 1, "the edited file holds more than one "
			         "object; edit one at a time");
			return -1;
		}
		doc = &s->docs[i];
	}
	if (!doc)
		return 1;
	if (res_decode(s, doc, e->res.namespace, r, d) < 0)
		return -1;
	if (r->kind != e->res.kind || strcmp(r->name, e->res.name) != 0 ||
	    strcmp(r->namespace, e->res.namespace) != 0) {
		diag_err(d, path, doc->root->line, doc->root->col, "the kind, namespace or name was "
		         "changed (want %s %s/%s); use `egressctl apply` to make another object",
		         res_kind_info(e->res.kind)->kind_name, e->res.namespace, e->res.name);
		res_free(r);
		return -1;
	}
	return 0;
}

/* The failures as kubectl's header lines: "# RESOURCE "NAME" was not valid:", then
 * "# * problem" per error. */
static void edit_reasons(const struct res_kind_info *k, const char *name, const struct diags *d,
                         struct sbuf *out)
{
	struct sbuf res = SBUF_INIT, line = SBUF_INIT;

	ctl_kind_resource(k, &res);
	sbuf_addf(out, "# %s \"%s\" was not valid:\n", sbuf_str(&res), name);
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].level != DIAG_ERROR)
			continue;
		sbuf_reset(&line);
		diag_format(&d->v[i], &line);
		/* A multi-line message stays inside the comment. */
		sbuf_adds(out, "# * ");
		for (const char *p = sbuf_str(&line); *p; p++) {
			sbuf_addc(out, *p);
			if (*p == '\n' && p[1])
				sbuf_adds(out, "#   ");
		}
		sbuf_addc(out, '\n');
	}
	sbuf_adds(out, "#\n");
	sbuf_free(&res);
	sbuf_free(&line);
}

/* The editing loop for e. Returns the exit status. */
static int edit_run(const struct ctl *c, struct store_entry *e)
{
	const struct res_kind_info *k = res_kind_info(e->res.kind);
	struct sbuf original = SBUF_INIT, orig_s = SBUF_INIT, file = SBUF_INIT, edited = SBUF_INIT;
	struct sbuf prev_s = SBUF_INIT, cur_s = SBUF_INIT, ref = SBUF_INIT;
	struct ystream out;
	const char *tmp = getenv("TMPDIR");
	char *path;
	bool failed = false;
	int fd, rc = 1;

	memset(&out, 0, sizeof(out));
	ydoc_emit(ctl_output_doc(&out, e), &original);
	ystream_free(&out);
	edit_strip(original.s, original.len, &orig_s);
	path = xasprintf("%s/egressctl-edit-XXXXXX.yaml", tmp && *tmp ? tmp : "/tmp");
	fd = mkstemps(path, 5);
	if (fd < 0) {
		fprintf(stderr, "error: cannot create a temporary file: %s\n", strerror(errno));
		goto out;
	}
	close(fd);
	sbuf_adds(&file, edit_header);
	sbuf_add(&file, original.s, original.len);
	for (;;) {
		struct ystream s;
		struct diags d = DIAGS_INIT;
		struct resource r;
		char *data = NULL;
		size_t len = 0;
		int crc;

		if (edit_write(path, &file) < 0 || edit_launch(path) < 0)
			goto keep;
		if (file_read_all(path, &data, &len) < 0) {
			fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
			goto keep;
		}
		sbuf_reset(&edited);
		sbuf_add(&edited, data, len);
		free(data);
		edit_strip(edited.s, edited.len, &cur_s);
		/* Saved as it was after a failure: kubectl gives up, keeping the file. */
		if (failed && edit_same(&cur_s, &prev_s)) {
			fprintf(stderr, "A copy of your changes has been stored to \"%s\"\n"
			        "error: Edit cancelled, no valid changes were saved.\n", path);
			goto keep;
		}
		if (edit_same(&cur_s, &orig_s)) {
			fprintf(stderr, "Edit cancelled, no changes made.\n");
			rc = 0;
			goto out;
		}
		if (edit_blank(&cur_s)) {
			printf("Edit cancelled, saved file was empty.\n");
			rc = 0;
			goto out;
		}
		memset(&s, 0, sizeof(s));
		crc = edit_check(e, path, sbuf_str(&edited), edited.len, &s, &r, &d);
		if (crc == 1) {
			/* Document markers and nothing else. */
			ystream_free(&s);
			diags_free(&d);
			printf("Edit cancelled, saved file was empty.\n");
			rc = 0;
			goto out;
		}
		if (crc == 0) {
			struct ynode *doc = ctl_normalise(&s, r.node, r.namespace);
			struct ynode *was = ctl_normalise(e->stream, e->res.node, e->res.namespace);

			ctl_print_diags(&d);   /* warnings: fields accepted and not applied */
			diags_free(&d);
			if (ynode_equal(doc, was)) {
				/* Only layout or quoting changed: the same object. */
				fprintf(stderr, "Edit cancelled, no changes made.\n");
				rc = 0;
			} else if (store_put(c->root, e, e->res.kind, r.namespace, r.name, doc, &d) < 0) {
				ctl_print_diags(&d);
			} else {
				ctl_kind_ref(k, &ref);
				printf("%s/%s edited\n", sbuf_str(&ref), r.name);
				rc = 0;
			}
			res_free(&r);
			ystream_free(&s);
			diags_free(&d);
			goto out;
		}
		ystream_free(&s);
		/* Invalid: say so, and open it again with the reasons on top. */
		ctl_kind_resource(k, &ref);
		printf("error: %s \"%s\" is invalid\n", sbuf_str(&ref), e->res.name);
		sbuf_reset(&ref);
		sbuf_reset(&file);
		sbuf_adds(&file, edit_header);
		edit_reasons(k, e->res.name, &d, &file);
		sbuf_add(&file, cur_s.s, cur_s.len);
		diags_free(&d);
		sbuf_reset(&prev_s);
		sbuf_add(&prev_s, cur_s.s, cur_s.len);
		failed = true;
	}
out:
	if (fd >= 0)
		unlink(path);
keep:
	free(path);
	sbuf_free(&original);
	sbuf_free(&orig_s);
	sbuf_free(&file);
	sbuf_free(&edited);
	sbuf_free(&prev_s);
	sbuf_free(&cur_s);
	sbuf_free(&ref);
	return rc;
}

int ctl_cmd_edit(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = { { NULL, 0, CTL_FLAG_BOOL, NULL } };
	const struct res_kind_info *k;
	struct store_contents store;
	struct store_entry *e;
	char *kind = NULL;
	const char *name;
	bool help = false, loaded = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(edit_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n == 1 && strchr(pos.v[0], '/')) {
		kind = xstrndup(pos.v[0], (size_t)(strchr(pos.v[0], '/') - pos.v[0]));
		name = strchr(pos.v[0], '/') + 1;
	} else if (pos.n == 2) {
		kind = xstrdup(pos.v[0]);
		name = pos.v[1];
	} else {
		fprintf(stderr, "error: specify one resource: KIND NAME or KIND/NAME\n"
		        "See 'egressctl edit --help' for usage.\n");
		goto out;
	}
	k = ctl_kind(kind);
	if (!k)
		goto out;
	if (k->kind == RES_SECRET) {
		fprintf(stderr, "error: secrets are not edited through a temporary file (their keys "
		        "would stay in it and in the editor's files); apply a Secret manifest over "
		        "it (egressctl apply -f FILE), or delete it and create it again\n");
		goto out;
	}
	ctl_load_store(c, &store, false);
	loaded = true;
	e = store_find(&store, k->kind, ctl_namespace(c), name);
	if (!e) {
		ctl_not_found(k, name);
		goto out;
	}
	rc = edit_run(c, e);
out:
	if (loaded)
		store_contents_free(&store);
	free(kind);
	ctl_strs_free(&pos);
	return rc;
}
