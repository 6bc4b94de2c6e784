/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *		twilio_enqueue(): validate a message, insert it into the outbox in
 *		the caller's transaction, and wake the worker when that transaction
 *		commits.
 *
 * This is on the application's hot path (bench/enqueue compares it with a
 * plain INSERT of the same row), so the insert is one cached, generic SPI
 * plan of INSERT ... VALUES: ON CONFLICT (dedup_key) only when a dedup_key
 * is given (a speculative insertion costs an extra WAL record and locks),
 * and no join to twilio_pools: the foreign key already looks the pool up,
 * and its violation is turned into the "pool does not exist" error.  The
 * pool lookup and dedup lookup only run when the insert wrote nothing.
 *
 * The commit-time wake-up uses one transaction callback, registered once
 * per backend: registering per transaction would grow the callback list and
 * slow every later commit of the session.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/enqueue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "enqueue.h"
#include "segments.h"
#include "shmem.h"
#include "validate.h"

#define MAX_BODY_CHARS		1600
#define MAX_MEDIA_URLS		10
#define MAX_DEDUP_KEY_BYTES	1000
#define MAX_VALIDITY_PERIOD 36000
#define MAX_TWIML_CHARS		4000	/* Twilio's limit for Twiml */

PG_FUNCTION_INFO_V1(twilio_outbox_enqueue_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_enqueue_call_2_0);
PG_FUNCTION_INFO_V1(twilio_outbox_wake_at_commit_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_session_xact_callbacks_1_0);

static int	wake_callbacks_registered = 0;
static bool wake_at_commit = false;

/*
 * The message insert of the schema in nsp, kept per backend: [true] with
 * ON CONFLICT (dedup_key) for messages with a dedup_key, [false] without.
 */
static struct
{
	Oid			nsp;
	SPIPlanPtr	plan;
}			insert_plans[2];

static Oid	call_plan_nsp = InvalidOid;
static SPIPlanPtr call_plan = NULL;

/* the schema name of the insert plans' nsp, for errors */
static char *insert_schema_name = NULL;
static Oid	insert_schema_nsp = InvalidOid;

/* Parameter names Twilio would read instead of the outbox's own fields. */
static const char *const reserved_params[] = {
	"To", "From", "MessagingServiceSid", "Body", "MediaUrl",
	"StatusCallback", "Attempt"
};

/* The same for a call (ApplicationSid would replace Twiml or Url). */
static const char *const reserved_call_params[] = {
	"To", "From", "Twiml", "Url", "ApplicationSid", "StatusCallback"
};

#define bad_argument(code, hint, ...) \
	ereport(ERROR, (errcode(code), errmsg(__VA_ARGS__), errhint(hint)))

static void
tob_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
			{
				wake_at_commit = false;
				tob_wake_worker();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the worker's periodic scan */
			wake_at_commit = false;
			tob_forget_pools_for_wake();
			break;
		default:
			break;
	}
}

static void
request_wake_at_commit(void)
{
	if (wake_callbacks_registered == 0)
	{
		RegisterXactCallback(tob_xact_callback, NULL);
		wake_callbacks_registered++;
	}
	wake_at_commit = true;
}

/* Returns true when the array has at least one URL. */
static bool
validate_media_urls(ArrayType *media_urls)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (media_urls == NULL)
		return false;
	if (ARR_NDIM(media_urls) > 1)
		bad_argument(ERRCODE_ARRAY_SUBSCRIPT_ERROR,
					 "Pass a one-dimensional array such as ARRAY['https://example.com/a.jpg'].",
					 "media_urls must be a one-dimensional array");
	deconstruct_array(media_urls, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n > MAX_MEDIA_URLS)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Send the rest in another message.",
					 "media_urls has %d URLs, more than the %d Twilio accepts in one message",
					 n, MAX_MEDIA_URLS);
	for (i = 0; i < n; i++)
	{
		char	   *url;

		if (nulls[i])
			bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED,
						 "Remove the NULL element.",
						 "media_urls element %d is null", i + 1);
		url = TextDatumGetCString(elems[i]);
		if (!tob_is_http_url(url))
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "Each media URL must be an absolute http:// or https:// URL that Twilio can fetch.",
						 "media_urls element %d is not an http(s) URL: \"%s\"", i + 1, url);
	}
	return n > 0;
}

