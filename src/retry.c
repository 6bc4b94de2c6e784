/*-------------------------------------------------------------------------
 *
 * retry.c
 *		The failure policy, in one place.  The README's table is this one.
 *
 *	 answer						outcome
 *	 2xx with a sid				sent
 *	 429 (any code)				retrying, not before Retry-After; the pool pauses
 *								until then and halves its rate
 *	 502, 503, 504				retrying with backoff; repeated ones pause the pool
 *	 400 21611 (queue full)		retrying with backoff
 *	 refused, DNS, TLS			retrying with backoff (nothing reached Twilio)
 *	 500, other 5xx, 2xx		retrying, unconfirmed: looked up at Twilio before
 *	 without a sid, timeout or	it is sent again (Twilio may have it); after a
 *	 connection lost after		timeout or lost connection not before another
 *	 the request went out		request_timeout_ms has passed
 *	 401, 403					queued again without spending the attempt; the
 *								worker stops sending and probes (auth_failed)
 *	 other 4xx					failed at once, Twilio's code and message kept
 *	 max_attempts reached		failed, the last error kept
 *
 * Backoff is "full jitter": a uniform delay in
 * [0, min(backoff_max_ms, backoff_base_ms * 2^(attempt-1))], but never
 * below a small floor.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/retry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"

#include "retry.h"
#include "settings.h"

#define BACKOFF_FLOOR_US 50000	/* 50 ms */

/* 4xx codes that say "later", not "never". */
static const int retryable_4xx_codes[] = {
	21611,						/* the sender's queue at Twilio is full */
	20429,						/* too many requests, whatever the status */
};

int64
tob_backoff_us(int attempt)
{
	double		cap = Min((double) tob_backoff_max_ms,
						  (double) tob_backoff_base_ms * pow(2.0, Max(attempt - 1, 0)));
	double		delay_us = pg_prng_double(&pg_global_prng_state) * cap * 1000.0;
	double		floor_us = Min((double) BACKOFF_FLOOR_US, cap * 1000.0);

	return (int64) Max(delay_us, floor_us);
}

static bool
retryable_code(int code)
{
	int			i;

	for (i = 0; i < lengthof(retryable_4xx_codes); i++)
		if (retryable_4xx_codes[i] == code)
			return true;
	return false;
}

void
tob_decide(const TobHttpResult *result, const TobTwilioResponse *answer,
		   int attempt, TimestampTz now, TobOutcome *out)
{
	long		status = result->status;
	int64		delay_us;

	memset(out, 0, sizeof(*out));
	out->http_status = (int) status;
	out->error_code = answer->code;

	if (status >= 200 && status < 300 && tob_is_message_sid(answer->sid))
	{
		out->kind = TOB_OUTCOME_SENT;
		strlcpy(out->sid, answer->sid, sizeof(out->sid));
		strlcpy(out->delivery_status, answer->status, sizeof(out->delivery_status));
		out->error_code = 0;
		return;
	}

	/* describe the failure in one line */
	if (status == 0)
		snprintf(out->error, sizeof(out->error), "%s%s", result->error,
				 result->maybe_sent ? " (after the request was sent)" : "");
	else if (answer->message[0])
		snprintf(out->error, sizeof(out->error), "HTTP %ld: %s", status, answer->message);
	else if (status >= 200 && status < 300)
		snprintf(out->error, sizeof(out->error), "HTTP %ld without a message sid", status);
	else
		snprintf(out->error, sizeof(out->error), "HTTP %ld", status);

	if (status == 401 || status == 403)
	{
		out->kind = TOB_OUTCOME_AUTH;
		out->next_attempt_at = now;
		return;
	}

	if (status >= 400 && status < 500 && status != 429 && !retryable_code(answer->code))
	{
		out->kind = TOB_OUTCOME_FAILED;
		return;
	}

	out->throttled = (status == 429);
	out->edge_error = (status == 502 || status == 503 || status == 504);
	out->unconfirmed = (status == 0) ? result->maybe_sent :
		!(status == 429 || out->edge_error || (status >= 400 && status < 500));

	if (attempt >= tob_max_attempts)
	{
		out->kind = TOB_OUTCOME_FAILED;
		return;
	}

	out->kind = TOB_OUTCOME_RETRY;
	delay_us = tob_backoff_us(attempt);
	if (result->retry_after_s >= 0)
		delay_us = Max(delay_us, (int64) result->retry_after_s * 1000000);

	/*
	 * A request that outlived our timeout may still be at work at Twilio;
	 * give it as long again before looking it up, or the lookup misses it.
	 */
	if (status == 0 && result->maybe_sent)
		delay_us = Max(delay_us, (int64) tob_request_timeout_ms * 1000);
	out->next_attempt_at = now + delay_us;
}
