/* log: the process log (not the access log, which is proxy/accesslog.h).
 *
 * Lines go to stderr as
 *     2026-11-26T16:44:16.123Z warn config: store/config/dr.yaml:9:13: ...
 * Thread-safe: each line is formatted into a local buffer and written with one write(2).
 * Never pass key material to these functions. */
#ifndef EGRESS_CORE_LOG_H
#define EGRESS_CORE_LOG_H

enum log_level {
	LOG_DEBUG,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
};

extern enum log_level log_min_level;

/* Parses "debug", "info", "warn", "error". Returns 0, or -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) do { if (log_min_level <= LOG_DEBUG) log_msg(LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define log_info(mod, ...)  log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...)  log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
