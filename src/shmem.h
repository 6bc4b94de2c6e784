/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		State shared between the sender worker, the backends that enqueue
 *		(commit-time wake-up) and the monitoring views.
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_SHMEM_H
#define TOB_SHMEM_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "clock.h"

#define TOB_MAX_POOLS		256
#define TOB_WAKE_BITS		1024	/* pools that got rows, by a hash of their name */
#define TOB_POOL_NAME_LEN	64	/* pool names are 1-63 characters */
#define TOB_POOLS_CHANGED_MAX 16	/* changed pools named; beyond that, all are read */

typedef enum TobWorkerState
{
	TOB_STATE_STOPPED = 0,
	TOB_STATE_STARTING,
	TOB_STATE_WAITING_FOR_EXTENSION,
	TOB_STATE_WAITING_FOR_UPDATE,	/* the installed version is not the library's */
	TOB_STATE_DISABLED,
	TOB_STATE_UNCONFIGURED,
	TOB_STATE_IDLE,
	TOB_STATE_SENDING,
	TOB_STATE_THROTTLED,
	TOB_STATE_AUTH_FAILED,
	TOB_STATE_READ_ONLY			/* default_transaction_read_only at server level */
} TobWorkerState;

/* Totals since the worker started; read by twilio_worker_status. */
typedef struct TobCounters
{
	uint64		requests;		/* HTTP requests completed */
	uint64		sent;			/* rows that became sent */
	uint64		retried;		/* rows that became retrying */
	uint64		failed;			/* rows that became failed */
	uint64		expired;		/* rows that became expired */
	uint64		http_429;
	uint64		http_5xx;
	uint64		transport_errors;
	uint64		reconciled;		/* ambiguous attempts found at Twilio: not resent */
	uint64		resent_blind;	/* ambiguous attempts resent without a lookup */
	uint64		lookups;		/* list requests made to reconcile */
	uint64		lookup_failures;	/* of those, the ones that told nothing */
	uint64		recovered;		/* rows found in sending without a request */
	uint64		calls_sent;		/* of sent: calls */
	uint64		calls_canceled; /* calls canceled at Twilio (twilio_cancel) */
} TobCounters;

/* A circuit breaker on the recent failure rate (policy.c). */
typedef enum TobBreakerState
{
	TOB_BREAKER_CLOSED = 0,
	TOB_BREAKER_OPEN,			/* held until held_until */
	TOB_BREAKER_HALF_OPEN		/* one probe may go */
} TobBreakerState;

/* Why the whole account sends nothing for now. */
typedef enum TobAccountHold
{
	TOB_HOLD_NONE = 0,
	TOB_HOLD_AUTH,				/* Twilio refused the credentials: probes only */
	TOB_HOLD_BREAKER			/* nearly every request failed: probes only */
} TobAccountHold;

/*
 * The account-wide side of the failure policy, published for
 * twilio_worker_status.  Twilio limits concurrent requests per account (429
 * with code 20429 above it), so the worker adapts a concurrency window
 * between 1 and max_concurrency.
 */
typedef struct TobAccountState
{
	double		window;			/* requests that may be in flight now */
	int			twilio_concurrent;	/* last Twilio-Concurrent-Requests, -1: none */
	double		rtt_ms;			/* smoothed duration of a request */
	TobAccountHold hold;
	TobMono		held_until;		/* next probe when held, 0 otherwise */
	TobBreakerState breaker;
	TobMono		breaker_until;	/* the breaker is open until then */
} TobAccountState;

/*
 * One sender pool's pacing state: a token bucket counted in segments, kept
 * as a theoretical arrival time (see pacing.c).  Written by the worker only,
 * under TobSharedState->lock.
 */
