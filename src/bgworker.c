/*-------------------------------------------------------------------------
 *
 * bgworker.c
 *		Plumbing shared by the sender worker and the webhook listener:
 *		registration, start-up, the transaction bracket and the extension
 *		lookup.  Neither worker's file includes the other's; both include
 *		this one (autoprewarm keeps its leader and per-database workers on
 *		one such layer too).
 *
 * Session settings.  A worker connects like any session, so database- and
 * role-level settings (ALTER DATABASE ... SET statement_timeout = ...) reach
 * it.  Meant for applications, they would fail or change the worker's
 * short transactions in ways the failure policy never sees: a claim
 * cancelled by statement_timeout, a record refused by
 * default_transaction_read_only, a serialization failure under
 * default_transaction_isolation = serializable, or a claim that is not
 * durable (synchronous_commit = off) before the messages it claims go out,
 * so that a crash would send them a second time.  The workers pin what
 * they rely on.  default_transaction_read_only is the exception: the
 * server-level value stays (a node pg_auto_failover keeps read-only must
 * not send), only the database's and the role's are ignored.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/bgworker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"

#include "bgworker.h"
#include "compat.h"
#include "settings.h"

/* Where results go: the context current at tob_xact_begin. */
static MemoryContext caller_cxt = NULL;

/* A commit is under way (it may be waiting for a synchronous standby). */
static volatile sig_atomic_t in_commit = false;

/* The last commit's wait for a synchronous standby was cut short. */
static volatile sig_atomic_t wait_cut = false;

/* Commits no longer wait for a synchronous standby: the worker is stopping. */
static bool local_commits = false;

/* The server-level default_transaction_read_only (see tob_server_read_only). */
static bool server_read_only = false;