/* A JSON number or numeric string holding a whole number in [lo, hi]. */
static bool
json_int_in_range(JsonbValue *v, int lo, int hi)
{
	int64		val;
	char	   *end;

	if (v->type == jbvNumeric)
	{
		char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v->val.numeric)));

		errno = 0;
		val = strtoll(s, &end, 10);
		if (*end != '\0' || errno != 0)
			return false;
	}
	else if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		errno = 0;
		val = strtoll(s, &end, 10);
		if (end == s || *end != '\0' || errno != 0)
			return false;
	}
	else
		return false;
	return val >= lo && val <= hi;
}

/*
 * params must be a flat JSON object of scalars that does not override the
 * fields the outbox sends itself.  Returns true when it has a ContentSid.
 */
static bool
validate_params(Jsonb *params, bool is_call)
{
	const char *const *reserved = is_call ? reserved_call_params : reserved_params;
	int			nreserved = is_call ? lengthof(reserved_call_params) : lengthof(reserved_params);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		has_content_sid = false;

	if (params == NULL)
		return false;
	if (!JB_ROOT_IS_OBJECT(params))
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Pass a JSON object of Twilio parameters, e.g. '{\"ContentSid\": \"HX...\"}'.",
					 "params must be a JSON object");

	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			int			i;

			key = pnstrdup(v.val.string.val, v.val.string.len);
			if (key[0] == '\0')
				bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
							 "Use Twilio's parameter names, e.g. \"ValidityPeriod\".",
							 "params has an empty key");
			for (i = 0; i < nreserved; i++)
				if (pg_strcasecmp(key, reserved[i]) == 0)
					bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
								 is_call ?
								 "To, From, Twiml, Url and StatusCallback come from twilio_enqueue_call's own arguments and the pool." :
								 "To, From, MessagingServiceSid, Body, MediaUrl, StatusCallback and Attempt come from twilio_enqueue's own arguments and the pool.",
								 "params key \"%s\" would override a field the outbox sets", key);
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString && v.type != jbvNumeric && v.type != jbvBool)
				bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
							 "Each value in params must be a string, number or boolean; send nested data as a JSON string (e.g. ContentVariables).",
							 "params value for key \"%s\" is not a string, number or boolean", key);
			if (is_call)
				continue;		/* the Calls API's own parameters are Twilio's to judge */
			if (strcmp(key, "ContentSid") == 0)
			{
				char	   *sid = v.type == jbvString ?
					pnstrdup(v.val.string.val, v.val.string.len) : "";

				if (!tob_is_twilio_sid(sid, "HX"))
					bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
								 "A Content SID is \"HX\" followed by 32 hexadecimal digits.",
								 "params value for key \"ContentSid\" is not a Content SID");
				has_content_sid = true;
			}
			else if (strcmp(key, "ValidityPeriod") == 0 &&
					 !json_int_in_range(&v, 1, MAX_VALIDITY_PERIOD))
				bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
							 "ValidityPeriod is a whole number of seconds from 1 to 36000.",
							 "params value for key \"ValidityPeriod\" is out of range");
		}
	}
	return has_content_sid;
}

/*
 * When the message may go (send_after, or now) and until when (that plus
 * valid_for; 0 for no expiry).  Both must be finite, valid timestamps: an
 * infinite send_after would never be due (or always be), and an expiry the
 * timestamp range cannot hold would fail the insert with a bare "timestamp
 * out of range".  Adding an interval goes through calendar months and days,
 * so first check with generous bounds (31 days a month, 25 hours a day)
 * that no result could leave the range; only then add it for real.
 */
