#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
	fprintf(stderr, "egressgw: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

size_t str_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}

/* Eight bytes per step instead of FNV-1a's one: a pool key (~60 bytes) is hashed on every
 * request (pool_take, pool_put) and FNV-1a's multiply per byte cost ~350 instructions per
 * key. Each word is xor-ed in and multiplied; the length is folded in first, so keys that
 * differ only by trailing NUL bytes (the tail is zero-padded) differ. The last step is
 * MurmurHash3's 64-bit finalizer (public-domain constants), because the tables here take
 * their bucket from the LOW bits (h & mask) and a multiply alone leaves them weak.
 * Loads go through memcpy: no alignment assumption, one instruction on x86-64. The values
 * depend on the host's byte order: they are for in-memory tables only, never stored. */
#define HASH_K 0x9fb21c651e98df25ULL
#define HASH_ONES 0x0101010101010101ULL

static inline uint64_t hash_step(uint64_t h, uint64_t w)
{
	h = (h ^ w) * HASH_K;
	return h ^ (h >> 29);
}

static inline uint64_t hash_final(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

/* The last 1-7 bytes as a word (little end first, zero-padded), without a variable-length
 * memcpy call. */
static inline uint64_t hash_tail(const unsigned char *s, size_t n)
{
	uint64_t w = 0;

	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)s[i] << (8 * i);
	return w;
}

/* ASCII A-Z of each byte of w to a-z, all eight at once (other bytes, including those
 * >= 0x80, unchanged: what tolower() does in the C locale, which this process keeps). */
static inline uint64_t word_lower(uint64_t w)
{
	uint64_t low7 = w & (0x7f * HASH_ONES);
	uint64_t ge_a = low7 + (0x80 - 'A') * HASH_ONES;       /* bit 7 set: byte >= 'A' */
	uint64_t gt_z = low7 + (0x80 - 'Z' - 1) * HASH_ONES;   /* bit 7 set: byte > 'Z' */
	uint64_t upper = ge_a & ~gt_z & ~w & (0x80 * HASH_ONES);

	return w | (upper >> 2);
}

static inline uint64_t hash_any(const unsigned char *s, size_t n, bool lower)
{
	uint64_t h = hash_step(0x243f6a8885a308d3ULL, n), w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = hash_step(h, lower ? word_lower(w) : w);
	}
	if (n) {
		w = hash_tail(s, n);
		h = hash_step(h, lower ? word_lower(w) : w);
	}
	return hash_final(h);
}

uint64_t hash_bytes(const void *p, size_t n)
{
	return hash_any(p, n, false);
}

uint64_t hash_bytes_lower(const void *p, size_t n)
{
	return hash_any(p, n, true);
}

bool str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

int file_read_all(const char *path, char **out, size_t *len)
{
	return file_read_at(AT_FDCWD, path, -1, out, len);
}

int file_read_at(int dfd, const char *name, long long size, char **out, size_t *len)
{
	char *buf = NULL;
	size_t cap = 0, n = 0, want = 0;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return -1;
	/* Sized from the start when the size is known: doubling from 8 KB copied a 2 MB file
	 * eight times. */
	if (size < 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
		size = st.st_size;
	if (size > 0) {
		want = (size_t)size;
		cap = want + 4097;
		buf = xmalloc(cap);
	}
	for (;;) {
		ssize_t r;

		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		/* A regular file's read comes back short only at its end (or on a signal,
		 * which is why it must also have given at least the size known): the read
		 * that would return 0 is saved, one system call of four for each of the
		 * store's 30,000 files at start. */
		if (want && n >= want && n < cap - 1)
			break;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
fail:
	{
		int e = errno;

		free(buf);
		close(fd);
		errno = e;
	}
	return -1;
}

int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	const char *p = data;
	int fd, e;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		goto fail_free;
	/* open() applies the umask; the caller's mode is what it asked for. */
	if (fchmod(fd, mode) < 0)
		goto fail_close;
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail_close;
		}
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail_close;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_unlink;
	}
	if (rename(tmp, path) < 0)
		goto fail_unlink;
	free(tmp);
	return 0;
fail_close:
	e = errno;
	close(fd);
	errno = e;
fail_unlink:
	e = errno;
	unlink(tmp);
	errno = e;
fail_free:
	e = errno;
	free(tmp);
	errno = e;
	return -1;
}

int mkdir_p(const char *path, unsigned mode)
{
	char *p = xstrdup(path), *s;
	int ret = 0;

	for (s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;

			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				ret = -1;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	if (ret == 0) {
		struct stat st;

		if (stat(path, &st) < 0)
			ret = -1;
		else if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			ret = -1;
		}
	}
	{
		int e = errno;

		free(p);
		errno = e;
	}
	return ret;
}

int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