/*
 * SIGTERM: the loop finishes its work and exits (ShutdownRequestPending).
 * But a commit waiting for a synchronous standby gives up only on
 * ProcDiePending, and a standby that was just promoted (a switchover)
 * never answers: then the wait is cut short and the commit stays local.
 * Whatever that commit claimed is not sent (see tob_xact_uncertain) and is
 * settled by the next worker.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ShutdownRequestPending = true;
	if (in_commit)
	{
		wait_cut = true;
		ProcDiePending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

void
tob_register_bgworker(const char *function_name, const char *name)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* never on a standby: it would send what the primary sends too */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "twilio_outbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function_name, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Set a session setting over whatever the database or role says. */
static void
pin(const char *name, const char *value)
{
	SetConfigOption(name, value, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * The start of each of our workers: signal handlers (SIGTERM only sets a
 * flag, so in-flight work can be finished and recorded), the connection to
 * twilio_outbox.database, a search_path under which only pg_catalog
 * objects resolve unqualified in the worker's statements, and the pinned
 * settings of the file header.
 */
void
tob_bgworker_connect(const char *name)
{
	const char *sync;
	char	   *read_only;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();
	/* the server's own setting, before the database's and the role's apply */
	read_only = pstrdup(GetConfigOption("default_transaction_read_only", false, false));
	BackgroundWorkerInitializeConnection(tob_database, NULL, 0);
	pgstat_report_appname(name);

	pin("search_path", "pg_catalog, pg_temp");
	pin("statement_timeout", "0");
	pin("lock_timeout", "0");
	pin("idle_in_transaction_session_timeout", "0");
	pin("default_transaction_isolation", "read committed");
	pin("default_transaction_deferrable", "off");

	/*
	 * Read-only is the server's to say (pg_auto_failover keeps a node
	 * read-only while it may not be the primary), not a database's or a
	 * role's: the server-level value is pinned, and tob_bgworker_reload
	 * follows the configuration files.
	 */
	server_read_only = (strcmp(read_only, "on") == 0);
	pin("default_transaction_read_only", read_only);

	/*
	 * A claim must be as durable as the server's commits before the claimed
	 * messages go out (and reach a synchronous standby, where there is one).
	 */
	sync = GetConfigOption("synchronous_commit", false, false);
	if (sync != NULL && (strcmp(sync, "off") == 0 || strcmp(sync, "local") == 0))
		pin("synchronous_commit", "on");
}

/*
 * default_transaction_read_only as the configuration files say it last
 * (postgresql.conf with its includes, then postgresql.auto.conf, where
 * ALTER SYSTEM and pg_auto_failover write it), off where they do not.
 */
static bool
files_read_only(void)
{
	ConfigVariable *head = NULL;
	ConfigVariable *tail = NULL;
	ConfigVariable *item;
	bool		read_only = false;

	if (ConfigFileName != NULL)
		(void) ParseConfigFile(ConfigFileName, true, NULL, 0, 0, DEBUG1, &head, &tail);
	(void) ParseConfigFile(PG_AUTOCONF_FILENAME, false, NULL, 0, 0, DEBUG1, &head, &tail);
	for (item = head; item != NULL; item = item->next)
	{
		bool		value;

		if (pg_strcasecmp(item->name, "default_transaction_read_only") == 0 &&
			parse_bool(item->value, &value))
			read_only = value;
	}
	FreeConfigVariables(head);
	return read_only;
}

void
tob_bgworker_reload(void)
{
	bool		read_only;

	ProcessConfigFile(PGC_SIGHUP);
	read_only = files_read_only();
	if (read_only != server_read_only)
	{
		server_read_only = read_only;
		pin("default_transaction_read_only", read_only ? "on" : "off");
	}
}

bool
tob_server_read_only(void)
{
	return server_read_only;
}

/*---- the transaction bracket of every database step (worker_spi's) ----*/

void
tob_xact_begin(const char *activity)
{
	caller_cxt = CurrentMemoryContext;
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
	in_commit = true;
	if (ShutdownRequestPending && !local_commits)
	{
		/*
		 * Stopping: what is left to record need not wait for a standby that
		 * may be gone (rows it leaves in sending are looked up by the next
		 * worker).
		 */
		pin("synchronous_commit", "local");
		local_commits = true;
	}
	CommitTransactionCommand();
	in_commit = false;
	if (wait_cut)
	{
		/* the SIGTERM handler asked the wait to end, not the process */
		wait_cut = false;
		ProcDiePending = false;
	}
	debug_query_string = NULL;
	/* a background worker must flush its statistics itself */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(caller_cxt);
}

void
tob_xact_abort(void)
{
	AbortCurrentTransaction();
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	if (caller_cxt)
		MemoryContextSwitchTo(caller_cxt);
}

void
tob_xact_report_and_abort(MemoryContext cxt)
{
	MemoryContextSwitchTo(cxt);
	EmitErrorReport();
	FlushErrorState();
	tob_xact_abort();
}

MemoryContext
tob_xact_caller_context(void)
{
	return caller_cxt;
}

void
tob_vacuum(const char *schema, const char *const *tables, int ntables)
{
	VacuumStmt *stmt = makeNode(VacuumStmt);
	ParseState *pstate;
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext saved_portal_cxt = PortalContext;

	stmt->options = list_make1(makeDefElem("truncate", (Node *) makeBoolean(false), -1));
	stmt->is_vacuumcmd = true;
	/* schema comes quoted (tob_extension_lookup): parsed as a name, not taken as one */
	for (int i = 0; i < ntables; i++)
		stmt->rels = lappend(stmt->rels,
							 makeVacuumRelation(makeRangeVarFromNameList(TOB_QUALIFIED_NAME_LIST(
													psprintf("%s.%s", schema, quote_identifier(tables[i])))),
												InvalidOid, NIL));

	/*
	 * The statement and the parse state in the caller's context, as
	 * exec_simple_query keeps them in the portal's: VACUUM commits the
	 * transaction it is called in (deleting its memory) and starts another.
	 */
	pstate = make_parsestate(NULL);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	debug_query_string = "twilio_outbox: VACUUM of the counts";
	pgstat_report_activity(STATE_RUNNING, debug_query_string);
	/* its own memory for the whole statement in ours: freed with it even after an error */
	PortalContext = cxt;
	PG_TRY();
	{
		ExecVacuum(pstate, stmt, true);
	}
	PG_FINALLY();
	{
		PortalContext = saved_portal_cxt;
	}
	PG_END_TRY();
	free_parsestate(pstate);
	CommitTransactionCommand();
	debug_query_string = NULL;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
}

bool
tob_xact_uncertain(void)
{
	return ProcDiePending || ShutdownRequestPending || !PostmasterIsAlive();
}

/*---- the extension ----*/

char *
tob_extension_lookup(char **version)
{
	Oid			extoid = get_extension_oid("twilio_outbox", true);
	bool		isnull;
	Datum		nsp;

	if (version)
		*version = NULL;
	if (!OidIsValid(extoid))
		return NULL;

	/*
	 * DROP EXTENSION holds an exclusive lock on the extension object; do not
	 * queue behind it (and block it) with our next query.
	 */
	if (!ConditionalLockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock))
		return NULL;

	if (SPI_execute("SELECT extnamespace, extversion FROM pg_extension WHERE extname = 'twilio_outbox'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up the extension failed");
	if (SPI_processed != 1)
		return NULL;
	nsp = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (version)
		*version = MemoryContextStrdup(caller_cxt,
									   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	return MemoryContextStrdup(caller_cxt,
							   quote_identifier(get_namespace_name(DatumGetObjectId(nsp))));
}

char *
tob_extension_schema(void)
{
	return tob_extension_lookup(NULL);
}

void
tob_inject_fault(const char *point)
{
	const char *list = tob_debug_inject_faults;
	size_t		len = strlen(point);

	while (list != NULL && *list != '\0')
	{
		const char *end = strchr(list, ',');
		size_t		n = end ? (size_t) (end - list) : strlen(list);

		while (n > 0 && *list == ' ')
			list++, n--;
		if (n == len && strncmp(list, point, len) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("twilio_outbox: injected fault at \"%s\"", point),
					 errdetail("twilio_outbox.debug_inject_faults lists it.")));
		list = end ? end + 1 : NULL;
	}
}
