/* store_index_file: the store index's file, ROOT/..egressctl-index (format in
 * store_index.h): read into the records of store_index_int.h, and written from them. Split
 * from store_index.c, which checks the records against the store and answers look-ups. */
#include "config/store_index_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/resource.h"
#include "core/sbuf.h"
#include "core/util.h"

/* ---- the file ---- */

char *sidx_kinds(void)
{
	struct sbuf b = SBUF_INIT;

	for (int k = 0; k < RES_KIND_COUNT; k++) {
		if (k)
			sbuf_addc(&b, ',');
		sbuf_adds(&b, res_kind_info((enum res_kind)k)->kind_name);
	}
	return sbuf_steal(&b);
}

/* The next space-separated field of *p (NUL-terminated in place), or NULL at the end of
 * the line. */
static char *sidx_field(char **p)
{
	char *s = *p, *e;

	if (!s || !*s)
		return NULL;
	e = s + strcspn(s, " ");
	if (*e) {
		*e = '\0';
		*p = e + 1;
	} else {
		*p = NULL;
	}
	return s;
}

static bool sidx_num(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !*s)
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && !*end;
}

/* The index file, with its inode and size recorded for sidx_append (which appends only
 * to the file as read). */
static int sidx_read_file(struct store_index *ix, char **buf, size_t *len)
{
	struct stat a, b;
	bool before = stat(ix->path, &a) == 0;

	if (file_read_all(ix->path, buf, len) < 0)
		return -1;
	/* The same file before and after the read, whole: then it is the one read. */
	if (before && stat(ix->path, &b) == 0 && a.st_ino == b.st_ino && a.st_size == b.st_size &&
	    a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
	    (uint64_t)b.st_size == *len) {
		ix->file_ino = (uint64_t)b.st_ino;
		ix->file_size = (uint64_t)*len;
	}
	return 0;
}

/* An appended file record replaces the one of the same name in the same directory. */
static void sidx_read_replace(struct store_index *ix, size_t dir, const char *name)
{
	for (size_t f = 0; f < ix->nfiles; f++) {
		struct sidx_file *x = &ix->files[f];

		if (x->gone || x->dir != dir || strcmp(x->name, name) != 0)
			continue;
		x->gone = true;
		for (size_t i = x->r0; i < x->r0 + x->nr; i++)
			ix->res[i].gone = true;
	}
}

/* Reads the index file. Returns 0, or -1 when it is missing or not a whole index of this
 * version, kind table and default namespace (the caller rebuilds). */
