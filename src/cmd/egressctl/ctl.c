/* Helpers shared by the egressctl commands: flags, kinds, inputs, tables. */
#include "cmd/egressctl/ctl.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/util.h"

/* ---- flags ---- */

void ctl_strs_free(struct ctl_strs *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static void ctl_strs_push(struct ctl_strs *s, const char *v)
{
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = v;
}

static const struct ctl_flag *ctl_flag_long(const struct ctl_flag *const *tables, size_t nt,
                                            const char *name, size_t len)
{
	for (size_t t = 0; t < nt; t++)
		for (const struct ctl_flag *f = tables[t]; f && f->lname; f++)
			if (strlen(f->lname) == len && strncmp(f->lname, name, len) == 0)
				return f;
	return NULL;
}

static const struct ctl_flag *ctl_flag_short(const struct ctl_flag *const *tables, size_t nt,
                                             char c)
{
	for (size_t t = 0; t < nt; t++)
		for (const struct ctl_flag *f = tables[t]; f && f->lname; f++)
			if (f->sname && f->sname == c)
				return f;
	return NULL;
}

/* Stores value into the flag's destination. value NULL for a bare boolean. */
static int ctl_flag_set(const struct ctl_flag *f, const char *value, const char *shown)
{
	switch (f->type) {
	case CTL_FLAG_BOOL:
		if (!value || strcmp(value, "true") == 0) {
			*(bool *)f->dest = true;
		} else if (strcmp(value, "false") == 0) {
			*(bool *)f->dest = false;
		} else {
			fprintf(stderr, "error: invalid argument \"%s\" for \"%s\" flag: "
			        "want true or false\n", value, shown);
			return -1;
		}
		return 0;
	case CTL_FLAG_STR:
		*(const char **)f->dest = value;
		return 0;
	case CTL_FLAG_LIST:
		ctl_strs_push(f->dest, value);
		return 0;
	}
	return -1;
}

int ctl_parse(struct ctl *c, int argc, char **argv, const struct ctl_flag *flags,
              struct ctl_strs *pos, bool *help)
{
	bool help_dummy = false;
	const struct ctl_flag globals[] = {
		{ "store", 0, CTL_FLAG_STR, &c->store_flag },
		{ "namespace", 'n', CTL_FLAG_STR, &c->ns_flag },
		{ "help", 'h', CTL_FLAG_BOOL, help ? help : &help_dummy },
		{ NULL, 0, CTL_FLAG_BOOL, NULL },
	};
	const struct ctl_flag *tables[] = { globals, flags };
	bool rest = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const struct ctl_flag *f;
		const char *value = NULL;

		if (rest || a[0] != '-' || a[1] == '\0') {
			ctl_strs_push(pos, a);
			continue;
		}
		if (strcmp(a, "--") == 0) {
			rest = true;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);

			f = ctl_flag_long(tables, ARRAY_SIZE(tables), name, len);
			if (!f) {
				fprintf(stderr, "error: unknown flag: --%.*s\n", (int)len, name);
				return -1;
			}
			if (eq)
				value = eq + 1;
		} else {
			f = ctl_flag_short(tables, ARRAY_SIZE(tables), a[1]);
			if (!f) {
				fprintf(stderr, "error: unknown shorthand flag: '%c' in %s\n", a[1], a);
				return -1;
			}
			if (a[2] == '=')
				value = a + 3;
			else if (a[2] != '\0')
				value = a + 2;
		}
		if (!value && f->type != CTL_FLAG_BOOL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "error: flag needs an argument: %s\n", a);
				return -1;
			}
			value = argv[++i];
		}
		if (ctl_flag_set(f, value, f->lname) < 0)
			return -1;
	}
	c->root = store_root(c->store_flag);
	return 0;
}

/* ---- kinds and names ---- */

const char *ctl_namespace(const struct ctl *c)
{
	return c->ns_flag && *c->ns_flag ? c->ns_flag : "default";
}