typedef struct TobPoolSlot
{
	char		name[TOB_POOL_NAME_LEN];
	double		mps;			/* configured rate, twilio_pools.mps */
	double		effective_mps;	/* rate in force now (lowered after 21611) */
	int			burst;			/* bucket capacity */
	TobMono		tat;			/* when the bucket is next full again */
	double		tokens;			/* segments that could go at last update */
	TobMono		held_until;		/* its circuit breaker is open until then, or 0 */
	TobBreakerState breaker;
	int			next_cost;		/* segments of the message waiting for tokens, 0: none */
	bool		paused;			/* twilio_pools.paused */
	int			in_flight;
	uint64		sent;
} TobPoolSlot;

/*
 * Webhook counters since the server started, bumped without a lock by the
 * listener and by twilio_ingest_callback in any backend.  Nothing rejected
 * is stored anywhere else, so `rejected` lives only here.
 */
typedef struct TobWebhookCounters
{
	pg_atomic_uint64 requests;	/* callbacks received (listener and SQL) */
	pg_atomic_uint64 accepted;	/* signature matched and stored (or a duplicate) */
	pg_atomic_uint64 duplicates;	/* accepted, but already stored */
	pg_atomic_uint64 rejected;	/* bad or missing signature: 403 */
	pg_atomic_uint64 errors;	/* malformed requests and failed inserts */
} TobWebhookCounters;

/*
 * Locking: worker_latch and worker_pid are read by every committing
 * enqueuer, so they sit under the spinlock `mutex`; everything else is
 * written by the worker under `lock` (LW_EXCLUSIVE) and read by the views
 * under LW_SHARED, copying out before building tuples.
 */
typedef struct TobSharedState
{
	LWLock	   *lock;
	slock_t		mutex;
	pid_t		worker_pid;
	Latch	   *worker_latch;
	pg_atomic_uint64 commit_wakeups;	/* commits that asked for a wake-up */
	pg_atomic_uint32 wake_pending;	/* set by commits, cleared by the worker */
	pg_atomic_uint32 wake_all;	/* a commit that does not say which pools */
	pg_atomic_uint64 pools_version; /* moves on when a change of twilio_pools commits */
	pg_atomic_uint32 wake_pools[TOB_WAKE_BITS / 32];	/* which pools got rows */

	TobWorkerState state;
	TimestampTz started_at;
	TimestampTz last_activity_at;
	int			in_flight;
	TobCounters totals;
	TobAccountState account;
	TobPoolSlot calls;			/* the account's calls per second: every call passes it */
	int			npools;
	TobPoolSlot pools[TOB_MAX_POOLS];

	/*
	 * The pools whose rows committed changes name since the worker last
	 * took them (pool_slots.c), so that it reads only those rows again; or
	 * all of them, after a TRUNCATE or more changes than there are names.
	 */
	int			pools_changed_n;
	bool		pools_changed_all;
	char		pools_changed[TOB_POOLS_CHANGED_MAX][TOB_POOL_NAME_LEN];

	/* the webhook listener: listener_pid under `mutex`, counters atomic */
	pid_t		listener_pid;
	TobWebhookCounters webhooks;
} TobSharedState;

extern TobSharedState *tob_shared;

extern void tob_shmem_install_hooks(void);
extern void tob_require_shmem(void);
/* Which pools got rows, as the worker takes them from a wake-up. */
typedef struct TobWake
{
	bool		pending;		/* a commit asked for a wake-up */
	bool		all;			/* ... without saying which pools */
	uint32		pools[TOB_WAKE_BITS / 32];
} TobWake;

extern void tob_note_pool_for_wake(const char *pool);
extern void tob_note_all_pools_for_wake(void);
extern void tob_forget_pools_for_wake(void);
extern uint32 tob_wake_bit(const char *pool);
extern void tob_wake_worker(void);
extern void tob_worker_take_wake(TobWake *wake);
extern void tob_worker_attach(void);
extern void tob_worker_set_state(TobWorkerState state);
extern const char *tob_worker_state_name(TobWorkerState state);

#endif							/* TOB_SHMEM_H */
