/* retry: HTTPRetry compiled into Envoy's retry policy, and its decisions (see retry.h).
 * Istio's translation is pilot's retry.ConvertPolicy; the conditions are Envoy's
 * (RetryStateImpl: wouldRetryFromHeaders, wouldRetryFromReset). */
#include "proxy/retry.h"
#include "config/resource.h"
#include "core/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct retry_policy retry_default = {
	.num_retries = 2,
	.on = RETRY_ON_CONNECT | RETRY_ON_REFUSED | RETRY_ON_UNAVAILABLE | RETRY_ON_CANCELLED |
	      RETRY_ON_CODES,
	.codes = { 503 },
	.ncodes = 1,
	.base_ms = RETRY_BASE_MS,
	.max_ms = 10 * RETRY_BASE_MS,
	.prev_hosts = true,
	.host_attempts = 5,
};

static const struct {
	const char *name;
	unsigned bit;
} retry_names[] = {
	{ "5xx", RETRY_ON_5XX },
	{ "gateway-error", RETRY_ON_GATEWAY },
	{ "reset", RETRY_ON_RESET },
	{ "reset-before-request", RETRY_ON_BEFORE_REQ },
	{ "connect-failure", RETRY_ON_CONNECT },
	{ "retriable-4xx", RETRY_ON_4XX },
	{ "refused-stream", RETRY_ON_REFUSED },
	{ "retriable-status-codes", RETRY_ON_CODES },
	{ "envoy-ratelimited", RETRY_ON_RATELIMITED },
	{ "cancelled", RETRY_ON_CANCELLED },
	{ "deadline-exceeded", RETRY_ON_DEADLINE },
	{ "internal", RETRY_ON_INTERNAL },
	{ "resource-exhausted", RETRY_ON_RESOURCE },
	{ "unavailable", RETRY_ON_UNAVAILABLE },
	/* Accepted by Istio's validation; nothing here can make them true: retriable-headers
	 * needs header matchers Istio never sets, and there is no HTTP/3. */
	{ "retriable-headers", 0 },
	{ "http3-post-connect-failure", 0 },
};

/* retryOn (validated by chk_retry_on) into p: names and status codes, as parseRetryOn. */
static void retry_parse_on(struct retry_policy *p, const char *s)
{
	p->on = 0;
	p->ncodes = 0;
	while (*s) {
		size_t l = strcspn(s, ",");
		const char *t = s;

		while (l && *t == ' ') {
			t++;
			l--;
		}
		while (l && t[l - 1] == ' ')
			l--;
		if (l == 3 && t[0] >= '1' && t[0] <= '5' && isdigit((unsigned char)t[1]) &&
		    isdigit((unsigned char)t[2])) {
			if (p->ncodes < RETRY_CODES_MAX)
				p->codes[p->ncodes++] = (uint16_t)atoi(t);
		} else {
			for (size_t i = 0; i < sizeof(retry_names) / sizeof(retry_names[0]); i++)
				if (strlen(retry_names[i].name) == l &&
				    strncmp(retry_names[i].name, t, l) == 0)
					p->on |= retry_names[i].bit;
		}
		s += strcspn(s, ",");
		if (*s == ',')
			s++;
	}
	/* Codes alone imply retriable-status-codes (ConvertPolicy adds it). */
	if (p->ncodes)
		p->on |= RETRY_ON_CODES;
}

const struct retry_policy *retry_compile(const struct vs_retries *in)
{
	struct retry_policy *p;

	if (!in)
		return &retry_default;
	if (in->attempts <= 0)
		return NULL;
	p = xmalloc(sizeof(*p));
	*p = retry_default;
	p->num_retries = (uint32_t)in->attempts;
	if (in->retry_on && in->retry_on[0])
		retry_parse_on(p, in->retry_on);
	if (in->per_try_timeout_ms > 0)
		p->per_try_ms = in->per_try_timeout_ms;
	if (in->backoff_ms > 0) {
		p->base_ms = in->backoff_ms;
		p->max_ms = 10 * in->backoff_ms;
	}
	return p;
}

void retry_free(const struct retry_policy *p)
{
	if (p && p != &retry_default)
		free((void *)p);
}

bool retry_on_status(const struct retry_policy *p, int code, int grpc, bool ratelimited)
{
	unsigned on = p->on;

	if ((on & RETRY_ON_5XX) && code >= 500 && code < 600)
		return true;
	if ((on & RETRY_ON_GATEWAY) && (code == 502 || code == 503 || code == 504))
		return true;
	if ((on & RETRY_ON_4XX) && code == 409)
		return true;
	if ((on & RETRY_ON_RATELIMITED) && ratelimited)
		return true;
	if (on & RETRY_ON_CODES)
		for (size_t i = 0; i < p->ncodes; i++)
			if (p->codes[i] == code)
				return true;
	switch (grpc) {
	case 1:
		return on & RETRY_ON_CANCELLED;
	case 4:
		return on & RETRY_ON_DEADLINE;
	case 8:
		return on & RETRY_ON_RESOURCE;
	case 13:
		return on & RETRY_ON_INTERNAL;
	case 14:
		return on & RETRY_ON_UNAVAILABLE;
	default:
		return false;
	}
}

bool retry_on_fail(const struct retry_policy *p, enum retry_fail f)
{
	/* Envoy counts a reset as a 5xx (it results in one): 5xx and gateway-error retry any
	 * failure without a response, as reset does. */
	if (p->on & (RETRY_ON_RESET | RETRY_ON_5XX | RETRY_ON_GATEWAY))
		return true;
	switch (f) {
	case RETRY_F_CONNECT:
		return p->on & (RETRY_ON_CONNECT | RETRY_ON_BEFORE_REQ);
	case RETRY_F_REFUSED:
		return p->on & RETRY_ON_REFUSED;
	case RETRY_F_RESET:
	case RETRY_F_TIMEOUT:
	default:
		return false;
	}
}

uint64_t retry_backoff_ms(const struct retry_policy *p, unsigned n, uint32_t rnd)
{
	uint64_t mult = n >= 16 ? 0xffffu : (1u << n) - 1;
	uint64_t span = mult * (uint64_t)(p->base_ms > 0 ? p->base_ms : 1);
	uint64_t ms = rnd % span;

	return ms < (uint64_t)p->max_ms ? ms : (uint64_t)p->max_ms;
}

uint32_t retry_budget(uint32_t max_retries, uint32_t active)
{
	uint32_t b;

	if (max_retries)
		return max_retries;
	b = (uint32_t)((uint64_t)active * RETRY_BUDGET_PERCENT / 100);
	return b > RETRY_BUDGET_MIN ? b : RETRY_BUDGET_MIN;
}

void retry_on_str(const struct retry_policy *p, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(retry_names) / sizeof(retry_names[0]); i++) {
		if (!retry_names[i].bit || !(p->on & retry_names[i].bit))
			continue;
		int n = snprintf(buf + len, size - len, "%s%s", len ? "," : "", retry_names[i].name);

		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
}
