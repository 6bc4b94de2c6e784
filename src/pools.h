/*-------------------------------------------------------------------------
 *
 * pools.h
 *		The sender pools as the worker serves them: shared slots kept in
 *		line with twilio_pools, and which pool may claim when.
 *
 * IDENTIFICATION
 *	  src/pools.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_POOLS_H
#define TOB_POOLS_H

#include "clock.h"
#include "queue.h"
#include "response.h"
#include "shmem.h"

/* What the worker knows of a pool besides its shared slot. */
typedef struct TobPoolLocal
{
	char		sender[TOB_ADDRESS_LEN];
	bool		backlog;		/* due rows may be waiting */
	int			need;			/* segments the first waiting message needs (>= 1) */
} TobPoolLocal;

extern TobPoolLocal tob_pool_local[TOB_MAX_POOLS];

/* Once a second: bring the slots in line with twilio_pools; rates recover. */
extern void tob_pools_sync(TobPoolConfig *pools, int npools, TobMono now);

/* A commit may have added rows to any pool. */
extern void tob_pools_mark_backlog(void);

/*
 * The pools that may claim now, in rotating order: not paused, not held by
 * their breaker, with a backlog (or any, when `all`), and with tokens for
 * their next message.  Returns how many, their slots in order[].
 */
extern int	tob_pools_ready(TobMono now, bool all, int *order);

/*
 * Microseconds until some pool with a backlog could claim (its bucket can
 * pay for its next message and its hold is over), at most limit_us.
 */
extern int64 tob_pools_wait_us(TobMono now, int64 limit_us);

/* Whether some pool is held by its circuit breaker now. */
extern bool tob_pools_any_held(TobMono now);

#endif							/* TOB_POOLS_H */