static void
schedule(const TobMessage *msg, TimestampTz *due, TimestampTz *expires)
{
	TimestampTz start = msg->has_send_after ? msg->send_after : GetCurrentTransactionStartTimestamp();
	const Interval *v = msg->valid_for;
	double		reach;

	if (msg->has_send_after && TIMESTAMP_NOT_FINITE(msg->send_after))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("send_after must be a finite time, not %s",
						TIMESTAMP_IS_NOBEGIN(msg->send_after) ? "-infinity" : "infinity"),
				 errhint("Give a time such as now() + interval '1 hour', or NULL to send as soon as possible.")));
	*due = start;
	*expires = 0;
	if (v == NULL)
		return;

	reach = fabs((double) v->month) * 31.0 * USECS_PER_DAY +
		fabs((double) v->day) * (USECS_PER_DAY + USECS_PER_HOUR) +
		fabs((double) v->time);
	if ((double) start + reach >= (double) END_TIMESTAMP ||
		(double) start - reach < (double) MIN_TIMESTAMP)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("valid_for puts the expiry outside the range of timestamps"),
				 errhint("Give an interval such as '15 minutes' or '2 days', or NULL for no expiry.")));
	*expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(start),
													   IntervalPGetDatum(v)));
	/* '1 month -29 days' compares as positive but may end before it starts */
	if (*expires <= start)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Give a positive interval such as '15 minutes', or NULL for no expiry.",
					 "valid_for must be positive");
}

/*
 * The characters in a body of len bytes: len itself when every byte is
 * ASCII (one byte is one character in every server encoding), which is
 * the usual case and cheaper to see than to count.
 */
static int
body_chars(const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(s[i]))
			return pg_mbstrlen_with_len(s, len);
	return len;
}

static bool
text_is_blank(text *t)
{
	const char *p = VARDATA_ANY(t);
	const char *end = p + VARSIZE_ANY_EXHDR(t);

	for (; p < end; p++)
		if (!isspace((unsigned char) *p))
			return false;
	return true;
}

/*
 * What messages and calls share: the status callback, when it is due and
 * expires, its priority and dedup key.
 */
static void
validate_delivery(const TobMessage *msg, TimestampTz *due, TimestampTz *expires)
{
	if (msg->status_callback != NULL && !tob_is_secure_url(msg->status_callback))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid status_callback \"%s\"", msg->status_callback),
				 errhint("Use an https:// URL; http:// is accepted only for localhost, 127.0.0.1 and [::1].")));

	if (msg->valid_for != NULL)
	{
		Interval	zero = {0};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
											  IntervalPGetDatum(msg->valid_for),
											  IntervalPGetDatum(&zero))) <= 0)
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "Give a positive interval such as '15 minutes', or NULL for no expiry.",
						 "valid_for must be positive");
	}

	schedule(msg, due, expires);

	if (msg->priority < -100 || msg->priority > 100)
		bad_argument(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
					 "Use a priority from -100 to 100; higher goes first within a pool.",
					 "priority %d is out of range", msg->priority);

	if (msg->dedup_key != NULL &&
		(msg->dedup_key[0] == '\0' || strlen(msg->dedup_key) > MAX_DEDUP_KEY_BYTES))
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Use a non-empty key of at most 1000 bytes, e.g. 'order-42-shipped', or NULL.",
					 "dedup_key must be between 1 and %d bytes long", MAX_DEDUP_KEY_BYTES);
}

/*
 * Check every argument, raising the first problem found; return the number
 * of segments the message costs, and when it is due and expires.
 */
static int32
validate_message(const TobMessage *msg, TimestampTz *due, TimestampTz *expires)
{
	bool		has_media;
	bool		has_content_sid;
	bool		whatsapp;

	if (msg->to_number == NULL)
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					 "Pass the destination in E.164 form, e.g. '+14155550100'.",
					 "to_number must not be null");
	if (!tob_is_e164(msg->to_number, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid to_number \"%s\"", msg->to_number),
				 errdetail("A destination is \"+\" followed by 1 to 15 digits, the first of them not 0."),
				 errhint("Write the number in E.164 form, e.g. '+14155550100', or 'whatsapp:+14155550100' for WhatsApp.")));
	whatsapp = msg->to_number[0] != '+';

	if (msg->pool == NULL)
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					 "Name a row of twilio_pools, or leave pool out to use 'default'.",
					 "pool must not be null");

	has_media = validate_media_urls(msg->media_urls);
	has_content_sid = validate_params(msg->params, false);

	if ((msg->body == NULL || text_is_blank(msg->body)) &&
		!has_media && !has_content_sid)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Give a body, or media_urls, or a ContentSid in params.",
					 "body must not be empty when there are no media_urls and no ContentSid");
	if (msg->body != NULL)
	{
		int			nchars = body_chars(VARDATA_ANY(msg->body),
										VARSIZE_ANY_EXHDR(msg->body));

		if (nchars > MAX_BODY_CHARS)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("body has %d characters, more than the %d Twilio accepts",
							nchars, MAX_BODY_CHARS),
					 errhint("Shorten the text or send it as several messages.")));
	}

	validate_delivery(msg, due, expires);

	/* WhatsApp and MMS are paced per message, SMS per segment. */
	if (whatsapp || has_media || msg->body == NULL)
		return 1;
	if (GetDatabaseEncoding() == PG_UTF8)
		return tob_count_segments(VARDATA_ANY(msg->body), VARSIZE_ANY_EXHDR(msg->body));
	else
	{
		char	   *body = text_to_cstring(msg->body);
		char	   *utf8 = pg_server_to_any(body, strlen(body), PG_UTF8);

		return tob_count_segments(utf8, strlen(utf8));
	}
}

