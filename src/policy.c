/*-------------------------------------------------------------------------
 *
 * policy.c
 *		The failure policy, in one place.  The README's table is this one.
 *
 * What an answer means for its message:
 *
 *	 answer						outcome
 *	 2xx with a sid				sent
 *	 429 (any code)				retrying, not before Retry-After nor the backoff
 *	 400 with 21611				retrying with backoff
 *	 503						retrying with backoff
 *	 refused, DNS, TLS			retrying with backoff (nothing reached Twilio)
 *	 500, 502, 504, other 5xx,	retrying and ambiguous: Twilio may have the message,
 *	 2xx without a sid, a		so it is looked up (reconcile.c) before it is sent
 *	 timeout or lost			again, not before lookup_settle_ms (after a
 *	 connection after the		timeout, not before request_timeout_ms either)
 *	 request went out
 *	 401, 403					queued again without spending the attempt
 *	 other 4xx					failed at once, Twilio's code and message kept
 *	 max_attempts reached		failed, the last error kept
 *
 * What it means for the sender, following which of Twilio's limits the
 * answer speaks for:
 *
 *	 429/20429 is the account's concurrent requests (messages and calls
 *	 together).  The lever is the number in flight: an adaptive window
 *	 between 1 and max_concurrency, cut to 0.9 of what was in flight at most
 *	 once per round trip (and to no more than Twilio-Concurrent-Requests
 *	 says it allowed), grown by one per window of successes, eight times
 *	 slower just past the level where the last 429 came (for 30 s).  No
 *	 pause: the rows themselves wait for Retry-After.
 *
 *	 21611 is one sender's queue at Twilio being full.  The lever is the
 *	 pool's rate: halved at most once a second, never below 1/16 of mps,
 *	 climbing back by mps/60 per second without another 21611.
 *
 *	 5xx and transport errors are faults.  Each message backs off by
 *	 itself; a pool, or the whole account, is held only while failures are
 *	 near-total: a circuit breaker opens when at least 90% of the last 20
 *	 answers within 10 s failed (10 at least), stays open 0.5 s doubling to
 *	 10 s, then lets one probe through (half-open); a probe that succeeds
 *	 closes it.  A storm of 40% failures never opens it.
 *
 *	 401/403 hold the account: one probe after 1 s, 2 s, 4 s ... 60 s, or at
 *	 once after a reload; the first accepted request resumes sending.
 *
 * Backoff is "full jitter": a uniform delay in
 * [0, min(backoff_max_ms, backoff_base_ms * 2^(attempt-1))], but never
 * below a small floor.
 *
 * Locking: the account's and the pools' published state lives in shared
 * memory under tob_shared->lock; the functions here take it themselves,
 * except tob_policy_pool_tick, whose caller holds it.  The breakers'
 * sample rings are the worker's own.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/policy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"

#include "pacing.h"
#include "policy.h"
#include "settings.h"
#include "shmem.h"

#define BACKOFF_FLOOR_US		50000	/* 50 ms */
#define SENDER_QUEUE_FULL		21611	/* Twilio: the sender's queue is full */

#define WINDOW_DECREASE			0.9
#define WINDOW_BEYOND_CEILING	8	/* windows of successes per step just past the last 429 */
#define CEILING_ZONE			1.25	/* "just past": up to this much above it */
#define CEILING_MEMORY_US		30000000	/* a 429 older than this is forgotten */
#define MIN_RTT_US				5000

#define SLOWDOWN_INTERVAL_US	1000000
#define SLOWDOWN_FACTOR			0.5
#define SLOWDOWN_FLOOR			(1.0 / 16)	/* of mps */
#define RECOVERY_PER_SECOND		(1.0 / 60)	/* of mps */

#define BREAKER_SAMPLES			20
#define BREAKER_MIN_SAMPLES		10
#define BREAKER_TRIP_RATE		0.9
#define BREAKER_HORIZON_US		10000000
#define BREAKER_COOLDOWN_MIN_US 500000
#define BREAKER_COOLDOWN_MAX_US 10000000

#define AUTH_BACKOFF_MIN_US		1000000
#define AUTH_BACKOFF_MAX_US		60000000

