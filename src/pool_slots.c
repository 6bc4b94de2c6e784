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
 * TRUNCATE), tells the worker when the pools changed, so that it need not
 * read twilio_pools every second.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/pool_slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
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

static bool pools_changed = false;
static bool pools_callback_registered = false;

static void
pools_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && pools_changed && tob_shared != NULL)
		pg_atomic_fetch_add_u64(&tob_shared->pools_version, 1);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		pools_changed = false;
}

PG_FUNCTION_INFO_V1(twilio_outbox_pools_changed_2_0);

/*
 * _twilio_pools_changed(): trigger on twilio_pools, for each row changed
 * and for TRUNCATE.  When the transaction commits, the pools' version in
 * shared memory moves on, and the worker reads twilio_pools again;
 * otherwise (a statement that changed no row, too) it does not need to.
 */
Datum
twilio_outbox_pools_changed_2_0(PG_FUNCTION_ARGS)
{
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
	return PointerGetDatum(NULL);
}