/*
 * Prepare and keep the insert into nsp's outbox, with ON CONFLICT (dedup_key)
 * DO NOTHING when on_conflict.  Always a generic plan: a custom plan would be
 * planned again on each of a session's first five calls, for nothing, since
 * the plan of an INSERT ... VALUES does not depend on the values.
 */
static SPIPlanPtr
prepare_insert_plan(Oid nsp, bool on_conflict)
{
	static Oid	argtypes[] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, INT4OID,
		JSONBOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	char	   *nspname = get_namespace_name(nsp);
	char	   *sql;
	SPIPlanPtr	plan;

	if (nspname == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	sql = psprintf("INSERT INTO %s.twilio_outbox AS o "
				   "(pool, to_number, body, media_urls, num_segments, params, priority,"
				   " next_attempt_at, expires_at, dedup_key, status_callback) "
				   "VALUES ($1, $2, $3, $4, $5, COALESCE($6, '{}'), $7, $8, $9, $10, $11) "
				   "%sRETURNING o.id",
				   quote_identifier(nspname),
				   on_conflict ? "ON CONFLICT (dedup_key) DO NOTHING " : "");
	plan = SPI_prepare_cursor(sql, lengthof(argtypes), argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);

	if (insert_schema_nsp != nsp)
	{
		char	   *name = MemoryContextStrdup(TopMemoryContext, nspname);

		if (insert_schema_name != NULL)
			pfree(insert_schema_name);
		insert_schema_name = name;
		insert_schema_nsp = nsp;
	}
	return plan;
}

static SPIPlanPtr
get_insert_plan(Oid nsp, bool on_conflict)
{
	SPIPlanPtr	plan;

	if (insert_plans[on_conflict].plan != NULL && insert_plans[on_conflict].nsp == nsp)
		return insert_plans[on_conflict].plan;

	plan = prepare_insert_plan(nsp, on_conflict);
	if (insert_plans[on_conflict].plan != NULL)
		SPI_freeplan(insert_plans[on_conflict].plan);
	insert_plans[on_conflict].plan = plan;
	insert_plans[on_conflict].nsp = nsp;
	return plan;
}

static void
pool_does_not_exist(const char *pool)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("pool \"%s\" does not exist", pool),
			 errhint("Create it first, e.g. INSERT INTO twilio_pools (name, sender, mps) VALUES ('%s', '+15005550006', 1);",
					 pool)));
}

/*
 * Run the insert.  When the pool does not exist the row fails the outbox's
 * foreign key to twilio_pools; that violation is raised as the error an
 * unknown pool always had (the transaction is failing either way, so the
 * error is only replaced, never recovered from).  Every other error goes on
 * as it is.
 */
static int
execute_insert(SPIPlanPtr plan, Datum *values, const char *nulls, const char *pool)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, false, 1);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_FOREIGN_KEY_VIOLATION &&
			edata->constraint_name != NULL &&
			strcmp(edata->constraint_name, "twilio_outbox_pool_fkey") == 0 &&
			edata->table_name != NULL &&
			strcmp(edata->table_name, "twilio_outbox") == 0 &&
			edata->schema_name != NULL && insert_schema_name != NULL &&
			strcmp(edata->schema_name, insert_schema_name) == 0)
		{
			FlushErrorState();
			pool_does_not_exist(pool);
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return rc;
}

