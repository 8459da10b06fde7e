/* gw_reload: the store watcher and the publication of reloads (see gw.h).
 *
 * inotify watches the store's directories; a change arms a debounce timer, whose expiry
 * starts a build on the load thread (load.c) unless one runs (then one more follows it).
 * When the build is done the main thread publishes the snapshot to the workers, waits
 * until every worker serves it, then says so (one summary line, config_reloads). A
 * rejected configuration changes nothing and is logged with each error's location. The
 * watch set is walked again only when directories may have changed, and the replaced
 * snapshot is freed on a thread of its own: the main thread's part stays small, so the
 * admin endpoint answers during any reload. */
#include "cmd/egressgw/gw.h"

#include "admin/admin.h"
#include "cmd/egressgw/lifecycle.h"
#include "cmd/egressgw/load.h"
#include "cmd/egressgw/envoy_admin.h"
#include "config/store.h"
#include "config/store_index.h"
#include "core/diag.h"
#include "core/log.h"
#include "core/util.h"
#include "core/version.h"
#include "net/dns.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/tls.h"
#include "net/tls_mem.h"
#include "proxy/pool.h"
#include "proxy/snap.h"
#include "proxy/worker.h"
#include "secrets/secret.h"

#include <ares.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <yaml.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ---- */

void gw_log_applied(const struct snap *s, const struct gw_build_stats *st)
{
	struct timespec now;

	/* Wall times, with the building thread's CPU beside them (a loaded machine stretches
	 * the first), and "publish": from the end of the build to every worker serving it. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	log_info("config", "configuration version %llu applied: %zu listener(s), %zu cluster(s) "
	         "from %zu resource(s) in %zu file(s) (%zu parsed, %zu unchanged); read %llu ms "
	         "(%llu ms CPU), compile %llu ms (%llu ms CPU), free %llu ms, publish %llu ms; %s",
	         (unsigned long long)s->version, s->nlisteners, s->nclusters, st->resources,
	         st->files, st->parsed, st->reused, (unsigned long long)st->read_ms,
	         (unsigned long long)st->read_cpu_ms, (unsigned long long)st->compile_ms,
	         (unsigned long long)st->compile_cpu_ms, (unsigned long long)st->free_ms,
	         (unsigned long long)((uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u -
	                              st->done_ms),
	         st->walked ? "store walked" : "changed files only");
}

void gw_log_diags(const struct diags *d, enum log_level lvl_err)
{
	struct sbuf line = SBUF_INIT;

	for (size_t i = 0; i < d->n; i++) {
		sbuf_reset(&line);
		diag_format(&d->v[i], &line);
		log_msg(d->v[i].level == DIAG_ERROR ? lvl_err : LOG_WARN, "config", "%s", sbuf_str(&line));
	}
	sbuf_free(&line);
}

void gw_hyg_check_new_listeners(const struct snap *old, const struct snap *s);

/* True when a diagnostic says a file could not be opened for want of descriptors: the
 * configuration read is then incomplete through no fault of its own. */
static bool diags_fd_exhausted(const struct diags *d)
{
	char emfile[64], enfile[64];

	snprintf(emfile, sizeof(emfile), "%s", strerror(EMFILE));
	snprintf(enfile, sizeof(enfile), "%s", strerror(ENFILE));
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].msg && (strstr(d->v[i].msg, emfile) || strstr(d->v[i].msg, enfile)))
			return true;
	return false;
}

