/*-------------------------------------------------------------------------
 *
 * counts.c
 *		Exact counts for the monitoring views: _twilio_outbox_counts()
 *		counts one pool's rows by status and kind from the outbox's
 *		pool/status index; _twilio_count_pending(), the outbox's row
 *		triggers, keeps the pending and recently finished rows' counts.
 *
 * twilio_queue_stats is polled every few seconds and, during an incident,
 * every second; the rows that finished in the last hour may be hundreds of
 * thousands.  This does the same visibility check as an index-only scan
 * (nodeIndexonlyscan.c: the visibility map, else the heap tuple under the
 * query's snapshot) in a loop over the index's TIDs, without the executor's
 * slot, projection and aggregate per row (about 0.7 of the time of the
 * same count in SQL; most of what is left is the btree's key checks), and
 * reads num_segments out of the index tuple only when asked.  Each (status,
 * kind) pair is one range of twilio_outbox_pool_status_idx (pool, status,
 * kind, finished_at, next_attempt_at) INCLUDE (num_segments), optionally
 * restricted to after < finished_at < before, so the cost is the rows counted plus one descent a
 * pair, whatever the size of the rest of the table and the number of pools.
 *
 * _twilio_count_pending(), the outbox's row triggers, keeps counts in two
 * tables instead, so that the views need not read the rows at all:
 * _twilio_pending_counts has the pending rows by (pool, status, kind,
 * reason: a retrying row's last HTTP status), _twilio_recent_counts the
 * rows that finished (sent, failed) in the last two hours by (pool, minute
 * of finished_at, status, kind, delivery status, answered by a machine),
 * and those of the last two minutes by second as well.
 * Every insert, update or delete that changes one of those groups appends a
 * row of -1 for the old group and +1 for the new one in the same
 * transaction, so that any snapshot sees counts that add up to exactly the
 * rows it sees.  Nobody updates a counts row (no lock is ever waited for:
 * concurrent enqueues never queue behind each other); the worker folds the
 * appended rows into one per group every second (tob_fold_counts).  The
 * tuples go straight into the heap (the tables have no index and no
 * trigger): on the enqueue path this costs a heap insert, not a query.
 * A view's last hour is the recent counts of the whole minutes after its
 * start plus _twilio_outbox_counts of the part-minute before them; its
 * last minute the same by seconds.
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
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "counts.h"

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
 *                       before timestamptz, with_segments boolean)
 *   RETURNS TABLE (status text, kind text, n bigint, segments bigint)
 *
 * One row per status in statuses and kind (message, call): how many rows of
 * the pool have them (and finished_at > after and finished_at < before,
 * each when not null),
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
	bool		have_before = !PG_ARGISNULL(3);
	bool		with_segments = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	int			nkeys = 3 + have_after + have_before;
	Relation	heap;
	Relation	index;
	TupleDesc	itupdesc;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Buffer		vmbuffer = InvalidBuffer;
	Snapshot	snapshot = GetActiveSnapshot();
	ScanKeyData keys[5];
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

	scan = index_beginscan(heap, index, snapshot, nkeys, 0);
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
			if (have_before)
				ScanKeyEntryInitialize(&keys[3 + have_after], 0, 4, BTLessStrategyNumber, InvalidOid,
									   InvalidOid, F_TIMESTAMPTZ_LT, PG_GETARG_DATUM(3));
			index_rescan(scan, keys, nkeys, NULL, 0);

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

/* the outbox's columns the counts read, by name: their numbers may differ between versions */
typedef enum OutboxColumn
{
	COL_STATUS, COL_POOL, COL_KIND, COL_NUM_SEGMENTS, COL_LAST_HTTP_STATUS,
	COL_FINISHED_AT, COL_DELIVERY_STATUS, COL_ANSWERED_BY, NUM_OUTBOX_COLUMNS
} OutboxColumn;

static const char *const outbox_columns[NUM_OUTBOX_COLUMNS] = {
	"status", "pool", "kind", "num_segments", "last_http_status",
	"finished_at", "delivery_status", "answered_by"
};