/* Run a one-parameter lookup returning one int8 or bool column, or nothing. */
static bool
lookup_one(const char *sql_fmt, Oid nsp, const char *arg, Datum *result)
{
	Oid			argtype = TEXTOID;
	Datum		value = CStringGetTextDatum(arg);
	char	   *sql = psprintf(sql_fmt, quote_identifier(get_namespace_name(nsp)));
	bool		isnull;
	int			rc;

	rc = SPI_execute_with_args(sql, 1, &argtype, &value, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;
	*result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return true;
}

static int64 enqueue_call(const TobMessage *msg, Oid nsp);

int64
tob_enqueue(const TobMessage *msg, Oid nsp)
{
	TimestampTz due;
	TimestampTz expires;
	int32		num_segments;
	Datum		values[11];
	char		nulls[11];
	int64		id = 0;
	int			tries;

	if (msg->is_call)
		return enqueue_call(msg, nsp);
	num_segments = validate_message(msg, &due, &expires);

#define ARG(i, isnull, datum) \
	(nulls[i] = (isnull) ? 'n' : ' ', values[i] = (isnull) ? (Datum) 0 : (datum))
	ARG(0, false, CStringGetTextDatum(msg->pool));
	ARG(1, false, CStringGetTextDatum(msg->to_number));
	ARG(2, msg->body == NULL, PointerGetDatum(msg->body));
	ARG(3, msg->media_urls == NULL, PointerGetDatum(msg->media_urls));
	ARG(4, false, Int32GetDatum(num_segments));
	ARG(5, msg->params == NULL, JsonbPGetDatum(msg->params));
	ARG(6, false, Int32GetDatum(msg->priority));
	ARG(7, false, TimestampTzGetDatum(due));
	ARG(8, msg->valid_for == NULL, TimestampTzGetDatum(expires));
	ARG(9, msg->dedup_key == NULL, CStringGetTextDatum(msg->dedup_key ? msg->dedup_key : ""));
	ARG(10, msg->status_callback == NULL,
		CStringGetTextDatum(msg->status_callback ? msg->status_callback : ""));
#undef ARG

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * A dedup_key row can vanish between our conflicting insert and the
	 * lookup (deleted by retention); then the insert is simply tried again.
	 */
	for (tries = 0; tries < 3; tries++)
	{
		SPIPlanPtr	plan = get_insert_plan(nsp, msg->dedup_key != NULL);
		int			rc = execute_insert(plan, values, nulls, msg->pool);
		Datum		found;

		if (rc != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1)
		{
			bool		isnull;

			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
			tob_note_pool_for_wake(msg->pool);
			request_wake_at_commit();
			break;
		}

		if (!lookup_one("SELECT true FROM %s.twilio_pools WHERE name OPERATOR(pg_catalog.=) $1",
						nsp, msg->pool, &found))
			pool_does_not_exist(msg->pool);
		if (msg->dedup_key != NULL &&
			lookup_one("SELECT id FROM %s.twilio_outbox WHERE dedup_key OPERATOR(pg_catalog.=) $1",
					   nsp, msg->dedup_key, &found))
		{
			id = DatumGetInt64(found);
			break;
		}
	}
	if (tries == 3)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not enqueue the message with dedup_key \"%s\"", msg->dedup_key),
				 errdetail("A concurrent transaction keeps inserting and removing that key."),
				 errhint("Retry the transaction.")));

	SPI_finish();
	return id;
}

/*
 * twilio_enqueue(to_number, body, pool, media_urls, send_after, valid_for,
 *				  priority, dedup_key, status_callback, params) RETURNS bigint
 */
Datum
twilio_outbox_enqueue_1_0(PG_FUNCTION_ARGS)
{
	TobMessage	msg = {0};

	msg.to_number = PG_ARGISNULL(0) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(0));
	msg.body = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	msg.pool = PG_ARGISNULL(2) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(2));
	msg.media_urls = PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3);
	msg.has_send_after = !PG_ARGISNULL(4);
	msg.send_after = msg.has_send_after ? PG_GETARG_TIMESTAMPTZ(4) : 0;
	msg.valid_for = PG_ARGISNULL(5) ? NULL : PG_GETARG_INTERVAL_P(5);
	msg.priority = PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6);
	msg.dedup_key = PG_ARGISNULL(7) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(7));
	msg.status_callback = PG_ARGISNULL(8) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(8));
	msg.params = PG_ARGISNULL(9) ? NULL : PG_GETARG_JSONB_P(9);

	PG_RETURN_INT64(tob_enqueue(&msg, get_func_namespace(fcinfo->flinfo->fn_oid)));
}

