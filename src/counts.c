/*-------------------------------------------------------------------------
 *
 * counts.c
 *		_twilio_outbox_counts(): exact counts of one pool's rows by status
 *		and kind, for the monitoring views, from the outbox's pool/status
 *		index without reading the table where the visibility map allows.
 *
 * twilio_queue_stats is polled every few seconds and, during an incident,
 * every second; the rows that finished in the last hour may be hundreds of
 * thousands.  This does the same visibility check as an index-only scan
 * (nodeIndexonlyscan.c: the visibility map, else the heap tuple under the
 * query's snapshot) in a loop over the index's TIDs, without the executor's
 * slot, projection and aggregate per row (about 0.7 of the time of the
 * same count in SQL; most of what is left is the btree's key checks), and
 * reads num_segments out of the index tuple only when asked.  Each (status, kind) pair is one range of
 * twilio_outbox_pool_status_idx (pool, status, kind, finished_at,
 * next_attempt_at) INCLUDE (num_segments), optionally restricted to
 * finished_at > after, so the cost is the rows counted plus one descent a
 * pair, whatever the size of the rest of the table and the number of pools.
 *
 * _twilio_count_pending(), the outbox's row triggers, keeps the pending
 * rows' counts in _twilio_pending_counts instead: every insert, update or
 * delete that moves a row into or out of queued, retrying or sending (or
 * changes the pool, kind or segments of a pending row) appends a row of
 * +1/-1 for (pool, status, kind) in the same transaction, so that any
 * snapshot sees counts that add up to exactly the pending rows it sees.
 * Nobody updates a counts row (no lock is ever waited for: concurrent
 * enqueues never queue behind each other); the worker folds the appended
 * rows into one per (pool, status, kind) every second (tob_housekeeping).
 * The tuple goes straight into the heap (the table has no index and no
 * trigger): on the enqueue path this costs a heap insert, not a query.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/counts.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/itup.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/predicate.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(twilio_outbox_outbox_counts_2_0);
PG_FUNCTION_INFO_V1(twilio_outbox_count_pending_2_0);

/* the columns the index must have, in this order */
static const char *const index_columns[] = {
	"pool", "status", "kind", "finished_at", "next_attempt_at", "num_segments"
};
#define NUM_SEGMENTS_ATTNO 6

static const char *const kinds[] = {"message", "call"};

/*
 * _twilio_outbox_counts(pool text, statuses text[], after timestamptz,
 *                       with_segments boolean)
 *   RETURNS TABLE (status text, kind text, n bigint, segments bigint)
 *
 * One row per status in statuses and kind (message, call): how many rows of
 * the pool have them (and finished_at > after, when after is not null),
 * and, when with_segments, the sum of their num_segments (else null), as the
 * calling query's snapshot sees them.  Reading num_segments out of each
 * index tuple is about a third of the work, so it is left out when not
 * needed.
 */
Datum
twilio_outbox_outbox_counts_2_0(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			heapoid = get_relname_relid("twilio_outbox", nsp);
	Oid			indexoid = get_relname_relid("twilio_outbox_pool_status_idx", nsp);
	text	   *pool;
	ArrayType  *statuses;
	Datum	   *status_datums;
	bool	   *status_nulls;
	int			nstatuses;
	bool		have_after = !PG_ARGISNULL(2);
	bool		with_segments = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	Relation	heap;
	Relation	index;
	TupleDesc	itupdesc;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Buffer		vmbuffer = InvalidBuffer;
	Snapshot	snapshot = GetActiveSnapshot();
	ScanKeyData keys[4];
	AclResult	aclresult;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	pool = PG_GETARG_TEXT_PP(0);
	statuses = PG_GETARG_ARRAYTYPE_P(1);

	InitMaterializedSRF(fcinfo, 0);

	if (!OidIsValid(heapoid) || !OidIsValid(indexoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("twilio_outbox or twilio_outbox_pool_status_idx not found")));
	aclresult = pg_class_aclcheck(heapoid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, "twilio_outbox");

	deconstruct_array(statuses, TEXTOID, -1, false, TYPALIGN_INT,
					  &status_datums, &status_nulls, &nstatuses);

	heap = table_open(heapoid, AccessShareLock);
	index = index_open(indexoid, AccessShareLock);
	if (index->rd_index->indrelid != heapoid ||
		index->rd_rel->relam != BTREE_AM_OID ||
		IndexRelationGetNumberOfAttributes(index) < NUM_SEGMENTS_ATTNO)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index twilio_outbox_pool_status_idx has an unexpected definition"),
				 errhint("Reinstall the extension's schema: ALTER EXTENSION twilio_outbox UPDATE.")));
	itupdesc = RelationGetDescr(index);
	for (int i = 0; i < NUM_SEGMENTS_ATTNO; i++)
		if (strcmp(NameStr(TupleDescAttr(itupdesc, i)->attname), index_columns[i]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("index twilio_outbox_pool_status_idx has an unexpected definition"),
					 errdetail("Column %d is \"%s\", not \"%s\".", i + 1,
							   NameStr(TupleDescAttr(itupdesc, i)->attname), index_columns[i]),
					 errhint("Reinstall the extension's schema: ALTER EXTENSION twilio_outbox UPDATE.")));

	scan = index_beginscan(heap, index, snapshot, have_after ? 4 : 3, 0);
	scan->xs_want_itup = true;
	slot = table_slot_create(heap, NULL);

	for (int s = 0; s < nstatuses; s++)
	{
		if (status_nulls[s])
			continue;
		for (int k = 0; k < lengthof(kinds); k++)
		{
			int64		n = 0;
			int64		segments = 0;
			ItemPointer tid;
			Datum		values[4];
			bool		nulls[4] = {false, false, false, false};

			ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
								   index->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(pool));
			ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
								   index->rd_indcollation[1], F_TEXTEQ, status_datums[s]);
			ScanKeyEntryInitialize(&keys[2], 0, 3, BTEqualStrategyNumber, InvalidOid,
								   index->rd_indcollation[2], F_TEXTEQ,
								   CStringGetTextDatum(kinds[k]));
			if (have_after)
				ScanKeyEntryInitialize(&keys[3], 0, 4, BTGreaterStrategyNumber, InvalidOid,
									   InvalidOid, F_TIMESTAMPTZ_GT, PG_GETARG_DATUM(2));
			index_rescan(scan, keys, have_after ? 4 : 3, NULL, 0);

			while ((tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
			{
				bool		isnull;
				Datum		seg;

				CHECK_FOR_INTERRUPTS();
				/* as an index-only scan: the heap only where the page is not all-visible */
				if (!VM_ALL_VISIBLE(heap, ItemPointerGetBlockNumber(tid), &vmbuffer))
				{
					if (!index_fetch_heap(scan, slot))
						continue;
					ExecClearTuple(slot);
				}
				else
					PredicateLockPage(heap, ItemPointerGetBlockNumber(tid), snapshot);
				n++;
				if (!with_segments)
					continue;
				seg = index_getattr(scan->xs_itup, NUM_SEGMENTS_ATTNO, scan->xs_itupdesc, &isnull);
				if (!isnull)
					segments += DatumGetInt32(seg);
			}

			values[0] = status_datums[s];
			values[1] = CStringGetTextDatum(kinds[k]);
			values[2] = Int64GetDatum(n);
			values[3] = Int64GetDatum(segments);
			nulls[3] = !with_segments;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}

	if (BufferIsValid(vmbuffer))
		ReleaseBuffer(vmbuffer);
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	PG_RETURN_NULL();
}

