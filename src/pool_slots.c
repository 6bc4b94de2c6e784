/*-------------------------------------------------------------------------
 *
 * pool_slots.c
 *		_twilio_check_pool_slots(): refuses a new twilio_pools row when the
 *		worker's shared memory has no slot left for it.
 *
 * The worker keeps one slot per pool in shared memory (TOB_MAX_POOLS of
 * them, src/shmem.h); a pool beyond that would never be served.  The pools'
 * validation trigger calls this before each INSERT.  Two transactions
 * adding pools at once must not both take the last slot, so the check takes
 * a lock that only this check uses (an object lock on twilio_pools' catalog
 * entry, held to the end of the transaction) and counts with the latest
 * snapshot, which sees pools committed since a REPEATABLE READ transaction
 * took its snapshot, and the rows this INSERT has written so far.
 *
 * _twilio_pools_changed(), a row trigger (and a statement trigger for
 * TRUNCATE), tells the worker which pools changed, so that it need not
 * read twilio_pools every second, nor every row of it after a change.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/pool_slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(twilio_outbox_check_pool_slots_1_0);

/* _twilio_check_pool_slots() RETURNS void */
Datum
twilio_outbox_check_pool_slots_1_0(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			pools = get_relname_relid("twilio_pools", nsp);
	SPIPlanPtr	plan;
	int64		count;
	bool		isnull;
	int			rc;

	if (!OidIsValid(pools))
		elog(ERROR, "table twilio_pools not found");

	/* released at the end of the transaction that inserts */
	LockDatabaseObject(RelationRelationId, pools, 0, ExclusiveLock);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(psprintf("SELECT pg_catalog.count(*) FROM %s.twilio_pools",
								quote_identifier(get_namespace_name(nsp))),
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	/* not read-only: the command counter advances over this INSERT's rows */
	rc = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							  false, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	if (count >= TOB_MAX_POOLS)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("twilio_pools has %lld pools, the most the worker can serve",
						(long long) count),
				 errdetail("The worker paces each pool in one of %d shared-memory slots.",
						   TOB_MAX_POOLS),
				 errhint("Delete a pool that is no longer used, or send through an existing pool.")));
	PG_RETURN_VOID();
}

/*---- telling the worker that the pools changed ----*/

/*
 * The names of the pools this transaction changed (an UPDATE that renames
 * a pool: both names); all of them after a TRUNCATE or more than
 * TOB_POOLS_CHANGED_MAX.  A subtransaction rolled back leaves its names:
 * reading a pool that did not change costs a row, nothing else.
 */
static bool pools_changed = false;
static bool pools_changed_all = false;
static int	npools_changed = 0;
static char pools_changed_names[TOB_POOLS_CHANGED_MAX][TOB_POOL_NAME_LEN];
static bool pools_callback_registered = false;

static void
note_changed(const char *name)
{
	int			i;

	if (pools_changed_all)
		return;
	if (strlen(name) >= TOB_POOL_NAME_LEN)
	{
		pools_changed_all = true;	/* not a name the worker serves: read them all */
		return;
	}
	for (i = 0; i < npools_changed; i++)
		if (strcmp(pools_changed_names[i], name) == 0)
			return;
	if (npools_changed == TOB_POOLS_CHANGED_MAX)
	{
		pools_changed_all = true;
		return;
	}
	strlcpy(pools_changed_names[npools_changed++], name, TOB_POOL_NAME_LEN);
}

static void
note_changed_row(HeapTuple tuple, TupleDesc desc)
{
	int			attnum = SPI_fnumber(desc, "name");
	bool		isnull;
	Datum		value;

	if (attnum <= 0 || tuple == NULL)
	{
		pools_changed_all = true;
		return;
	}
	value = heap_getattr(tuple, attnum, desc, &isnull);
	if (isnull)
		pools_changed_all = true;
	else
		note_changed(TextDatumGetCString(value));
}

/*
 * Hand the names to the worker, then move the version on: the worker reads
 * the version before it takes the names, so a change it has not taken yet
 * is always behind a version it has not seen.  This runs once the commit is
 * visible, so whatever the worker reads after taking the names sees it.
 */
static void
publish_changes(void)
{
	int			i;
	int			j;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	if (pools_changed_all)
		tob_shared->pools_changed_all = true;
	for (i = 0; i < npools_changed && !tob_shared->pools_changed_all; i++)
	{
		for (j = 0; j < tob_shared->pools_changed_n; j++)
			if (strcmp(tob_shared->pools_changed[j], pools_changed_names[i]) == 0)
				break;
		if (j < tob_shared->pools_changed_n)
			continue;
		if (tob_shared->pools_changed_n == TOB_POOLS_CHANGED_MAX)
			tob_shared->pools_changed_all = true;
		else
			strlcpy(tob_shared->pools_changed[tob_shared->pools_changed_n++],
					pools_changed_names[i], TOB_POOL_NAME_LEN);
	}
	LWLockRelease(tob_shared->lock);
	pg_atomic_fetch_add_u64(&tob_shared->pools_version, 1);
}

static void
pools_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && pools_changed && tob_shared != NULL)
		publish_changes();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		pools_changed = false;
		pools_changed_all = false;
		npools_changed = 0;
	}
}

PG_FUNCTION_INFO_V1(twilio_outbox_pools_changed_2_0);

/*
 * _twilio_pools_changed(): trigger on twilio_pools, for each row changed
 * and for TRUNCATE.  When the transaction commits, the names of the pools
 * it changed go to shared memory and the pools' version moves on: the
 * worker reads those rows of twilio_pools again, and no others.  A
 * statement that changed no row does not fire it.
 */
Datum
twilio_outbox_pools_changed_2_0(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_twilio_pools_changed can only be called as a trigger")));
	if (!pools_callback_registered)
	{
		RegisterXactCallback(pools_xact_callback, NULL);
		pools_callback_registered = true;
	}
	pools_changed = true;
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		pools_changed_all = true;	/* TRUNCATE */
	else
	{
		TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);

		note_changed_row(trigdata->tg_trigtuple, desc);
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			note_changed_row(trigdata->tg_newtuple, desc);
	}
	return PointerGetDatum(NULL);
}