void ctl_kind_ref(const struct res_kind_info *k, struct sbuf *out)
{
	sbuf_adds(out, k->singular);
	if (k->group && *k->group)
		sbuf_addf(out, ".%s", k->group);
}

void ctl_kind_resource(const struct res_kind_info *k, struct sbuf *out)
{
	sbuf_adds(out, k->plural);
	if (k->group && *k->group)
		sbuf_addf(out, ".%s", k->group);
}

const struct res_kind_info *ctl_kind(const char *word)
{
	const struct res_kind_info *k = res_kind_lookup(word);

	if (!k)
		fprintf(stderr, "error: the server doesn't have a resource type \"%s\"\n", word);
	return k;
}

void ctl_not_found(const struct res_kind_info *k, const char *name)
{
	struct sbuf r = SBUF_INIT;

	ctl_kind_resource(k, &r);
	fprintf(stderr, "Error from server (NotFound): %s \"%s\" not found\n", sbuf_str(&r), name);
	sbuf_free(&r);
}

void ctl_print_diags(const struct diags *d)
{
	struct sbuf line = SBUF_INIT;

	for (size_t i = 0; i < d->n; i++) {
		const struct diag *e = &d->v[i];

		sbuf_reset(&line);
		if (e->level == DIAG_ERROR && !e->file)
			sbuf_adds(&line, "error: ");
		if (e->level == DIAG_WARNING) {
			/* As kubectl prints the API server's warnings: "Warning: ..." on stderr
			 * (the copy at error level only keeps diag_format from adding "warning: "). */
			struct diag w = *e;

			w.level = DIAG_ERROR;
			sbuf_adds(&line, "Warning: ");
			diag_format(&w, &line);
		} else {
			diag_format(e, &line);
		}
		fprintf(stderr, "%s\n", sbuf_str(&line));
	}
	sbuf_free(&line);
}

void ctl_store_diags(struct diags *d, bool warn)
{
	/* What is already stored cannot be fixed by this command; say what is wrong with it
	 * and carry on with the rest. */
	for (size_t i = 0; i < d->n; i++)
		d->v[i].level = DIAG_WARNING;
	if (warn)
		ctl_print_diags(d);
	diags_free(d);
}

void ctl_load_store(const struct ctl *c, struct store_contents *out, bool warn)
{
	struct diags d = DIAGS_INIT;

	store_load(c->root, "default", out, &d);
	ctl_store_diags(&d, warn);
}

/* ---- inputs ---- */

static int ctl_read_stdin(char **out, size_t *len)
{
	struct sbuf b = SBUF_INIT;
	char buf[65536];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			sbuf_free(&b);
			return -1;
		}
		if (n == 0)
			break;
		sbuf_add(&b, buf, (size_t)n);
	}
	*len = b.len;
	*out = sbuf_steal(&b);
	return 0;
}

static void ctl_push_stream(struct ystream ***streams, size_t *n, struct ystream *s)
{
	*streams = xrealloc(*streams, (*n + 1) * sizeof(**streams));
	(*streams)[(*n)++] = s;
}

static int ctl_parse_one(const char *path, struct ystream ***streams, size_t *n,
                         struct diags *d)
{
	struct ystream *s = xcalloc(1, sizeof(*s));

	if (ydoc_parse_file(path, s, d) < 0) {
		free(s);
		return -1;
	}
	ctl_push_stream(streams, n, s);
	return 0;
}

static int ctl_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ctl_read_dir(const char *dir, struct ystream ***streams, size_t *n, struct diags *d)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t nn = 0;
	int ret = 0;

	if (!dp) {
		diag_err(d, NULL, 0, 0, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!str_has_suffix(de->d_name, ".yaml") && !str_has_suffix(de->d_name, ".yml") &&
		    !str_has_suffix(de->d_name, ".json"))
			continue;
		names = xrealloc(names, (nn + 1) * sizeof(*names));
		names[nn++] = xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(dp);
	if (nn)
		qsort(names, nn, sizeof(*names), ctl_cmp_str);
	for (size_t i = 0; i < nn; i++) {
		if (ctl_parse_one(names[i], streams, n, d) < 0)
			ret = -1;
		free(names[i]);
	}
	free(names);
	return ret;
}

