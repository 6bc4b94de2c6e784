/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The worker's SQL access to the outbox.
 *
 * Every step is its own short transaction, shaped like worker_spi's: the
 * worker never holds a transaction (or row locks, or back xmin) across
 * network I/O.  The worker runs with search_path = pg_catalog, pg_temp, so
 * the statements below only need to qualify the extension's own objects.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bgworker.h"
#include "counts.h"
#include "queue.h"
#include "retention.h"

/* Where results go: the context current at tob_xact_begin. */
#define caller_cxt tob_xact_caller_context()

/*
 * The statements the worker runs every turn, prepared once per schema: on
 * a busy drain parsing and planning them again took ~17% of its CPU.
 * The plan cache re-plans them by itself after DROP/CREATE EXTENSION.
 */
typedef enum TobPlan
{
	PLAN_CLAIM_FROM,
	PLAN_CLAIM_AFTER,
	PLAN_CLAIM_PROBE,
	PLAN_MARK_SENDING,
	PLAN_RECORD,
	PLAN_POOLS_ALL,
	PLAN_POOLS_SOME,
	NUM_PLANS
} TobPlan;

static SPIPlanPtr plans[NUM_PLANS];
static char plans_schema[2 * NAMEDATALEN + 3];

static SPIPlanPtr
cached_plan(TobPlan which, const char *schema, const char *sql, int nargs, Oid *argtypes)
{
	int			i;

	if (strcmp(plans_schema, schema) != 0)
	{
		for (i = 0; i < NUM_PLANS; i++)
			if (plans[i] != NULL)
			{
				SPI_freeplan(plans[i]);
				plans[i] = NULL;
			}
		strlcpy(plans_schema, schema, sizeof(plans_schema));
	}
	if (plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		plans[which] = plan;
	}
	return plans[which];
}

static void
check_spi(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Run the claim or its probe (or the read of pools by name), planned (when
 * the plan cache plans it) with enable_seqscan off, so that it reads its
 * index whatever the planner thinks of the table.  A plan made while the outbox looked empty (a VACUUM
 * of an empty table says exactly that) scans the whole table instead, and
 * the plan cache keeps it until an ANALYZE: with hundreds of pools, each
 * probed every second, that was hundreds of scans of a growing table per
 * second, and the busy pools were served late (bench/pools: 0.63 of their
 * rate).  On an error the transaction's abort restores the setting.
 */
static int
execute_by_index(SPIPlanPtr plan, Datum *values, bool read_only, long count)
{
	int			nest = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(plan, values, NULL, read_only, count);
	AtEOXact_GUC(true, nest);
	return rc;
}

/* Column `col` of row `row` of the last result, copied to the caller, or NULL. */
static char *
result_text(int row, int col)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(caller_cxt, value) : NULL;
}

/*
 * The same in UTF-8, whatever the database encoding: what goes to Twilio
 * (and is compared with what Twilio lists) is UTF-8.
 */
static char *
result_utf8(int row, int col)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	if (value == NULL)
		return NULL;
	return MemoryContextStrdup(caller_cxt,
							   (char *) pg_server_to_any(value, strlen(value), PG_UTF8));
}

