#include "proxy/alog.h"

#include <string.h>
#include <time.h>

static const char *const alog_flag_names[] = {
	"UH", "UF", "UO", "NR", "URX", "NC", "DC", "UT", "LR", "UR", "UC", "SI", "DPE", "UPE", "DF",
	"OM", "DI", "FI",
};

void alog_flags_str(unsigned flags, struct sbuf *out)
{
	bool first = true;

	for (size_t i = 0; i < sizeof(alog_flag_names) / sizeof(alog_flag_names[0]); i++) {
		if (!(flags & (1u << i)))
			continue;
		if (!first)
			sbuf_addc(out, ',');
		sbuf_adds(out, alog_flag_names[i]);
		first = false;
	}
	if (first)
		sbuf_addc(out, '-');
}

int alog_format_parse(const char *s, enum alog_format *out)
{
	if (strcmp(s, "text") == 0 || strcmp(s, "TEXT") == 0)
		*out = ALOG_TEXT;
	else if (strcmp(s, "json") == 0 || strcmp(s, "JSON") == 0)
		*out = ALOG_JSON;
	else
		return -1;
	return 0;
}

static void alog_time(int64_t ms, struct sbuf *out)
{
	char buf[40];
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	sbuf_add(out, buf, n);
	sbuf_addf(out, ".%03dZ", (int)(ms % 1000));
}

/* Values come from the network: a quote or a control byte inside a quoted field would let
 * a client forge log fields, so they are escaped the way Envoy escapes nothing but we do. */
static void alog_text_str(struct alog_str s, struct sbuf *out)
{
	if (!s.p || !s.len) {
		sbuf_addc(out, '-');
		return;
	}
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c == '"' || c == '\\')
			sbuf_addf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sbuf_addf(out, "\\x%02x", c);
		else
			sbuf_addc(out, (char)c);
	}
}

static void alog_json_str(struct alog_str s, struct sbuf *out)
{
	if (!s.p || !s.len) {
		sbuf_adds(out, "null");
		return;
	}
	sbuf_addc(out, '"');
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c == '"' || c == '\\')
			sbuf_addf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			sbuf_addf(out, "\\u%04x", c);
		else
			sbuf_addc(out, (char)c);
	}
	sbuf_addc(out, '"');
}

static void alog_text(const struct alog_entry *e, struct sbuf *out)
{
	sbuf_addc(out, '[');
	alog_time(e->start_ms, out);
	sbuf_adds(out, "] \"");
	alog_text_str(e->method, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->path, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->protocol, out);
	sbuf_addf(out, "\" %d ", e->response_code);
	alog_flags_str(e->flags, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->details, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->conn_term, out);
	sbuf_adds(out, " \"");
	alog_text_str(e->tls_failure, out);
	sbuf_addf(out, "\" %llu %llu %lld ", (unsigned long long)e->bytes_received,
	          (unsigned long long)e->bytes_sent, (long long)e->duration_ms);
	if (e->upstream_service_time >= 0)
		sbuf_addf(out, "%lld", (long long)e->upstream_service_time);
	else
		sbuf_addc(out, '-');
	sbuf_adds(out, " \"");
	alog_text_str(e->xff, out);
	sbuf_adds(out, "\" \"");
	alog_text_str(e->user_agent, out);
	sbuf_adds(out, "\" \"");
	alog_text_str(e->request_id, out);
	sbuf_adds(out, "\" \"");
	alog_text_str(e->authority, out);
	sbuf_adds(out, "\" \"");
	alog_text_str(e->upstream_host, out);
	sbuf_adds(out, "\" ");
	alog_text_str(e->upstream_cluster, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->upstream_local, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->downstream_local, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->downstream_remote, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->sni, out);
	sbuf_addc(out, ' ');
	alog_text_str(e->route_name, out);
	sbuf_addc(out, '\n');
}

static void alog_json(const struct alog_entry *e, struct sbuf *out)
{
	struct sbuf tmp = SBUF_INIT;

	sbuf_adds(out, "{\"start_time\":\"");
	alog_time(e->start_ms, out);
	sbuf_adds(out, "\",\"method\":");
	alog_json_str(e->method, out);
	sbuf_adds(out, ",\"path\":");
	alog_json_str(e->path, out);
	sbuf_adds(out, ",\"protocol\":");
	alog_json_str(e->protocol, out);
	sbuf_addf(out, ",\"response_code\":%d,\"response_flags\":\"", e->response_code);
	alog_flags_str(e->flags, &tmp);
	sbuf_add(out, tmp.s, tmp.len);
	sbuf_free(&tmp);
	sbuf_adds(out, "\",\"response_code_details\":");
	alog_json_str(e->details, out);
	sbuf_adds(out, ",\"connection_termination_details\":");
	alog_json_str(e->conn_term, out);
	sbuf_adds(out, ",\"upstream_transport_failure_reason\":");
	alog_json_str(e->tls_failure, out);
	sbuf_addf(out, ",\"bytes_received\":%llu,\"bytes_sent\":%llu,\"duration\":%lld",
	          (unsigned long long)e->bytes_received, (unsigned long long)e->bytes_sent,
	          (long long)e->duration_ms);
	if (e->upstream_service_time >= 0)
		sbuf_addf(out, ",\"upstream_service_time\":\"%lld\"", (long long)e->upstream_service_time);
	else
		sbuf_adds(out, ",\"upstream_service_time\":null");
	sbuf_adds(out, ",\"x_forwarded_for\":");
	alog_json_str(e->xff, out);
	sbuf_adds(out, ",\"user_agent\":");
	alog_json_str(e->user_agent, out);
	sbuf_adds(out, ",\"request_id\":");
	alog_json_str(e->request_id, out);
	sbuf_adds(out, ",\"authority\":");
	alog_json_str(e->authority, out);
	sbuf_adds(out, ",\"upstream_host\":");
	alog_json_str(e->upstream_host, out);
	sbuf_adds(out, ",\"upstream_cluster\":");
	alog_json_str(e->upstream_cluster, out);
	sbuf_adds(out, ",\"upstream_local_address\":");
	alog_json_str(e->upstream_local, out);
	sbuf_adds(out, ",\"downstream_local_address\":");
	alog_json_str(e->downstream_local, out);
	sbuf_adds(out, ",\"downstream_remote_address\":");
	alog_json_str(e->downstream_remote, out);
	sbuf_adds(out, ",\"requested_server_name\":");
	alog_json_str(e->sni, out);
	sbuf_adds(out, ",\"route_name\":");
	alog_json_str(e->route_name, out);
	sbuf_adds(out, "}\n");
}

void alog_format(enum alog_format fmt, const struct alog_entry *e, struct sbuf *out)
{
	if (fmt == ALOG_JSON)
		alog_json(e, out);
	else
		alog_text(e, out);
}
