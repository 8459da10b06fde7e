/* store_index: where each resource of a store's config/ lives, kept in the file
 * ROOT/..egressctl-index, so that `egressctl apply` of one object into a store of 30,000
 * files reads the one file that holds it instead of all of them.
 *
 * The index is a cache of what the directories hold, never trusted blindly:
 *  - it records, for every directory under config/ it covers, the directory's device,
 *    inode and change time (ctime, nanoseconds). Adding, removing or renaming a file in a
 *    directory changes its ctime, whoever does it (egressctl, kubectl cp, a kubelet's
 *    ..data swap, an editor that writes a new file and renames it), so on opening each
 *    directory is stat()ed and one whose identity changed is listed again: files whose
 *    inode (for a symlink: the target's inode, size and mtime) is new are parsed, files
 *    gone are dropped, new subdirectories scanned (regular files compared by inode and
 *    change time: ext4 reuses inode numbers). A directory whose times were too recent
 *    when recorded (the kernel stamps with a coarse clock; store_recent), or with an entry
 *    that could not be stat()ed (a dangling link), is listed again every time until that
 *    clears;
 *  - what cannot be read for a reason other than its absence (EMFILE, EACCES) is never
 *    dropped: the index is "unsure", not saved, and loads read the whole store;
 *  - the files it names for an object are parsed, and what they hold is compared with what
 *    the index says they hold: a difference (a file edited in place, which keeps its inode
 *    and its directory's ctime) makes the index be rebuilt from scratch and the look-up run
 *    again; the file an object would be created in (store_config_path) is always read when
 *    it exists;
 *  - before an object the index does not know is created, every file is stat()ed (about
 *    15 ms at 30,000 files) and one whose inode or own ctime changed is parsed again, so
 *    that an object added to a file by an edit in place is updated there, not defined a
 *    second time (not before an update, for its cost: a second definition of a known
 *    object added to another file by an edit in place is not seen by that apply);
 *  - a missing, unreadable, torn (no "end" line with the right counts), other-version,
 *    other-kind-table or other-default-namespace index is rebuilt from scratch (one full
 *    scan, what every apply cost before).
 * Because every reader checks, writers need no lock: two applies that save the index in
 * turn may lose each other's entries, but each recorded ctime is the one stat() saw before
 * the listing it describes, so anything the loser missed changed the ctime after it and is
 * found at the next open. The file is written atomically (rename), and a store that cannot
 * be written (a read-only mount) keeps no index: each open then scans. A store of fewer
 * than 256 config files gets none either, nor does a dry run write one; and the index is
 * rewritten only when more than a few files changed since it was read (the changes are
 * found again at each open until then, costing a parse of those files).
 *
 * Format (text, one record a line, fields separated by one space; names with a space or a
 * newline make the index unsaveable, and such a store is scanned):
 *     egressgw-store-index 1 DEFAULT_NS KIND,KIND,...
 *     D RACY DEV INO CTIME_S CTIME_NS REL          a directory ("." for config/ itself)
 *     F DIR INO CTIME_S CTIME_NS NAME                a file in directory DIR (its number);
 *     L DIR INO CTIME_S CTIME_NS NAME                L: reached through a symlink (the
 *                                                    target's inode and ctime); ctime 0:
 *                                                    recorded too soon to be trusted
 *     R KIND NS NAME [HOST...]                      a resource of the last F/L (ServiceEntry:
 *                                                   its hosts, res_norm_host'ed)
 *     end ND NF NR
 *     then, appended by own writes (store_index_own.c): F/L and R lines (replacing the
 *     file of the same name), and
 *     W DIR DEV INO CTIME_S CTIME_NS                 directory DIR as an own write left it
 * egressgw never reads it; its watcher ignores it. */
#ifndef EGRESS_CONFIG_STORE_INDEX_H
#define EGRESS_CONFIG_STORE_INDEX_H

#include <stddef.h>

#include "config/config.h"
#include "config/store.h"

#define STORE_INDEX_NAME "..egressctl-index"

struct store_index;

struct store_key {
	enum res_kind kind;
	const char *ns, *name;
};

/* What the index did since it was opened (tests and the bench read these). */
struct store_index_stats {
	size_t dirs, files, resources;   /* covered now */
	unsigned rebuilds;               /* full scans */
	size_t dirs_listed;              /* directories listed again */
	size_t files_parsed;             /* files parsed (scans and changed files) */
	unsigned full_checks;            /* every file stat()ed (before a create) */
};

/* The index of root (default_ns for documents without a namespace), read and brought up to
 * date as described above. Never fails: a store without config/ has an empty index. */
struct store_index *store_index_open(const char *root, const char *default_ns);
/* store_load_files of the files that may hold keys[0..n) (what the index says, and the
 * file each would be created in) and of their Secret directories. When a file parsed does
 * not hold what the index says, the index is rebuilt and the load done again. Returns as
 * store_load_files. */
int store_index_load(struct store_index *ix, const struct store_key *keys, size_t n,
                     struct store_contents *out, struct diags *d);
/* After this process wrote to the store: directories checked again (what was written is
 * parsed, nothing else). */
void store_index_sync(struct store_index *ix);
/* Around a write of the config file at path by this process (a file renamed into place):
 * will_write before it, wrote after it (written: whether it was written). When nothing
 * else changed the directory (store_index_own.c says how that is made sure), the index
 * records the file and the directory as the write left them, so that the next open does
 * not list the directory again; otherwise nothing is recorded (the next open lists it). */
void store_index_will_write(struct store_index *ix, const char *path);
void store_index_wrote(struct store_index *ix, const char *path, bool written);
/* The hosts of every ServiceEntry, res_norm_host'ed; valid until the next call on ix. From
 * the whole store read (store_load) when something could not be read for a reason other
 * than its absence while the index was checked (it is then "unsure": not saved, and
 * store_index_load reads the whole store too). */
const char *const *store_index_se_hosts(struct store_index *ix, size_t *n);
void store_index_get_stats(const struct store_index *ix, struct store_index_stats *out);
/* Saves the index when save is set and it changed enough (more than a few files since it
 * was read, or rebuilt) and the store is large enough to want one (256 config files, or
 * it had an index already), atomically; then frees it. */
void store_index_close(struct store_index *ix, bool save);

#endif