/* The last answers a breaker judges by, and its probe. */
typedef struct Breaker
{
	TobMono		at[BREAKER_SAMPLES];
	bool		failed[BREAKER_SAMPLES];
	int			next;
	int			n;
	int			trips;			/* openings since it was last closed by a probe */
	int64		probe_id;		/* the request sent while half-open, 0: none yet */
} Breaker;

static Breaker account_breaker;
static Breaker pool_breakers[TOB_MAX_POOLS];
static TobMono last_sender_full[TOB_MAX_POOLS];	/* the last 21611 */
static TobMono last_slowdown[TOB_MAX_POOLS];	/* the last cut it made */

static TobMono last_decrease = 0;
static double ceiling = 0;		/* window at the last 429, 0: none recent */
static int64 auth_backoff_us = 0;
static int64 auth_probe_id = 0;

/*---- the message: what an answer means for it ----*/

int64
tob_backoff_us(int attempt)
{
	double		cap = Min((double) tob_backoff_max_ms,
						  (double) tob_backoff_base_ms * pow(2.0, Max(attempt - 1, 0)));
	double		delay_us = pg_prng_double(&pg_global_prng_state) * cap * 1000.0;
	double		floor_us = Min((double) BACKOFF_FLOOR_US, cap * 1000.0);

	return (int64) Max(delay_us, floor_us);
}

int64
tob_settle_us(void)
{
	return (int64) tob_lookup_settle_ms * 1000;
}

void
tob_policy_decide(const TobHttpResult *result, const TobTwilioResponse *answer,
				  bool is_call, int attempt, TimestampTz now, TobOutcome *out)
{
	long		status = result->status;
	int64		delay_us;

	memset(out, 0, sizeof(*out));
	out->http_status = (int) status;
	out->error_code = answer->code;
	out->signal = TOB_SIGNAL_OK;

	if (status >= 200 && status < 300 &&
		(is_call ? tob_is_call_sid(answer->sid) : tob_is_message_sid(answer->sid)))
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
		snprintf(out->error, sizeof(out->error), "HTTP %ld without a %s sid", status,
				 is_call ? "call" : "message");
	else
		snprintf(out->error, sizeof(out->error), "HTTP %ld", status);

	if (status == 401 || status == 403)
	{
		out->kind = TOB_OUTCOME_AUTH;
		out->signal = TOB_SIGNAL_AUTH;
		out->next_attempt_at = now;
		return;
	}

	if (status == 429)
		out->signal = TOB_SIGNAL_CONCURRENCY;
	else if (status >= 400 && status < 500 && answer->code == SENDER_QUEUE_FULL)
		out->signal = TOB_SIGNAL_SENDER_FULL;
	else if (status >= 400 && status < 500)
	{
		out->kind = TOB_OUTCOME_FAILED;
		return;
	}
	else
	{
		/*
		 * Everything else is a fault.  Only a 503, or a request none of
		 * which left us, is known not to have been processed; a 500, a
		 * gateway error or a lost answer may hide a created message.
		 */
		out->signal = TOB_SIGNAL_FAULT;
		out->ambiguous = status == 0 ? result->maybe_sent : status != 503;
	}

	if (attempt >= tob_max_attempts)
	{
		out->kind = TOB_OUTCOME_FAILED;
		return;
	}

	out->kind = TOB_OUTCOME_RETRY;
	delay_us = tob_backoff_us(attempt);
	if (result->retry_after_s >= 0)
		delay_us = Max(delay_us, (int64) result->retry_after_s * 1000000);
	if (out->ambiguous)
	{
		/* Twilio's list may not show a just-created message at once */
		delay_us = Max(delay_us, tob_settle_us());

		/*
		 * A request that outlived our timeout may still be at work at
		 * Twilio; give it as long again before looking it up.
		 */
		if (result->timed_out)
			delay_us = Max(delay_us, (int64) tob_request_timeout_ms * 1000);
	}
	out->next_attempt_at = now + delay_us;
}

/*---- the account and the pools: what an answer means for the sender ----*/

static int64
cooldown_us(int trips)
{
	return Min((int64) BREAKER_COOLDOWN_MAX_US,
			   (int64) BREAKER_COOLDOWN_MIN_US << Min(Max(trips - 1, 0), 10));
}

