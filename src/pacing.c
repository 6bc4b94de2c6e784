/*-------------------------------------------------------------------------
 *
 * pacing.c
 *		Token buckets in segments, one per pool, as a generic cell rate
 *		algorithm.
 *
 * A bucket of capacity `burst` refilled at `rate` segments per second is
 * kept as one timestamp, tat: the time at which the bucket would be full
 * again.  A message of c segments may go at `now` when
 *
 *		max(tat, now) + c/rate <= now + burst/rate
 *
 * and then tat becomes max(tat, now) + c/rate.  So over any window of W
 * seconds a pool sends at most rate*W + burst segments.  A message larger
 * than the whole bucket goes when the bucket is full and leaves it in debt.
 *
 * The worker wakes on millisecond timers and is sometimes a little late.
 * With a plain bucket, time spent late with a full bucket is lost for good
 * (at 50 mps and burst 1, one late millisecond per message is 5% of the
 * rate).  So when the worker comes at most TOB_PACING_LATE_CREDIT_US after
 * tat, the next slot still starts at tat: the lateness is made up.  That can
 * add at most rate * credit segments to a window (0.5 at 50 mps).  After a
 * longer idle spell, or a pause, the slot starts at now: idling earns
 * nothing beyond the bucket, and a pause never ends in a burst.
 *
 * When the rate in force changes (the failure policy slows a pool down, a
 * user edits mps), the debt the bucket holds is kept in segments, not in
 * time: a pool that owed 2 segments at 1 per second owes them at the new
 * rate, so a slowed pool does not stay stalled for its old debt once its
 * rate recovers.  Times are monotonic microseconds (clock.h).
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/pacing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "pacing.h"

/* Microseconds one segment takes at the pool's rate (never below the floor). */
static double
segment_us(const TobPoolSlot *pool)
{
	return 1000000.0 / Max(pool->effective_mps, TOB_PACING_MIN_RATE);
}

/*
 * Where the next message's time slot starts: at tat when the worker is at
 * most TOB_PACING_LATE_CREDIT_US late for it (so lateness is made up), at
 * now when the pool has been idle longer (so idling earns nothing).
 */
static double
start_of(const TobPoolSlot *pool, TobMono now)
{
	return pool->tat >= now - TOB_PACING_LATE_CREDIT_US ? (double) pool->tat : (double) now;
}

bool
tob_pacing_spend(TobPoolSlot *pool, int segments, TobMono now)
{
	double		t = segment_us(pool);
	double		start = start_of(pool, now);
	int			needed = Min(segments, pool->burst);

	if (start + needed * t > (double) now + pool->burst * t)
		return false;
	pool->tat = (TobMono) ceil(start + segments * t);
	return true;
}

int
tob_pacing_available(const TobPoolSlot *pool, TobMono now)
{
	double		t = segment_us(pool);
	double		room = (double) now + pool->burst * t - start_of(pool, now);

	return room <= 0 ? 0 : (int) Min(floor(room / t + 1e-9), (double) INT_MAX);
}

int64
tob_pacing_wait_us(const TobPoolSlot *pool, int segments, TobMono now)
{
	double		t = segment_us(pool);
	int			needed = Max(1, Min(segments, pool->burst));
	double		ready_at = (double) pool->tat - (pool->burst - needed) * t;

	return ready_at <= (double) now ? 0 : (int64) ceil(ready_at - (double) now);
}

void
tob_pacing_set_rate(TobPoolSlot *pool, double rate, TobMono now)
{
	double		old_t = segment_us(pool);
	double		debt;

	rate = Max(rate, TOB_PACING_MIN_RATE);
	if (rate == pool->effective_mps)
		return;
	debt = (double) (pool->tat - now) / old_t;	/* in segments; < 0 when idle */
	pool->effective_mps = rate;
	if (debt > 0)
		pool->tat = now + (TobMono) ceil(debt * segment_us(pool));
}

void
tob_pacing_update_tokens(TobPoolSlot *pool, TobMono now)
{
	double		t = segment_us(pool);

	pool->tokens = pool->burst - ((double) Max(pool->tat, now) - (double) now) / t;
}