/* _twilio_wake_at_commit(): for SQL functions that make rows due again */
Datum
twilio_outbox_wake_at_commit_1_0(PG_FUNCTION_ARGS)
{
	tob_note_all_pools_for_wake();
	request_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * _twilio_session_xact_callbacks(): how many transaction callbacks this
 * session registered; the tests check it stays at 1.
 */
Datum
twilio_outbox_session_xact_callbacks_1_0(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(wake_callbacks_registered);
}

/*---- calls ----*/

void
tob_append_xml_escaped(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(out, "&amp;");
				break;
			case '<':
				appendStringInfoString(out, "&lt;");
				break;
			case '>':
				appendStringInfoString(out, "&gt;");
				break;
			case '"':
				appendStringInfoString(out, "&quot;");
				break;
			case '\'':
				appendStringInfoString(out, "&apos;");
				break;
			default:
				appendStringInfoChar(out, *s);
		}
	}
}

/* Check a call's arguments, raising the first problem found. */
static void
validate_call(const TobMessage *msg, TimestampTz *due, TimestampTz *expires)
{
	if (msg->to_number == NULL)
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					 "Pass the number to call in E.164 form, e.g. '+14155550100'.",
					 "to_number must not be null");
	if (!tob_is_e164(msg->to_number, false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid to_number \"%s\" for a call", msg->to_number),
				 errdetail("A number to call is \"+\" followed by 1 to 15 digits, the first of them not 0."),
				 errhint("Write the number in E.164 form, e.g. '+14155550100'; WhatsApp addresses cannot be called.")));
	if (msg->pool == NULL)
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED,
					 "Name a row of twilio_pools, or leave pool out to use 'default'.",
					 "pool must not be null");
	if ((msg->twiml == NULL) == (msg->url == NULL))
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "Give the TwiML to run, e.g. twiml => '<Response><Say>Hello</Say></Response>', or a url that returns it, not both.",
					 msg->twiml == NULL ? "twiml and url must not both be null" :
					 "twiml and url must not both be given");
	if (msg->twiml != NULL)
	{
		int			nchars = pg_mbstrlen_with_len(VARDATA_ANY(msg->twiml),
												  VARSIZE_ANY_EXHDR(msg->twiml));

		if (text_is_blank(msg->twiml))
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "Give the TwiML to run, e.g. '<Response><Say>Hello</Say></Response>'.",
						 "twiml must not be empty");
		if (nchars > MAX_TWIML_CHARS)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("twiml has %d characters, more than the %d Twilio accepts",
							nchars, MAX_TWIML_CHARS),
					 errhint("Serve longer TwiML from a URL and pass url instead.")));
	}
	if (msg->url != NULL && !tob_is_secure_url(msg->url))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid url \"%s\"", msg->url),
				 errhint("Use an https:// URL that returns TwiML; http:// is accepted only for localhost, 127.0.0.1 and [::1].")));
	(void) validate_params(msg->params, true);
	validate_delivery(msg, due, expires);
}

