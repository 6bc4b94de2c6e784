/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared memory of twilio_outbox: the worker's latch for commit-time
 *		wake-ups, its live state and counters, and the per-pool token
 *		buckets.
 *
 * Locking rules are written down beside TobSharedState in shmem.h.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "common/hashfn.h"
#include "utils/timestamp.h"

#include "shmem.h"

TobSharedState *tob_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void tob_shmem_request(void);
static void tob_shmem_startup(void);
static void tob_worker_detach(int code, Datum arg);

void
tob_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = tob_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = tob_shmem_startup;
}

static void
tob_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(TobSharedState)));
	RequestNamedLWLockTranche("twilio_outbox", 1);
}

static void
tob_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	tob_shared = NULL;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tob_shared = ShmemInitStruct("twilio_outbox", sizeof(TobSharedState), &found);
	if (!found)
	{
		memset(tob_shared, 0, sizeof(TobSharedState));
		tob_shared->lock = &(GetNamedLWLockTranche("twilio_outbox"))->lock;
		SpinLockInit(&tob_shared->mutex);
		pg_atomic_init_u64(&tob_shared->commit_wakeups, 0);
		pg_atomic_init_u32(&tob_shared->wake_pending, 0);
		pg_atomic_init_u32(&tob_shared->wake_all, 0);
		pg_atomic_init_u64(&tob_shared->pools_version, 0);
		for (int w = 0; w < TOB_WAKE_BITS / 32; w++)
			pg_atomic_init_u32(&tob_shared->wake_pools[w], 0);
		tob_shared->state = TOB_STATE_STOPPED;
		tob_shared->pools_changed_all = true;
		pg_atomic_init_u64(&tob_shared->webhooks.requests, 0);
		pg_atomic_init_u64(&tob_shared->webhooks.accepted, 0);
		pg_atomic_init_u64(&tob_shared->webhooks.duplicates, 0);
		pg_atomic_init_u64(&tob_shared->webhooks.rejected, 0);
		pg_atomic_init_u64(&tob_shared->webhooks.errors, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Raise the usual error when a function that needs shared memory runs in a
 * server that did not preload the library.
 */
void
tob_require_shmem(void)
{
	if (tob_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("twilio_outbox must be loaded via shared_preload_libraries"),
				 errhint("Add twilio_outbox to the shared_preload_libraries configuration variable in postgresql.conf and restart the server.")));
}

/* The pools this transaction enqueued to, by tob_wake_bit, or all of them. */
static uint32 wake_pools[TOB_WAKE_BITS / 32];
static bool wake_pools_named = false;
static bool wake_pools_all = false;

uint32
tob_wake_bit(const char *pool)
{
	return hash_bytes((const unsigned char *) pool, strlen(pool)) % TOB_WAKE_BITS;
}

/*
 * Remember that the current transaction enqueued to `pool`: its commit
 * then tells the worker which pools got rows, so that with hundreds of
 * pools the worker claims from those, not from every pool.
 */
void
tob_note_pool_for_wake(const char *pool)
{
	uint32		bit = tob_wake_bit(pool);

	wake_pools[bit / 32] |= (uint32) 1 << (bit % 32);
	wake_pools_named = true;
}

/* The transaction made rows due in pools it cannot name (twilio_retry...). */
void
tob_note_all_pools_for_wake(void)
{
	wake_pools_all = true;
}

/* The transaction ended without a commit: it woke nothing. */
void
tob_forget_pools_for_wake(void)
{
	memset(wake_pools, 0, sizeof(wake_pools));
	wake_pools_named = false;
	wake_pools_all = false;
}

/*
 * Wake the worker.  Called at commit by a transaction that enqueued, so it
 * must not fail: without shared memory or a worker it does nothing (the
 * worker's periodic scan picks the rows up).
 *
 * Only the first commit after the worker last looked sets its latch: under
 * load, signalling the worker on every commit costs more than the enqueue.
 * The pools are handed over in any case (an atomic OR per word touched).
 */
void
tob_wake_worker(void)
{
	Latch	   *latch;
	int			w;

	if (tob_shared == NULL)
	{
		tob_forget_pools_for_wake();
		return;
	}
	if (wake_pools_all || !wake_pools_named)
		pg_atomic_write_u32(&tob_shared->wake_all, 1);
	for (w = 0; w < TOB_WAKE_BITS / 32 && wake_pools_named; w++)
		if (wake_pools[w] != 0)
			pg_atomic_fetch_or_u32(&tob_shared->wake_pools[w], wake_pools[w]);
	tob_forget_pools_for_wake();
	pg_atomic_fetch_add_u64(&tob_shared->commit_wakeups, 1);
	if (pg_atomic_exchange_u32(&tob_shared->wake_pending, 1) != 0)
		return;
	SpinLockAcquire(&tob_shared->mutex);
	latch = tob_shared->worker_latch;
	SpinLockRelease(&tob_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/*
 * The worker calls this just before it looks for due rows: a commit after
 * this point wakes it again.  Says whether a wake-up was pending, and for
 * which pools.
 */
void
tob_worker_take_wake(TobWake *wake)
{
	int			w;

	wake->pending = pg_atomic_exchange_u32(&tob_shared->wake_pending, 0) != 0;
	wake->all = pg_atomic_exchange_u32(&tob_shared->wake_all, 0) != 0;
	for (w = 0; w < TOB_WAKE_BITS / 32; w++)
		wake->pools[w] = pg_atomic_read_u32(&tob_shared->wake_pools[w]) != 0 ?
			pg_atomic_exchange_u32(&tob_shared->wake_pools[w], 0) : 0;
}

/*
 * Publish this process as the worker.  A second worker would double the
 * send rate, so refuse to run beside a live one.
 */
void
tob_worker_attach(void)
{
	bool		taken;

	tob_require_shmem();
	SpinLockAcquire(&tob_shared->mutex);
	taken = tob_shared->worker_pid != 0;
	if (!taken)
	{
		tob_shared->worker_pid = MyProcPid;
		tob_shared->worker_latch = MyLatch;
	}
	SpinLockRelease(&tob_shared->mutex);
	if (taken)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("twilio_outbox worker is already running")));

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->state = TOB_STATE_STARTING;
	tob_shared->started_at = GetCurrentTimestamp();
	tob_shared->last_activity_at = tob_shared->started_at;
	tob_shared->in_flight = 0;
	memset(&tob_shared->totals, 0, sizeof(TobCounters));
	LWLockRelease(tob_shared->lock);

	before_shmem_exit(tob_worker_detach, (Datum) 0);
}

static void
tob_worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&tob_shared->mutex);
	tob_shared->worker_pid = 0;
	tob_shared->worker_latch = NULL;
	SpinLockRelease(&tob_shared->mutex);

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->state = TOB_STATE_STOPPED;
	tob_shared->in_flight = 0;
	LWLockRelease(tob_shared->lock);
}

void
tob_worker_set_state(TobWorkerState state)
{
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->state = state;
	tob_shared->last_activity_at = GetCurrentTimestamp();
	LWLockRelease(tob_shared->lock);
}

const char *
tob_worker_state_name(TobWorkerState state)
{
	switch (state)
	{
		case TOB_STATE_STOPPED:
			return "stopped";
		case TOB_STATE_STARTING:
			return "starting";
		case TOB_STATE_WAITING_FOR_EXTENSION:
			return "waiting_for_extension";
		case TOB_STATE_WAITING_FOR_UPDATE:
			return "waiting_for_update";
		case TOB_STATE_DISABLED:
			return "disabled";
		case TOB_STATE_UNCONFIGURED:
			return "unconfigured";
		case TOB_STATE_IDLE:
			return "idle";
		case TOB_STATE_SENDING:
			return "sending";
		case TOB_STATE_THROTTLED:
			return "throttled";
		case TOB_STATE_AUTH_FAILED:
			return "auth_failed";
		case TOB_STATE_READ_ONLY:
			return "read_only";
	}
	return "unknown";
}