int ctl_read_inputs(const struct ctl_strs *files, struct ystream ***streams, size_t *n,
                    struct diags *d)
{
	int ret = 0;

	for (size_t i = 0; i < files->n; i++) {
		const char *f = files->v[i];
		struct stat st;

		if (strcmp(f, "-") == 0) {
			struct ystream *s;
			char *buf;
			size_t len;

			if (ctl_read_stdin(&buf, &len) < 0) {
				diag_err(d, NULL, 0, 0, "reading stdin: %s", strerror(errno));
				ret = -1;
				continue;
			}
			s = xcalloc(1, sizeof(*s));
			if (ydoc_parse("<stdin>", buf, len, s, d) < 0) {
				free(s);
				ret = -1;
			} else {
				ctl_push_stream(streams, n, s);
			}
			free(buf);
		} else if (stat(f, &st) < 0) {
			diag_err(d, NULL, 0, 0, "the path \"%s\" does not exist", f);
			ret = -1;
		} else if (S_ISDIR(st.st_mode)) {
			if (ctl_read_dir(f, streams, n, d) < 0)
				ret = -1;
		} else if (ctl_parse_one(f, streams, n, d) < 0) {
			ret = -1;
		}
	}
	return ret;
}

void ctl_free_streams(struct ystream **streams, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		store_cleanse_stream(streams[i]);
		ystream_free(streams[i]);
		free(streams[i]);
	}
	free(streams);
}

struct ynode *ctl_normalise(struct ystream *s, const struct ynode *doc, const char *ns)
{
	struct ynode *out = ynode_new_map(s);
	const struct ynode *meta = ynode_get(doc, "metadata");
	bool has_ns = ynode_get(meta, "namespace") != NULL;

	for (size_t i = 0; i < doc->n; i++) {
		const char *key = doc->pairs[i].key->str;
		const struct ynode *v = doc->pairs[i].value;
		struct ynode *m;

		if (strcmp(key, "metadata") != 0 || v->type != YNODE_MAP) {
			ynode_map_set(s, out, key, ynode_clone(s, v));
			continue;
		}
		m = ynode_new_map(s);
		for (size_t j = 0; j < v->n; j++) {
			const char *mk = v->pairs[j].key->str;

			if (strcmp(mk, "namespace") == 0) {
				ynode_map_set(s, m, mk, ynode_new_scalar(s, ns, strlen(ns), true));
				continue;
			}
			ynode_map_set(s, m, mk, ynode_clone(s, v->pairs[j].value));
			if (strcmp(mk, "name") == 0 && !has_ns) {
				ynode_map_set(s, m, "namespace", ynode_new_scalar(s, ns, strlen(ns), true));
				has_ns = true;
			}
		}
		if (!has_ns)
			ynode_map_set(s, m, "namespace", ynode_new_scalar(s, ns, strlen(ns), true));
		ynode_map_set(s, out, key, m);
	}
	return out;
}

static void ctl_set_str(struct ystream *s, struct ynode *map, const char *key, const char *v)
{
	ynode_map_set(s, map, key, ynode_new_scalar(s, v, strlen(v), true));
}

struct ynode *ctl_output_doc(struct ystream *out, const struct store_entry *e)
{
	struct store_secret sec;
	struct ynode *doc, *meta, *data;

