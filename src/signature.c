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
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/signature.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
