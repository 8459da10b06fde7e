/* malloc_count: an LD_PRELOAD shim that counts heap calls into a shared file, for tests
 * (tests/integration/test_alloc.py). Built by the Makefile as build/tests/malloc_count.so,
 * never linked into a product binary.
 *
 *   MALLOC_COUNT_FILE=/tmp/x/count.%p LD_PRELOAD=build/tests/malloc_count.so egressgw ...
 *
 * Each process that loads it maps the file (its "%p" replaced by the process id) and
 * counts, with relaxed atomic adds from every thread, the calls of malloc, calloc,
 * realloc, free and the aligned allocators, plus the bytes in use (malloc_usable_size of
 * what is allocated minus what is freed). A test reads the file at any moment, with no
 * signal and no cooperation from the process: the page is shared, so a read() sees the
 * current values. MALLOC_COUNT_EXE=NAME limits the counting to processes whose
 * executable's base name is NAME (the others that inherit LD_PRELOAD, nginx or
 * egressctl, are passed through untouched).
 *
 * The real allocator is reached through glibc's __libc_* entry points, not dlsym (which
 * may itself allocate, and would recurse). Calls made before the constructor ran (the
 * dynamic loader, libc's own start-up) are not counted.
 *
 * File layout (native-endian uint64_t, read by test_alloc.py): magic "MALCNT01", then
 * malloc, calloc, realloc, free, aligned (posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc), live bytes (signed). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

enum { C_MAGIC, C_MALLOC, C_CALLOC, C_REALLOC, C_FREE, C_ALIGNED, C_LIVE, C_N };

static volatile uint64_t *counters; /* NULL: not counting */

static void add(int i, int64_t v)
{
	if (counters)
		__atomic_fetch_add(&counters[i], (uint64_t)v, __ATOMIC_RELAXED);
}

/* The path with "%p" replaced by the pid, without snprintf (no allocation). */
static int make_path(const char *tmpl, char *out, size_t cap)
{
	char digits[24];
	size_t nd = 0, o = 0;
	pid_t pid = getpid();

	do {
		digits[nd++] = (char)('0' + pid % 10);
		pid /= 10;
	} while (pid > 0 && nd < sizeof(digits));
	for (const char *s = tmpl; *s; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			for (size_t k = nd; k > 0; k--) {
				if (o + 1 >= cap)
					return -1;
				out[o++] = digits[k - 1];
			}
			s++;
			continue;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = *s;
	}
	out[o] = '\0';
	return 0;
}

/* MALLOC_COUNT_EXE unset, or equal to the base name of /proc/self/exe. */
static int exe_wanted(void)
{
	const char *want = getenv("MALLOC_COUNT_EXE");
	char exe[PATH_MAX];
	ssize_t n;
	const char *base;

	if (!want || !*want)
		return 1;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	return strcmp(base, want) == 0;
}

__attribute__((constructor)) static void mc_init(void)
{
	const char *tmpl = getenv("MALLOC_COUNT_FILE");
	char path[PATH_MAX];
	void *m;
	int fd;

	if (!tmpl || !exe_wanted() || make_path(tmpl, path, sizeof(path)) < 0)
		return;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (ftruncate(fd, 4096) < 0) {
		close(fd);
		return;
	}
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return;
	memcpy(m, "MALCNT01", 8);
	counters = m;
}

static void *counted(void *p, int i)
{
	if (p && counters) {
		add(i, 1);
		add(C_LIVE, (int64_t)malloc_usable_size(p));
	}
	return p;
}

void *malloc(size_t n)
{
	return counted(__libc_malloc(n), C_MALLOC);
}

void *calloc(size_t n, size_t size)
{
	return counted(__libc_calloc(n, size), C_CALLOC);
}

void *realloc(void *p, size_t n)
{
	size_t old = p && counters ? malloc_usable_size(p) : 0;
	void *q = __libc_realloc(p, n);

	if (counters && (q || n == 0)) {
		add(C_REALLOC, 1);
		add(C_LIVE, (int64_t)(q ? malloc_usable_size(q) : 0) - (int64_t)old);
	}
	return q;
}

void free(void *p)
{
	if (p && counters) {
		add(C_FREE, 1);
		add(C_LIVE, -(int64_t)malloc_usable_size(p));
	}
	__libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return 22; /* EINVAL */
	p = __libc_memalign(align, n);
	if (!p)
		return 12; /* ENOMEM */
	*out = counted(p, C_ALIGNED);
	return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
	return counted(__libc_memalign(align, n), C_ALIGNED);
}

void *memalign(size_t align, size_t n)
{
	return counted(__libc_memalign(align, n), C_ALIGNED);
}

void *valloc(size_t n)
{
	return counted(__libc_memalign((size_t)sysconf(_SC_PAGESIZE), n), C_ALIGNED);
}

void *pvalloc(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return counted(__libc_memalign(pg, (n + pg - 1) / pg * pg), C_ALIGNED);
}
