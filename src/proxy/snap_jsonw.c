/* snap_jsonw: the small JSON writer (snap.h struct snap_json) that config_dump
 * (snap_json.c) and the AuthorizationPolicy dump (authz.c) write with. A file of its own
 * because both call it and snap_json.c calls authz.c: the writer in snap_json.c made the
 * two files call each other. Output is indented two spaces a level, keys in the order
 * written; strings escaped as RFC 8259 asks (quote, backslash, \n \r \t, other control
 * characters as \u00XX; bytes from 0x20 up as they are). */
#include "proxy/snap.h"

#include <stdio.h>
#include <string.h>

#include "core/sbuf.h"

void snap_json_escape(struct sbuf *out, const char *s)
{
	sbuf_addc(out, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			sbuf_adds(out, "\\\"");
			break;
		case '\\':
			sbuf_adds(out, "\\\\");
			break;
		case '\n':
			sbuf_adds(out, "\\n");
			break;
		case '\r':
			sbuf_adds(out, "\\r");
			break;
		case '\t':
			sbuf_adds(out, "\\t");
			break;
		default:
			if (*p < 0x20)
				sbuf_addf(out, "\\u%04x", *p);
			else
				sbuf_addc(out, (char)*p);
		}
	}
	sbuf_addc(out, '"');
}

void snap_json_init(struct snap_json *j, struct sbuf *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
}

static void snap_json_indent(struct snap_json *j)
{
	sbuf_addc(j->out, '\n');
	for (unsigned i = 0; i < j->depth; i++)
		sbuf_adds(j->out, "  ");
}

/* Comma, newline, indentation and "key": before a value. */
static void snap_json_pre(struct snap_json *j, const char *key)
{
	if (j->depth == 0)
		return;
	if (j->nonempty[j->depth])
		sbuf_addc(j->out, ',');
	j->nonempty[j->depth] = true;
	snap_json_indent(j);
	if (key) {
		snap_json_escape(j->out, key);
		sbuf_adds(j->out, ": ");
	}
}

static void snap_json_open(struct snap_json *j, const char *key, char c)
{
	snap_json_pre(j, key);
	sbuf_addc(j->out, c);
	if (j->depth + 1 < SNAP_JSON_MAX_DEPTH)
		j->depth++;
	j->nonempty[j->depth] = false;
}

static void snap_json_close(struct snap_json *j, char c)
{
	bool had = j->nonempty[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (had)
		snap_json_indent(j);
	sbuf_addc(j->out, c);
}

void snap_json_obj_begin(struct snap_json *j, const char *key)
{
	snap_json_open(j, key, '{');
}

void snap_json_obj_end(struct snap_json *j)
{
	snap_json_close(j, '}');
}

void snap_json_arr_begin(struct snap_json *j, const char *key)
{
	snap_json_open(j, key, '[');
}

void snap_json_arr_end(struct snap_json *j)
{
	snap_json_close(j, ']');
}

void snap_json_str(struct snap_json *j, const char *key, const char *v)
{
	snap_json_pre(j, key);
	if (v)
		snap_json_escape(j->out, v);
	else
		sbuf_adds(j->out, "null");
}

void snap_json_int(struct snap_json *j, const char *key, long long v)
{
	snap_json_pre(j, key);
	sbuf_addf(j->out, "%lld", v);
}

void snap_json_bool(struct snap_json *j, const char *key, bool v)
{
	snap_json_pre(j, key);
	sbuf_adds(j->out, v ? "true" : "false");
}

void snap_json_null(struct snap_json *j, const char *key)
{
	snap_json_pre(j, key);
	sbuf_adds(j->out, "null");
}
