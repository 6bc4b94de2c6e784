/*-------------------------------------------------------------------------
 *
 * inbox.c
 *		Twilio's callbacks, acknowledged first and processed later: check
 *		the signature, store the raw event in twilio_inbox, and (in the
 *		sender worker, once a second) apply stored events.
 *
 * Both the webhook listener and twilio_ingest_callback go through
 * tob_webhook_verify and tob_inbox_store, so they accept and refuse the
 * same requests.  Applying is _twilio_apply_inbox in the install script:
 * set-based SQL that is also easy to call from the regression tests.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/inbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "inbox.h"
#include "settings.h"
#include "shmem.h"

const char *
tob_webhook_kind(const char *path)
{
	if (path == NULL)
		return NULL;
	if (strcmp(path, TOB_STATUS_PATH) == 0)
		return "status";
	if (strcmp(path, TOB_INBOUND_PATH) == 0)
		return "inbound";
	return NULL;
}

static void
count(pg_atomic_uint64 *counter, uint64 n)
{
	if (tob_shared != NULL && n > 0)
		pg_atomic_fetch_add_u64(counter, n);
}

bool
tob_webhook_verify(const char *url, TobParam *params, int n, const char *signature)
{
	char		expected[TOB_SIGNATURE_LEN];
	bool		ok;

	if (tob_shared)
		count(&tob_shared->webhooks.requests, 1);
	if (tob_auth_token_value()[0] == '\0' || signature == NULL)
		ok = false;
	else
	{
		char	   *other = tob_url_port_variant(url);

		tob_sort_params(params, n);
		tob_twilio_signature(tob_auth_token_value(), url, params, n, expected);
		ok = tob_signature_matches(expected, signature);
		/* signed with the default port, or without it: both are Twilio's */
		if (other != NULL)
		{
			tob_twilio_signature(tob_auth_token_value(), other, params, n, expected);
			ok = tob_signature_matches(expected, signature) || ok;
		}
	}
	if (!ok && tob_shared)
		count(&tob_shared->webhooks.rejected, 1);
	return ok;
}

void
tob_params_json(StringInfo buf, const TobParam *params, int n)
{
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		escape_json(buf, params[i].name);
		appendStringInfoString(buf, ": ");
		escape_json(buf, params[i].value);
	}
	appendStringInfoChar(buf, '}');
}

static void
check_spi(int rc, int expected, const char *what)
{
	if (rc != expected)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
}

static Datum
text_array(const char **values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = (values[i] == NULL || values[i][0] == '\0');
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(values[i]);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

int
tob_inbox_store(const char *schema, int n, const char **kinds,
				const char **params_json, const char **tokens)
{
	Oid			types[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[3];
	int			stored;

	if (n == 0)
		return 0;
	args[0] = text_array(kinds, n);
	args[1] = text_array(params_json, n);
	args[2] = text_array(tokens, n);
	check_spi(SPI_execute_with_args(psprintf("INSERT INTO %s.twilio_inbox (kind, params, idempotency_token) "
											 "SELECT u.k, u.p::jsonb, u.t FROM unnest($1, $2, $3) AS u(k, p, t) "
											 "ON CONFLICT DO NOTHING", schema),
									3, types, args, NULL, false, 0),
			  SPI_OK_INSERT, "storing webhooks");
	stored = (int) SPI_processed;
	if (tob_shared)
	{
		count(&tob_shared->webhooks.accepted, n);
		count(&tob_shared->webhooks.duplicates, n - stored);
	}
	return stored;
}

int
tob_inbox_apply(const char *schema, int max_events)
{
	bool		isnull;
	int			applied;

	check_spi(SPI_execute(psprintf("SELECT %s._twilio_apply_inbox(%d)", schema, max_events),
						  false, 0),
			  SPI_OK_SELECT, "applying webhooks");
	applied = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	return isnull ? 0 : applied;
}

void
tob_opt_out_refused(const char *schema, const int64 *ids, int n)
{
	Oid			argtype = INT8ARRAYOID;
	Datum	   *elems;
	Datum		arg;
	int			i;

	if (n == 0)
		return;
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	arg = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	check_spi(SPI_execute_with_args(psprintf("INSERT INTO %s.twilio_opt_outs (phone_number, source) "
											 "SELECT DISTINCT o.to_number, 'error 21610' FROM %s.twilio_outbox o "
											 "WHERE o.id = ANY ($1) ON CONFLICT (phone_number) DO NOTHING",
											 schema, schema),
									1, &argtype, &arg, NULL, false, 0),
			  SPI_OK_INSERT, "recording opted-out numbers");
}