int sidx_read(struct store_index *ix)
{
	char *buf, *line, *next, *kinds = NULL;
	size_t len, file = SIDX_NONE;
	uint64_t nd = 0, nf = 0, nr = 0;
	bool ended = false;
	int ret = -1;

	if (sidx_read_file(ix, &buf, &len) < 0)
		return -1;
	ix->buf = buf;
	ix->had_file = true;
	/* Room for every record at once: growing three arrays of 30,000 by doubling was a
	 * good part of reading it. */
	{
		size_t lines = 0;

		for (const char *q = buf; (q = memchr(q, '\n', len - (size_t)(q - buf))); q++)
			lines++;
		ix->files_cap = ix->res_cap = lines + 16;
		ix->files = xrealloc(ix->files, ix->files_cap * sizeof(*ix->files));
		ix->res = xrealloc(ix->res, ix->res_cap * sizeof(*ix->res));
	}
	kinds = sidx_kinds();
	for (line = buf; line && *line; line = next) {
		char *p = line, *tag;

		next = strchr(line, '\n');
		if (!next && ended) {
			ix->torn = true;   /* an appended record torn (store_index_own.c) */
			break;
		}
		if (!next)
			goto out;   /* torn: every record ends with a newline */
		*next++ = '\0';
		if (line == buf) {
			const char *magic = sidx_field(&p), *ver = sidx_field(&p);
			const char *ns = sidx_field(&p), *ks = sidx_field(&p);

			if (!magic || strcmp(magic, "egressgw-store-index") != 0 || !ver ||
			    strcmp(ver, SIDX_VERSION) != 0 || !ns || strcmp(ns, ix->default_ns) != 0 ||
			    !ks || strcmp(ks, kinds) != 0 || p)
				goto out;
			continue;
		}
		tag = sidx_field(&p);
		if (!tag)
			goto out;
		if (strcmp(tag, "D") == 0) {
			uint64_t racy, dev, ino, s, ns;
			char *rel;

			if (!sidx_num(sidx_field(&p), &racy) || !sidx_num(sidx_field(&p), &dev) ||
			    !sidx_num(sidx_field(&p), &ino) || !sidx_num(sidx_field(&p), &s) ||
			    !sidx_num(sidx_field(&p), &ns) || !(rel = sidx_field(&p)) || p)
				goto out;
			size_t di = sidx_add_dir(ix, rel);
			struct sidx_dir *d = &ix->dirs[di];

			d->racy = racy != 0;
			d->dev = dev;
			d->ino = ino;
			d->ct_s = (int64_t)s;
			d->ct_ns = (int64_t)ns;
		} else if (strcmp(tag, "F") == 0 || strcmp(tag, "L") == 0) {
			uint64_t dir, ino, s, ns;
			char *name;

			if (!sidx_num(sidx_field(&p), &dir) || dir >= ix->ndirs ||
			    !sidx_num(sidx_field(&p), &ino) || !sidx_num(sidx_field(&p), &s) ||
			    !sidx_num(sidx_field(&p), &ns) || !(name = sidx_field(&p)) || p)
				goto out;
			if (ended)
				sidx_read_replace(ix, (size_t)dir, name);
			file = sidx_add_file(ix, (size_t)dir, name);
			ix->files[file].ino = ino;
			ix->files[file].link = tag[0] == 'L';
			ix->files[file].ct_s = (int64_t)s;
			ix->files[file].ct_ns = (int64_t)ns;
		} else if (strcmp(tag, "R") == 0) {
			uint64_t kind;
			char *ns, *name, *h;
			struct sidx_res *r;

			if (file == SIDX_NONE || !sidx_num(sidx_field(&p), &kind) ||
			    kind >= RES_KIND_COUNT || !(ns = sidx_field(&p)) || !(name = sidx_field(&p)))
				goto out;
			r = sidx_add_res(ix, file);
			r->kind = (enum res_kind)kind;
			r->ns = ns;
			r->name = name;
			while ((h = sidx_field(&p)) != NULL) {
				r->hosts = xrealloc(r->hosts, (r->nhosts + 1) * sizeof(*r->hosts));
				r->hosts[r->nhosts++] = h;
			}
		} else if (strcmp(tag, "end") == 0 && !ended) {
			if (!sidx_num(sidx_field(&p), &nd) || !sidx_num(sidx_field(&p), &nf) ||
			    !sidx_num(sidx_field(&p), &nr) || p || nd != ix->ndirs ||
			    nf != ix->nfiles || nr != ix->nres)
				goto out;
			ended = true;
		} else if (strcmp(tag, "W") == 0 && ended) {
			/* A directory as an own write left it (store_index_own.c): after its files'
			 * records, so a torn append never gives a directory without them. */
			uint64_t di, dev, ino, s, ns;

			if (!sidx_num(sidx_field(&p), &di) || di >= ix->ndirs ||
			    !sidx_num(sidx_field(&p), &dev) || !sidx_num(sidx_field(&p), &ino) ||
			    !sidx_num(sidx_field(&p), &s) || !sidx_num(sidx_field(&p), &ns) || p ||
			    ix->dirs[di].dev != dev || ix->dirs[di].ino != ino) {
				ix->torn = true;
				break;
			}
			ix->dirs[di].ct_s = (int64_t)s;
			ix->dirs[di].ct_ns = (int64_t)ns;
			ix->dirs[di].racy = false;
			ix->blocks++;
		} else {
			goto out;
		}
	}
	if (ended)
		ret = 0;
out:
	free(kinds);
	if (ret < 0)
		sidx_clear(ix);
	return ret;
}

/* The F and R records, the bulk of the file, without printf (30,000 of each at 10,000
 * hosts: printf was a third of an apply's CPU). */
static void sidx_put_num(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_addc(b, ' ');
	sbuf_add(b, tmp + i, sizeof(tmp) - i);
}