/* Whether n descriptors can be opened now (they are closed again at once). */
static bool fd_headroom(int n)
{
	int fds[RELOAD_FDS_NEEDED], k;

	if (n > RELOAD_FDS_NEEDED)
		n = RELOAD_FDS_NEEDED;
	for (k = 0; k < n; k++)
		if ((fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			break;
	for (int i = 0; i < k; i++)
		close(fds[i]);
	return k == n;
}

/* Switches to what a reload built (s may be NULL: rejected; d: taken), or keeps the
 * running configuration. */
static void gw_reload(struct gw *g, struct snap *s, struct diags *dp,
                      const struct gw_build_stats *st)
{
	struct diags d = *dp;
	struct snap *old = g->snap;
	int missed;

	if (diags_fd_exhausted(&d)) {
		/* Not the configuration's fault: keep serving the running one, and try again
		 * when connections may have given descriptors back. */
		secret_cache_log_events(g->params.secrets);
		gw_log_diags(&d, LOG_WARN);
		log_error("config", "reload: out of file descriptors while reading the store; still "
		          "serving version %llu, trying again in %d ms",
		          (unsigned long long)(old ? old->version : 0), RELOAD_RETRY_MS);
		if (s)
			snap_unref(s);
		diags_free(&d);
		loop_timer_arm(g->loop, &g->reload_timer, RELOAD_RETRY_MS);
		return;
	}
	if (!s)
		secret_cache_log_events(g->params.secrets);
	gw_log_diags(&d, LOG_ERROR);
	if (!s) {
		atomic_fetch_add(&g->proxy.config_rejects, 1);
		log_error("config", "configuration rejected (%zu error(s)); still serving version %llu",
		          d.nerrors, (unsigned long long)(old ? old->version : 0));
		diags_free(&d);
		return;
	}
	diags_free(&d);
	gw_dns_restart(g, s, old);
	g->snap = s;
	proxy_publish(&g->proxy, s);
	/* "Applied" (the log lines, config_reloads, a credential's "in use") means every
	 * worker serves it: the next request gets it, over pooled connections too. A worker
	 * late to take it is waited for, up to --worker-stuck-timeout; one still behind then
	 * is stuck and logged as NOT applying it (proxy_wait_reload), and the reload is not
	 * called applied. */
	missed = proxy_wait_reload(&g->proxy, s->version);
	secret_cache_log_events(g->params.secrets);
	gw_hyg_check_new_listeners(old, s);
	if (!missed) {
		atomic_fetch_add(&g->proxy.config_reloads, 1);
		gw_log_applied(s, st);
	}
	gw_snap_release(old);
}

/* SIGHUP: the store read again now, as if it had changed. */
void gw_watch_rebuild(struct gw *g);

void gw_reload_now(void *arg)
{
	struct gw *g = arg;

	/* The same path as a change the watcher saw, without the debounce: the build runs on
	 * the load thread (or waits for the one running). */
	g->watch_dirty = true;
	loop_timer_arm(g->loop, &g->reload_timer, 0);
}

/* ---- store watcher ---- */

static bool watch_config_name(const char *name);

/* Forgets which directory each watch is (a new inotify instance numbers them anew). */
static void watch_map_clear(struct gw *g)
{
	for (size_t i = 0; i < g->nwd_dir; i++)
		free(g->wd_dir[i]);
	free(g->wd_dir);
	g->wd_dir = NULL;
	g->nwd_dir = 0;
}

/* Notes that watch wd is directory dir when it is under config/ (what the changed names
 * of a reload are made of). A directory reached by two paths (a link) keeps the first. */
static void watch_map_dir(struct gw *g, int wd, const char *dir)
{
	size_t slen = strlen(g->store), clen = strlen(STORE_CONFIG_DIR);

	if (strncmp(dir, g->store, slen) != 0 || dir[slen] != '/' ||
	    strncmp(dir + slen + 1, STORE_CONFIG_DIR, clen) != 0 ||
	    (dir[slen + 1 + clen] != '\0' && dir[slen + 1 + clen] != '/'))
		return;
	if ((size_t)wd >= g->nwd_dir) {
		size_t n = (size_t)wd + 64;

		g->wd_dir = xrealloc(g->wd_dir, n * sizeof(*g->wd_dir));
		memset(g->wd_dir + g->nwd_dir, 0, (n - g->nwd_dir) * sizeof(*g->wd_dir));
		g->nwd_dir = n;
	}
	if (!g->wd_dir[wd])
		g->wd_dir[wd] = xstrdup(dir);
}

/* The changed config file of event e, for the next build; anything that cannot be named
 * so makes it walk the store. */
static void watch_note_changed(struct gw *g, const struct inotify_event *e, bool dirty)
{
	if (dirty) {
		g->chg_full = true;
		return;
	}
	if (!e->len || !watch_config_name(e->name) || e->wd < 0 || (size_t)e->wd >= g->nwd_dir ||
	    !g->wd_dir[e->wd])
		return;   /* not configuration: a Secret's file, the identity, the root */
	if (g->chg_full)
		return;
	if (g->nchg == RELOAD_CHANGED_MAX) {
		g->chg_full = true;
		return;
	}
	g->chg = xrealloc(g->chg, (g->nchg + 1) * sizeof(*g->chg));
	g->chg[g->nchg++] = xasprintf("%s/%s", g->wd_dir[e->wd], e->name);
}

void gw_watch_fini(struct gw *g)
{
	watch_map_clear(g);
	for (size_t i = 0; i < g->nchg; i++)
		free(g->chg[i]);
	free(g->chg);
	g->chg = NULL;
	g->nchg = 0;
}

/* Hands the changed names to the build about to start (l->changed), or a full walk. */
static void watch_hand_changed(struct gw *g, struct gw_load *l)
{
	for (size_t i = 0; i < l->nchanged; i++)
		free(l->changed[i]);
	free(l->changed);
	l->changed_full = g->chg_full || !g->nchg;
	l->changed = g->chg;
	l->nchanged = g->nchg;
	g->chg = NULL;
	g->nchg = 0;
	g->chg_full = false;
}

static void watch_tree(struct gw *g, const char *dir)
{
	DIR *dh;
	struct dirent *e;

	/* IN_DONT_FOLLOW is not set: a ConfigMap mount's ..data is a symlink to a directory
	 * and the swap of that link is what changes. */
	int wd = inotify_add_watch(g->inotify_fd, dir,
	                           IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM |
	                           IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR);

	if (wd < 0)
		return;
	watch_map_dir(g, wd, dir);
	dh = opendir(dir);
	if (!dh)
		return;
	while ((e = readdir(dh))) {
		char *sub;
		struct stat st;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		/* d_type spares a stat per file (30,000 in a store of 10,000 hosts); links
		 * and file systems that do not fill it in are stat()ed. */
		if (e->d_type != DT_DIR && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN)
			continue;
		sub = xasprintf("%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR || (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)))
			watch_tree(g, sub);
		free(sub);
	}
	closedir(dh);
}

static void on_inotify(struct loop *loop, struct loop_io *io, unsigned ev);

void gw_watch_rebuild(struct gw *g)
{
	char *cfg = xasprintf("%s/%s", g->store, STORE_CONFIG_DIR);
	char *sec = xasprintf("%s/%s", g->store, STORE_SECRETS_DIR);

	/* Rebuilding the watch set on every change is simple and cheap for a store of this
	 * size, and catches directories created or swapped in since the last look. The new
	 * instance is made before the old one is closed: without a descriptor for it, the
	 * old watches stay. */
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0) {
		log_error("watch", "inotify: %s; %s", strerror(errno), g->inotify_fd >= 0
		          ? "keeping the current watches" : "store changes need a restart");
		goto out;
	}
	if (g->inotify_fd >= 0) {
		loop_io_del(g->loop, &g->inotify_io);
		close(g->inotify_fd);
	}
	g->inotify_fd = fd;
	/* New watches, new numbers: the names of changes seen so far can no longer be told
	 * apart from the new ones', so the next build walks the store. */
	watch_map_clear(g);
	g->chg_full = true;
	mkdir_p(g->store, 0755);
	watch_tree(g, g->store);
	watch_tree(g, cfg);
	watch_tree(g, sec);
	/* The workload identity too: a renewed certificate written there (in place, or by a
	 * kubelet's ..data swap) is picked up like a store change. */
	if (g->params.identity_dir)
		watch_tree(g, g->params.identity_dir);
	loop_io_init(&g->inotify_io, g->inotify_fd, on_inotify);
	loop_io_add(g->loop, &g->inotify_io, LOOP_READ);
out:
	free(cfg);
	free(sec);
}

/* A name the store reads as configuration (config/store.c: .yaml, .yml, .json). */
static bool watch_config_name(const char *name)
{
	return str_has_suffix(name, ".yaml") || str_has_suffix(name, ".yml") ||
	       str_has_suffix(name, ".json");
}

/* Whether e may have changed the set of directories to watch: a directory's event, a
 * kubelet "..data" swap, an overflow, or a name created or moved in that is neither a
 * config file nor egressctl's temporary file (it may be a symlink to a directory). */
static bool watch_event_dirty(const struct inotify_event *e)
{
	if (e->mask & (IN_ISDIR | IN_IGNORED | IN_DELETE_SELF | IN_Q_OVERFLOW))
		return true;
	if (!e->len)
		return false;
	if (strncmp(e->name, "..", 2) == 0)
		return true;
	if (!(e->mask & (IN_CREATE | IN_MOVED_TO)))
		return false;
	return !watch_config_name(e->name) && !strstr(e->name, ".tmp.");
}

/* The set's entry for (wd, name), or n when it has none. */
static size_t watch_names_find(const struct watch_names *s, int wd, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].wd == wd && strcmp(s->v[i].name, name) == 0)
			break;
	return i;
}

