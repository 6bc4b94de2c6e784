/*-------------------------------------------------------------------------
 *
 * status.c
 *		The shared-memory functions behind twilio_worker_status and
 *		twilio_pool_status.
 *
 * Both copy what they need under a shared lock and build tuples after
 * releasing it, to keep the worker's lock waits short.
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

#include "shmem.h"

PG_FUNCTION_INFO_V1(twilio_outbox_worker_status_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_pool_status_1_0);

#define WORKER_STATUS_COLS 16
#define POOL_STATUS_COLS 9

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

Datum
twilio_outbox_worker_status_1_0(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[WORKER_STATUS_COLS];
	bool		nulls[WORKER_STATUS_COLS] = {0};
	pid_t		pid;
	TobWorkerState state;
	TimestampTz started_at;
	TimestampTz last_activity_at;
	int			in_flight;
	TobCounters totals;
	int			i = 0;

	tob_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != WORKER_STATUS_COLS)
		elog(ERROR, "incorrect number of output arguments");

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	pid = tob_shared->worker_pid;
	state = tob_shared->state;
	started_at = tob_shared->started_at;
	last_activity_at = tob_shared->last_activity_at;
	in_flight = tob_shared->in_flight;
	totals = tob_shared->totals;
	LWLockRelease(tob_shared->lock);

	nulls[i] = (pid == 0);
	values[i++] = Int32GetDatum(pid);
	values[i++] = CStringGetTextDatum(tob_worker_state_name(state));
	values[i++] = Int32GetDatum(in_flight);
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
	Assert(i == WORKER_STATUS_COLS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

Datum
twilio_outbox_pool_status_1_0(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TobPoolSlot *pools;
	int			npools;
	int			p;

	tob_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != POOL_STATUS_COLS)
		elog(ERROR, "incorrect number of output arguments");

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	npools = tob_shared->npools;
	pools = palloc(sizeof(TobPoolSlot) * Max(npools, 1));
	memcpy(pools, tob_shared->pools, sizeof(TobPoolSlot) * npools);
	LWLockRelease(tob_shared->lock);

	for (p = 0; p < npools; p++)
	{
		Datum		values[POOL_STATUS_COLS];
		bool		nulls[POOL_STATUS_COLS] = {0};
		int			i = 0;

		/* a deleted pool's slot, kept until nothing of it is in flight */
		if (pools[p].name[0] == '\0')
			continue;
		values[i++] = CStringGetTextDatum(pools[p].name);
		values[i++] = Float8GetDatum(pools[p].mps);
		values[i++] = Float8GetDatum(pools[p].effective_mps);
		values[i++] = Int32GetDatum(pools[p].burst);
		values[i++] = Float8GetDatum(pools[p].tokens);
		values[i++] = BoolGetDatum(pools[p].paused);
		values[i] = timestamp_or_null(pools[p].paused_until, &nulls[i]);
		i++;
		values[i++] = Int32GetDatum(pools[p].in_flight);
		values[i++] = Int64GetDatum((int64) pools[p].sent);
		Assert(i == POOL_STATUS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
