/* tls_sysca: the system trust store loaded once (see tls_sysca.h). */
#include "net/tls_sysca.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>

static pthread_mutex_t sysca_mu = PTHREAD_MUTEX_INITIALIZER;
static X509_STORE *sysca_store;     /* reachable until exit: not a leak */
static struct stat sysca_st;        /* of the bundle file when sysca_store was loaded */
static bool sysca_st_ok;

static bool sysca_same(const struct stat *a, bool a_ok)
{
	if (a_ok != sysca_st_ok)
		return false;
	return !a_ok || (a->st_dev == sysca_st.st_dev && a->st_ino == sysca_st.st_ino &&
	                 a->st_size == sysca_st.st_size &&
	                 a->st_mtim.tv_sec == sysca_st.st_mtim.tv_sec &&
	                 a->st_mtim.tv_nsec == sysca_st.st_mtim.tv_nsec);
}

X509_STORE *tls_system_store(void)
{
	const char *f = getenv(X509_get_default_cert_file_env());
	X509_STORE *r = NULL;
	struct stat st;
	bool ok;

	if (!f || !*f)
		f = X509_get_default_cert_file();
	ok = stat(f, &st) == 0;
	pthread_mutex_lock(&sysca_mu);
	if (!sysca_store || !sysca_same(&st, ok)) {
		X509_STORE *n = X509_STORE_new();

		if (!n || !X509_STORE_set_default_paths(n)) {
			X509_STORE_free(n);
			goto out;
		}
		X509_STORE_free(sysca_store);
		sysca_store = n;
		sysca_st = st;
		sysca_st_ok = ok;
	}
	if (X509_STORE_up_ref(sysca_store))
		r = sysca_store;
out:
	pthread_mutex_unlock(&sysca_mu);
	return r;
}