static SPIPlanPtr
get_call_plan(Oid nsp)
{
	static Oid	argtypes[] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT4OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	const char *schema;
	SPIPlanPtr	plan;

	if (call_plan != NULL && call_plan_nsp == nsp)
		return call_plan;
	schema = quote_identifier(get_namespace_name(nsp));
	/* only a pool whose sender is a phone number can place calls */
	plan = SPI_prepare(psprintf("INSERT INTO %s.twilio_outbox AS o "
								"(kind, pool, to_number, twiml, call_url, num_segments, params, priority,"
								" next_attempt_at, expires_at, dedup_key, status_callback) "
								"SELECT 'call', p.name, $2, $3, $4, 1, COALESCE($5, '{}'), $6, $7, $8, $9, $10 "
								"FROM %s.twilio_pools p WHERE p.name OPERATOR(pg_catalog.=) $1"
								" AND %s._twilio_sender_form(p.sender) OPERATOR(pg_catalog.=) 'phone_number' "
								"ON CONFLICT (dedup_key) DO NOTHING RETURNING o.id",
								schema, schema, schema),
					   lengthof(argtypes), argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	if (call_plan != NULL)
		SPI_freeplan(call_plan);
	call_plan = plan;
	call_plan_nsp = nsp;
	return plan;
}

/* Validate a call and insert it; the id, or that of the row with its dedup_key. */
static int64
enqueue_call(const TobMessage *msg, Oid nsp)
{
	TimestampTz due;
	TimestampTz expires;
	Datum		values[10];
	char		nulls[10];
	Datum		found;
	int64		id = 0;
	int			rc;

	validate_call(msg, &due, &expires);
#define ARG(i, isnull, datum) \
	(nulls[i] = (isnull) ? 'n' : ' ', values[i] = (isnull) ? (Datum) 0 : (datum))
	ARG(0, false, CStringGetTextDatum(msg->pool));
	ARG(1, false, CStringGetTextDatum(msg->to_number));
	ARG(2, msg->twiml == NULL, PointerGetDatum(msg->twiml));
	ARG(3, msg->url == NULL, CStringGetTextDatum(msg->url ? msg->url : ""));
	ARG(4, msg->params == NULL, JsonbPGetDatum(msg->params));
	ARG(5, false, Int32GetDatum(msg->priority));
	ARG(6, false, TimestampTzGetDatum(due));
	ARG(7, msg->valid_for == NULL, TimestampTzGetDatum(expires));
	ARG(8, msg->dedup_key == NULL, CStringGetTextDatum(msg->dedup_key ? msg->dedup_key : ""));
	ARG(9, msg->status_callback == NULL,
		CStringGetTextDatum(msg->status_callback ? msg->status_callback : ""));
#undef ARG

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_plan(get_call_plan(nsp), values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		tob_note_pool_for_wake(msg->pool);
		request_wake_at_commit();
	}
	else if (!lookup_one("SELECT sender FROM %s.twilio_pools WHERE name OPERATOR(pg_catalog.=) $1",
						 nsp, msg->pool, &found))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pool \"%s\" does not exist", msg->pool),
				 errhint("Create it first, e.g. INSERT INTO twilio_pools (name, sender, mps) VALUES ('%s', '+15005550006', 1);",
						 msg->pool)));
	else if (msg->dedup_key != NULL &&
			 lookup_one("SELECT id FROM %s.twilio_outbox WHERE dedup_key OPERATOR(pg_catalog.=) $1",
						nsp, msg->dedup_key, &found))
		id = DatumGetInt64(found);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pool \"%s\" cannot place calls", msg->pool),
				 errdetail("Its sender is not a phone number."),
				 errhint("Calls go from a pool whose sender is a +E164 number the account owns; a Messaging Service, short code, alphanumeric id or WhatsApp sender cannot call.")));
	SPI_finish();
	return id;
}

/*
 * twilio_enqueue_call(to_number, twiml, pool, url, send_after, valid_for,
 *					   priority, dedup_key, status_callback, params) RETURNS bigint
 */
Datum
twilio_outbox_enqueue_call_2_0(PG_FUNCTION_ARGS)
{
	TobMessage	msg = {0};

	msg.is_call = true;
	msg.to_number = PG_ARGISNULL(0) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(0));
	msg.twiml = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	msg.pool = PG_ARGISNULL(2) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(2));
	msg.url = PG_ARGISNULL(3) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(3));
	msg.has_send_after = !PG_ARGISNULL(4);
	msg.send_after = msg.has_send_after ? PG_GETARG_TIMESTAMPTZ(4) : 0;
	msg.valid_for = PG_ARGISNULL(5) ? NULL : PG_GETARG_INTERVAL_P(5);
	msg.priority = PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6);
	msg.dedup_key = PG_ARGISNULL(7) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(7));
	msg.status_callback = PG_ARGISNULL(8) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(8));
	msg.params = PG_ARGISNULL(9) ? NULL : PG_GETARG_JSONB_P(9);

	PG_RETURN_INT64(tob_enqueue(&msg, get_func_namespace(fcinfo->flinfo->fn_oid)));
}