static Datum
result_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* A text[] column, copied to the caller as a C string array. */
static int
result_utf8_array(int row, int col, char ***out)
{
	bool		isnull;
	Datum		d = result_datum(row, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	*out = NULL;
	if (isnull)
		return 0;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*out = MemoryContextAlloc(caller_cxt, sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		char	   *value = nulls[i] ? "" : TextDatumGetCString(elems[i]);

		(*out)[i] = MemoryContextStrdup(caller_cxt,
										(char *) pg_server_to_any(value, strlen(value), PG_UTF8));
	}
	return n;
}

int
tob_load_pools(const char *schema, char (*names)[TOB_POOL_NAME_LEN], int nnames,
			   TobPoolConfig **pools)
{
	/* whatever the table holds (its CHECKs can be dropped), rates stay sane */
	const char *columns = "SELECT name, sender, LEAST(GREATEST(mps, 0.001), 10000)::float8,"
		" LEAST(GREATEST(burst, 1), 1000000),"
		" paused AND (paused_until IS NULL OR paused_until > now()) ";
	int			i;
	bool		isnull;

	if (names == NULL)
	{
		/* in strcmp's order, for tob_pools_sync */
		check_spi(SPI_execute_plan(cached_plan(PLAN_POOLS_ALL, schema,
											   psprintf("%s FROM %s.twilio_pools ORDER BY name COLLATE \"C\"",
														columns, schema),
											   0, NULL),
								   NULL, NULL, true, 0),
				  SPI_OK_SELECT, "loading pools");
	}
	else
	{
		Oid			argtypes[1] = {TEXTARRAYOID};
		Datum		values[1];
		Datum	   *elems = palloc(sizeof(Datum) * Max(nnames, 1));

		for (i = 0; i < nnames; i++)
			elems[i] = CStringGetTextDatum(names[i]);
		values[0] = PointerGetDatum(construct_array(elems, nnames, TEXTOID, -1, false, TYPALIGN_INT));
		/* by the primary key: as cheap with hundreds of pools as with one */
		check_spi(execute_by_index(cached_plan(PLAN_POOLS_SOME, schema,
											   psprintf("%s FROM %s.twilio_pools WHERE name = ANY ($1)",
														columns, schema),
											   1, argtypes),
								   values, true, 0),
				  SPI_OK_SELECT, "loading pools");
	}
	*pools = MemoryContextAlloc(caller_cxt, sizeof(TobPoolConfig) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		TobPoolConfig *p = &(*pools)[i];

		p->name = result_text(i, 1);
		p->sender = result_utf8(i, 2);
		p->mps = DatumGetFloat8(result_datum(i, 3, &isnull));
		p->burst = DatumGetInt32(result_datum(i, 4, &isnull));
		p->paused = DatumGetBool(result_datum(i, 5, &isnull));
	}
	return (int) SPI_processed;
}

/*
 * The claim reads the due index one priority at a time.  Within one
 * priority, next_attempt_at <= now() bounds the scan, so rows retrying an
 * hour ahead are never read; over a range of priorities it would only
 * filter, and every claim would read all of them.  Each priority is read
 * from a key: right after the cursor (the last row the previous claim
 * took), or from the first row a probe found.  Rows just claimed leave
 * dead entries at the start until VACUUM; starting from a key keeps a long
 * drain, and every claim after it, from reading them again and again.
 */
static const char *claim_select =
	"SELECT o.id, o.num_segments, o.attempts + 1, o.to_number, o.body, o.status_callback,"
	" o.media_urls,"
	" ARRAY(SELECT p.key FROM jsonb_each_text(o.params) p),"
	" ARRAY(SELECT p.value FROM jsonb_each_text(o.params) p),"
	" CASE WHEN o.expires_at IS NOT NULL AND NOT o.params ? 'ValidityPeriod'"
	"      THEN ceil(date_part('epoch', o.expires_at - now()))::int4 END,"
	" o.unconfirmed, COALESCE(o.unconfirmed_since, o.claimed_at), o.params ? 'ContentSid',"
	" o.expires_at <= now(),"
	/* opt-outs are SMS STOPs: they say nothing about calls (README) */
	" o.kind = 'message' AND EXISTS (SELECT FROM %s.twilio_opt_outs x WHERE x.phone_number = o.to_number),"
	" o.kind = 'call', o.twiml, o.call_url, o.priority, o.next_attempt_at "
	"FROM %s.twilio_outbox o "
	"WHERE o.pool = $1 AND o.kind = $3 AND o.status IN ('queued', 'retrying') AND o.next_attempt_at <= now()"
	" AND (o.expires_at IS NULL OR o.expires_at > now() OR o.unconfirmed)"
	/* a pause takes effect at once, not at the next reload of the pools */
	" AND NOT EXISTS (SELECT FROM %s.twilio_pools p WHERE p.name = $1 AND p.paused"
	"                 AND (p.paused_until IS NULL OR p.paused_until > now()))"
	" %s "
	"LIMIT $2 FOR UPDATE SKIP LOCKED";

static const struct
{
	TobPlan		plan;
	const char *tail;			/* the cursor's condition and the order */
	int			nargs;
}			claim_forms[] = {
	{PLAN_CLAIM_FROM, "AND o.priority = $4 AND (o.next_attempt_at, o.id) >= ($5, $6) "
	"ORDER BY o.next_attempt_at, o.id", 6},
	{PLAN_CLAIM_AFTER, "AND o.priority = $4 AND (o.next_attempt_at, o.id) > ($5, $6) "
	"ORDER BY o.next_attempt_at, o.id", 6},
};

/*
 * The first queued or retrying row (due or not) of the pool and kind with
 * a priority below `below` and above `above`, in the claim's order: one
 * descent of the due index, which stops at the first live entry.  Its key
 * goes to *from.  False when there is none.
 */
static bool
probe(const char *schema, const char *pool, bool calls, int32 below, int32 above,
	  TobClaimCursor *from)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	bool		isnull;

	values[0] = CStringGetTextDatum(pool);
	values[1] = CStringGetTextDatum(calls ? "call" : "message");
	values[2] = Int32GetDatum(below);
	values[3] = Int32GetDatum(above);
	check_spi(execute_by_index(cached_plan(PLAN_CLAIM_PROBE, schema,
										   psprintf("SELECT o.priority, o.next_attempt_at, o.id "
													"FROM %s.twilio_outbox o "
													"WHERE o.pool = $1 AND o.kind = $2"
													" AND o.status IN ('queued', 'retrying')"
													" AND o.priority < $3 AND o.priority > $4 "
													"ORDER BY o.priority DESC, o.next_attempt_at, o.id LIMIT 1",
													schema),
										   4, argtypes),
							   values, true, 1),
			  SPI_OK_SELECT, "finding the next rows to claim");
	if (SPI_processed == 0)
		return false;
	from->valid = true;
	from->priority = DatumGetInt32(result_datum(0, 1, &isnull));
	from->next_attempt_at = DatumGetTimestampTz(result_datum(0, 2, &isnull));
	from->id = DatumGetInt64(result_datum(0, 3, &isnull));
	return true;
}

