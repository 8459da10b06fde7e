/* alog: the access log, in Istio's default TEXT format or its JSON encoding.
 *
 * One entry per request, formatted on the worker that served it into that worker's
 * buffer and written with one write(2) per flush (O_APPEND keeps lines from different
 * workers whole). The TEXT format is Istio's default, field for field:
 *
 * [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
 * %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
 * "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
 * %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
 * "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
 * %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
 * %REQUESTED_SERVER_NAME% %ROUTE_NAME%
 *
 * Empty values print "-". Strings are borrowed (pointer + length) from the request's
 * buffers: formatting happens before those buffers are reused. */
#ifndef EGRESS_PROXY_ALOG_H
#define EGRESS_PROXY_ALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

enum alog_format {
	ALOG_TEXT,
	ALOG_JSON,
};

/* Envoy response flags, OR-ed into alog_entry.flags; printed comma-joined in this order. */
enum alog_flag {
	ALOG_F_UH  = 1u << 0,  /* no healthy upstream */
	ALOG_F_UF  = 1u << 1,  /* upstream connection failure (incl. TLS handshake) */
	ALOG_F_UO  = 1u << 2,  /* upstream overflow (circuit breaking) */
	ALOG_F_NR  = 1u << 3,  /* no route */
	ALOG_F_URX = 1u << 4,  /* upstream retry limit exceeded */
	ALOG_F_NC  = 1u << 5,  /* no cluster */
	ALOG_F_DC  = 1u << 6,  /* downstream connection termination */
	ALOG_F_UT  = 1u << 7,  /* upstream request timeout */
	ALOG_F_LR  = 1u << 8,  /* local reset */
	ALOG_F_UR  = 1u << 9,  /* upstream remote reset */
	ALOG_F_UC  = 1u << 10, /* upstream connection termination */
	ALOG_F_SI  = 1u << 11, /* stream idle timeout */
	ALOG_F_DPE = 1u << 12, /* downstream protocol error */
	ALOG_F_UPE = 1u << 13, /* upstream protocol error */
	ALOG_F_DF  = 1u << 14, /* DNS resolution failure */
	ALOG_F_OM  = 1u << 15, /* overload manager (proxy/overload.h) */
	ALOG_F_DI  = 1u << 16, /* delayed by fault injection (proxy/route_fault.h) */
	ALOG_F_FI  = 1u << 17, /* aborted by fault injection (proxy/route_fault.h) */
};

/* A borrowed string; len 0 (or p NULL) prints as "-". */
struct alog_str {
	const char *p;
	size_t len;
};

struct alog_entry {
	int64_t start_ms;               /* wall clock, ms since the epoch */
	struct alog_str method, path, protocol;
	int response_code;              /* 0 prints as 0, as Envoy does for no response */
	unsigned flags;                 /* enum alog_flag */
	struct alog_str details;        /* RESPONSE_CODE_DETAILS */
	struct alog_str conn_term;      /* CONNECTION_TERMINATION_DETAILS */
	struct alog_str tls_failure;    /* UPSTREAM_TRANSPORT_FAILURE_REASON */
	uint64_t bytes_received, bytes_sent;
	int64_t duration_ms;
	int64_t upstream_service_time;  /* < 0 prints "-" */
	struct alog_str xff, user_agent, request_id, authority;
	struct alog_str upstream_host, upstream_cluster, upstream_local;
	struct alog_str downstream_local, downstream_remote;
	struct alog_str sni, route_name;
};

/* Appends one line (with the trailing newline) for e to out. */
void alog_format(enum alog_format fmt, const struct alog_entry *e, struct sbuf *out);
/* Appends the comma-joined flags ("UF,URX") or "-" to out. */
void alog_flags_str(unsigned flags, struct sbuf *out);
/* Parses "text"/"json". Returns 0 or -1. */
int alog_format_parse(const char *s, enum alog_format *out);

#endif