/* each one's attribute number, looked up once and checked by name on every use */
static int	outbox_attnums[NUM_OUTBOX_COLUMNS];

static Datum
column(Relation outbox, HeapTuple row, OutboxColumn col, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(outbox);
	int			attnum = outbox_attnums[col];

	if (attnum <= 0 || attnum > desc->natts ||
		TupleDescAttr(desc, attnum - 1)->attisdropped ||
		strcmp(NameStr(TupleDescAttr(desc, attnum - 1)->attname), outbox_columns[col]) != 0)
	{
		attnum = SPI_fnumber(desc, outbox_columns[col]);
		if (attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("twilio_outbox has no column \"%s\"", outbox_columns[col]),
					 errhint("Reinstall the extension's schema: ALTER EXTENSION twilio_outbox UPDATE.")));
		outbox_attnums[col] = attnum;
	}
	return heap_getattr(row, attnum, desc, isnull);
}

/* a counts table, opened when a row is first appended to it */
typedef struct CountsTable
{
	Relation	outbox;
	const char *name;
	int			natts;
	Relation	rel;
} CountsTable;

static Relation
open_counts(Relation outbox, const char *name, int natts)
{
	Oid			oid = get_relname_relid(name, RelationGetNamespace(outbox));
	Relation	rel;

	if (!OidIsValid(oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s not found", name),
				 errhint("Reinstall the extension's schema: ALTER EXTENSION twilio_outbox UPDATE.")));
	rel = table_open(oid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s has an unexpected definition", name),
				 errhint("Reinstall the extension's schema: ALTER EXTENSION twilio_outbox UPDATE.")));
	return rel;
}

static void
append_counts(CountsTable *table, Datum *values, bool *nulls)
{
	HeapTuple	tup;

	if (table->rel == NULL)
		table->rel = open_counts(table->outbox, table->name, table->natts);
	tup = heap_form_tuple(RelationGetDescr(table->rel), values, nulls);
	simple_heap_insert(table->rel, tup);
	heap_freetuple(tup);
}

/*
 * Append (pool, status, kind, reason, sign, sign * num_segments) when the
 * row is pending; reason, for a retrying row, is its last HTTP status or
 * 'transport' (twilio_queue_stats.retrying_by_reason), else null.
 */
static void
count_pending_row(Relation outbox, HeapTuple row, Datum status, const char *status_str,
				  CountsTable *counts, int sign)
{
	bool		isnull;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, true, false, false};
	Datum		seg;

	if (!is_pending(status_str))
		return;
	values[0] = column(outbox, row, COL_POOL, &nulls[0]);
	values[1] = status;
	values[2] = column(outbox, row, COL_KIND, &nulls[2]);
	if (strcmp(status_str, "retrying") == 0)
	{
		Datum		http = column(outbox, row, COL_LAST_HTTP_STATUS, &isnull);

		values[3] = CStringGetTextDatum(isnull ? "transport" : psprintf("%d", DatumGetInt32(http)));
		nulls[3] = false;
	}
	values[4] = Int64GetDatum(sign);
	seg = column(outbox, row, COL_NUM_SEGMENTS, &isnull);
	values[5] = Int64GetDatum(isnull ? 0 : (int64) sign * DatumGetInt32(seg));
	if (nulls[0] || nulls[2])
		return;					/* the table's NOT NULLs make this impossible */
	append_counts(counts, values, nulls);
}

/* t rounded down to a multiple of unit (as date_bin(unit, t, 'epoch') does) */
static TimestampTz
bin(TimestampTz t, int64 unit)
{
	/* PostgreSQL's epoch is a whole number of minutes after Unix's */
	return t - t % unit - (t % unit < 0 ? unit : 0);
}

/*
 * Append (pool, minute, second, status, kind, delivery_status, machine,
 * raw, sign, sign * num_segments) when the row is sent or failed and
 * finished after horizon: minute and second are finished_at rounded down
 * to them, raw says the fold has not yet added the row to the minute's and
 * the second's sums.  delivery_status is kept for sent rows only, machine
 * (answered_by LIKE 'machine%') for calls only.
 */
