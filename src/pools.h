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

/*
 * A pool's rows are claimed by kind: messages, and calls, which also wait
 * for the account's calls per second.
 */
typedef enum TobKind
{
	TOB_KIND_MESSAGE = 0,
	TOB_KIND_CALL = 1,
	TOB_KINDS = 2
} TobKind;

/* What the worker knows of a pool besides its shared slot. */
typedef struct TobPoolLocal
{
	char		sender[TOB_ADDRESS_LEN];
	bool		backlog[TOB_KINDS]; /* due rows may be waiting */
	int			need[TOB_KINDS];	/* segments the first waiting one needs (>= 1) */
	uint32		wake_bit;		/* tob_wake_bit of its name */
	TobClaimCursor cursor[TOB_KINDS];	/* where the last claim ended */
	TobMono		cursor_since[TOB_KINDS];	/* the pass the cursor is in began then */
} TobPoolLocal;

/* A pool and a kind of its rows, as tob_pools_ready returns them. */
#define TOB_READY(pool, kind)	((pool) * TOB_KINDS + (kind))
#define TOB_READY_POOL(r)		((r) / TOB_KINDS)
#define TOB_READY_KIND(r)		((TobKind) ((r) % TOB_KINDS))

extern TobPoolLocal tob_pool_local[TOB_MAX_POOLS];

/*
 * Bring the slots in line with twilio_pools, as just read: all of it
 * (asked NULL; pools[] in strcmp's order of the names), or the rows of the
 * asked names that are still there (the others were deleted).
 */
extern void tob_pools_sync(TobPoolConfig *pools, int npools, char (*asked)[TOB_POOL_NAME_LEN],
						   int nasked, TobMono now);

/*
 * Once a second: rates slowed by 21611 recover, the account's call bucket
 * follows calls_per_second, the views' token counts are refreshed.
 */
extern void tob_pools_tick(TobMono now);

/* Commits added rows to the pools the wake-up names (or to any pool). */
extern void tob_pools_mark_woken(const TobWake *wake);

/*
 * The pools and kinds that may claim now, in rotating order: not paused,
 * not held by their breaker, with a backlog (or any, when `all`), and with
 * tokens for their next message (a call: also in the account's call
 * bucket).  Returns how many, as TOB_READY(pool, kind) in order[], which
 * must hold TOB_MAX_POOLS * TOB_KINDS.
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