static bool
is_pending(const char *status)
{
	return strcmp(status, "queued") == 0 || strcmp(status, "retrying") == 0 ||
		strcmp(status, "sending") == 0;
}

/* append (pool, status, kind, sign, sign * num_segments) when the row is pending */
static void
count_row(Relation outbox, HeapTuple row, Relation counts, int sign)
{
	TupleDesc	desc = RelationGetDescr(outbox);
	bool		isnull;
	Datum		status;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	Datum		seg;
	HeapTuple	tup;
	char	   *status_str;

	status = heap_getattr(row, SPI_fnumber(desc, "status"), desc, &isnull);
	if (isnull)
		return;
	status_str = TextDatumGetCString(status);
	if (!is_pending(status_str))
		return;
	values[0] = heap_getattr(row, SPI_fnumber(desc, "pool"), desc, &nulls[0]);
	values[1] = status;
	values[2] = heap_getattr(row, SPI_fnumber(desc, "kind"), desc, &nulls[2]);
	values[3] = Int64GetDatum(sign);
	seg = heap_getattr(row, SPI_fnumber(desc, "num_segments"), desc, &isnull);
	values[4] = Int64GetDatum(isnull ? 0 : (int64) sign * DatumGetInt32(seg));
	if (nulls[0] || nulls[2])
		return;					/* the table's NOT NULLs make this impossible */
	tup = heap_form_tuple(RelationGetDescr(counts), values, nulls);
	simple_heap_insert(counts, tup);
	heap_freetuple(tup);
}

/*
 * _twilio_count_pending() RETURNS trigger: AFTER INSERT, UPDATE or DELETE
 * FOR EACH ROW (their WHEN clauses leave out rows that change no count),
 * and AFTER TRUNCATE FOR EACH STATEMENT, on twilio_outbox.
 */
Datum
twilio_outbox_count_pending_2_0(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	outbox;
	Oid			countsoid;
	Relation	counts;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_twilio_count_pending() must be called as an AFTER trigger")));
	outbox = td->tg_relation;
	countsoid = get_relname_relid("_twilio_pending_counts", RelationGetNamespace(outbox));
	if (!OidIsValid(countsoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table _twilio_pending_counts not found")));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		/* no pending rows left: neither are their counts */
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(psprintf("DELETE FROM %s._twilio_pending_counts",
								 quote_identifier(get_namespace_name(RelationGetNamespace(outbox)))),
						false, 0) != SPI_OK_DELETE)
			elog(ERROR, "emptying _twilio_pending_counts failed");
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_twilio_count_pending() must be called FOR EACH ROW or on TRUNCATE")));

	counts = table_open(countsoid, RowExclusiveLock);
	if (RelationGetDescr(counts)->natts != 5)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table _twilio_pending_counts has an unexpected definition")));
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		count_row(outbox, td->tg_trigtuple, counts, 1);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		count_row(outbox, td->tg_trigtuple, counts, -1);
	else
	{
		count_row(outbox, td->tg_trigtuple, counts, -1);
		count_row(outbox, td->tg_newtuple, counts, 1);
	}
	table_close(counts, NoLock);
	return PointerGetDatum(NULL);
}
