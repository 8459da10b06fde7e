/* store_mark: the marker a writer of several files leaves in the store's root while it
 * writes them (see store.h, STORE_APPLY_MARK).
 *
 * egressgw's watcher reloads a few milliseconds after the store goes quiet, so that one
 * change is served at once; a writer descheduled between two renames of one apply would
 * then have that apply served in two halves. The marker closes that gap: while one is
 * present the watcher waits for its removal (or, should the writer die with it left
 * behind, for RELOAD_APPLY_WAIT_MS of quiet). It is an empty file created with O_EXCL
 * under a name of the writer's own (its pid and a random word), so writers never share
 * one; the watcher keeps markers by name, so removing a stale one ends nothing else. */
#include "config/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

/* The marker of this process, for the signal handler: a writer stopped by Ctrl-C (or
 * killed by TERM, HUP, QUIT) takes its marker with it rather than holding every reload
 * back for RELOAD_APPLY_WAIT_MS. (SIGKILL cannot be caught: the watcher's wait is for
 * that.) */
static char mark_path[PATH_MAX];
static const int mark_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
static struct sigaction mark_old[sizeof(mark_sigs) / sizeof(mark_sigs[0])];
static bool mark_hooked[sizeof(mark_sigs) / sizeof(mark_sigs[0])];

static void mark_on_signal(int sig)
{
	int e = errno;

	unlink(mark_path);   /* async-signal-safe, as is the rest */
	errno = e;
	/* SA_RESETHAND put the default action back: the signal does what it would have. */
	raise(sig);
}

static void mark_hook(void)
{
	for (size_t i = 0; i < sizeof(mark_sigs) / sizeof(mark_sigs[0]); i++) {
		struct sigaction sa;

		mark_hooked[i] = false;
		/* A signal the process ignores (nohup's HUP) or handles itself stays so. */
		if (sigaction(mark_sigs[i], NULL, &mark_old[i]) < 0 ||
		    mark_old[i].sa_handler != SIG_DFL || (mark_old[i].sa_flags & SA_SIGINFO))
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = mark_on_signal;
		sa.sa_flags = SA_RESETHAND;
		sigfillset(&sa.sa_mask);
		mark_hooked[i] = sigaction(mark_sigs[i], &sa, NULL) == 0;
	}
}

static void mark_unhook(void)
{
	for (size_t i = 0; i < sizeof(mark_sigs) / sizeof(mark_sigs[0]); i++)
		if (mark_hooked[i]) {
			sigaction(mark_sigs[i], &mark_old[i], NULL);
			mark_hooked[i] = false;
		}
}

/* The marker's name: the writer's process id and a random word, so that a writer whose
 * id a dead one had (whose marker was left) still makes a marker of its own, and writers
 * in other process namespaces sharing the store never collide. */
static char *mark_name(const char *root)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
	}
	return xasprintf("%s/%s.%ld.%08x", root, STORE_APPLY_MARK, (long)getpid(), r);
}

char *store_mark_begin(const char *root)
{
	char *path = NULL;
	int fd = -1;

	if (mark_path[0])
		return NULL;   /* one marker a process; nested writes are part of that one */
	for (int tries = 0; tries < 3 && fd < 0; tries++) {
		free(path);
		path = mark_name(root);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	/* No marker (a read-only root): the files are written all the same, the watcher's
	 * short settle is all that holds the apply together then. */
	if (fd < 0 || strlen(path) >= sizeof(mark_path)) {
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		free(path);
		return NULL;
	}
	close(fd);
	memcpy(mark_path, path, strlen(path) + 1);
	mark_hook();
	return path;
}

void store_mark_end(char *mark)
{
	if (!mark)
		return;
	unlink(mark);
	mark_unhook();
	mark_path[0] = '\0';
	free(mark);
}
