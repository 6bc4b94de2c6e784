/*-------------------------------------------------------------------------
 *
 * pacing.h
 *		Token buckets that pace each pool to its segments per second.
 *
 * IDENTIFICATION
 *	  src/pacing.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_PACING_H
#define TOB_PACING_H

#include "clock.h"
#include "shmem.h"

/* Spending credit for a worker that wakes a little late (see pacing.c). */
#define TOB_PACING_LATE_CREDIT_US 10000

/* No bucket runs slower than this, whatever the table or the policy says. */
#define TOB_PACING_MIN_RATE 0.001

/* All of these need TobSharedState->lock held exclusively (or a private copy). */

/* Whether a message of `segments` may go now; if so, spend them. */
extern bool tob_pacing_spend(TobPoolSlot *pool, int segments, TobMono now);

/* How many one-segment messages could go now. */
extern int	tob_pacing_available(const TobPoolSlot *pool, TobMono now);

/* Microseconds until a message of `segments` may go (0 when it may go now). */
extern int64 tob_pacing_wait_us(const TobPoolSlot *pool, int segments, TobMono now);

/* Change the rate in force, keeping the bucket's debt in segments. */
extern void tob_pacing_set_rate(TobPoolSlot *pool, double rate, TobMono now);

/* Refresh pool->tokens, the figure the views show. */
extern void tob_pacing_update_tokens(TobPoolSlot *pool, TobMono now);

#endif							/* TOB_PACING_H */