/*
 * Claim at the key's priority, from its row (inclusive) or after it; the
 * rows go to rows[offset...]; how many.
 */
static int
claim_at(const char *schema, const char *pool, bool calls, int limit,
		 const TobClaimCursor *key, bool inclusive, TobClaimedRow *rows, int offset)
{
	int			form = inclusive ? 0 : 1;
	Oid			argtypes[6] = {TEXTOID, INT4OID, TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[6];
	int			i;
	bool		isnull;

	values[0] = CStringGetTextDatum(pool);
	values[1] = Int32GetDatum(limit);
	values[2] = CStringGetTextDatum(calls ? "call" : "message");
	values[3] = Int32GetDatum(key->priority);
	values[4] = TimestampTzGetDatum(key->next_attempt_at);
	values[5] = Int64GetDatum(key->id);
	check_spi(execute_by_index(cached_plan(claim_forms[form].plan, schema,
										   psprintf(claim_select, schema, schema, schema,
													claim_forms[form].tail),
										   claim_forms[form].nargs, argtypes),
							   values, false, 0),
			  SPI_OK_SELECT, "claiming due messages");
	for (i = 0; i < SPI_processed; i++)
	{
		TobClaimedRow *r = &rows[offset + i];
		Datum		d;

		r->id = DatumGetInt64(result_datum(i, 1, &isnull));
		r->segments = DatumGetInt32(result_datum(i, 2, &isnull));
		r->attempt = DatumGetInt32(result_datum(i, 3, &isnull));
		r->to_number = result_utf8(i, 4);
		r->body = result_utf8(i, 5);
		r->status_callback = result_utf8(i, 6);
		r->nmedia = result_utf8_array(i, 7, &r->media);
		r->nparams = result_utf8_array(i, 8, &r->param_names);
		(void) result_utf8_array(i, 9, &r->param_values);
		d = result_datum(i, 10, &isnull);
		r->validity_s = isnull ? 0 : DatumGetInt32(d);
		r->unconfirmed = DatumGetBool(result_datum(i, 11, &isnull));
		d = result_datum(i, 12, &isnull);
		r->unconfirmed_since = isnull ? 0 : DatumGetTimestampTz(d);
		r->content_sid = DatumGetBool(result_datum(i, 13, &isnull));
		d = result_datum(i, 14, &isnull);
		r->expired = !isnull && DatumGetBool(d);
		r->opted_out = DatumGetBool(result_datum(i, 15, &isnull));
		r->is_call = DatumGetBool(result_datum(i, 16, &isnull));
		r->twiml = result_utf8(i, 17);
		r->call_url = result_utf8(i, 18);
		r->priority = DatumGetInt32(result_datum(i, 19, &isnull));
		r->next_attempt_at = DatumGetTimestampTz(result_datum(i, 20, &isnull));
	}
	return (int) SPI_processed;
}

int
tob_claim_candidates(const char *schema, const char *pool, bool calls, int limit,
					 const TobClaimCursor *after, TobClaimedRow **rows)
{
	int			n = 0;
	int32		below = PG_INT32_MAX;
	TobClaimCursor from;

	*rows = MemoryContextAllocZero(caller_cxt, sizeof(TobClaimedRow) * Max(limit, 1));
	if (after != NULL && after->valid)
	{
		/* rows of a higher priority than the cursor's first, then on from it */
		while (n < limit && probe(schema, pool, calls, below, after->priority, &from))
		{
			n += claim_at(schema, pool, calls, limit - n, &from, true, *rows, n);
			below = from.priority;
		}
		if (n < limit)
			n += claim_at(schema, pool, calls, limit - n, after, false, *rows, n);
		below = after->priority;
	}
	/* then every lower priority from its first row */
	while (n < limit && probe(schema, pool, calls, below, PG_INT32_MIN, &from))
	{
		n += claim_at(schema, pool, calls, limit - n, &from, true, *rows, n);
		below = from.priority;
	}
	return n;
}

/* Build a one-dimensional array of n values of a type, NULL where isnull. */
static Datum
make_array(Datum *values, bool *isnull, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, isnull, 1, dims, lbs,
											  type, typlen, typbyval, typalign));
}

