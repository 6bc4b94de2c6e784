/*-------------------------------------------------------------------------
 *
 * status.c
 *		The shared-memory functions behind twilio_worker_status and
 *		twilio_pool_status.
 *
 * Both copy what they need under a shared lock and build tuples after
 * releasing it, to keep the worker's lock waits short.  The _1_0 symbols
 * serve the 0.1.0 script's functions, the _2_0 ones 0.2.0's (which have
 * more columns); the view functions check the column count they are
 * called with.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "clock.h"
#include "settings.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(twilio_outbox_worker_status_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_worker_status_2_0);
PG_FUNCTION_INFO_V1(twilio_outbox_pool_status_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_pool_status_2_0);

#define WORKER_STATUS_COLS_1_0 16
#define WORKER_STATUS_COLS_2_0 29
#define POOL_STATUS_COLS_1_0 9
#define POOL_STATUS_COLS_2_0 11

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

/* A monotonic time of shared memory (0: none) as timestamptz. */
static Datum
mono_or_null(TobMono m, bool *isnull)
{
	*isnull = (m == 0 || m == TOB_MONO_NEVER);
	return TimestampTzGetDatum(*isnull ? 0 : tob_mono_to_timestamptz(m));
}

static const char *
breaker_name(TobBreakerState state)
{
	switch (state)
	{
		case TOB_BREAKER_CLOSED:
			return "closed";
		case TOB_BREAKER_OPEN:
			return "open";
		case TOB_BREAKER_HALF_OPEN:
			return "half_open";
	}
	return "unknown";
}

static Datum
worker_status(FunctionCallInfo fcinfo, int ncols)
{
	TupleDesc	tupdesc;
	Datum		values[WORKER_STATUS_COLS_2_0];
	bool		nulls[WORKER_STATUS_COLS_2_0] = {0};
	pid_t		pid;
	TobWorkerState state;
	TimestampTz started_at;
	TimestampTz last_activity_at;
	int			in_flight;
	TobCounters totals;
	TobAccountState account;
	TobPoolSlot calls;
	int			i = 0;

	tob_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != ncols)
		elog(ERROR, "incorrect number of output arguments");

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	pid = tob_shared->worker_pid;
	state = tob_shared->state;
	started_at = tob_shared->started_at;
	last_activity_at = tob_shared->last_activity_at;
	in_flight = tob_shared->in_flight;
	totals = tob_shared->totals;
	account = tob_shared->account;
	calls = tob_shared->calls;
	LWLockRelease(tob_shared->lock);

	nulls[i] = (pid == 0);
	values[i++] = Int32GetDatum(pid);
	values[i++] = CStringGetTextDatum(tob_worker_state_name(state));
	values[i++] = Int32GetDatum(pid == 0 ? 0 : in_flight);
	values[i] = timestamp_or_null(started_at, &nulls[i]);
	i++;
	values[i] = timestamp_or_null(last_activity_at, &nulls[i]);
	i++;
	values[i++] = Int64GetDatum((int64) totals.requests);
	values[i++] = Int64GetDatum((int64) totals.sent);
	values[i++] = Int64GetDatum((int64) totals.retried);
	values[i++] = Int64GetDatum((int64) totals.failed);
	values[i++] = Int64GetDatum((int64) totals.expired);
	values[i++] = Int64GetDatum((int64) totals.http_429);
	values[i++] = Int64GetDatum((int64) totals.http_5xx);
	values[i++] = Int64GetDatum((int64) totals.transport_errors);
	values[i++] = Int64GetDatum((int64) totals.reconciled);
	values[i++] = Int64GetDatum((int64) totals.resent_blind);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&tob_shared->commit_wakeups));
	if (ncols == WORKER_STATUS_COLS_2_0)
	{
		nulls[i] = (pid == 0);
		values[i++] = Float8GetDatum(account.window);
		values[i++] = Int32GetDatum(tob_max_concurrency);
		nulls[i] = (account.twilio_concurrent < 0);
		values[i++] = Int32GetDatum(account.twilio_concurrent);
		nulls[i] = (account.rtt_ms == 0);
		values[i++] = Float8GetDatum(account.rtt_ms);
		nulls[i] = (account.hold == TOB_HOLD_NONE);
		values[i++] = CStringGetTextDatum(account.hold == TOB_HOLD_AUTH ? "auth_failed" : "circuit_open");
		values[i] = mono_or_null(account.hold == TOB_HOLD_NONE ? 0 : account.held_until, &nulls[i]);
		i++;
		values[i++] = Int64GetDatum((int64) totals.lookups);
		values[i++] = Int64GetDatum((int64) totals.lookup_failures);
		values[i++] = Int64GetDatum((int64) totals.recovered);
		values[i++] = Float8GetDatum(tob_calls_per_second);
		nulls[i] = (pid == 0);
		values[i++] = Float8GetDatum(calls.tokens);
		values[i++] = Int64GetDatum((int64) totals.calls_sent);
		values[i++] = Int64GetDatum((int64) totals.calls_canceled);
	}
	Assert(i == ncols);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

Datum
twilio_outbox_worker_status_1_0(PG_FUNCTION_ARGS)
{
	return worker_status(fcinfo, WORKER_STATUS_COLS_1_0);
}

Datum
twilio_outbox_worker_status_2_0(PG_FUNCTION_ARGS)
{
	return worker_status(fcinfo, WORKER_STATUS_COLS_2_0);
}

static Datum
pool_status(FunctionCallInfo fcinfo, int ncols)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TobPoolSlot *pools;
	int			npools;
	int			p;

	tob_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != ncols)
		elog(ERROR, "incorrect number of output arguments");

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	npools = tob_shared->npools;
	pools = palloc(sizeof(TobPoolSlot) * Max(npools, 1));
	memcpy(pools, tob_shared->pools, sizeof(TobPoolSlot) * npools);
	LWLockRelease(tob_shared->lock);

	for (p = 0; p < npools; p++)
	{
		Datum		values[POOL_STATUS_COLS_2_0];
		bool		nulls[POOL_STATUS_COLS_2_0] = {0};
		int			i = 0;

		if (pools[p].name[0] == '\0')
			continue;			/* a freed slot */
		values[i++] = CStringGetTextDatum(pools[p].name);
		values[i++] = Float8GetDatum(pools[p].mps);
		values[i++] = Float8GetDatum(pools[p].effective_mps);
		values[i++] = Int32GetDatum(pools[p].burst);
		values[i++] = Float8GetDatum(pools[p].tokens);
		values[i++] = BoolGetDatum(pools[p].paused);
		/* held by the worker: its circuit breaker is open */
		values[i] = mono_or_null(pools[p].breaker == TOB_BREAKER_OPEN ? pools[p].held_until : 0, &nulls[i]);
		i++;
		values[i++] = Int32GetDatum(pools[p].in_flight);
		values[i++] = Int64GetDatum((int64) pools[p].sent);
		if (ncols == POOL_STATUS_COLS_2_0)
		{
			values[i++] = CStringGetTextDatum(breaker_name(pools[p].breaker));
			nulls[i] = (pools[p].next_cost == 0);
			values[i++] = Int32GetDatum(pools[p].next_cost);
		}
		Assert(i == ncols);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
twilio_outbox_pool_status_1_0(PG_FUNCTION_ARGS)
{
	return pool_status(fcinfo, POOL_STATUS_COLS_1_0);
}

Datum
twilio_outbox_pool_status_2_0(PG_FUNCTION_ARGS)
{
	return pool_status(fcinfo, POOL_STATUS_COLS_2_0);
}
