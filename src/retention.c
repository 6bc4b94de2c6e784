/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Deleting rows past retention, for the outbox and the inbox alike.
 *
 * Once a second the worker deletes what has been kept long enough: a
 * finished outbox row by its finished_at, an applied callback by its
 * received_at.  Rows go oldest first, found in the table's index on that
 * time and deleted by ctid (a TID scan: no join with the table, whatever
 * the batch size), in batches sized from the one before to take about
 * TOB_RETENTION_STATEMENT_MS, one after the other while they come back
 * full, for at most TOB_RETENTION_ROUND_MS.  So what finished in the second
 * before goes in one or two batches, at any send rate the worker reaches,
 * and catching up on a backlog holds the worker's turn up for at most that
 * long each second.
 *
 * Each table keeps the time below which all its rows past retention are
 * known to be gone (the floor), so that the next scan starts there rather
 * than walking the dead entries earlier deletes leave in the index until
 * VACUUM (a transaction holding back the xmin horizon keeps even those
 * from being marked dead, and every scan from the start would visit each
 * of them in the heap again).  A floor only counts once the transaction
 * that reached it has committed.
 *
 * A row whose time is below the floor by the time it qualifies (a cancel
 * in a transaction longer than retention, a record held up by a failing
 * database, a callback applied late, rows loaded with old times) would be
 * skipped.  To pick those up the scan starts from the oldest row again
 * when retention, the schema or the worker changes, and after a VACUUM of
 * the table (or an hour) when few dead rows are left to walk over.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "retention.h"

/*
 * A table retention deletes from.  delete_sql takes the schema twice and
 * $1 = the floor, $2 = retention in seconds, $3 = the batch's size, and
 * returns one row: how many it deleted, and the latest time among them.
 * The outer conditions repeat the inner ones, so a row changed between the
 * two (a twilio_retry) is left alone.
 */
typedef struct RetentionTable
{
	const char *table;
	const char *delete_sql;
	int			batch;
	TimestampTz floor;
	TimestampTz floor_pending;
	TransactionId floor_xid;
	int			last_s;
	int64		vacuums;
	TimestampTz rescan_at;
	char		schema[2 * NAMEDATALEN + 3];
} RetentionTable;

#define RETENTION_TABLE(name, sql) \
	{name, sql, TOB_RETENTION_BATCH, DT_NOBEGIN, DT_NOBEGIN, InvalidTransactionId, -1, -1, 0, ""}

#define FINISHED "status IN ('sent', 'failed', 'expired', 'canceled')"
#define PAST_RETENTION(col) col " < now() - make_interval(secs => $2)"

static RetentionTable outbox =
RETENTION_TABLE("twilio_outbox",
				"WITH d AS (DELETE FROM %s.twilio_outbox WHERE ctid = ANY (ARRAY("
				"SELECT ctid FROM %s.twilio_outbox"
				" WHERE " FINISHED " AND finished_at >= $1 AND " PAST_RETENTION("finished_at")
				" ORDER BY finished_at LIMIT $3))"
				" AND " FINISHED " AND " PAST_RETENTION("finished_at")
				" RETURNING finished_at) "
				"SELECT count(*), max(finished_at) FROM d");

static RetentionTable inbox =
RETENTION_TABLE("twilio_inbox",
				"WITH d AS (DELETE FROM %s.twilio_inbox WHERE ctid = ANY (ARRAY("
				"SELECT ctid FROM %s.twilio_inbox"
				" WHERE received_at >= $1 AND " PAST_RETENTION("received_at")
				" AND applied_at IS NOT NULL"
				" ORDER BY received_at LIMIT $3))"
				" AND applied_at IS NOT NULL"
				" RETURNING received_at) "
				"SELECT count(*), max(received_at) FROM d");