void
tob_mark_sending(const char *schema, const int64 *ids, const int *attempts, int n)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT4ARRAYOID};
	Datum	   *id_elems = palloc(sizeof(Datum) * n);
	Datum	   *attempt_elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	Datum		values[2];
	int			i;

	for (i = 0; i < n; i++)
	{
		id_elems[i] = Int64GetDatum(ids[i]);
		attempt_elems[i] = Int32GetDatum(attempts[i]);
	}
	values[0] = make_array(id_elems, nulls, n, INT8OID);
	values[1] = make_array(attempt_elems, nulls, n, INT4OID);
	check_spi(SPI_execute_plan(cached_plan(PLAN_MARK_SENDING, schema,
										   psprintf("UPDATE %s.twilio_outbox o "
													"SET status = 'sending', attempts = c.attempts, claimed_at = now() "
													"FROM unnest($1, $2) AS c(id, attempts) WHERE o.id = c.id", schema),
										   2, argtypes),
							   values, NULL, false, 0),
			  SPI_OK_UPDATE, "marking messages as sending");
}

void
tob_record(const char *schema, const TobRecord *records, int n)
{
	/* one statement: the outcomes, and the failed attempts for twilio_error_stats */
	static const char *fmt =
		"WITH u AS ("
		"UPDATE %s.twilio_outbox o SET "
		" status = r.status,"
		" attempts = r.attempts,"
		" unconfirmed = r.unconfirmed,"
		" unconfirmed_since = CASE WHEN r.unconfirmed THEN COALESCE(o.unconfirmed_since, r.since) END,"
		" twilio_sid = COALESCE(r.sid, o.twilio_sid),"
		" delivery_status = COALESCE(r.delivery_status, o.delivery_status),"
		" last_http_status = r.http_status,"
		" last_error_code = r.error_code,"
		" last_error = r.error,"
		" sent_at = CASE WHEN r.status = 'sent' THEN r.at ELSE o.sent_at END,"
		" finished_at = CASE WHEN r.status IN ('sent', 'failed') THEN r.at END,"
		" next_attempt_at = CASE WHEN r.status IN ('retrying', 'queued') THEN r.next_at ELSE o.next_attempt_at END "
		"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
		" AS r(id, status, sid, delivery_status, http_status, error_code, error, at, next_at,"
		"      unconfirmed, attempts, since) "
		"WHERE o.id = r.id AND o.status = 'sending' "
		"RETURNING o.id, o.pool, o.kind, r.status, r.http_status, r.error_code, r.error, r.at) "
		"INSERT INTO %s._twilio_attempt_errors (at, pool, message_id, http_status, error_code, outcome, error, kind) "
		"SELECT u.at, u.pool, u.id, u.http_status, u.error_code, u.status, u.error, u.kind FROM u "
		"WHERE u.status <> 'sent' AND (u.http_status IS NOT NULL OR u.error IS NOT NULL)";
#define NCOLS 12
	Oid			types[NCOLS] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
	BOOLARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};
	Oid			elemtypes[NCOLS] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID, INT4OID, TIMESTAMPTZOID};
	Datum	   *cols[NCOLS];
	bool	   *nulls[NCOLS];
	Datum		args[NCOLS];
	int			c;
	int			i;

	for (c = 0; c < NCOLS; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
	{
		const TobRecord *r = &records[i];

		cols[0][i] = Int64GetDatum(r->id);
		cols[1][i] = CStringGetTextDatum(r->status);
#define TEXT_OR_NULL(c, s) (nulls[c][i] = ((s) == NULL || (s)[0] == '\0'), \
							cols[c][i] = nulls[c][i] ? (Datum) 0 : CStringGetTextDatum(s))
		TEXT_OR_NULL(2, r->sid);
		TEXT_OR_NULL(3, r->delivery_status);
		TEXT_OR_NULL(6, r->error);
#undef TEXT_OR_NULL
		nulls[4][i] = r->http_status == 0;
		cols[4][i] = Int32GetDatum(r->http_status);
		nulls[5][i] = r->error_code == 0;
		cols[5][i] = Int32GetDatum(r->error_code);
		cols[7][i] = TimestampTzGetDatum(r->at);
		nulls[8][i] = r->next_attempt_at == 0;
		cols[8][i] = TimestampTzGetDatum(r->next_attempt_at);
		cols[9][i] = BoolGetDatum(r->unconfirmed);
		cols[10][i] = Int32GetDatum(r->attempts);
		nulls[11][i] = r->unconfirmed_since == 0;
		cols[11][i] = TimestampTzGetDatum(r->unconfirmed_since);
	}
	for (c = 0; c < NCOLS; c++)
		args[c] = make_array(cols[c], nulls[c], n, elemtypes[c]);

	check_spi(SPI_execute_plan(cached_plan(PLAN_RECORD, schema, psprintf(fmt, schema, schema),
										   NCOLS, types),
							   args, NULL, false, 0),
			  SPI_OK_INSERT, "recording results");
