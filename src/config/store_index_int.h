/* store_index_int: what store_index.c (checking and look-ups) and store_index_file.c (the
 * index file's format) share: the in-memory records and the functions that add them. Not
 * for other modules: store_index.h is the interface. */
#ifndef EGRESS_CONFIG_STORE_INDEX_INT_H
#define EGRESS_CONFIG_STORE_INDEX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config/store_index.h"

#define SIDX_VERSION   "1"
#define SIDX_MAX_DEPTH 32
#define SIDX_NONE      SIZE_MAX
/* Saved when this many files or directories changed since it was read (or rebuilt). */
#define SIDX_SAVE_AFTER 32
/* A store with fewer config files than this keeps no index (unless it has one already):
 * reading them all costs less than the index, and a small store stays as the user made
 * it. */
#define SIDX_MIN_FILES 256

struct sidx_dir {
	const char *rel;        /* "." or a path under config/ without "./" */
	uint64_t dev, ino;
	int64_t ct_s, ct_ns;
	bool racy;              /* times too recent when recorded, or an entry that could not
	                         * be stat()ed: list it every time */
	bool gone;
};

struct sidx_file {
	size_t dir;
	const char *name;
	uint64_t ino;           /* through a symlink: the target's */
	int64_t ct_s, ct_ns;    /* change time; 0 when too recent to know the file by */
	bool link;              /* reached through a symlink */
	size_t r0, nr;          /* its resources: res[r0 .. r0 + nr) */
	bool gone;
};

struct sidx_res {
	enum res_kind kind;
	const char *ns, *name;
	const char **hosts;     /* ServiceEntry hosts, normalised; owned array */
	size_t nhosts;
	size_t file;
	size_t next;            /* next resource of the same key (hash chain), or SIDX_NONE */
	bool gone;
};

struct store_index {
	char *root, *cdir, *default_ns, *path;
	char *buf;                      /* the index file as read; records point into it */
	struct sidx_dir *dirs;
	size_t ndirs, dirs_cap;
	struct sidx_file *files;
	size_t nfiles, files_cap;
	struct sidx_res *res;
	size_t nres, res_cap;
	char **owned;                   /* strings made here */
	size_t nowned, owned_cap;
	size_t *hash;                   /* first resource of a key, or SIDX_NONE */
	size_t hash_mask;
	size_t *fhash;                  /* live files by (directory, name), or SIDX_NONE */
	size_t fhash_mask;
	bool fhash_ok;
	bool hash_ok;
	size_t changes;                 /* files and directories changed since it was read */
	bool must_save;                 /* rebuilt, or never saved */
	bool had_file;                  /* the store had an index file when opened */
	bool unsaveable;                /* a name the format cannot hold */
	/* Something could not be read for a reason other than its absence (EMFILE, EACCES,
	 * ...): what the index holds may be short of the store. Not saved, and a load reads
	 * the whole store instead (store_load): the index may make apply faster, never give
	 * another answer than a full read. */
	bool unsure;
	const char **se_hosts;          /* store_index_se_hosts' answer */
	struct store_index_stats st;
	/* Own writes (store_index_own.c). */
	uint64_t file_ino, file_size;   /* the index file as read (0: none, or not appendable) */
	unsigned blocks;                /* appended directory records read from it */
	bool torn;                      /* an appended record was torn: rewrite it whole */
	size_t own_dir;                 /* directory of the write in progress, or SIDX_NONE */
	size_t own_changes;             /* of changes, those made by recording own writes */
	size_t *own_files, nown_files;  /* files this process wrote and recorded */
	size_t *own_dirs, nown_dirs;    /* their directories, each once */
};

const char *sidx_own(struct store_index *ix, const char *s);
size_t sidx_add_dir(struct store_index *ix, const char *rel);
size_t sidx_add_file(struct store_index *ix, size_t dir, const char *name);
struct sidx_res *sidx_add_res(struct store_index *ix, size_t file);
/* store_index.c, shared with store_index_own.c. */
void sidx_drop_file(struct store_index *ix, size_t f);
char *sidx_dir_path(const struct store_index *ix, size_t d);
void sidx_parse(struct store_index *ix, size_t f);
void sidx_set_times(struct sidx_dir *d, const struct stat *st);
void sidx_record(struct store_index *ix, size_t f, const struct stat *st, bool link);
bool sidx_config_name(const char *name);
size_t sidx_fslot(const struct store_index *ix, size_t dir, const char *name);
void sidx_fhash(struct store_index *ix);
/* store_index_file.c: appends the records of own writes (store_index_own.c) to the index
 * file as read. Returns 0, or -1 when the file is not the one read any more (another
 * writer saved or appended since) or cannot be written: nothing is lost but time (the
 * directories' times differ from the file's, so the next open lists them). */
int sidx_append(struct store_index *ix);

/* Forgets every record (the arrays are kept for reuse). */
void sidx_clear(struct store_index *ix);

/* store_index_file.c: the kind table as written in the header line (caller frees). */
char *sidx_kinds(void);
/* Reads the index file. Returns 0, or -1 when it is missing or not a whole index of this
 * version, kind table and default namespace (the records are cleared; the caller
 * rebuilds). */
int sidx_read(struct store_index *ix);
/* Writes the live records atomically (a store that cannot be written keeps no index). */
void sidx_save(struct store_index *ix);

#endif
