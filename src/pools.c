/*-------------------------------------------------------------------------
 *
 * pools.c
 *		The sender pools as the worker serves them.
 *
 * Each row of twilio_pools gets a slot in shared memory (TobPoolSlot: the
 * token bucket, the rate in force, the breaker) and a local record
 * (TobPoolLocal).  A slot keeps its bucket across reloads; a deleted
 * pool's slot is reused once nothing of it is in flight.  A pool whose
 * name does not fit a slot, or one beyond the slots there are, is never
 * served under a truncated or shared name: it is reported once.
 *
 * A pool is ready when its bucket can pay for its next message: the claim
 * that found a message it could not pay for remembers its segments
 * (`need`), so that a pool at 1 mps with 3-segment messages sleeps three
 * seconds instead of claiming every time a single segment accrues.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/pools.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pacing.h"
#include "policy.h"
#include "pools.h"
#include "settings.h"

TobPoolLocal tob_pool_local[TOB_MAX_POOLS];

static int	rotation = 0;
static bool warned_full = false;

/* Report a pool the worker cannot serve, once until the pools change. */
static void
unserved(const TobPoolConfig *cfg, const char *why)
{
	if (warned_full)
		return;
	warned_full = true;
	ereport(WARNING,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("twilio_outbox cannot serve pool \"%s\": %s", cfg->name, why),
			 errhint("Its messages stay queued.  Pool names are at most %d bytes and there are at most %d pools.",
					 TOB_POOL_NAME_LEN - 1, TOB_MAX_POOLS)));
}

/* Slot numbers in strcmp's order of their pools' names, for find_slot. */
static int	by_name[TOB_MAX_POOLS];
static int	nby_name;

static int
cmp_slot_names(const void *a, const void *b)
{
	return strcmp(tob_shared->pools[*(const int *) a].name, tob_shared->pools[*(const int *) b].name);
}

static int
cmp_config_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, ((const TobPoolConfig *) b)->name);
}

/* Index the slots that serve a pool; caller holds the lock. */
static void
index_slots(void)
{
	int			s;

	nby_name = 0;
	for (s = 0; s < tob_shared->npools; s++)
		if (tob_shared->pools[s].name[0] != '\0')
			by_name[nby_name++] = s;
	qsort(by_name, nby_name, sizeof(int), cmp_slot_names);
}

/*
 * The slot serving the pool of that name, or -1; caller holds the lock, and
 * no slot has been freed or renamed since index_slots().
 */
