/*-------------------------------------------------------------------------
 *
 * signature.c
 *		Computes and checks X-Twilio-Signature.
 *
 * The string signed is the full URL Twilio requested, followed by each POST
 * parameter's name and value with no separators, sorted by name; the
 * signature is base64(HMAC-SHA1(auth token, that string)).  Names are
 * compared bytewise, which for the ASCII names Twilio uses is the code-unit
 * order of Twilio's own JavaScript validator.  Repeated names are signed
 * once per distinct value, values sorted, as that validator does.
 *
 * Twilio's own validators accept a signature made over the URL with or
 * without the scheme's default port (":443" for https, ":80" for http):
 * which of the two Twilio signs is not consistent.  tob_url_port_variant()
 * gives the other form, and the caller accepts either.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/signature.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha1.h"

#include "signature.h"

static int
param_cmp(const void *a, const void *b)
{
	const TobParam *pa = a;
	const TobParam *pb = b;
	int			c = strcmp(pa->name, pb->name);

	return c != 0 ? c : strcmp(pa->value, pb->value);
}

void
tob_sort_params(TobParam *params, int n)
{
	if (n > 1)
		qsort(params, n, sizeof(TobParam), param_cmp);
}

static void
hmac_update(pg_hmac_ctx *ctx, const char *s)
{
	if (pg_hmac_update(ctx, (const uint8 *) s, strlen(s)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a webhook signature: %s", pg_hmac_error(ctx))));
}

void
tob_twilio_signature(const char *token, const char *url,
					 const TobParam *params, int n, char out[TOB_SIGNATURE_LEN])
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA1);
	uint8		digest[SHA1_DIGEST_LENGTH];
	int			len;
	int			i;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) token, strlen(token)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a webhook signature: %s", pg_hmac_error(ctx))));
	hmac_update(ctx, url);
	for (i = 0; i < n; i++)
	{
		/* a repeated name/value pair counts once */
		if (i > 0 && param_cmp(&params[i - 1], &params[i]) == 0)
			continue;
		hmac_update(ctx, params[i].name);
		hmac_update(ctx, params[i].value);
	}
	if (pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a webhook signature: %s", pg_hmac_error(ctx))));
	pg_hmac_free(ctx);

	len = pg_b64_encode((const char *) digest, sizeof(digest), out, TOB_SIGNATURE_LEN - 1);
	if (len < 0)
		elog(ERROR, "could not base64-encode a webhook signature");
	out[len] = '\0';
}

bool
tob_signature_matches(const char *expected, const char *received)
{
	size_t		elen = strlen(expected);
	size_t		rlen = received ? strlen(received) : 0;
	unsigned char diff = (elen != rlen);
	size_t		i;

	/* always walk the whole expected signature */
	for (i = 0; i < elen; i++)
		diff |= (unsigned char) expected[i] ^ (unsigned char) (i < rlen ? received[i] : 0);
	return diff == 0 && received != NULL;
}

char *
tob_url_port_variant(const char *url)
{
	const char *scheme_end;
	const char *default_port;
	const char *host;
	const char *end;
	const char *port = NULL;
	const char *p;

	if (pg_strncasecmp(url, "https://", 8) == 0)
	{
		scheme_end = url + 8;
		default_port = "443";
	}
	else if (pg_strncasecmp(url, "http://", 7) == 0)
	{
		scheme_end = url + 7;
		default_port = "80";
	}
	else
		return NULL;

	/* the authority: [userinfo@]host[:port], up to the path, query or fragment */
	end = scheme_end + strcspn(scheme_end, "/?#");
	host = scheme_end;
	for (p = scheme_end; p < end; p++)
		if (*p == '@')
			host = p + 1;
	if (host < end && *host == '[')
	{
		const char *close = memchr(host, ']', end - host);

		if (close == NULL)
			return NULL;
		if (close + 1 < end)
		{
			if (close[1] != ':')
				return NULL;
			port = close + 1;
		}
	}
	else
	{
		for (p = host; p < end; p++)
			if (*p == ':')
				port = p;
	}
	if (host == end || (port != NULL && port == host))
		return NULL;

	if (port == NULL)
		return psprintf("%.*s:%s%s", (int) (end - url), url, default_port, end);

	/* only the default port, spelled as digits, is taken away */
	for (p = port + 1; p < end; p++)
		if (!isdigit((unsigned char) *p))
			return NULL;
	if (end - (port + 1) != strlen(default_port) ||
		strncmp(port + 1, default_port, end - (port + 1)) != 0)
		return NULL;
	return psprintf("%.*s%s", (int) (port - url), url, end);
}
