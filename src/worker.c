/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The twilio_outbox sender worker: wait on the latch, handle signals,
 *		claim due rows, send them, record the outcomes, repeat.
 *
 * One static worker serves twilio_outbox.database.  It sleeps in one place
 * (tob_http_wait: its latch, libcurl's sockets and a timeout) until a
 * committing enqueuer sets its latch, an answer arrives, or the next thing
 * that can change is due: a pool's bucket can pay for its next message, a
 * hold ends, a retry falls due, or a second has passed.  While nothing may
 * be sent it sleeps until then, not in a loop.
 *
 * Once a second it also looks the extension up (waiting quietly while it
 * does not exist, or while its installed version is not the one this
 * library needs), reads again the rows of twilio_pools that changed, takes
 * back rows left in sending without a request (after a crash, or a failure
 * in the middle of a turn), expires overdue rows, cancels at Twilio the
 * calls twilio_cancel asked for, trims what retention allows, and applies
 * the status callbacks and inbound messages stored in twilio_inbox.
 *
 * What a turn does with the rows is in dispatch.c; what an answer means, in
 * policy.c; how an ambiguous attempt is looked up, in reconcile.c.
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
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bgworker.h"
#include "clock.h"
#include "dispatch.h"
#include "http.h"
#include "inbox.h"
#include "policy.h"
#include "pools.h"
#include "queue.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define MAINTENANCE_INTERVAL_US 1000000 /* extension, pools, sweep, expiry */
#define MAX_SLEEP_MS			1000
#define SHUTDOWN_GRACE_MS		3000
#define APPLY_BATCH				1000	/* stored webhooks applied per statement */
#define APPLY_ROUNDS			20	/* statements per maintenance at most, */
#define APPLY_BUDGET_MS			100 /* and none started after this long */
#define VACUUM_COUNTS_AFTER		20000	/* rows folded (dead tuples) that make the counts worth a VACUUM */

static uint32 tob_wait_event = 0;
static char *schema = NULL;		/* quoted, in TopMemoryContext; NULL: not ready */
static char *skew_version = NULL;	/* the installed version we last said we cannot serve */
static TimestampTz next_maintenance = 0;

/*
 * The rows of twilio_pools that a commit changed are read again (all of
 * them after a TRUNCATE, or when more changed than shared memory names),
 * and every row at least this often.  The names taken from shared memory
 * stay here until a read of them has been synced, so a failed read loses
 * none.
 */
#define POOLS_RELOAD_US		(30 * USECS_PER_SEC)

/* rows the fold has folded since the counts were last vacuumed */
static int64 folded_since_vacuum = 0;
static uint64 pools_version_read = 0;
static TimestampTz pools_read_at = 0;
static bool pools_read_all = true;
static int	pools_nasked = 0;
static char pools_asked[TOB_POOLS_CHANGED_MAX][TOB_POOL_NAME_LEN];

/* Take the names of the changed pools from shared memory (pool_slots.c). */
static void
take_pool_changes(void)
{
	int			i;
	int			j;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	if (tob_shared->pools_changed_all)
		pools_read_all = true;
	for (i = 0; i < tob_shared->pools_changed_n && !pools_read_all; i++)
	{
		for (j = 0; j < pools_nasked; j++)
			if (strcmp(pools_asked[j], tob_shared->pools_changed[i]) == 0)
				break;
		if (j < pools_nasked)
			continue;
		if (pools_nasked == TOB_POOLS_CHANGED_MAX)
			pools_read_all = true;
		else
			strlcpy(pools_asked[pools_nasked++], tob_shared->pools_changed[i], TOB_POOL_NAME_LEN);
	}
	tob_shared->pools_changed_n = 0;
	tob_shared->pools_changed_all = false;
	LWLockRelease(tob_shared->lock);
}

void
tob_register_worker(void)
{
	tob_register_bgworker("twilio_outbox_worker_main", "twilio_outbox worker");
}

/*
 * Report a state change; log the ones an operator needs to hear about, once.
 */
static void
enter_state(TobWorkerState state)
{
	TobWorkerState old;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	old = tob_shared->state;
	tob_shared->state = state;
	tob_shared->last_activity_at = GetCurrentTimestamp();
	LWLockRelease(tob_shared->lock);
	if (old == state)
		return;

	/* one line per change an operator cares about; idle and sending are routine */
	switch (state)
	{
		case TOB_STATE_WAITING_FOR_EXTENSION:
			ereport(LOG,
					(errmsg("twilio_outbox worker is waiting for CREATE EXTENSION twilio_outbox in database \"%s\"",
							tob_database)));
			break;
		case TOB_STATE_UNCONFIGURED:
			ereport(LOG,
					(errmsg("twilio_outbox worker is not sending: twilio_outbox.account_sid and credentials are not set")));
			break;
		case TOB_STATE_DISABLED:
			ereport(LOG, (errmsg("twilio_outbox worker is not sending: twilio_outbox.enabled is off")));
			break;
		case TOB_STATE_READ_ONLY:
			ereport(LOG,
					(errmsg("twilio_outbox worker is waiting: the server is read-only (default_transaction_read_only)"),
					 errhint("It sends again once the setting is off and the configuration is reloaded, as pg_auto_failover does when it confirms a promotion.")));
			break;
		case TOB_STATE_THROTTLED:
			ereport(LOG,
					(errmsg("twilio_outbox worker is holding back: nearly every recent request failed"),
					 errhint("twilio_worker_status and twilio_pool_status show which circuit breaker is open and until when.")));
			break;
		case TOB_STATE_IDLE:
		case TOB_STATE_SENDING:
			if (old != TOB_STATE_IDLE && old != TOB_STATE_SENDING && old != TOB_STATE_STARTING)
				ereport(LOG, (errmsg("twilio_outbox worker is sending again (was %s)",
									 tob_worker_state_name(old))));
			break;
		default:
			break;				/* auth_failed: the policy warns with the details;
								 * waiting_for_update: see check_version */
	}
}

static bool
credentials_configured(void)
{
	if (tob_account_sid[0] == '\0')
		return false;
	if (tob_api_key_sid[0] != '\0')
		return tob_api_key_secret_value()[0] != '\0';
	return tob_auth_token_value()[0] != '\0';
}

static bool
ready_to_send(void)
{
	return schema != NULL && tob_enabled && credentials_configured() && !tob_server_read_only();
}

/*
 * The installed extension is another version than this library's: say so
 * once per version, with the command that fixes it, and serve nothing
 * until it matches (the library's statements need its schema).
 */
static bool
version_matches(const char *version)
{
	if (strcmp(version, TOB_SCHEMA_VERSION) == 0)
	{
		if (skew_version)
		{
			ereport(LOG, (errmsg("twilio_outbox worker found extension version %s in database \"%s\"; sending resumes",
								 version, tob_database)));
			pfree(skew_version);
			skew_version = NULL;
		}
		return true;
	}
	if (skew_version == NULL || strcmp(skew_version, version) != 0)
	{
		ereport(LOG,
				(errmsg("twilio_outbox worker is waiting: the extension in database \"%s\" is version %s, this library needs version %s",
						tob_database, version, TOB_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION twilio_outbox UPDATE in database \"%s\"; no restart is needed.",
						 tob_database)));
		if (skew_version)
			pfree(skew_version);
		skew_version = MemoryContextStrdup(TopMemoryContext, version);
	}
	return false;
}

/*---- once a second ----*/

/*
 * Apply stored status callbacks and inbound messages, in batches of their
 * own transactions, while batches come back full, for up to
 * APPLY_BUDGET_MS a second (so callbacks arriving at several thousand a
 * second are kept up with); a failure is reported and tried again next
 * second without holding up the sending.
 */
static void
apply_webhooks(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	volatile int round;
	volatile int applied = APPLY_BATCH;

	for (round = 0; round < APPLY_ROUNDS && applied == APPLY_BATCH &&
		 GetCurrentTimestamp() - start < APPLY_BUDGET_MS * 1000; round++)
	{
		PG_TRY();
		{
			tob_xact_begin("twilio_outbox: applying webhooks");
			applied = tob_inbox_apply(schema, APPLY_BATCH);
			tob_xact_end();
		}
		PG_CATCH();
		{
			tob_xact_report_and_abort(cxt);
			applied = 0;
		}
		PG_END_TRY();
	}
}

/*
 * Find the extension, re-read the pools, take back rows in sending that
 * have no request, expire overdue rows, trim.
 */
static void
maintenance(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *found;
	char	   *version;
	TobPoolConfig *pools = NULL;
	int			npools = 0;
	int			expired = 0;
	int			recovered = 0;
	int			folded = 0;
	TobCancel  *cancels = NULL;
	int			ncancels = 0;
	bool		writable = !tob_server_read_only();
	bool		sending = tob_enabled && credentials_configured() && writable;
	TimestampTz now = GetCurrentTimestamp();
	uint64		pools_version = pg_atomic_read_u64(&tob_shared->pools_version);
	bool		read_pools = false;
	bool		read_all = false;

	/* before the transaction's snapshot, which then sees what they name */
	if (pools_version != pools_version_read)
	{
		take_pool_changes();
		pools_version_read = pools_version;
	}

	tob_xact_begin("twilio_outbox: maintenance");
	found = tob_extension_lookup(&version);
	if (found != NULL && !version_matches(version))
		found = NULL;
	if (found != NULL)
	{
		read_all = pools_read_all || schema == NULL || strcmp(schema, found) != 0 ||
			now - pools_read_at >= POOLS_RELOAD_US;
		read_pools = read_all || pools_nasked > 0;
		if (read_pools)
			npools = tob_load_pools(found, read_all ? NULL : pools_asked, pools_nasked, &pools);
		if (sending)
		{
			int64	   *own;
			int			nown = tob_dispatch_own_ids(&own);

			recovered = tob_recover_sending(found, own, nown, tob_settle_us());
			expired = tob_expire_due(found);
			ncancels = tob_load_cancels(found, own, nown, tob_dispatch_cancel_budget(), &cancels);
		}
		if (writable)
		{
			(void) tob_housekeeping(found, tob_retention_s);
			folded = tob_fold_counts(found);
		}
	}
	tob_xact_end();
	MemoryContextSwitchTo(cxt);

	/*
	 * The fold leaves a dead tuple for every row it folded: at thousands of
	 * messages a second, a minute of them (autovacuum's naptime) would make
	 * every poll of the views read tens of megabytes.  Reclaimed once
	 * VACUUM_COUNTS_AFTER have piled up (every second or two of a fast
	 * drain), the counts stay a few MB at most; a slow trickle leaves them
	 * to autovacuum.
	 */
	folded_since_vacuum += folded;
	if (folded_since_vacuum >= VACUUM_COUNTS_AFTER)
	{
		static const char *const counts[] = {"_twilio_pending_counts", "_twilio_recent_counts"};

		folded_since_vacuum = 0;
		tob_vacuum(found, counts, lengthof(counts));
		MemoryContextSwitchTo(cxt);
	}

	/* committed: now it may be said and counted */
	if (recovered > 0)
		ereport(LOG,
				(errmsg("twilio_outbox worker took back %d messages left in sending without a request; they are looked up at Twilio before they are sent again",
						recovered)));
	if (recovered > 0 || expired > 0)
	{
		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		tob_shared->totals.recovered += recovered;
		tob_shared->totals.expired += expired;
		LWLockRelease(tob_shared->lock);
	}

	if (schema != NULL && (found == NULL || strcmp(schema, found) != 0))
	{
		pfree(schema);
		schema = NULL;
	}
	if (found != NULL && schema == NULL)
		schema = MemoryContextStrdup(TopMemoryContext, found);
	if (read_pools)
	{
		tob_pools_sync(pools, npools, read_all ? NULL : pools_asked, pools_nasked, tob_mono_now());
		if (read_all)
			pools_read_at = now;
		pools_read_all = false;
		pools_nasked = 0;
	}
	if (found != NULL)
		tob_pools_tick(tob_mono_now());
	if (ncancels > 0)
		tob_dispatch_start_cancels(cancels, ncancels);
	/* like expiry, applying callbacks is writing to the outbox: not while disabled */
	if (found != NULL && tob_enabled && writable)
		apply_webhooks();
}

/*---- the turn ----*/

static void
report_state(TobMono now)
{
	TobWorkerState state;

	if (schema == NULL)
		state = skew_version ? TOB_STATE_WAITING_FOR_UPDATE : TOB_STATE_WAITING_FOR_EXTENSION;
	else if (!tob_enabled)
		state = TOB_STATE_DISABLED;
	else if (tob_server_read_only())
		state = TOB_STATE_READ_ONLY;
	else if (!credentials_configured())
		state = TOB_STATE_UNCONFIGURED;
	else if (tob_policy_auth_failed())
		state = TOB_STATE_AUTH_FAILED;
	else if (tob_policy_account_wake() != 0 || tob_pools_any_held(now))
		state = TOB_STATE_THROTTLED;
	else
		state = tob_http_in_flight() > 0 ? TOB_STATE_SENDING : TOB_STATE_IDLE;
	enter_state(state);

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->in_flight = tob_http_in_flight();
	LWLockRelease(tob_shared->lock);
}

/*
 * One turn: maintenance when due, record what finished, claim and send what
 * may go.  Returns true when there is more to do right away.  Database
 * errors are reported and the turn is abandoned; nothing that was claimed
 * or answered is forgotten (records stay pending, and rows left in sending
 * are taken back by the next maintenance).
 */
static bool
run_turn(MemoryContext turn_cxt)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		periodic = now >= next_maintenance;
	TimestampTz due = tob_dispatch_take_next_due(false);
	bool		retry_due = due != 0 && now >= due;
	bool		more = false;
	volatile bool failed = false;

	PG_TRY();
	{
		if (periodic)
		{
			maintenance();
			next_maintenance = now + MAINTENANCE_INTERVAL_US;
		}

		tob_http_perform();
		tob_dispatch_collect(schema, false);
		if (!tob_server_read_only())
			tob_dispatch_record(schema);

		if (ready_to_send())
		{
			TobWake		wake;

			tob_worker_take_wake(&wake);
			if (retry_due)
				(void) tob_dispatch_take_next_due(true);
			more = tob_dispatch_claim_and_send(schema, &wake, periodic || retry_due, now);
			tob_http_perform();
		}
		report_state(tob_mono_now());
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(turn_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		tob_xact_abort();
		edata->elevel = WARNING;
		ThrowErrorData(edata);
		failed = true;
	}
	PG_END_TRY();

	if (failed)
	{
		/* look for the extension (and stranded rows) again first, and do not spin */
		next_maintenance = 0;
		pg_usleep(100000);
	}
	return more && !failed;
}

static long
ms_until(int64 us)
{
	return us <= 0 ? 0 : (long) ((us + 999) / 1000);
}

/*
 * How long to sleep: until the next time something can change.  Answers,
 * commits and signals wake the worker earlier by themselves.
 */
static long
sleep_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TobMono		mono = tob_mono_now();
	long		ms = Min(MAX_SLEEP_MS, ms_until(next_maintenance - now));
	TimestampTz due = tob_dispatch_take_next_due(false);

	if (tob_dispatch_pending() > 0 && !tob_server_read_only())
		ms = Min(ms, 100);		/* a failed write is tried again soon */
	if (!ready_to_send())
		return ms;
	if (due != 0)
		ms = Min(ms, ms_until(due - now));

	if (tob_policy_account_wake() != 0)
	{
		TobMono		wake = tob_policy_account_wake();

		/* held: nothing but the hold's end (or its probe's answer) matters */
		if (wake != TOB_MONO_NEVER)
			ms = Min(ms, ms_until(wake - mono));
		return ms;
	}
	if (tob_policy_account_budget(tob_http_in_flight(), mono) == 0)
		return ms;				/* the window is full: an answer wakes us */
	return Min(ms, ms_until(tob_pools_wait_us(mono, (int64) ms * 1000)));
}