static void watch_names_add(struct watch_names *s, int wd, const char *name)
{
	if (watch_names_find(s, wd, name) < s->n)
		return;
	if (s->n == RELOAD_WRITING_MAX || strlen(name) >= sizeof(s->v[0].name)) {
		s->overflow = true;
		return;
	}
	s->v[s->n].wd = wd;
	strcpy(s->v[s->n].name, name);
	s->n++;
}

static void watch_names_del(struct watch_names *s, int wd, const char *name)
{
	size_t i = watch_names_find(s, wd, name);

	if (i < s->n)
		s->v[i] = s->v[--s->n];
}

static bool watch_names_any(const struct watch_names *s)
{
	return s->n || s->overflow;
}

static void watch_names_clear(struct watch_names *s)
{
	s->n = 0;
	s->overflow = false;
}

/* Notes that e's file is being written (modified, not closed yet) or is done with. (egressctl's
 * temporary files are closed before their rename, so its writes never wait here.) */
static void watch_note_write(struct gw *g, const struct inotify_event *e)
{
	if (!e->len || (e->mask & IN_ISDIR))
		return;
	if (e->mask & IN_MODIFY)
		watch_names_add(&g->writing, e->wd, e->name);
	else if (e->mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM))
		watch_names_del(&g->writing, e->wd, e->name);
}

