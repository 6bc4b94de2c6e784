/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The twilio_outbox sender worker: wait on the latch, handle signals,
 *		claim due rows, send them, record the outcomes, repeat.
 *
 * One static worker serves twilio_outbox.database.  It sleeps in one place
 * (tob_http_wait) until a committing enqueuer sets its latch, an HTTP answer
 * arrives, a pool's bucket has a token again, or a second has passed.  Once
 * a second it also re-reads twilio_pools, looks the extension up (waiting
 * quietly while it does not exist), expires overdue rows and applies the
 * status callbacks and inbound messages stored in twilio_inbox.
 *
 * Claiming happens in one short transaction per turn that commits before
 * any request starts; each pool may claim only what its token bucket allows
 * and the free share of max_concurrency, pools taking turns first.
 * Outcomes are written back in one statement per turn.  An outcome is kept
 * in memory until that statement commits, so a failed write is retried and
 * nothing is lost; rows of a worker that died in the middle are found in
 * `sending` by its successor.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <curl/curl.h>

#include "compat.h"
#include "form.h"
#include "http.h"
#include "inbox.h"
#include "pacing.h"
#include "queue.h"
#include "response.h"
#include "retry.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define MAINTENANCE_INTERVAL_US 1000000 /* pools, extension, expiry */
#define MAX_SLEEP_MS			1000
#define MAX_CLAIM_PER_POOL		1000
#define SHUTDOWN_GRACE_MS		3000
#define TOB_OPTED_OUT_CODE		21610	/* Twilio: the recipient replied STOP */
#define APPLY_BATCH				1000	/* stored webhooks applied per statement */
#define APPLY_ROUNDS			5	/* statements per maintenance at most */
#define RECOVERY_STEP			(1.0 / 60.0)	/* of mps regained per second after a 429 */

/* A request in flight, by outbox id. */
typedef struct InFlight
{
	int64		id;				/* hash key */
	int			pool;			/* slot in tob_shared->pools */
	int			attempt;
	bool		lookup;			/* a GET of Messages.json, not the POST */
	bool		expired;		/* if the lookup finds nothing, expire; do not send */
	/* for a lookup: what is needed to match it, and to send if nothing matches */
	char	   *form;			/* TopMemoryContext */
	char	   *body;			/* TopMemoryContext, NULL when none */
	TimestampTz since;			/* the earlier attempt was claimed then */
} InFlight;

/* A finished lookup waiting for the check of its candidate sids. */
typedef struct Lookup
{
	InFlight   *entry;
	int			ncand;
	char	  **cand;			/* sids of messages that match, newest first */
	bool		failed;			/* the lookup itself did not work */
} Lookup;

/* What the worker knows about a pool besides its shared slot. */
typedef struct PoolLocal
{
	char		sender[64];
	bool		backlog;		/* due rows were left behind last time */
	TimestampTz last_429;
	int			edge_errors;	/* 502/503/504 in a row */
	int			edge_pauses;	/* pauses they caused since the last success */
} PoolLocal;

static uint32 tob_wait_event = 0;
static char *schema = NULL;		/* quoted, in TopMemoryContext; NULL: no extension */
static bool recovered = false;	/* rows left in sending were taken care of */
static TimestampTz next_maintenance = 0;
static HTAB *in_flight = NULL;
static PoolLocal pool_local[TOB_MAX_POOLS];
static int	claim_rotation = 0;
static TimestampTz next_due_at = 0; /* earliest retry the worker scheduled */

/* Twilio refused the credentials: send nothing but one probe per backoff. */
static bool auth_failed = false;
static TimestampTz auth_probe_at = 0;
static int64 auth_backoff_us = 0;
static int64 auth_probe_id = 0;	/* the row sent as the last probe */

#define AUTH_BACKOFF_MIN_US 1000000
#define AUTH_BACKOFF_MAX_US 60000000
#define EDGE_ERRORS_BEFORE_PAUSE 3
#define EDGE_PAUSE_MAX_US 30000000

/* Outcomes waiting to be written (TopMemoryContext). */
static TobRecord *pending = NULL;
static int	npending = 0;
static int	pending_cap = 0;

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

/*
 * The start of each of our workers: signal handlers (SIGTERM only sets a
 * flag, so in-flight work can be finished and recorded), the connection to
 * twilio_outbox.database, and a search_path under which only pg_catalog
 * objects resolve unqualified in the worker's statements.
 */