#undef NCOLS
}

void
tob_sids_in_use(const char *schema, char **sids, int n, bool *in_use)
{
	Oid			argtype = TEXTARRAYOID;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	Datum		arg;
	int			i;
	int			k;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(sids[i]);
	arg = make_array(elems, nulls, n, TEXTOID);
	check_spi(SPI_execute_with_args(psprintf("SELECT s.sid FROM unnest($1) s(sid) "
											 "WHERE EXISTS (SELECT FROM %s.twilio_outbox o WHERE o.twilio_sid = s.sid)",
											 schema),
									1, &argtype, &arg, NULL, true, 0),
			  SPI_OK_SELECT, "looking up recorded sids");
	memset(in_use, 0, sizeof(bool) * n);
	for (k = 0; k < SPI_processed; k++)
	{
		char	   *used = SPI_getvalue(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1);

		for (i = 0; i < n; i++)
			if (strcmp(sids[i], used) == 0)
				in_use[i] = true;
	}
}

int
tob_expire_due(const char *schema)
{
	check_spi(SPI_execute(psprintf("UPDATE %s.twilio_outbox "
								   "SET status = 'expired', finished_at = now(),"
								   " last_error = 'expired before it could be sent' "
								   "WHERE status IN ('queued', 'retrying') AND expires_at <= now()"
								   /* an unconfirmed row may be sent already: it is looked up first */
								   " AND NOT unconfirmed",
								   schema), false, 0),
			  SPI_OK_UPDATE, "expiring messages");
	return (int) SPI_processed;
}