static void
count_recent_row(Relation outbox, HeapTuple row, Datum status, const char *status_str,
				 CountsTable *counts, int sign, TimestampTz horizon)
{
	bool		isnull;
	Datum		values[10];
	bool		nulls[10] = {false, false, false, false, false, true, false, false, false, false};
	Datum		seg;
	TimestampTz finished_at;
	bool		sent;
	bool		call;

	sent = strcmp(status_str, "sent") == 0;
	if (!sent && strcmp(status_str, "failed") != 0)
		return;
	finished_at = DatumGetTimestampTz(column(outbox, row, COL_FINISHED_AT, &isnull));
	if (isnull || finished_at <= horizon)
		return;
	values[0] = column(outbox, row, COL_POOL, &nulls[0]);
	values[1] = TimestampTzGetDatum(bin(finished_at, USECS_PER_MINUTE));
	values[2] = TimestampTzGetDatum(bin(finished_at, USECS_PER_SEC));
	values[3] = status;
	values[4] = column(outbox, row, COL_KIND, &nulls[4]);
	if (nulls[0] || nulls[4])
		return;					/* the table's NOT NULLs make this impossible */
	call = strcmp(TextDatumGetCString(values[4]), "call") == 0;
	if (sent)
		values[5] = column(outbox, row, COL_DELIVERY_STATUS, &nulls[5]);
	values[6] = BoolGetDatum(false);
	if (call)
	{
		Datum		answered_by = column(outbox, row, COL_ANSWERED_BY, &isnull);

		values[6] = BoolGetDatum(!isnull &&
								 strncmp(TextDatumGetCString(answered_by), "machine", 7) == 0);
	}
	values[7] = BoolGetDatum(true);
	values[8] = Int64GetDatum(sign);
	seg = column(outbox, row, COL_NUM_SEGMENTS, &isnull);
	values[9] = Int64GetDatum(isnull ? 0 : (int64) sign * DatumGetInt32(seg));
	append_counts(counts, values, nulls);
}

/* one row's counts, +1 or -1, in whichever of the two tables count it */
static void
count_row(Relation outbox, HeapTuple row, CountsTable *pending, CountsTable *recent,
		  int sign, TimestampTz horizon)
{
	bool		isnull;
	Datum		status = column(outbox, row, COL_STATUS, &isnull);
	char	   *status_str;

	if (isnull)
		return;
	status_str = TextDatumGetCString(status);
	count_pending_row(outbox, row, status, status_str, pending, sign);
	count_recent_row(outbox, row, status, status_str, recent, sign, horizon);
	pfree(status_str);
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
	CountsTable pending = {NULL, "_twilio_pending_counts", 6, NULL};
	CountsTable recent = {NULL, "_twilio_recent_counts", 10, NULL};
	TimestampTz horizon = GetCurrentTransactionStartTimestamp() - TOB_RECENT_HORIZON_S * USECS_PER_SEC;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_twilio_count_pending() must be called as an AFTER trigger")));
	outbox = td->tg_relation;

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		const char *schema = quote_identifier(get_namespace_name(RelationGetNamespace(outbox)));

		/* no rows left: neither are their counts */
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(psprintf("DELETE FROM %s._twilio_pending_counts", schema), false, 0) != SPI_OK_DELETE ||
			SPI_execute(psprintf("DELETE FROM %s._twilio_recent_counts", schema), false, 0) != SPI_OK_DELETE)
			elog(ERROR, "emptying the outbox's counts failed");
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_twilio_count_pending() must be called FOR EACH ROW or on TRUNCATE")));

	pending.outbox = recent.outbox = outbox;
	/* the old row's counts go (delete, or the old half of an update) */
	if (!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		count_row(outbox, td->tg_trigtuple, &pending, &recent, -1, horizon);
	if (!TRIGGER_FIRED_BY_DELETE(td->tg_event))
		count_row(outbox, TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : td->tg_newtuple,
				  &pending, &recent, 1, horizon);
	if (recent.rel != NULL)
		table_close(recent.rel, NoLock);
	if (pending.rel != NULL)
		table_close(pending.rel, NoLock);
	return PointerGetDatum(NULL);
}