void
tob_bgworker_connect(const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(tob_database, NULL, 0);
	pgstat_report_appname(name);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
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
		case TOB_STATE_THROTTLED:
			ereport(LOG,
					(errmsg("twilio_outbox worker is throttled: a pool is paused after 429 or repeated 5xx answers"),
					 errhint("twilio_queue_stats shows throttled_until and effective_mps per pool.")));
			break;
		case TOB_STATE_IDLE:
		case TOB_STATE_SENDING:
			if (old != TOB_STATE_IDLE && old != TOB_STATE_SENDING && old != TOB_STATE_STARTING)
				ereport(LOG, (errmsg("twilio_outbox worker is sending again (was %s)",
									 tob_worker_state_name(old))));
			break;
		default:
			break;				/* auth_failed: apply_outcome warns with the details */
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
	return schema != NULL && tob_enabled && credentials_configured();
}

/*---- pools ----*/

/*
 * Bring the shared pool slots in line with twilio_pools.  A slot keeps its
 * bucket across reloads; a deleted pool's slot is reused once nothing of it
 * is in flight.  Caller must not hold the lock.
 */
static void
sync_pools(TobPoolConfig *pools, int npools, TimestampTz now)
{
	bool		seen[TOB_MAX_POOLS] = {0};
	int			i;
	int			s;

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < npools; i++)
	{
		TobPoolConfig *cfg = &pools[i];
		TobPoolSlot *slot = NULL;
		int			free_slot = -1;

		for (s = 0; s < tob_shared->npools; s++)
		{
			if (tob_shared->pools[s].name[0] == '\0')
			{
				if (free_slot < 0 && tob_shared->pools[s].in_flight == 0)
					free_slot = s;
			}
			else if (strcmp(tob_shared->pools[s].name, cfg->name) == 0)
				break;
		}
		if (s < tob_shared->npools)
			slot = &tob_shared->pools[s];
		else
		{
			if (free_slot < 0 && tob_shared->npools < TOB_MAX_POOLS)
				free_slot = tob_shared->npools++;
			if (free_slot < 0)
			{
				ereport(WARNING,
						(errmsg("twilio_outbox cannot serve pool \"%s\": more than %d pools",
								cfg->name, TOB_MAX_POOLS)));
				continue;
			}
			s = free_slot;
			slot = &tob_shared->pools[s];
			memset(slot, 0, sizeof(*slot));
			strlcpy(slot->name, cfg->name, TOB_POOL_NAME_LEN);
			slot->effective_mps = cfg->mps;
			slot->tat = now;	/* a new pool starts with a full bucket */
			memset(&pool_local[s], 0, sizeof(PoolLocal));
			pool_local[s].backlog = true;
		}
		seen[s] = true;
		strlcpy(pool_local[s].sender, cfg->sender, sizeof(pool_local[s].sender));
		if (cfg->paused && !slot->paused)
			pool_local[s].backlog = true;	/* look again when it resumes */
		slot->paused = cfg->paused;
		slot->burst = cfg->burst;
		slot->mps = cfg->mps;

		/*
		 * After a 429 the rate climbs back to mps in steps over about a
		 * minute, as long as no further 429 comes; otherwise it is mps.
		 */
		if (pool_local[s].last_429 == 0)
			slot->effective_mps = cfg->mps;
		else if (TimestampDifferenceExceeds(pool_local[s].last_429, now, 1000))
		{
			slot->effective_mps = Min(cfg->mps, slot->effective_mps + cfg->mps * RECOVERY_STEP);
			if (slot->effective_mps >= cfg->mps)
				pool_local[s].last_429 = 0;
		}
		slot->effective_mps = Min(slot->effective_mps, cfg->mps);
		if (slot->paused_until != 0 && slot->paused_until <= now)
			slot->paused_until = 0;
		tob_pacing_update_tokens(slot, now);
	}
	for (s = 0; s < tob_shared->npools; s++)
		if (!seen[s])
			tob_shared->pools[s].name[0] = '\0';
	while (tob_shared->npools > 0 &&
		   tob_shared->pools[tob_shared->npools - 1].name[0] == '\0' &&
		   tob_shared->pools[tob_shared->npools - 1].in_flight == 0)
		tob_shared->npools--;
	LWLockRelease(tob_shared->lock);
}

/*
 * Apply stored status callbacks and inbound messages, in batches of their
 * own transactions; a failure is reported and tried again next second
 * without holding up the sending.
 */