int
tob_recover_sending(const char *schema, const int64 *keep, int nkeep, int64 settle_us)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT8OID};
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeep, 1));
	bool	   *nulls = palloc0(sizeof(bool) * Max(nkeep, 1));
	Datum		values[2];
	int			i;

	for (i = 0; i < nkeep; i++)
		elems[i] = Int64GetDatum(keep[i]);
	values[0] = make_array(elems, nulls, nkeep, INT8OID);
	values[1] = Int64GetDatum(settle_us);
	check_spi(SPI_execute_with_args(psprintf("UPDATE %s.twilio_outbox "
											 "SET status = 'retrying', unconfirmed = true,"
											 " unconfirmed_since = COALESCE(unconfirmed_since, claimed_at, now()),"
											 " next_attempt_at = now() + make_interval(secs => $2 / 1e6),"
											 " last_error = 'no answer was recorded for this attempt: the worker stopped or failed while sending' "
											 "WHERE status = 'sending' AND id <> ALL ($1)", schema),
									2, argtypes, values, NULL, false, 0),
			  SPI_OK_UPDATE, "recovering messages left in sending");
	return (int) SPI_processed;
}

int
tob_load_cancels(const char *schema, const int64 *keep, int nkeep, int limit, TobCancel **cancels)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT4OID};
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeep, 1));
	bool	   *nulls = palloc0(sizeof(bool) * Max(nkeep, 1));
	Datum		values[2];
	int			i;

	/* a call that ended before it could be canceled has nothing to cancel */
	check_spi(SPI_execute(psprintf("UPDATE %s.twilio_outbox SET cancel_requested_at = NULL "
								   "WHERE cancel_requested_at IS NOT NULL AND status NOT IN ('sending', 'sent')",
								   schema), false, 0),
			  SPI_OK_UPDATE, "dropping cancel requests");
	for (i = 0; i < nkeep; i++)
		elems[i] = Int64GetDatum(keep[i]);
	values[0] = make_array(elems, nulls, nkeep, INT8OID);
	values[1] = Int32GetDatum(limit);
	check_spi(SPI_execute_with_args(psprintf("SELECT id, twilio_sid FROM %s.twilio_outbox "
											 "WHERE cancel_requested_at IS NOT NULL AND status = 'sent'"
											 " AND kind = 'call' AND twilio_sid IS NOT NULL AND id <> ALL ($1) "
											 "ORDER BY cancel_requested_at LIMIT $2", schema),
									2, argtypes, values, NULL, true, 0),
			  SPI_OK_SELECT, "loading cancel requests");
	*cancels = MemoryContextAllocZero(caller_cxt, sizeof(TobCancel) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		(*cancels)[i].id = DatumGetInt64(result_datum(i, 1, &isnull));
		(*cancels)[i].sid = result_text(i, 2);
	}
	return (int) SPI_processed;
}