/* On SIGTERM: give requests in flight a short grace to finish and record them. */
static void
finish_in_flight(MemoryContext turn_cxt)
{
	TimestampTz deadline = GetCurrentTimestamp() + SHUTDOWN_GRACE_MS * 1000;

	PG_TRY();
	{
		while (tob_http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
		{
			(void) tob_http_wait(100, tob_wait_event);
			ResetLatch(MyLatch);
			tob_http_perform();
			tob_dispatch_collect(schema, true);
		}
		if (!tob_server_read_only())
			tob_dispatch_record(schema);
	}
	PG_CATCH();
	{
		/* what is left in sending is looked up by the next worker */
		tob_xact_report_and_abort(turn_cxt);
	}
	PG_END_TRY();
	MemoryContextReset(turn_cxt);
}

static void
report_activity(void)
{
	char		text[128];

	snprintf(text, sizeof(text), "twilio_outbox: %d requests in flight, %d results to record",
			 tob_http_in_flight(), tob_dispatch_pending());
	pgstat_report_activity(STATE_IDLE, text);
}

void
twilio_outbox_worker_main(Datum main_arg)
{
	MemoryContext turn_cxt;

	tob_worker_attach();
	tob_bgworker_connect("twilio_outbox worker");
	tob_wait_event = TOB_WAIT_EVENT("TwilioOutboxMain");
	tob_load_secrets();
	tob_http_init();
	tob_dispatch_init();
	tob_policy_reset();
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "twilio_outbox turn",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("twilio_outbox worker started for database \"%s\"", tob_database)));

	while (!ShutdownRequestPending)
	{
		MemoryContext old;
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			tob_bgworker_reload();
			tob_load_secrets();
			tob_http_configure();
			tob_policy_reload();
			next_maintenance = 0;
		}

		old = MemoryContextSwitchTo(turn_cxt);
		more = run_turn(turn_cxt);
		MemoryContextSwitchTo(old);
		MemoryContextReset(turn_cxt);
		report_activity();
		if (more)
			continue;

		(void) tob_http_wait(sleep_ms(), tob_wait_event);
		ResetLatch(MyLatch);
	}

	ereport(LOG, (errmsg("twilio_outbox worker shutting down with %d requests in flight",
						 tob_http_in_flight())));
	finish_in_flight(turn_cxt);
	proc_exit(1);
}
