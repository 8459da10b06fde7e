/* store_list: the names of a store directory, sorted, with their types (split from
 * store.c; the types tell a replayed reload what it cannot replay: store_changed.c). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/store_int.h"
#include "core/util.h"

struct store_name_type {
	char *name;
	unsigned char type;
};

static int store_cmp_name_types(const void *a, const void *b)
{
	return strcmp(((const struct store_name_type *)a)->name,
	              ((const struct store_name_type *)b)->name);
}

/* The names in dir, sorted, without ".", and without anything starting with ".." (the
 * kubelet's "..data" and timestamped directories, our own temporaries), and when types is
 * not NULL their d_type (DT_UNKNOWN when the file system does not say). Returns 0, or -1
 * with errno set. */
int store_list_typed(const char *dir, char ***out, unsigned char **types, size_t *nout)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	struct store_name_type *v = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!dp)
		return -1;
	while ((errno = 0, de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || str_has_prefix(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n].name = xstrdup(de->d_name);
		v[n++].type = de->d_type;
	}
	if (errno) {
		int e = errno;

		closedir(dp);
		for (size_t i = 0; i < n; i++)
			free(v[i].name);
		free(v);
		errno = e;
		return -1;
	}
	closedir(dp);
	if (n)
		qsort(v, n, sizeof(*v), store_cmp_name_types);
	names = n ? xmalloc(n * sizeof(*names)) : NULL;
	if (types)
		*types = n ? xmalloc(n) : NULL;
	for (size_t i = 0; i < n; i++) {
		names[i] = v[i].name;
		if (types)
			(*types)[i] = v[i].type;
	}
	free(v);
	*out = names;
	*nout = n;
	return 0;
}

int store_list(const char *dir, char ***out, size_t *nout)
{
	return store_list_typed(dir, out, NULL, nout);
}
