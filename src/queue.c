/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The worker's SQL access to the outbox.
 *
 * Every step is its own short transaction, shaped like worker_spi's: the
 * worker never holds a transaction (or row locks, or back xmin) across
 * network I/O.
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
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/builtins.h"

#include "queue.h"

void
tob_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = activity;
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
tob_xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	debug_query_string = NULL;
	/* a background worker must flush its statistics itself */
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

char *
tob_extension_schema(void)
{
	Oid			extoid = get_extension_oid("twilio_outbox", true);
	int			rc;
	bool		isnull;
	Datum		nsp;
	const char *quoted;
	char	   *result;

	if (!OidIsValid(extoid))
		return NULL;

	/*
	 * DROP EXTENSION holds an exclusive lock on the pg_extension row's
	 * object; do not queue behind it (and block it) for our next query.
	 */
	if (!ConditionalLockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock))
		return NULL;

	rc = SPI_execute("SELECT extnamespace FROM pg_catalog.pg_extension "
					 "WHERE extname = 'twilio_outbox'", true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return NULL;
	nsp = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	quoted = quote_identifier(get_namespace_name(DatumGetObjectId(nsp)));
	/* SPI_palloc: outlives SPI_finish, in the context current at tob_xact_begin */
	result = SPI_palloc(strlen(quoted) + 1);
	strcpy(result, quoted);
	return result;
}