static void
breaker_clear(Breaker *b)
{
	memset(b, 0, sizeof(*b));
}

/*
 * Feed one answer to a breaker whose published state is *state and
 * *held_until.  Answers to requests started before it opened are ignored:
 * only its probe speaks while it is not closed.  A lookup's answer
 * (judged = false) is no sample: the list endpoint failing says nothing
 * about sending; as a probe it only makes room for the next one.
 */
static void
breaker_record(Breaker *b, TobBreakerState *state, TobMono *held_until,
			   bool judged, bool failed, int64 id, TobMono now)
{
	int			recent = 0;
	int			failures = 0;
	int			i;

	if (*state != TOB_BREAKER_CLOSED)
	{
		if (id == 0 || id != b->probe_id)
			return;
		b->probe_id = 0;
		if (!judged)
			return;
		if (failed)
		{
			b->trips++;
			*state = TOB_BREAKER_OPEN;
			*held_until = now + cooldown_us(b->trips);
		}
		else
		{
			breaker_clear(b);
			*state = TOB_BREAKER_CLOSED;
			*held_until = 0;
		}
		return;
	}
	if (!judged)
		return;

	b->at[b->next] = now;
	b->failed[b->next] = failed;
	b->next = (b->next + 1) % BREAKER_SAMPLES;
	b->n = Min(b->n + 1, BREAKER_SAMPLES);
	for (i = 0; i < b->n; i++)
		if (b->at[i] > now - BREAKER_HORIZON_US)
		{
			recent++;
			failures += b->failed[i];
		}
	if (recent >= BREAKER_MIN_SAMPLES && failures >= ceil(recent * BREAKER_TRIP_RATE))
	{
		int			trips = b->trips + 1;

		breaker_clear(b);
		b->trips = trips;
		*state = TOB_BREAKER_OPEN;
		*held_until = now + cooldown_us(trips);
	}
}

/* An open breaker whose time is up becomes half-open; how many may go now. */
static int
breaker_budget(Breaker *b, TobBreakerState *state, TobMono held_until, TobMono now)
{
	if (*state == TOB_BREAKER_OPEN && now >= held_until)
		*state = TOB_BREAKER_HALF_OPEN;
	if (*state == TOB_BREAKER_CLOSED)
		return INT_MAX;
	if (*state == TOB_BREAKER_HALF_OPEN && b->probe_id == 0)
		return 1;
	return 0;
}

/* When a breaker lets the next request go: 0 now, or TOB_MONO_NEVER (its probe is out). */
static TobMono
breaker_wake(const Breaker *b, TobBreakerState state, TobMono held_until)
{
	if (state == TOB_BREAKER_CLOSED)
		return 0;
	if (state == TOB_BREAKER_OPEN)
		return held_until;
	return b->probe_id != 0 ? TOB_MONO_NEVER : 0;
}

void
tob_policy_reset(void)
{
	int			s;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	memset(&tob_shared->account, 0, sizeof(TobAccountState));
	tob_shared->account.window = tob_max_concurrency;
	tob_shared->account.twilio_concurrent = -1;
	LWLockRelease(tob_shared->lock);
	breaker_clear(&account_breaker);
	for (s = 0; s < TOB_MAX_POOLS; s++)
		tob_policy_pool_added(s);
	last_decrease = 0;
	ceiling = 0;
	auth_backoff_us = 0;
	auth_probe_id = 0;
}

void
tob_policy_reload(void)
{
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->account.window = Min(tob_shared->account.window, (double) tob_max_concurrency);
	if (tob_shared->account.hold == TOB_HOLD_AUTH)
	{
		/* new credentials are tried at once */
		tob_shared->account.held_until = tob_mono_now();
		auth_probe_id = 0;
	}
	LWLockRelease(tob_shared->lock);
}

void
tob_policy_pool_added(int pool)
{
	breaker_clear(&pool_breakers[pool]);
	last_sender_full[pool] = 0;
	last_slowdown[pool] = 0;
}

