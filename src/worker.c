/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The twilio_outbox sender worker: wait on the latch, handle signals,
 *		claim due rows, send them, record the outcomes, repeat.
 *
 * One static worker serves twilio_outbox.database.  It is woken by the
 * commit of a transaction that enqueued (see enqueue.c) and at least once a
 * second.  While the extension does not exist in its database it waits
 * quietly, logging that once.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "queue.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define TOB_MAX_SLEEP_MS 1000

static uint32 tob_wait_event = 0;

void
tob_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "twilio_outbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "twilio_outbox_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "twilio_outbox worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "twilio_outbox worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Report a state change; log the ones an operator needs to hear about once.
 */
static void
enter_state(TobWorkerState state)
{
	TobWorkerState old = tob_shared->state;

	tob_worker_set_state(state);
	if (old == state)
		return;
	if (state == TOB_STATE_WAITING_FOR_EXTENSION)
		ereport(LOG,
				(errmsg("twilio_outbox worker is waiting for CREATE EXTENSION twilio_outbox in database \"%s\"",
						tob_database)));
	else if (state == TOB_STATE_UNCONFIGURED)
		ereport(LOG,
				(errmsg("twilio_outbox worker is not sending: twilio_outbox.account_sid and credentials are not set")));
}

static bool
credentials_configured(void)
{
	if (tob_account_sid[0] == '\0')
		return false;
	if (tob_api_key_sid[0] != '\0')
		return tob_api_key_secret[0] != '\0';
	return tob_auth_token[0] != '\0';
}

/*
 * One turn of the loop.  Returns true when there is more work right away.
 */
static bool
tob_run_cycle(void)
{
	static TimestampTz checked_at = 0;
	static bool have_schema = false;
	TimestampTz now = GetCurrentTimestamp();

	/*
	 * Commits wake us constantly under load; look the extension up at most
	 * once a second rather than once per wake-up.
	 */
	if (TimestampDifferenceExceeds(checked_at, now, TOB_MAX_SLEEP_MS))
	{
		tob_xact_begin("twilio_outbox: looking for the extension");
		have_schema = tob_extension_schema() != NULL;
		tob_xact_end();
		checked_at = now;
	}
	if (!have_schema)

		enter_state(TOB_STATE_WAITING_FOR_EXTENSION);
	else if (!tob_enabled)
		enter_state(TOB_STATE_DISABLED);
	else if (!credentials_configured())
		enter_state(TOB_STATE_UNCONFIGURED);
	else
	{
		(void) tob_worker_take_wake();
		enter_state(TOB_STATE_IDLE);
	}
	return false;
}

void
twilio_outbox_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	tob_worker_attach();
	BackgroundWorkerInitializeConnection(tob_database, NULL, 0);
	pgstat_report_appname("twilio_outbox worker");
	tob_wait_event = TOB_WAIT_EVENT("TwilioOutboxMain");
	ereport(LOG, (errmsg("twilio_outbox worker started for database \"%s\"", tob_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "twilio_outbox loop",
									 ALLOCSET_DEFAULT_SIZES);
	while (!ShutdownRequestPending)
	{
		MemoryContext old;
		bool		busy;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(loop_cxt);
		busy = tob_run_cycle();
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
		if (busy)
			continue;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 TOB_MAX_SLEEP_MS, tob_wait_event);
		ResetLatch(MyLatch);
	}

	ereport(LOG, (errmsg("twilio_outbox worker shutting down")));
	proc_exit(1);
}