static void
check_spi(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

static Datum
result_datum(int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * Whether retention should scan t from the oldest row again; also
 * remembers the table's vacuum count.
 */
static bool
rescan_due(RetentionTable *t, const char *schema, int retention_s, TimestampTz now)
{
	Oid			argtype = TEXTOID;
	Datum		value = CStringGetTextDatum(psprintf("%s.%s", schema, t->table));
	bool		isnull;
	int64		vacuums;
	int64		dead;
	bool		rescan;

	check_spi(SPI_execute_with_args("SELECT pg_stat_get_vacuum_count(c) + pg_stat_get_autovacuum_count(c),"
									" pg_stat_get_dead_tuples(c) "
									"FROM (SELECT $1::regclass::oid AS c) t",
									1, &argtype, &value, NULL, true, 1),
			  SPI_OK_SELECT, "reading a table's vacuum count");
	vacuums = DatumGetInt64(result_datum(1, &isnull));
	dead = DatumGetInt64(result_datum(2, &isnull));

	if (retention_s != t->last_s || strcmp(t->schema, schema) != 0)
		rescan = true;
	else
		rescan = (vacuums != t->vacuums || now >= t->rescan_at) &&
			dead < TOB_RETENTION_RESCAN_DEAD;
	if (rescan)
	{
		t->last_s = retention_s;
		strlcpy(t->schema, schema, sizeof(t->schema));
		t->vacuums = vacuums;
		t->rescan_at = now + (int64) TOB_RETENTION_RESCAN_S * USECS_PER_SEC;
	}
	return rescan;
}

/* One batch: delete up to limit rows at or after floor; *last: the latest time deleted. */
static int
delete_batch(RetentionTable *t, const char *schema, int retention_s, TimestampTz floor,
			 int limit, TimestampTz *last)
{
	Oid			argtypes[3] = {TIMESTAMPTZOID, INT4OID, INT4OID};
	Datum		values[3];
	bool		isnull;
	int64		n;

	values[0] = TimestampTzGetDatum(floor);
	values[1] = Int32GetDatum(retention_s);
	values[2] = Int32GetDatum(limit);
	check_spi(SPI_execute_with_args(psprintf(t->delete_sql, schema, schema),
									3, argtypes, values, NULL, false, 1),
			  SPI_OK_SELECT, psprintf("deleting %s rows past retention", t->table));
	n = DatumGetInt64(result_datum(1, &isnull));
	if (n > 0)
		*last = DatumGetTimestampTz(result_datum(2, &isnull));
	return (int) n;
}

static int
trim(RetentionTable *t, const char *schema, int retention_s)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz floor;
	TimestampTz end;
	int			deleted = 0;
	int			n;

	if (retention_s <= 0)
		return 0;
	if (TransactionIdIsValid(t->floor_xid))
	{
		if (TransactionIdDidCommit(t->floor_xid))
			t->floor = t->floor_pending;
		t->floor_xid = InvalidTransactionId;
	}
	if (rescan_due(t, schema, retention_s, start))
		t->floor = DT_NOBEGIN;
	floor = t->floor;

	do
	{
		TimestampTz t0 = GetCurrentTimestamp();
		int			limit = t->batch;
		TimestampTz last = floor;

		n = delete_batch(t, schema, retention_s, floor, limit, &last);
		end = GetCurrentTimestamp();
		deleted += n;
		if (n > 0)
		{
			/* size the next batch by this one's speed */
			double		per_row_us = Max(1.0, (double) (end - t0)) / n;
			double		fit = TOB_RETENTION_STATEMENT_MS * 1000.0 / per_row_us;

			t->batch = (int) Max(TOB_RETENTION_BATCH,
								 Min(TOB_RETENTION_BATCH_MAX, (t->batch + fit) / 2));
			floor = last;
		}
		if (n < limit)
			break;
	} while (end - start < TOB_RETENTION_ROUND_MS * 1000);

	if (deleted > 0)
	{
		/* the floor holds once this transaction commits */
		t->floor_pending = floor;
		t->floor_xid = GetTopTransactionIdIfAny();
	}
	return deleted;
}

int
tob_retention_trim_outbox(const char *schema, int retention_s)
{
	return trim(&outbox, schema, retention_s);
}

int
tob_retention_trim_inbox(const char *schema, int retention_s)
{
	return trim(&inbox, schema, retention_s);
}