/* The window after a 429.  Caller holds the lock. */
static void
window_decrease(TobAccountState *acct, int in_flight, int twilio_concurrent, TobMono now)
{
	double		target;

	if (last_decrease != 0 &&
		now - last_decrease < Max((int64) (acct->rtt_ms * 1000), (int64) MIN_RTT_US))
		return;					/* one cut per round trip: the rest are the same event */
	last_decrease = now;
	target = Min(acct->window, (double) in_flight + 1);
	if (twilio_concurrent > 1)
		target = Min(target, (double) twilio_concurrent - 1);
	ceiling = Max(target, 1.0);
	acct->window = Max(1.0, floor(target * WINDOW_DECREASE));
}

/*
 * The window after a success: one more per window of successes, but
 * eight times slower just past where the last 429 came, where the limit
 * most likely is.  Caller holds the lock.
 */
static void
window_increase(TobAccountState *acct, int in_flight, TobMono now)
{
	double		step = 1.0 / acct->window;

	/* grow only a window that is used, or idling would earn a burst */
	if (in_flight + 1 < floor(acct->window))
		return;
	if (ceiling > 0 && now - last_decrease > CEILING_MEMORY_US)
		ceiling = 0;
	if (ceiling > 0 && acct->window >= ceiling && acct->window < ceiling * CEILING_ZONE + 1)
		step /= WINDOW_BEYOND_CEILING;
	acct->window = Min((double) tob_max_concurrency, acct->window + step);
}

void
tob_policy_observe(int pool, int64 id, TobSignal signal, bool lookup,
				   const TobHttpResult *result, int in_flight, TobMono now)
{
	TobAccountState *acct = &tob_shared->account;
	TobPoolSlot *slot = pool >= 0 ? &tob_shared->pools[pool] : NULL;
	bool		failed = (signal == TOB_SIGNAL_FAULT);
	bool		warn_auth = false;
	bool		resumed = false;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	if (result->elapsed_us > 0)
		acct->rtt_ms = acct->rtt_ms == 0 ? result->elapsed_us / 1000.0 :
			0.875 * acct->rtt_ms + 0.125 * (result->elapsed_us / 1000.0);
	if (result->concurrent_requests >= 0)
		acct->twilio_concurrent = result->concurrent_requests;

	switch (signal)
	{
		case TOB_SIGNAL_CONCURRENCY:
			window_decrease(acct, in_flight, result->concurrent_requests, now);
			break;
		case TOB_SIGNAL_SENDER_FULL:
			if (slot == NULL)
				break;
			/* the answers to requests already out belong to the same cut */
			if (last_slowdown[pool] == 0 || now - last_slowdown[pool] >= SLOWDOWN_INTERVAL_US)
			{
				tob_pacing_set_rate(slot, Max(slot->mps * SLOWDOWN_FLOOR,
											  slot->effective_mps * SLOWDOWN_FACTOR), now);
				last_slowdown[pool] = now;
			}
			last_sender_full[pool] = now;
			break;
		case TOB_SIGNAL_OK:
			window_increase(acct, in_flight, now);
			break;
		case TOB_SIGNAL_AUTH:
			if (acct->hold != TOB_HOLD_AUTH)
			{
				warn_auth = true;
				acct->hold = TOB_HOLD_AUTH;
				auth_backoff_us = AUTH_BACKOFF_MIN_US;
				acct->held_until = now + auth_backoff_us;
			}
			else if (id == auth_probe_id)
			{
				auth_backoff_us = Min((int64) AUTH_BACKOFF_MAX_US, auth_backoff_us * 2);
				acct->held_until = now + auth_backoff_us;
			}
			break;
		case TOB_SIGNAL_FAULT:
			break;
	}
	if (id == auth_probe_id)
		auth_probe_id = 0;
	if (acct->hold == TOB_HOLD_AUTH && signal != TOB_SIGNAL_AUTH &&
		signal != TOB_SIGNAL_FAULT)
	{
		/* Twilio took the credentials again */
		acct->hold = TOB_HOLD_NONE;
		acct->held_until = 0;
		auth_backoff_us = 0;
		resumed = true;
	}

	if (signal != TOB_SIGNAL_AUTH)
	{
		if (slot != NULL)
			breaker_record(&pool_breakers[pool], &slot->breaker, &slot->held_until, !lookup,
						   failed, id, now);
		breaker_record(&account_breaker, &acct->breaker, &acct->breaker_until, !lookup,
					   failed, id, now);
	}
	if (acct->hold != TOB_HOLD_AUTH)
	{
		acct->hold = acct->breaker == TOB_BREAKER_CLOSED ? TOB_HOLD_NONE : TOB_HOLD_BREAKER;
		acct->held_until = acct->hold == TOB_HOLD_NONE ? 0 : acct->breaker_until;
	}
	LWLockRelease(tob_shared->lock);

	if (warn_auth)
		ereport(WARNING,
				(errmsg("twilio_outbox: Twilio refused the credentials (HTTP %ld); sending is stopped",
						result->status),
				 errhint("Check twilio_outbox.account_sid and the auth token or API key, then reload; the worker also tries again by itself.")));
	if (resumed)
		ereport(LOG, (errmsg("twilio_outbox: Twilio accepts the credentials again; sending resumes")));
}