static void
apply_webhooks(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int round;
	volatile int applied = APPLY_BATCH;

	for (round = 0; round < APPLY_ROUNDS && applied == APPLY_BATCH; round++)
	{
		PG_TRY();
		{
			tob_xact_begin("twilio_outbox: applying webhooks");
			applied = tob_inbox_apply(schema, APPLY_BATCH, round == 0 ? tob_retention_s : 0);
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
 * Once a second: find the extension, re-read the pools, recover rows an
 * earlier worker left in sending, expire overdue rows.
 */
static void
maintenance(TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *found;
	TobPoolConfig *pools = NULL;
	int			npools = 0;
	int			expired = 0;

	tob_xact_begin("twilio_outbox: reading pools");
	found = tob_extension_schema();
	if (found != NULL)
	{
		npools = tob_load_pools(found, &pools);

		/*
		 * Before the first claim in this schema: rows an earlier worker left
		 * in sending (nothing of ours is in flight yet).
		 */
		if (!recovered && tob_enabled && credentials_configured() &&
			tob_http_in_flight() == 0)
		{
			int			n = tob_recover_sending(found);

			if (n > 0)
				ereport(LOG,
						(errmsg("twilio_outbox worker queued %d messages again that were being sent when the previous worker stopped", n)));
			recovered = true;
		}
		if (tob_enabled && credentials_configured())
			expired = tob_expire_due(found);
		(void) tob_housekeeping(found, tob_retention_s);
	}
	tob_xact_end();
	MemoryContextSwitchTo(cxt);

	if (schema != NULL && (found == NULL || strcmp(schema, found) != 0))
	{
		pfree(schema);
		schema = NULL;
		recovered = false;
	}
	if (found != NULL && schema == NULL)
		schema = MemoryContextStrdup(TopMemoryContext, found);
	if (found != NULL)
		sync_pools(pools, npools, now);
	if (expired > 0)
	{
		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		tob_shared->totals.expired += expired;
		LWLockRelease(tob_shared->lock);
	}
	/* like expiry, applying callbacks is writing to the outbox: not while disabled */
	if (found != NULL && tob_enabled)
		apply_webhooks();
}

/*---- sending ----*/

static void
build_form(StringInfo form, const TobClaimedRow *row, const char *sender)
{
	char		number[16];
	int			i;

	resetStringInfo(form);
	tob_form_add(form, "To", row->to_number);
	if (strncmp(sender, "MG", 2) == 0)
		tob_form_add(form, "MessagingServiceSid", sender);
	else
		tob_form_add(form, "From", sender);
	if (row->body != NULL)
		tob_form_add(form, "Body", row->body);
	for (i = 0; i < row->nmedia; i++)
		tob_form_add(form, "MediaUrl", row->media[i]);
	if (row->status_callback != NULL)
		tob_form_add(form, "StatusCallback", row->status_callback);
	for (i = 0; i < row->nparams; i++)
		tob_form_add(form, row->param_names[i], row->param_values[i]);
	snprintf(number, sizeof(number), "%d", row->attempt);
	tob_form_add(form, "Attempt", number);
	if (row->validity_s != 0)
	{
		snprintf(number, sizeof(number), "%d", Max(1, Min(row->validity_s, 36000)));
		tob_form_add(form, "ValidityPeriod", number);
	}
}

static char *
messages_url(void)
{
	const char *base = tob_api_base_url;
	int			len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s/2010-04-01/Accounts/%s/Messages.json", len, base, tob_account_sid);
}

/*
 * The Messages list query that finds a message this row may already have
 * created: same To, same From when the pool has one, sent since the day of
 * the earlier attempt.
 */
static char *
lookup_url(const char *messages, const TobClaimedRow *row, const char *sender)
{
	StringInfoData q;
	struct pg_tm tm;
	fsec_t		fsec;
	char		day[16];

	initStringInfo(&q);
	tob_form_add(&q, "To", row->to_number);
	if (strncmp(sender, "MG", 2) != 0)
		tob_form_add(&q, "From", sender);
	if (timestamp2tm(row->last_claimed_at, NULL, &tm, &fsec, NULL, NULL) == 0)
	{
		snprintf(day, sizeof(day), "%04d-%02d-%02d", tm.tm_year, tm.tm_mon, tm.tm_mday);
		tob_form_add(&q, "DateSent>", day);
	}
	/* a few are enough, and 50 full messages would not fit the 64 KiB we read */
	tob_form_add(&q, "PageSize", "10");
	return psprintf("%s?%s", messages, q.data);
}

static void apply_outcome(InFlight *entry, const TobOutcome *outcome, TimestampTz at, long http_status);

/*---- opt-outs (issue 7) ----*/

/*
 * A claimed row whose number is in twilio_opt_outs: recorded failed with
 * Twilio's opt-out code 21610, as if Twilio had refused it, but without a
 * request.
 */
static void
fail_opted_out(const TobClaimedRow *row, int pool, TimestampTz now)
{
	InFlight	entry = {0};
	TobOutcome	outcome = {0};

	entry.id = row->id;
	entry.pool = pool;
	entry.attempt = row->attempt;
	outcome.kind = TOB_OUTCOME_FAILED;
	outcome.error_code = TOB_OPTED_OUT_CODE;
	strlcpy(outcome.error, "not sent: the recipient opted out (twilio_opt_outs)", sizeof(outcome.error));
	apply_outcome(&entry, &outcome, now, 0);
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->pools[pool].in_flight--;
	LWLockRelease(tob_shared->lock);
}

/*
 * After outcomes are written, in the same transaction: a send Twilio refused
 * with 21610 puts its number on twilio_opt_outs.
 */
static void
opt_out_refused(void)
{
	int64	   *ids = palloc(sizeof(int64) * Max(npending, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].error_code == TOB_OPTED_OUT_CODE && pending[i].http_status != 0)
			ids[n++] = pending[i].id;
	tob_opt_out_refused(schema, ids, n);
}

/*
 * Claim what the pools may send now and start the requests.  Returns true
 * when some pool still had due rows it could send right away (so the
 * caller should come back without sleeping).
 */
static bool
claim_and_send(bool woken, bool periodic, TimestampTz now)
{
	int			free_slots = tob_max_concurrency - tob_http_in_flight();
	int			order[TOB_MAX_POOLS];
	int			ncand = 0;
	int			npools;
	int			share;
	int			i;
	TobClaimedRow *claimed[TOB_MAX_POOLS] = {0};
	int			naccepted[TOB_MAX_POOLS] = {0};
	bool		more = false;
	StringInfoData form;
	char	   *url;
	const char *user;
	const char *password;

	if (free_slots <= 0)
		return false;

	/* while the credentials are refused, one probe per backoff step */
	if (auth_failed)
	{
		if (now < auth_probe_at)
			return false;
		free_slots = 1;
		auth_probe_at = now + auth_backoff_us;
		auth_probe_id = -1;		/* set below to the row that goes */
	}

	/* a commit may have added rows to any pool */
	if (woken)
		for (i = 0; i < TOB_MAX_POOLS; i++)
			pool_local[i].backlog = true;

	/* pools that may send and may have due rows, in rotating order */
	LWLockAcquire(tob_shared->lock, LW_SHARED);
	npools = tob_shared->npools;
	for (i = 0; i < npools; i++)
	{
		int			s = (claim_rotation + i) % npools;
		TobPoolSlot *slot = &tob_shared->pools[s];

		if (slot->name[0] == '\0' || slot->paused ||
			(slot->paused_until != 0 && slot->paused_until > now))
			continue;
		if (!(woken || periodic || pool_local[s].backlog))
			continue;
		if (tob_pacing_available(slot, now) < 1)
			continue;
		order[ncand++] = s;
	}
	LWLockRelease(tob_shared->lock);
	claim_rotation = npools > 0 ? (claim_rotation + 1) % npools : 0;
	if (ncand == 0)
		return false;
	share = Max(1, free_slots / ncand);

	tob_xact_begin("twilio_outbox: claiming due messages");
	for (i = 0; i < ncand && free_slots > 0; i++)
	{
		int			s = order[i];
		TobPoolSlot *slot = &tob_shared->pools[s];
		int			limit;
		int			n;
		int			k;
		int64	   *ids;
		char		name[TOB_POOL_NAME_LEN];

		LWLockAcquire(tob_shared->lock, LW_SHARED);
		limit = Min(Min(tob_pacing_available(slot, now), Min(share, free_slots)), MAX_CLAIM_PER_POOL);
		strlcpy(name, slot->name, sizeof(name));
		LWLockRelease(tob_shared->lock);
		if (limit < 1)
			continue;

		n = tob_claim_candidates(schema, name, limit, &claimed[s]);

		/* accept rows in order while the bucket lets their segments go */
		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		for (k = 0; k < n; k++)
			if (!claimed[s][k].opted_out &&
				!tob_pacing_spend(slot, claimed[s][k].segments, now))
				break;
		tob_pacing_update_tokens(slot, now);
		slot->in_flight += k;
		LWLockRelease(tob_shared->lock);

		naccepted[s] = k;
		pool_local[s].backlog = (n == limit) || (k < n);
		if (n == limit && k == n && tob_pacing_available(slot, now) > 0)
			more = true;
		free_slots -= k;
		if (k > 0)
		{
			ids = palloc(sizeof(int64) * k);
			for (n = 0; n < k; n++)
				ids[n] = claimed[s][n].id;
			tob_mark_sending(schema, ids, k);
		}
	}
	tob_xact_end();

	/* committed: now the requests may go */
	url = messages_url();
	user = tob_api_key_sid[0] ? tob_api_key_sid : tob_account_sid;
	password = tob_api_key_sid[0] ? tob_api_key_secret_value() : tob_auth_token_value();
	initStringInfo(&form);
	for (i = 0; i < ncand; i++)
	{
		int			s = order[i];
		int			k;

		for (k = 0; k < naccepted[s]; k++)
		{
			TobClaimedRow *row = &claimed[s][k];
			InFlight   *entry;
			bool		found;

			if (row->opted_out)
			{
				fail_opted_out(row, s, now);
				continue;
			}
			build_form(&form, row, pool_local[s].sender);
			entry = hash_search(in_flight, &row->id, HASH_ENTER, &found);
			entry->pool = s;
			entry->attempt = row->attempt;
			if (auth_failed)
				auth_probe_id = row->id;
			entry->lookup = row->unconfirmed && row->last_claimed_at != 0;
			entry->expired = row->expired;
			entry->form = NULL;
			entry->body = NULL;
			if (entry->lookup)
			{
				/* an earlier attempt may have reached Twilio: ask first */
				entry->form = MemoryContextStrdup(TopMemoryContext, form.data);
				entry->body = row->body ? MemoryContextStrdup(TopMemoryContext, row->body) : NULL;
				entry->since = row->last_claimed_at;
				tob_http_start(row->id, lookup_url(url, row, pool_local[s].sender),
							   user, password, NULL);
			}
			else
				tob_http_start(row->id, url, user, password, form.data);
		}
	}
	return more;
}

/*---- recording ----*/

static void
add_pending(const TobRecord *rec)
{
	if (npending == pending_cap)
	{
		pending_cap = Max(64, pending_cap * 2);
		pending = pending ? repalloc(pending, sizeof(TobRecord) * pending_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(TobRecord) * pending_cap);
	}
	pending[npending++] = *rec;
}

static char *
keep(const char *s)
{
	return (s && s[0]) ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

static void
forget_in_flight(InFlight *entry)
{
	if (entry->form)
		pfree(entry->form);
	if (entry->body)
		pfree(entry->body);
	hash_search(in_flight, &entry->id, HASH_REMOVE, NULL);
}

/* Record an outcome of a POST and count it in shared memory. */
static void
apply_outcome(InFlight *entry, const TobOutcome *outcome, TimestampTz at, long http_status)
{
	TobRecord	rec = {0};
	TobPoolSlot *slot;
	PoolLocal  *local = &pool_local[entry->pool];
	TimestampTz now = GetCurrentTimestamp();

	rec.id = entry->id;
	rec.status = outcome->kind == TOB_OUTCOME_SENT ? "sent" :
		outcome->kind == TOB_OUTCOME_RETRY ? "retrying" :
		outcome->kind == TOB_OUTCOME_AUTH ? "queued" : "failed";
	rec.unconfirmed = outcome->unconfirmed;
	rec.sid = keep(outcome->sid);
	rec.delivery_status = keep(outcome->delivery_status);
	rec.http_status = outcome->http_status;
	rec.error_code = outcome->error_code;
	rec.error = keep(outcome->error);
	rec.at = at;
	rec.next_attempt_at = outcome->next_attempt_at;
	add_pending(&rec);
	if (outcome->kind == TOB_OUTCOME_RETRY &&
		(next_due_at == 0 || outcome->next_attempt_at < next_due_at))
		next_due_at = outcome->next_attempt_at;

	if (outcome->kind == TOB_OUTCOME_AUTH)
	{
		if (!auth_failed)
			ereport(WARNING,
					(errmsg("twilio_outbox: Twilio refused the credentials (HTTP %ld, code %d); sending is stopped",
							http_status, outcome->error_code),
					 errhint("Check twilio_outbox.account_sid and the auth token or API key, then reload; the worker also tries again by itself.")));
		/* the first refusal, or a failed probe, sets the next probe's time */
		if (!auth_failed || entry->id == auth_probe_id)
		{
			auth_backoff_us = !auth_failed ? AUTH_BACKOFF_MIN_US :
				Min(AUTH_BACKOFF_MAX_US, auth_backoff_us * 2);
			auth_probe_at = now + auth_backoff_us;
		}
		auth_failed = true;
	}
	else if (auth_failed && outcome->kind == TOB_OUTCOME_SENT)
	{
		ereport(LOG, (errmsg("twilio_outbox: Twilio accepts the credentials again; sending resumes")));
		auth_failed = false;
		auth_backoff_us = 0;
	}

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	slot = &tob_shared->pools[entry->pool];
	if (outcome->kind == TOB_OUTCOME_SENT)
	{
		tob_shared->totals.sent++;
		slot->sent++;
		local->edge_errors = 0;
		local->edge_pauses = 0;
	}
	else if (outcome->kind == TOB_OUTCOME_RETRY)
		tob_shared->totals.retried++;
	else if (outcome->kind == TOB_OUTCOME_FAILED)
		tob_shared->totals.failed++;
	if (outcome->throttled)
	{
		/*
		 * A 429 is about the sender: the whole pool waits, then goes slower.
		 * The answers to requests that were already in flight belong to the
		 * same event: they may extend the pause but halve the rate only once.
		 */
		if (slot->paused_until <= now)
			slot->effective_mps = Max(slot->mps / 64, slot->effective_mps / 2);
		slot->paused_until = Max(slot->paused_until, outcome->next_attempt_at);
		local->last_429 = now;
	}
	if (outcome->edge_error && ++local->edge_errors >= EDGE_ERRORS_BEFORE_PAUSE &&
		slot->paused_until <= now)
	{
		/*
		 * A degraded edge is not hit with every queued message of the pool.
		 * Only an error after the last pause ended makes the next one longer.
		 */
		int64		pause = Min(EDGE_PAUSE_MAX_US,
								(int64) 500000 << Min(local->edge_pauses++, 6));

		slot->paused_until = now + pause;
	}
	local->backlog = true;
	LWLockRelease(tob_shared->lock);
}

static void
count_request(long status)
{
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->totals.requests++;
	if (status == 0)
		tob_shared->totals.transport_errors++;
	else if (status == 429)
		tob_shared->totals.http_429++;
	else if (status >= 500)
		tob_shared->totals.http_5xx++;
	LWLockRelease(tob_shared->lock);
}

/* The sids of listed messages this row may have created, newest first. */
static Lookup
match_lookup(InFlight *entry, const TobHttpResult *result)
{
	Lookup		l = {entry, 0, NULL, true};
	TobListedMessage *listed;
	int			n;
	int			i;

	if (result->status != 200)
		return l;
	n = tob_parse_message_list(result->body, result->body_len, &listed);
	if (n < 0)
		return l;
	l.failed = false;
	l.cand = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		time_t		created = curl_getdate(listed[i].date_created, NULL);

		/* Twilio's dates have whole seconds: allow for the rounding */
		if (!tob_is_message_sid(listed[i].sid) || created < 0 ||
			time_t_to_timestamptz(created) < entry->since - USECS_PER_SEC)
			continue;
		if ((entry->body == NULL) != (listed[i].body == NULL) ||
			(entry->body != NULL && strcmp(entry->body, listed[i].body) != 0))
			continue;
		l.cand[l.ncand++] = listed[i].sid;
	}
	return l;
}

static pg_noinline int
nsids_total(const Lookup *lookups, int n)
{
	int			total = 0;
	int			i;

	for (i = 0; i < n; i++)
		total += lookups[i].ncand;
	return total;
}

/*
 * Settle finished lookups: a match whose sid no other row has makes the row
 * sent; otherwise the message is sent again (after a failed lookup that is a
 * blind resend, counted as such).
 */
static void
settle_lookups(Lookup *lookups, int n, TimestampTz now)
{
	char	  **sids;
	bool	   *in_use;
	int			nsids = 0;
	int			i;
	int			j;
	const char *user = tob_api_key_sid[0] ? tob_api_key_sid : tob_account_sid;
	const char *password = tob_api_key_sid[0] ? tob_api_key_secret_value() : tob_auth_token_value();
	char	   *url = messages_url();

	nsids = nsids_total(lookups, n);
	sids = palloc(sizeof(char *) * Max(nsids, 1));
	in_use = palloc0(sizeof(bool) * Max(nsids, 1));
	nsids = 0;
	for (i = 0; i < n; i++)
		for (j = 0; j < lookups[i].ncand; j++)
			sids[nsids++] = lookups[i].cand[j];
	if (nsids > 0)
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			tob_xact_begin("twilio_outbox: reconciling with Twilio");
			tob_sids_in_use(schema, sids, nsids, in_use);
			tob_xact_end();
		}
		PG_CATCH();
		{
			/* without the check no match can be trusted: send them again */
			tob_xact_report_and_abort(cxt);
			for (i = 0; i < n; i++)
			{
				lookups[i].ncand = 0;
				lookups[i].failed = true;
			}
		}
		PG_END_TRY();
	}

	nsids = 0;
	for (i = 0; i < n; i++)
	{
		InFlight   *entry = lookups[i].entry;
		const char *match = NULL;
		int			first = nsids;

		for (j = 0; j < lookups[i].ncand && match == NULL; j++)
			if (!in_use[first + j])
				match = sids[first + j];
		nsids += lookups[i].ncand;
		/* one sid settles one row, also within this batch */
		if (match)
			for (j = 0; j < nsids_total(lookups, n); j++)
				if (strcmp(sids[j], match) == 0)
					in_use[j] = true;

		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		if (match)
			tob_shared->totals.reconciled++;
		else if (lookups[i].failed && !entry->expired)
			tob_shared->totals.resent_blind++;
		LWLockRelease(tob_shared->lock);

		if (match)
		{
			TobOutcome	outcome = {0};

			outcome.kind = TOB_OUTCOME_SENT;
			outcome.http_status = 200;
			strlcpy(outcome.sid, match, sizeof(outcome.sid));
			apply_outcome(entry, &outcome, now, 200);
			LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
			tob_shared->pools[entry->pool].in_flight--;
			LWLockRelease(tob_shared->lock);
			forget_in_flight(entry);
		}
		else if (entry->expired)
		{
			/*
			 * Not found at Twilio (or not knowable), and too late to send:
			 * back to retrying, now confirmed, where the expiry takes it
			 * (no HTTP status and no error: nothing for twilio_error_stats).
			 */
			TobRecord	rec = {0};

			rec.id = entry->id;
			rec.status = "retrying";
			rec.at = now;
			rec.next_attempt_at = now;
			add_pending(&rec);
			LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
			tob_shared->pools[entry->pool].in_flight--;
			LWLockRelease(tob_shared->lock);
			forget_in_flight(entry);
		}
		else
		{
			/* nothing at Twilio: this attempt goes out as a POST after all */
			entry->lookup = false;
			tob_http_start(entry->id, url, user, password, entry->form);
			pfree(entry->form);
			entry->form = NULL;
		}
	}
}

/* Turn finished requests into pending records and settle lookups. */
static void
collect_results(TimestampTz now)
{
	TobHttpResult result;
	Lookup	   *lookups = NULL;
	int			nlookups = 0;

	while (tob_http_next_result(&result))
	{
		InFlight   *entry = hash_search(in_flight, &result.id, HASH_FIND, NULL);
		TobTwilioResponse answer;
		TobOutcome	outcome;

		if (entry == NULL)
			continue;			/* cannot happen: every request is entered */
		count_request(result.status);

		if (entry->lookup)
		{
			if (lookups == NULL)
				lookups = palloc(sizeof(Lookup) * Max(tob_http_in_flight() + 1, 64));
			lookups[nlookups++] = match_lookup(entry, &result);
			continue;
		}

		tob_parse_response(result.body, result.body_len, &answer);
		tob_decide(&result, &answer, entry->attempt, result.finished_at, &outcome);
		apply_outcome(entry, &outcome, result.finished_at, result.status);
		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		tob_shared->pools[entry->pool].in_flight--;
		LWLockRelease(tob_shared->lock);
		forget_in_flight(entry);
	}
	if (nlookups > 0)
		settle_lookups(lookups, nlookups, now);
}

/* Write pending records in one statement; keep them if that fails. */
static void
record_pending(void)
{
	int			i;

	if (npending == 0 || schema == NULL)
		return;
	tob_xact_begin("twilio_outbox: recording results");
	tob_record(schema, pending, npending);
	opt_out_refused();
	tob_xact_end();
	for (i = 0; i < npending; i++)
	{
		if (pending[i].sid)
			pfree(pending[i].sid);
		if (pending[i].delivery_status)
			pfree(pending[i].delivery_status);
		if (pending[i].error)
			pfree(pending[i].error);
	}
	npending = 0;
}

/*---- the loop ----*/

/* Is some pool held back by a 429 or by repeated edge errors? */
static bool
any_pool_held(TimestampTz now)
{
	bool		held = false;
	int			s;

	LWLockAcquire(tob_shared->lock, LW_SHARED);
	for (s = 0; s < tob_shared->npools && !held; s++)
		held = tob_shared->pools[s].name[0] != '\0' && tob_shared->pools[s].paused_until > now;
	LWLockRelease(tob_shared->lock);
	return held;
}

/* Milliseconds until a backlogged pool's bucket lets a segment go. */
static long
pacing_sleep_ms(TimestampTz now, long limit)
{
	int			s;

	if (tob_http_in_flight() >= tob_max_concurrency)
		return limit;			/* an answer wakes us first */
	LWLockAcquire(tob_shared->lock, LW_SHARED);
	for (s = 0; s < tob_shared->npools; s++)
	{
		TobPoolSlot *slot = &tob_shared->pools[s];
		int64		wait_us;

		if (slot->name[0] == '\0' || slot->paused || !pool_local[s].backlog)
			continue;
		wait_us = tob_pacing_wait_us(slot, now);
		if (slot->paused_until > now)
			wait_us = Max(wait_us, slot->paused_until - now);
		limit = Min(limit, (long) ((wait_us + 999) / 1000));
	}
	LWLockRelease(tob_shared->lock);
	return limit;
}

/*
 * One turn: maintenance when due, record what finished, claim and send what
 * may go.  Returns true when there is more to do right away.  Database
 * errors are reported and the turn is abandoned; nothing that was claimed
 * or answered is forgotten (records stay pending, rows stay in sending).
 */
static bool
run_turn(MemoryContext turn_cxt)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		periodic = now >= next_maintenance;
	bool		retry_due = next_due_at != 0 && now >= next_due_at;
	bool		more = false;
	volatile bool failed = false;

	PG_TRY();
	{
		if (periodic)
		{
			maintenance(now);
			next_maintenance = now + MAINTENANCE_INTERVAL_US;
		}

		if (schema == NULL)
			enter_state(TOB_STATE_WAITING_FOR_EXTENSION);
		else if (!tob_enabled)
			enter_state(TOB_STATE_DISABLED);
		else if (!credentials_configured())
			enter_state(TOB_STATE_UNCONFIGURED);

		tob_http_perform();
		collect_results(now);
		record_pending();

		if (ready_to_send())
		{
			bool		woken = tob_worker_take_wake();

			if (retry_due)
				next_due_at = 0;
			more = claim_and_send(woken, periodic || retry_due, now);
			tob_http_perform();
			enter_state(auth_failed ? TOB_STATE_AUTH_FAILED :
						any_pool_held(now) ? TOB_STATE_THROTTLED :
						tob_http_in_flight() > 0 ? TOB_STATE_SENDING : TOB_STATE_IDLE);
		}
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
		/* look for the extension again before the next try, and do not spin */
		next_maintenance = 0;
		pg_usleep(100000);
	}
	return more && !failed;
}