/* A change was seen: when to read the store. Not a fixed debounce after the last event
 * (100 ms before every change was served): a quiet store is read RELOAD_SETTLE_MS after
 * a change, enough for the few events of one write; a steady stream of changes is read
 * every RELOAD_DEBOUNCE_MS at least; an apply in progress (its marker) is waited for. */
static void watch_arm(struct gw *g)
{
	uint64_t now = loop_now_ms(g->loop), end;
	unsigned wait = RELOAD_SETTLE_MS;

	if (!g->burst_ms)
		g->burst_ms = now;
	if (watch_names_any(&g->marks)) {
		wait = RELOAD_APPLY_WAIT_MS;
	} else {
		/* A file written in place and not closed yet: its writer may be between
		 * the truncate and the write (an empty file read is a resource gone). */
		if (watch_names_any(&g->writing))
			wait = RELOAD_DEBOUNCE_MS;
		end = g->burst_ms + RELOAD_DEBOUNCE_MS;
		if (now + wait > end)
			wait = now >= end ? 0 : (unsigned)(end - now);
	}
	loop_timer_arm(g->loop, &g->reload_timer, wait);
}

static void on_inotify(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct gw *g = (struct gw *)((char *)io - offsetof(struct gw, inotify_io));
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;

	(void)ev;
	while ((n = read(g->inotify_fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			const struct inotify_event *e = (const struct inotify_event *)(buf + off);

			off += (ssize_t)(sizeof(*e) + e->len);
			/* egressctl's store index (and its temporary file) in the store's root is
			 * not configuration: writing it is no reason to reload. */
			if (e->len && str_has_prefix(e->name, STORE_INDEX_NAME))
				continue;
			/* Nor is a writer's temporary file (NAME.tmp.PID, core/util.c): its rename is the
			 * change. (Counted, a writer descheduled between writing it and renaming
			 * it made a reload of the configuration as it was, 5 ms later.) */
			if (e->len && strstr(e->name, ".tmp.") && !watch_config_name(e->name))
				continue;
			/* A writer's marker: its files are one change, read once it is gone. */
			if (e->len && str_has_prefix(e->name, STORE_APPLY_MARK)) {
				/* By name alone: markers live in the root only, whose
				 * watch a rebuild between the two events renumbers. */
				if (e->mask & IN_CREATE)
					watch_names_add(&g->marks, 0, e->name);
				else if (e->mask & (IN_DELETE | IN_MOVED_FROM))
					watch_names_del(&g->marks, 0, e->name);
				changed = true;
				continue;
			}
			if (watch_event_dirty(e))
				g->watch_dirty = true;
			watch_note_changed(g, e, watch_event_dirty(e));
			watch_note_write(g, e);
			changed = true;
		}
	}
	if (changed) {
		g->last_event_ms = loop_now_ms(loop);
		watch_arm(g);
	}
}

void gw_on_reload_timer(struct loop *loop, struct loop_timer *t)
{
	struct gw *g = (struct gw *)((char *)t - offsetof(struct gw, reload_timer));

	/* A writer's marker holds back every reload, also one asked for at once (SIGHUP, a
	 * change seen while a build ran, the descriptor retry): none reads the store in the
	 * middle of an apply. One still counted after RELOAD_APPLY_WAIT_MS without any change
	 * belongs to a writer that died (or its removal was missed while the watches were
	 * rebuilt): it holds back nothing more. */
	if (watch_names_any(&g->marks)) {
		uint64_t quiet = loop_now_ms(loop) - g->last_event_ms;

		if (quiet < RELOAD_APPLY_WAIT_MS) {
			loop_timer_arm(loop, t, (unsigned)(RELOAD_APPLY_WAIT_MS - quiet));
			return;
		}
		log_warn("watch", "a writer's marker (%s.PID) stayed %d ms with no change in the "
		         "store; reading it", STORE_APPLY_MARK, RELOAD_APPLY_WAIT_MS);
		watch_names_clear(&g->marks);
	}
	/* A new burst starts with the next change. */
	g->burst_ms = 0;
	watch_names_clear(&g->writing);
	if (lc_draining(&g->lc))
		return;   /* the workers take no snapshot any more */
	if (!fd_headroom(RELOAD_FDS_NEEDED)) {
		log_error("config", "reload: out of file descriptors; still serving version %llu, "
		          "trying again in %d ms", (unsigned long long)(g->snap ? g->snap->version : 0),
		          RELOAD_RETRY_MS);
		loop_timer_arm(loop, t, RELOAD_RETRY_MS);
		return;
	}
	if (g->watch_dirty || g->inotify_fd < 0) {
		g->watch_dirty = false;
		gw_watch_rebuild(g);
	}
	if (g->load.running) {
		g->reload_pending = true;
		return;
	}
	watch_hand_changed(g, &g->load);
	if (gw_load_start(&g->load) < 0) {
		/* No thread: build here, with the admin endpoint waiting meanwhile. */
		gw_load_build(&g->load);
		gw_reload(g, g->load.snap, &g->load.diags, &g->load.stats);
	}
}

/* The reload's build is done: publish it, then start the next build if the store
 * changed meanwhile. */
void gw_on_load_done(struct loop *loop, struct loop_io *io, unsigned ev)
{
	struct gw *g = (struct gw *)((char *)io - offsetof(struct gw, load_io));

	(void)ev;
	if (!g->load.running)
		return;
	gw_load_finish(&g->load);
	if (lc_draining(&g->lc)) {
		/* The drain began while this build ran: the workers take no snapshot any more
		 * (a posted one would never be adopted, nor freed). */
		if (g->load.snap)
			snap_unref(g->load.snap);
		g->load.snap = NULL;
		diags_free(&g->load.diags);
		return;
	}
	gw_reload(g, g->load.snap, &g->load.diags, &g->load.stats);
	if (g->reload_pending && !lc_draining(&g->lc)) {
		g->reload_pending = false;
		loop_timer_arm(loop, &g->reload_timer, 0);
	}
}
