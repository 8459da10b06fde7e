/* store_mark: the marker a writer of several files leaves in the store's root while it
 * writes them (see store.h, STORE_APPLY_MARK).
 *
 * egressgw's watcher reloads a few milliseconds after the store goes quiet, so that one
 * change is served at once; a writer descheduled between two renames of one apply would
 * then have that apply served in two halves. The marker closes that gap: while one is
 * present the watcher waits for its removal (or, should the writer die with it left
 * behind, for RELOAD_APPLY_WAIT_MS of quiet). It is an empty file created with O_EXCL
 * under a name of the writer's own, so writers never share one. */
#include "config/store.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/util.h"

char *store_mark_begin(const char *root)
{
	char *path = xasprintf("%s/%s.%ld", root, STORE_APPLY_MARK, (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	/* No marker (a read-only root, one left by a dead writer of the same pid): the
	 * files are written all the same, the watcher's short settle is all that holds the
	 * apply together then. */
	if (fd < 0) {
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

void store_mark_end(char *mark)
{
	if (!mark)
		return;
	unlink(mark);
	free(mark);
}