void
tob_record_cancels(const char *schema, const TobCancel *cancels, int n)
{
	Oid			argtypes[4] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum	   *cols[4];
	bool	   *nulls[4];
	Datum		values[4];
	int			c;
	int			i;

	for (c = 0; c < 4; c++)
	{
		cols[c] = palloc(sizeof(Datum) * Max(n, 1));
		nulls[c] = palloc0(sizeof(bool) * Max(n, 1));
	}
	for (i = 0; i < n; i++)
	{
		cols[0][i] = Int64GetDatum(cancels[i].id);
		nulls[1][i] = cancels[i].delivery_status == NULL;
		cols[1][i] = nulls[1][i] ? (Datum) 0 : CStringGetTextDatum(cancels[i].delivery_status);
		nulls[2][i] = cancels[i].http_status == 0;
		cols[2][i] = Int32GetDatum(cancels[i].http_status);
		nulls[3][i] = cancels[i].error == NULL;
		cols[3][i] = nulls[3][i] ? (Datum) 0 : CStringGetTextDatum(cancels[i].error);
	}
	values[0] = make_array(cols[0], nulls[0], n, INT8OID);
	values[1] = make_array(cols[1], nulls[1], n, TEXTOID);
	values[2] = make_array(cols[2], nulls[2], n, INT4OID);
	values[3] = make_array(cols[3], nulls[3], n, TEXTOID);
	/* a status callback may have brought a final status first: keep it */
	check_spi(SPI_execute_with_args(psprintf("UPDATE %s.twilio_outbox o SET cancel_requested_at = NULL,"
											 " delivery_status = CASE WHEN r.status IS NOT NULL"
											 "   AND %s._twilio_call_status_rank(o.delivery_status) < 5"
											 "   THEN r.status ELSE o.delivery_status END,"
											 " last_error = COALESCE(r.error, o.last_error),"
											 " last_http_status = COALESCE(r.http, o.last_http_status) "
											 "FROM unnest($1, $2, $3, $4) AS r(id, status, http, error) "
											 "WHERE o.id = r.id", schema, schema),
									4, argtypes, values, NULL, false, 0),
			  SPI_OK_UPDATE, "recording cancels");
}

/*
 * Fold a counts table's +1/-1 rows when need (a condition over its first
 * TOB_FOLD_ROWS rows, aggregates allowed) holds: those rows are deleted
 * and sums (an INSERT ... SELECT from d, the deleted rows) puts back their
 * sums, so at most TOB_FOLD_ROWS go a second (a bulk enqueue of millions
 * of rows is folded over a few seconds, not in one long turn).  Any subset
 * of a group's rows may be replaced by their sum; rows of transactions
 * still open stay as they are.  Returns how many rows were folded.
 */
static int
fold_table(const char *schema, const char *table, const char *need, const char *sums)
{
	bool		isnull;
	bool		fold;
	int64		rows;

	check_spi(SPI_execute(psprintf("SELECT %s, count(*) FROM (SELECT * FROM %s.%s LIMIT %d) c",
								   need, schema, table, TOB_FOLD_ROWS), true, 1),
			  SPI_OK_SELECT, "reading the counts");
	if (SPI_processed != 1)
		return 0;
	fold = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || !fold)
		return 0;
	rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	check_spi(SPI_execute(psprintf("WITH d AS (DELETE FROM %s.%s"
								   " WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s.%s LIMIT %d))"
								   " RETURNING *) %s",
								   schema, table, schema, table, TOB_FOLD_ROWS, sums),
						  false, 0),
			  SPI_OK_INSERT, "folding the counts");
	return (int) rows;
}