static void sidx_put_str(struct sbuf *b, const char *s)
{
	sbuf_addc(b, ' ');
	sbuf_adds(b, s);
}

static void sidx_put_file(struct sbuf *b, size_t dir, const struct sidx_file *f)
{
	sbuf_addc(b, f->link ? 'L' : 'F');
	sidx_put_num(b, dir);
	sidx_put_num(b, f->ino);
	sidx_put_num(b, (uint64_t)f->ct_s);
	sidx_put_num(b, (uint64_t)f->ct_ns);
	sidx_put_str(b, f->name);
	sbuf_addc(b, '\n');
}

static void sidx_put_res(struct sbuf *b, const struct sidx_res *r)
{
	sbuf_addc(b, 'R');
	sidx_put_num(b, (uint64_t)r->kind);
	sidx_put_str(b, r->ns);
	sidx_put_str(b, r->name);
	for (size_t k = 0; k < r->nhosts; k++)
		sidx_put_str(b, r->hosts[k]);
	sbuf_addc(b, '\n');
}

/* Writes the live records, renumbering directories. */
void sidx_save(struct store_index *ix)
{
	struct sbuf b = SBUF_INIT;
	size_t *num = xcalloc(ix->ndirs + 1, sizeof(*num)), nd = 0, nf = 0, nr = 0;
	char *kinds = sidx_kinds();

	/* About 100 bytes a file with its resource; sized once rather than doubled. */
	b.cap = 4096 + 100 * ix->nfiles + 40 * ix->nres;
	b.s = xmalloc(b.cap);
	sbuf_addf(&b, "egressgw-store-index " SIDX_VERSION " %s %s\n", ix->default_ns, kinds);
	for (size_t d = 0; d < ix->ndirs; d++) {
		const struct sidx_dir *x = &ix->dirs[d];

		if (x->gone)
			continue;
		num[d] = nd++;
		sbuf_addf(&b, "D %d %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 " %s\n",
		            x->racy ? 1 : 0, x->dev, x->ino, x->ct_s, x->ct_ns, x->rel);
	}
	for (size_t f = 0; f < ix->nfiles; f++) {
		const struct sidx_file *x = &ix->files[f];

		if (x->gone)
			continue;
		nf++;
		sidx_put_file(&b, num[x->dir], x);
		for (size_t i = x->r0; i < x->r0 + x->nr; i++) {
			const struct sidx_res *r = &ix->res[i];

			nr++;
			sidx_put_res(&b, r);
		}
	}
	sbuf_addf(&b, "end %zu %zu %zu\n", nd, nf, nr);
	/* A store that cannot be written (a read-only mount) keeps no index. */
	(void)file_write_atomic(ix->path, b.s, b.len, 0644);
	sbuf_free(&b);
	free(kinds);
	free(num);
}

int sidx_append(struct store_index *ix)
{
	struct sbuf b = SBUF_INIT;
	struct stat st;
	int fd, ret = -1;
	const char *p;
	size_t left;

	if (!ix->file_ino)
		return -1;
	for (size_t i = 0; i < ix->nown_dirs; i++) {
		size_t d = ix->own_dirs[i];
		const struct sidx_dir *x = &ix->dirs[d];

		for (size_t k = 0; k < ix->nown_files; k++) {
			const struct sidx_file *f = &ix->files[ix->own_files[k]];

			if (f->gone || f->dir != d)
				continue;
			sidx_put_file(&b, d, f);
			for (size_t r = f->r0; r < f->r0 + f->nr; r++)
				sidx_put_res(&b, &ix->res[r]);
		}
		sbuf_addf(&b, "W %zu %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 "\n", d, x->dev,
		          x->ino, x->ct_s, x->ct_ns);
	}
	fd = open(ix->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		goto out;
	/* Appenders take turns; one that finds the file grown (or replaced) since it read it
	 * does not append: its records were checked against what it read. */
	if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_ino != ix->file_ino || (uint64_t)st.st_size != ix->file_size)
		goto out_close;
	for (p = b.s, left = b.len; left;) {
		ssize_t w = write(fd, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto out_close;
		p += w;
		left -= (size_t)w;
	}
	ret = 0;
out_close:
	close(fd);
out:
	sbuf_free(&b);
	return ret;
}