/* On SIGTERM: give requests in flight a short grace to finish and record them. */
static void
finish_in_flight(MemoryContext turn_cxt)
{
	TimestampTz deadline = GetCurrentTimestamp() + SHUTDOWN_GRACE_MS * 1000;

	while (tob_http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
	{
		(void) tob_http_wait(100, tob_wait_event);
		ResetLatch(MyLatch);
		tob_http_perform();
		collect_results(GetCurrentTimestamp());
	}
	PG_TRY();
	{
		record_pending();
	}
	PG_CATCH();
	{
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
			 tob_http_in_flight(), npending);
	pgstat_report_activity(STATE_IDLE, text);
}

void
twilio_outbox_worker_main(Datum main_arg)
{
	MemoryContext turn_cxt;
	HASHCTL		ctl;

	tob_worker_attach();
	tob_bgworker_connect("twilio_outbox worker");
	tob_wait_event = TOB_WAIT_EVENT("TwilioOutboxMain");
	tob_load_secrets();
	tob_http_init();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(InFlight);
	in_flight = hash_create("twilio_outbox requests in flight", 1024, &ctl,
							HASH_ELEM | HASH_BLOBS);
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "twilio_outbox turn",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("twilio_outbox worker started for database \"%s\"", tob_database)));

	while (!ShutdownRequestPending)
	{
		MemoryContext old;
		bool		more;
		long		sleep_ms;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			tob_load_secrets();
			tob_http_configure();
			next_maintenance = 0;
			auth_probe_at = 0;	/* new credentials are tried at once */
		}

		old = MemoryContextSwitchTo(turn_cxt);
		more = run_turn(turn_cxt);
		MemoryContextSwitchTo(old);
		MemoryContextReset(turn_cxt);
		report_activity();
		if (more)
			continue;

		now = GetCurrentTimestamp();
		sleep_ms = Max(0, Min(MAX_SLEEP_MS, (long) ((next_maintenance - now + 999) / 1000)));
		if (ready_to_send())
		{
			sleep_ms = pacing_sleep_ms(now, sleep_ms);
			if (auth_failed)
				sleep_ms = Min(sleep_ms, Max(0, (long) ((auth_probe_at - now + 999) / 1000)));
			if (next_due_at != 0)
				sleep_ms = Min(sleep_ms, Max(0, (long) ((next_due_at - now + 999) / 1000)));
		}
		if (npending > 0)
			sleep_ms = Min(sleep_ms, 100);	/* a failed write is tried again soon */
		(void) tob_http_wait(sleep_ms, tob_wait_event);
		ResetLatch(MyLatch);
	}

	ereport(LOG, (errmsg("twilio_outbox worker shutting down with %d requests in flight",
						 tob_http_in_flight())));
	finish_in_flight(turn_cxt);
	proc_exit(1);
}
