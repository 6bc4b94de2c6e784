/*-------------------------------------------------------------------------
 *
 * ingest.c
 *		SQL functions of the webhooks: twilio_ingest_callback, which a
 *		user's own web tier calls with what Twilio posted, and the counters
 *		behind twilio_webhook_stats.
 *
 * twilio_ingest_callback accepts and refuses exactly what the listener
 * does (both use inbox.c); it stores into the extension's own schema, found
 * from the function itself.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/ingest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "inbox.h"
#include "settings.h"
#include "shmem.h"
#include "signature.h"

PG_FUNCTION_INFO_V1(twilio_outbox_ingest_callback_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_ingest_callback_2_0);
PG_FUNCTION_INFO_V1(twilio_outbox_webhook_counters_1_0);

#define WEBHOOK_COUNTERS_COLS 7
#define MAX_TOKEN_BYTES 1000

static void
require_argument(FunctionCallInfo fcinfo, int arg, const char *name, const char *hint)
{
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errhint("%s", hint)));
}

static const char *
jsonb_type_name(enum jbvType type)
{
	switch (type)
	{
		case jbvNull:
			return "null";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvArray:
		case jbvBinary:
			return "an array or object";
		default:
			return "not a string";
	}
}

/* The params argument as name/value pairs; an error unless an object of strings. */
static int
params_from_jsonb(Jsonb *jb, TobParam **params)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			cap;
	char	   *name = NULL;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object of strings"),
				 errdetail("params is a JSON %s.", JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb) ? "array" : "scalar"),
				 errhint("Pass the POST parameters Twilio sent, e.g. '{\"MessageSid\": \"SM...\", \"MessageStatus\": \"delivered\"}'.")));
	cap = Max(JB_ROOT_COUNT(jb), 1);
	*params = palloc(sizeof(TobParam) * cap);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("params must be a JSON object of strings"),
						 errdetail("The value of \"%s\" is %s.", name, jsonb_type_name(v.type)),
						 errhint("Every POST parameter is a string: pass numbers as \"1\", not 1.")));
			if (memchr(v.val.string.val, '\0', v.val.string.len) != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("params must be a JSON object of strings"),
						 errdetail("The value of \"%s\" contains a NUL character.", name),
						 errhint("Pass the parameters exactly as Twilio posted them.")));
			(*params)[n].name = name;
			(*params)[n].value = pnstrdup(v.val.string.val, v.val.string.len);
			n++;
		}
	}
	return n;
}

/*
 * Check a callback's signature and store it; the body of both versions of
 * twilio_ingest_callback.  token is the I-Twilio-Idempotency-Token (NULL or
 * empty when there was none).  Returns true when the signature matches and
 * the callback is stored (or was stored before), false when it does not
 * match (nothing is stored).
 */
static bool
ingest(FunctionCallInfo fcinfo, const char *token)
{
	char	   *path;
	const char *kind;
	char	   *url;
	char	   *signature;
	TobParam   *params;
	int			n;
	StringInfoData json;
	const char *json_text;
	const char *schema;

	require_argument(fcinfo, 0, "path", "Use '/twilio/status' for status callbacks or '/twilio/inbound' for inbound messages.");
	require_argument(fcinfo, 1, "params", "Pass the POST parameters as a JSON object of strings; '{}' when there were none.");
	require_argument(fcinfo, 3, "url", "Pass the full URL Twilio requested (the one it signed), e.g. 'https://example.com/twilio/status'.");

	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	kind = tob_webhook_kind(path);
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path \"%s\" is not a Twilio webhook path", path),
				 errhint("Use '/twilio/status' for status callbacks or '/twilio/inbound' for inbound messages.")));
	url = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url \"%s\" is not an http:// or https:// URL", url),
				 errhint("Pass the full URL Twilio requested (the one it signed), e.g. 'https://example.com/twilio/status'.")));
	n = params_from_jsonb(PG_GETARG_JSONB_P(1), &params);
	if (token != NULL && strlen(token) > MAX_TOKEN_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("idempotency_token is longer than %d bytes", MAX_TOKEN_BYTES),
				 errhint("Pass the I-Twilio-Idempotency-Token header as Twilio sent it, or NULL when there was none.")));
	if (tob_auth_token_value()[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot check webhook signatures: no auth token is set"),
				 errdetail("Neither twilio_outbox.auth_token_file (a readable, non-empty file) nor twilio_outbox.auth_token gives one."),
				 errhint("Put the Auth Token of the account Twilio signs callbacks for in a file, set twilio_outbox.auth_token_file to its path, and reload.")));
	signature = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (!tob_webhook_verify(url, params, n, signature))
		return false;

	initStringInfo(&json);
	tob_params_json(&json, params, n);
	json_text = json.data;
	schema = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	(void) tob_inbox_store(schema, 1, &kind, &json_text, &token);
	SPI_finish();
	return true;
}

/* twilio_ingest_callback(path text, params jsonb, signature text, url text): 0.1.0 */
Datum
twilio_outbox_ingest_callback_1_0(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ingest(fcinfo, NULL));
}

/*
 * twilio_ingest_callback(path text, params jsonb, signature text, url text,
 *						  idempotency_token text DEFAULT NULL) RETURNS boolean
 */
Datum
twilio_outbox_ingest_callback_2_0(PG_FUNCTION_ARGS)
{
	const char *token = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));

	PG_RETURN_BOOL(ingest(fcinfo, token));
}

Datum
twilio_outbox_webhook_counters_1_0(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[WEBHOOK_COUNTERS_COLS];
	bool		nulls[WEBHOOK_COUNTERS_COLS] = {0};
	pid_t		pid;

	tob_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != WEBHOOK_COUNTERS_COLS)
		elog(ERROR, "incorrect number of output arguments");

	SpinLockAcquire(&tob_shared->mutex);
	pid = tob_shared->listener_pid;
	SpinLockRelease(&tob_shared->mutex);

	nulls[0] = (tob_webhook_listen == NULL || tob_webhook_listen[0] == '\0');
	values[0] = nulls[0] ? (Datum) 0 : CStringGetTextDatum(tob_webhook_listen);
	nulls[1] = (pid == 0);
	values[1] = Int32GetDatum(pid);
	values[2] = Int64GetDatum(pg_atomic_read_u64(&tob_shared->webhooks.requests));
	values[3] = Int64GetDatum(pg_atomic_read_u64(&tob_shared->webhooks.accepted));
	values[4] = Int64GetDatum(pg_atomic_read_u64(&tob_shared->webhooks.duplicates));
	values[5] = Int64GetDatum(pg_atomic_read_u64(&tob_shared->webhooks.rejected));
	values[6] = Int64GetDatum(pg_atomic_read_u64(&tob_shared->webhooks.errors));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