	if (e->res.kind != RES_SECRET)
		return ctl_normalise(out, e->res.node, e->res.namespace);
	store_secret_from_res(&e->res, &sec);
	doc = ynode_new_map(out);
	ctl_set_str(out, doc, "apiVersion", "v1");
	if (sec.n) {
		data = ynode_new_map(out);
		for (size_t i = 0; i < sec.n; i++) {
			size_t elen = (sec.keys[i].len + 2) / 3 * 4;
			unsigned char *enc = xmalloc(elen + 1);

			EVP_EncodeBlock(enc, sec.keys[i].data, (int)sec.keys[i].len);
			ynode_map_set(out, data, sec.keys[i].key,
			              ynode_new_scalar(out, (char *)enc, elen, true));
			OPENSSL_cleanse(enc, elen);
			free(enc);
		}
		ynode_map_set(out, doc, "data", data);
	}
	ctl_set_str(out, doc, "kind", "Secret");
	meta = ynode_new_map(out);
	ctl_set_str(out, meta, "name", e->res.name);
	ctl_set_str(out, meta, "namespace", e->res.namespace);
	ynode_map_set(out, doc, "metadata", meta);
	ctl_set_str(out, doc, "type", sec.type);
	store_secret_free(&sec);
	return doc;
}

/* ---- age ---- */

/* k8s.io/apimachinery's duration.HumanDuration, which kubectl's AGE column uses: more
 * precision for young objects, less for old ones. */
void ctl_age(time_t then, time_t now, struct sbuf *out)
{
	long long secs = (long long)(now - then), mins, hours, days;

	if (secs < -1) {
		sbuf_adds(out, "<invalid>");
		return;
	}
	if (secs < 0)
		secs = 0;
	if (secs < 120) {
		sbuf_addf(out, "%llds", secs);
		return;
	}
	mins = secs / 60;
	if (mins < 10) {
		if (secs % 60)
			sbuf_addf(out, "%lldm%llds", mins, secs % 60);
		else
			sbuf_addf(out, "%lldm", mins);
		return;
	}
	if (mins < 3 * 60) {
		sbuf_addf(out, "%lldm", mins);
		return;
	}
	hours = secs / 3600;
	if (hours < 8) {
		if (mins % 60)
			sbuf_addf(out, "%lldh%lldm", hours, mins % 60);
		else
			sbuf_addf(out, "%lldh", hours);
		return;
	}
	if (hours < 48) {
		sbuf_addf(out, "%lldh", hours);
		return;
	}
	days = hours / 24;
	if (hours < 24 * 8) {
		if (hours % 24)
			sbuf_addf(out, "%lldd%lldh", days, hours % 24);
		else
			sbuf_addf(out, "%lldd", days);
		return;
	}
	if (hours < 24 * 365 * 2) {
		sbuf_addf(out, "%lldd", days);
		return;
	}
	if (hours < 24 * 365 * 8) {
		if (days % 365)
			sbuf_addf(out, "%lldy%lldd", days / 365, days % 365);
		else
			sbuf_addf(out, "%lldy", days / 365);
		return;
	}
	sbuf_addf(out, "%lldy", days / 365);
}

/* ---- tables ---- */

void ctl_table_init(struct ctl_table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->minwidth = 6;
	t->padding = 3;
}

void ctl_table_add(struct ctl_table *t, const char *cell)
{
	if (t->ncells == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->cells = xrealloc(t->cells, t->cap * sizeof(*t->cells));
	}
	t->cells[t->ncells++] = xstrdup(cell ? cell : "");
}

/* Width as tabwriter counts it: UTF-8 characters, not bytes. */
static size_t ctl_cell_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Go's text/tabwriter with padchar ' ' and no flags: cells are padded with spaces to
 * their column's width even when the row's last cell is empty (istioctl's rows then
 * end in spaces, and so do ours). */
void ctl_table_print(const struct ctl_table *t, FILE *out)
{
	size_t rows = t->ncells / t->ncols;
	size_t *w = xcalloc(t->ncols, sizeof(*w));

	for (size_t c = 0; c < t->ncols; c++)
		w[c] = t->minwidth;
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t l = ctl_cell_width(t->cells[r * t->ncols + c]) + t->padding;

			if (l > w[c])
				w[c] = l;
		}
	for (size_t r = 0; r < rows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			fputs(cell, out);
			if (c + 1 == t->ncols) {
				fputc('\n', out);
				continue;
			}
			for (size_t k = ctl_cell_width(cell); k < w[c]; k++)
				fputc(' ', out);
		}
	}
	free(w);
}

void ctl_table_free(struct ctl_table *t)
{
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