int
tob_policy_account_budget(int in_flight, TobMono now)
{
	TobAccountState *acct = &tob_shared->account;
	int			budget;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	if (acct->hold == TOB_HOLD_AUTH)
		budget = (now >= acct->held_until && auth_probe_id == 0) ? 1 : 0;
	else
		budget = Min((int) floor(acct->window) - in_flight,
					 breaker_budget(&account_breaker, &acct->breaker, acct->breaker_until, now));
	LWLockRelease(tob_shared->lock);
	return Max(budget, 0);
}

int
tob_policy_pool_budget(int pool, TobMono now)
{
	TobPoolSlot *slot = &tob_shared->pools[pool];
	int			budget;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	budget = breaker_budget(&pool_breakers[pool], &slot->breaker, slot->held_until, now);
	LWLockRelease(tob_shared->lock);
	return budget;
}

void
tob_policy_started(int pool, int64 id)
{
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	if (tob_shared->account.hold == TOB_HOLD_AUTH && auth_probe_id == 0)
	{
		auth_probe_id = id;
		/* if the probe's answer says nothing, the next one waits a step */
		tob_shared->account.held_until = tob_mono_now() + auth_backoff_us;
	}
	if (tob_shared->account.breaker == TOB_BREAKER_HALF_OPEN && account_breaker.probe_id == 0)
		account_breaker.probe_id = id;
	if (tob_shared->pools[pool].breaker == TOB_BREAKER_HALF_OPEN &&
		pool_breakers[pool].probe_id == 0)
		pool_breakers[pool].probe_id = id;
	LWLockRelease(tob_shared->lock);
}

TobMono
tob_policy_account_wake(void)
{
	TobMono		wake;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	if (tob_shared->account.hold == TOB_HOLD_AUTH)
		wake = auth_probe_id != 0 ? TOB_MONO_NEVER : tob_shared->account.held_until;
	else
		wake = breaker_wake(&account_breaker, tob_shared->account.breaker,
							tob_shared->account.breaker_until);
	LWLockRelease(tob_shared->lock);
	return wake;
}

TobMono
tob_policy_pool_wake(int pool)
{
	TobMono		wake;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	wake = breaker_wake(&pool_breakers[pool], tob_shared->pools[pool].breaker,
						tob_shared->pools[pool].held_until);
	LWLockRelease(tob_shared->lock);
	return wake;
}

bool
tob_policy_auth_failed(void)
{
	bool		failed;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	failed = tob_shared->account.hold == TOB_HOLD_AUTH;
	LWLockRelease(tob_shared->lock);
	return failed;
}

void
tob_policy_pool_tick(int pool, TobMono now)
{
	TobPoolSlot *slot = &tob_shared->pools[pool];
	double		rate = slot->mps;

	if (last_sender_full[pool] != 0)
	{
		/* climbing back after 21611, while no other one comes */
		rate = slot->effective_mps;
		if (now - last_sender_full[pool] >= SLOWDOWN_INTERVAL_US)
			rate += slot->mps * RECOVERY_PER_SECOND;
		if (rate >= slot->mps)
			last_sender_full[pool] = 0;
	}
	tob_pacing_set_rate(slot, Min(rate, slot->mps), now);
}