static int
find_slot(const char *name)
{
	int			lo = 0;
	int			hi = nby_name - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(name, tob_shared->pools[by_name[mid]].name);

		if (c == 0)
			return by_name[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

/*
 * Bring the slots in line with pools[]: every row of twilio_pools, in
 * strcmp's order of their names (asked NULL), or the rows of the asked
 * names that are still there.  A slot found by binary search, so that
 * reading 200 pools costs O(n log n), not 40,000 comparisons.
 */
void
tob_pools_sync(TobPoolConfig *pools, int npools, char (*asked)[TOB_POOL_NAME_LEN], int nasked,
			   TobMono now)
{
	bool		seen[TOB_MAX_POOLS] = {0};
	bool		all_served = true;
	int			free_from = 0;
	int			i;
	int			s;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);

	/* first free the slots of deleted pools, so that new pools can take them */
	if (asked == NULL)
	{
		for (s = 0; s < tob_shared->npools; s++)
		{
			const char *name = tob_shared->pools[s].name;

			if (name[0] != '\0' &&
				bsearch(&name, pools, npools, sizeof(TobPoolConfig), cmp_config_names) == NULL)
				tob_shared->pools[s].name[0] = '\0';
		}
	}
	else
	{
		for (i = 0; i < nasked; i++)
		{
			bool		found = false;
			int			k;

			for (k = 0; k < npools && !found; k++)
				found = strcmp(pools[k].name, asked[i]) == 0;
			for (s = 0; s < tob_shared->npools && !found; s++)
				if (strcmp(tob_shared->pools[s].name, asked[i]) == 0)
					tob_shared->pools[s].name[0] = '\0';	/* deleted */
		}
	}

	index_slots();

	for (i = 0; i < npools; i++)
	{
		TobPoolConfig *cfg = &pools[i];
		TobPoolSlot *slot;

		if (strlen(cfg->name) >= TOB_POOL_NAME_LEN || strlen(cfg->sender) >= TOB_ADDRESS_LEN)
		{
			all_served = false;
			unserved(cfg, "its name or sender is too long");
			continue;
		}
		s = find_slot(cfg->name);
		if (s < 0)
		{
			/* a free slot with nothing in flight, else a new one */
			while (free_from < tob_shared->npools &&
				   (tob_shared->pools[free_from].name[0] != '\0' ||
					tob_shared->pools[free_from].in_flight != 0 || seen[free_from]))
				free_from++;
			if (free_from < tob_shared->npools)
				s = free_from++;
			else if (tob_shared->npools < TOB_MAX_POOLS)
				s = free_from = tob_shared->npools++;
			else
			{
				all_served = false;
				unserved(cfg, "every pool slot is taken");
				continue;
			}
			slot = &tob_shared->pools[s];
			memset(slot, 0, sizeof(*slot));
			strlcpy(slot->name, cfg->name, TOB_POOL_NAME_LEN);
			slot->mps = cfg->mps;
			slot->effective_mps = cfg->mps;
			slot->tat = now;	/* a new pool starts with a full bucket */
			memset(&tob_pool_local[s], 0, sizeof(TobPoolLocal));
			tob_pool_local[s].wake_bit = tob_wake_bit(cfg->name);
			tob_pool_local[s].backlog[TOB_KIND_MESSAGE] = true;
			tob_pool_local[s].backlog[TOB_KIND_CALL] = true;
			tob_policy_pool_added(s);
		}
		slot = &tob_shared->pools[s];
		seen[s] = true;
		strlcpy(tob_pool_local[s].sender, cfg->sender, TOB_ADDRESS_LEN);
		if (cfg->paused && !slot->paused)
		{
			/* look again when it resumes */
			tob_pool_local[s].backlog[TOB_KIND_MESSAGE] = true;
			tob_pool_local[s].backlog[TOB_KIND_CALL] = true;
		}
		slot->paused = cfg->paused;
		slot->burst = cfg->burst;
		slot->mps = cfg->mps;
	}
	if (asked == NULL)
	{
		if (all_served)
			warned_full = false;
		for (s = 0; s < tob_shared->npools; s++)
			if (!seen[s])
				tob_shared->pools[s].name[0] = '\0';	/* not served: too long a name */
	}
	while (tob_shared->npools > 0 &&
		   tob_shared->pools[tob_shared->npools - 1].name[0] == '\0' &&
		   tob_shared->pools[tob_shared->npools - 1].in_flight == 0)
		tob_shared->npools--;
	nby_name = 0;
	LWLockRelease(tob_shared->lock);
}

void
tob_pools_tick(TobMono now)
{
	int			s;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	for (s = 0; s < tob_shared->npools; s++)
		if (tob_shared->pools[s].name[0] != '\0')
		{
			tob_policy_pool_tick(s, now);
			tob_pacing_update_tokens(&tob_shared->pools[s], now);
		}

	/* one bucket for the account's calls: a call costs one token, no burst */
	if (tob_shared->calls.tat == 0)
		tob_shared->calls.tat = now;
	strlcpy(tob_shared->calls.name, "calls", TOB_POOL_NAME_LEN);
	tob_shared->calls.burst = 1;
	tob_shared->calls.mps = tob_calls_per_second;
	tob_pacing_set_rate(&tob_shared->calls, tob_calls_per_second, now);
	tob_pacing_update_tokens(&tob_shared->calls, now);
	LWLockRelease(tob_shared->lock);
}

void
tob_pools_mark_woken(const TobWake *wake)
{
	int			s;

	for (s = 0; s < TOB_MAX_POOLS; s++)
	{
		uint32		bit = tob_pool_local[s].wake_bit;

		if (wake->all || (wake->pools[bit / 32] & ((uint32) 1 << (bit % 32))))
		{
			tob_pool_local[s].backlog[TOB_KIND_MESSAGE] = true;
			tob_pool_local[s].backlog[TOB_KIND_CALL] = true;
		}
	}
}

/* Segments the pool's next message (or call) needs from its bucket. */
static int
need_of(int s, TobKind kind)
{
	return Max(1, tob_pool_local[s].need[kind]);
}

/*
 * Microseconds until the pool's bucket, and for a call the account's call
 * bucket, can pay for the next one of that kind; -1 when the pool is gone
 * or paused.  Caller holds the lock.
 */
static int64
pay_wait_us(int s, TobKind kind, TobMono now)
{
	TobPoolSlot *slot = &tob_shared->pools[s];
	int64		wait_us;

	if (slot->name[0] == '\0' || slot->paused)
		return -1;
	wait_us = tob_pacing_wait_us(slot, need_of(s, kind), now);
	if (kind == TOB_KIND_CALL)
		wait_us = Max(wait_us, tob_pacing_wait_us(&tob_shared->calls, 1, now));
	return wait_us;
}

int
tob_pools_ready(TobMono now, bool all, int *order)
{
	int			npools;
	int			n = 0;
	int			i;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	npools = tob_shared->npools;
	LWLockRelease(tob_shared->lock);

	for (i = 0; i < npools; i++)
	{
		int			s = (rotation + i) % npools;
		int			k;

		if (!(all || tob_pool_local[s].backlog[TOB_KIND_MESSAGE] ||
			  tob_pool_local[s].backlog[TOB_KIND_CALL]))
			continue;			/* most of hundreds of pools: nothing to look at */
		if (tob_policy_pool_budget(s, now) == 0)
			continue;
		for (k = 0; k < TOB_KINDS; k++)
		{
			bool		ready;

			if (!(all || tob_pool_local[s].backlog[k]))
				continue;
			LWLockAcquire(tob_shared->lock, LW_SHARED);
			ready = pay_wait_us(s, (TobKind) k, now) == 0;
			LWLockRelease(tob_shared->lock);
			if (ready)
				order[n++] = TOB_READY(s, k);
		}
	}
	rotation = npools > 0 ? (rotation + 1) % npools : 0;
	return n;
}

int64
tob_pools_wait_us(TobMono now, int64 limit_us)
{
	int			npools;
	int			s;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	npools = tob_shared->npools;
	LWLockRelease(tob_shared->lock);

	for (s = 0; s < npools; s++)
	{
		TobMono		held;
		int			k;

		if (!tob_pool_local[s].backlog[TOB_KIND_MESSAGE] && !tob_pool_local[s].backlog[TOB_KIND_CALL])
			continue;
		held = tob_policy_pool_wake(s);
		if (held == TOB_MONO_NEVER)
			continue;			/* its probe's answer will wake us */
		for (k = 0; k < TOB_KINDS; k++)
		{
			int64		wait_us;

			if (!tob_pool_local[s].backlog[k])
				continue;
			LWLockAcquire(tob_shared->lock, LW_SHARED);
			wait_us = pay_wait_us(s, (TobKind) k, now);
			LWLockRelease(tob_shared->lock);
			if (wait_us < 0)
				continue;		/* paused */
			if (held > now)
				wait_us = Max(wait_us, held - now);
			limit_us = Min(limit_us, wait_us);
		}
	}
	return limit_us;
}

bool
tob_pools_any_held(TobMono now)
{
	bool		held = false;
	int			s;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	for (s = 0; s < tob_shared->npools && !held; s++)
		held = tob_shared->pools[s].name[0] != '\0' &&
			tob_shared->pools[s].breaker != TOB_BREAKER_CLOSED;
	LWLockRelease(tob_shared->lock);
	return held;
}
