/* Label selectors as kubectl -l takes them: requirements joined by commas, all of which
 * must hold: KEY=VALUE, KEY==VALUE, KEY!=VALUE, KEY (exists), !KEY (does not exist),
 * KEY in (V1,V2), KEY notin (V1,V2). Matched against an object's metadata.labels. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"
#include "core/util.h"

static char *sel_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* A label key or value: what Kubernetes allows (alphanumerics, '-', '_', '.', and '/' in
 * keys). */
static bool sel_word(const char *s, bool key)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(key ? "-_./" : "-_.", *s))
			return false;
	return true;
}

static int sel_add(struct ctl_selector *sel, char *req)
{
	struct ctl_sel_req r = { 0 };
	char *p, *open;

	req = sel_trim(req);
	if (req[0] == '!') {
		r.op = CTL_SEL_NOT_EXISTS;
		r.key = sel_trim(req + 1);
	} else if ((p = strstr(req, "!="))) {
		*p = '\0';
		r.op = CTL_SEL_NE;
		r.key = sel_trim(req);
		r.values[r.nvalues++] = sel_trim(p + 2);
	} else if ((p = strchr(req, '='))) {
		*p = '\0';
		r.op = CTL_SEL_EQ;
		r.key = sel_trim(req);
		r.values[r.nvalues++] = sel_trim(p + (p[1] == '=' ? 2 : 1));
	} else if ((open = strchr(req, '('))) {
		char *close = strrchr(req, ')'), *sp;

		if (!close || close[1] != '\0')
			return -1;
		*open = *close = '\0';
		sp = strpbrk(req, " \t");
		if (!sp)
			return -1;
		*sp = '\0';
		r.key = req;
		p = sel_trim(sp + 1);
		if (strcmp(p, "in") == 0)
			r.op = CTL_SEL_IN;
		else if (strcmp(p, "notin") == 0)
			r.op = CTL_SEL_NOTIN;
		else
			return -1;
		for (char *save = NULL, *v = strtok_r(open + 1, ",", &save); v;
		     v = strtok_r(NULL, ",", &save)) {
			if (r.nvalues == ARRAY_SIZE(r.values))
				return -1;
			r.values[r.nvalues++] = sel_trim(v);
		}
	} else {
		r.op = CTL_SEL_EXISTS;
		r.key = req;
	}
	if (!*r.key || !sel_word(r.key, true))
		return -1;
	for (size_t i = 0; i < r.nvalues; i++)
		if (!sel_word(r.values[i], false))
			return -1;
	if (sel->n == ARRAY_SIZE(sel->reqs))
		return -1;
	sel->reqs[sel->n++] = r;
	return 0;
}

int ctl_selector_parse(const char *s, struct ctl_selector *sel)
{
	char *start;
	int depth = 0;

	memset(sel, 0, sizeof(*sel));
	sel->buf = xstrdup(s);
	start = sel->buf;
	for (char *p = sel->buf;; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		if ((*p == ',' && depth == 0) || *p == '\0') {
			bool end = *p == '\0';

			*p = '\0';
			if (sel_add(sel, start) < 0) {
				fprintf(stderr, "error: unable to parse requirement: \"%s\"\n", s);
				return -1;
			}
			if (end)
				break;
			start = p + 1;
		}
	}
	return 0;
}

void ctl_selector_free(struct ctl_selector *sel)
{
	free(sel->buf);
	sel->buf = NULL;
}

bool ctl_selector_match(const struct ctl_selector *sel, const struct ynode *doc)
{
	const struct ynode *labels = ynode_get(ynode_get(doc, "metadata"), "labels");

	for (size_t i = 0; i < sel->n; i++) {
		const struct ctl_sel_req *r = &sel->reqs[i];
		const struct ynode *v = labels ? ynode_get(labels, r->key) : NULL;
		const char *val = v ? ynode_str(v) : NULL;
		bool in = false;

		for (size_t k = 0; val && k < r->nvalues; k++)
			in |= strcmp(val, r->values[k]) == 0;
		switch (r->op) {
		case CTL_SEL_EXISTS:
			if (!val)
				return false;
			break;
		case CTL_SEL_NOT_EXISTS:
			if (val)
				return false;
			break;
		case CTL_SEL_EQ:
		case CTL_SEL_IN:
			if (!in)
				return false;
			break;
		case CTL_SEL_NE:
		case CTL_SEL_NOTIN:
			if (in)
				return false;
			break;
		}
	}
	return true;
}