/*
 * _twilio_pending_counts: one row per (pool, status, kind, reason); a
 * group whose sum is back to zero goes.  Nothing is rewritten while each
 * group has one row.
 */
static int
fold_pending_counts(const char *schema)
{
	const char *keys = "pool, status, kind, reason";

	return fold_table(schema, "_twilio_pending_counts",
					  psprintf("count(*) >= %d OR count(*) > count(DISTINCT (%s))", TOB_FOLD_ROWS, keys),
					  psprintf("INSERT INTO %s._twilio_pending_counts (%s, n, segments) "
							   "SELECT %s, sum(n), sum(segments) FROM d GROUP BY %s"
							   " HAVING sum(n) <> 0 OR sum(segments) <> 0",
							   schema, keys, keys, keys));
}

/*
 * _twilio_recent_counts, whose rows come in three kinds: raw (appended by
 * the triggers, with their minute and second), by minute (second null),
 * and by second (sent rows of the last TOB_RECENT_SECONDS_S).  A raw row
 * is added to both its minute's and, while recent, its second's sums;
 * minutes past TOB_RECENT_HORIZON_S and seconds past TOB_RECENT_SECONDS_S
 * go.  The views count a raw row in both places until then.
 */
static int
fold_recent_counts(const char *schema)
{
	const char *keys = "pool, minute, status, kind, delivery_status, machine";

	return fold_table(schema, "_twilio_recent_counts",
					  psprintf("count(*) >= %d OR bool_or(raw) OR count(*) > count(DISTINCT (%s, second))"
							   " OR bool_or(minute < now() - interval '%d seconds')"
							   " OR bool_or(NOT raw AND second < now() - interval '%d seconds')",
							   TOB_FOLD_ROWS, keys, TOB_RECENT_HORIZON_S, TOB_RECENT_SECONDS_S),
					  psprintf("INSERT INTO %s._twilio_recent_counts (%s, second, raw, n, segments) "
							   "SELECT %s, NULL, false, sum(n), sum(segments) FROM d"
							   " WHERE (raw OR second IS NULL) AND minute >= now() - interval '%d seconds'"
							   " GROUP BY %s HAVING sum(n) <> 0 OR sum(segments) <> 0 "
							   "UNION ALL "
							   "SELECT %s, second, false, sum(n), sum(segments) FROM d"
							   " WHERE second IS NOT NULL AND status = 'sent'"
							   " AND second >= now() - interval '%d seconds'"
							   " GROUP BY %s, second HAVING sum(n) <> 0 OR sum(segments) <> 0",
							   schema, keys, keys, TOB_RECENT_HORIZON_S, keys,
							   keys, TOB_RECENT_SECONDS_S, keys));
}

int
tob_fold_counts(const char *schema)
{
	return fold_pending_counts(schema) + fold_recent_counts(schema);
}

int
tob_housekeeping(const char *schema, int retention_s)
{
	int			deleted;

	/* timed pauses that are over */
	check_spi(SPI_execute(psprintf("UPDATE %s.twilio_pools SET paused = false, paused_until = NULL "
								   "WHERE paused AND paused_until <= now()", schema), false, 0),
			  SPI_OK_UPDATE, "ending timed pauses");

	/* the error log only serves the last hour */
	check_spi(SPI_execute(psprintf("DELETE FROM %s._twilio_attempt_errors WHERE ctid = ANY (ARRAY("
								   "SELECT ctid FROM %s._twilio_attempt_errors "
								   "WHERE at < now() - interval '2 hours' LIMIT 10000))", schema, schema),
						  false, 0),
			  SPI_OK_DELETE, "trimming the error log");

	/* finished rows and applied callbacks past retention */
	deleted = tob_retention_trim_outbox(schema, retention_s);
	(void) tob_retention_trim_inbox(schema, retention_s);
	return deleted;
}
