/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *		The sender worker's requests: claim, send, collect, record.
 *
 * Claiming happens in one short transaction per turn that commits before
 * any request starts: each pool may claim only what its bucket, its
 * breaker and its share of the account's concurrency window allow, pools
 * taking turns first.  A row that earlier ended ambiguously (unconfirmed)
 * is claimed for a lookup (reconcile.c) instead of a POST; the lookup
 * spends no attempt, and the POST follows only when the lookup shows
 * Twilio does not have the message.
 *
 * Every claimed row is ours until its outcome is written: it sits in the
 * in-flight table while a request is out, then in `pending` until the
 * record statement commits (a failed write is tried again; nothing is
 * lost).  The worker's periodic sweep (tob_recover_sending) takes back
 * every row in sending that is not ours, so a row whose request never
 * started is sent within seconds, not at the next restart.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bgworker.h"
#include "dispatch.h"
#include "form.h"
#include "http.h"
#include "inbox.h"
#include "pacing.h"
#include "policy.h"
#include "pools.h"
#include "queue.h"
#include "reconcile.h"
#include "response.h"
#include "settings.h"
#include "shmem.h"

#define MAX_CLAIM_PER_POOL	1000
/* a claim pass starts from the first due row again at least this often */
#define CURSOR_PASS_US		(10 * USECS_PER_SEC)
#define OPTED_OUT_CODE		21610	/* Twilio: the recipient replied STOP */
#define LOOKUP_MAX_BODY		(1024 * 1024)	/* a page of 50 long messages */

/* A claimed row whose request is out, by outbox id. */
typedef struct InFlight
{
	int64		id;				/* hash key */
	int			pool;			/* slot in tob_shared->pools */
	bool		is_call;		/* a call: Calls.json, not Messages.json */
	bool		cancel;			/* a request to cancel the row's call at Twilio */
	int			attempts;		/* the row's attempts before this claim */
	bool		lookup;			/* the request out is a page of the list */
	bool		posted;			/* the POST went out for this claim */
	bool		unknown;		/* an earlier attempt may be at Twilio, unsettled */
	bool		expired;		/* past expires_at: looked up, never sent */
	TimestampTz claimed_at;
	char	   *to;				/* TopMemoryContext */
	char	   *form;			/* TopMemoryContext: the POST */
	TobLookup  *look;			/* TopMemoryContext, while looking up */
} InFlight;

static HTAB *in_flight = NULL;

/* Outcomes waiting to be written (TopMemoryContext). */
static TobRecord *pending = NULL;
static int	npending = 0;
static int	pending_cap = 0;

/* Answers to cancels at Twilio waiting to be written (TopMemoryContext). */
static TobCancel *pending_cancels = NULL;
static int	npending_cancels = 0;
static int	pending_cancels_cap = 0;

#define MAX_CANCELS_PER_ROUND 50
static TimestampTz next_due_at = 0;

void
tob_dispatch_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(InFlight);
	in_flight = hash_create("twilio_outbox requests in flight", 1024, &ctl,
							HASH_ELEM | HASH_BLOBS);
}

static const char *
api_user(void)
{
	return tob_api_key_sid[0] ? tob_api_key_sid : tob_account_sid;
}

static const char *
api_password(void)
{
	return tob_api_key_sid[0] ? tob_api_key_secret_value() : tob_auth_token_value();
}

static void
count(uint64 *counter)
{
	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	(*counter)++;
	LWLockRelease(tob_shared->lock);
}

/*---- the request ----*/

/*
 * StatusCallback: the row's own, else webhook_public_url + /twilio/status
 * (the listener's, or the user's web tier's, status path) when that is set.
 */
static void
add_status_callback(StringInfo form, const TobClaimedRow *row)
{
	if (row->status_callback != NULL)
		tob_form_add(form, "StatusCallback", row->status_callback);
	else if (tob_webhook_public_url[0] != '\0')
	{
		int			len = strlen(tob_webhook_public_url);

		while (len > 0 && tob_webhook_public_url[len - 1] == '/')
			len--;
		tob_form_add(form, "StatusCallback",
					 psprintf("%.*s/twilio/status", len, tob_webhook_public_url));
	}
}

/* POST .../Calls.json: To, From, Twiml or Url, StatusCallback, then params. */
static void
build_call_form(StringInfo form, const TobClaimedRow *row, const char *sender)
{
	int			i;

	resetStringInfo(form);
	tob_form_add(form, "To", row->to_number);
	tob_form_add(form, "From", sender);
	if (row->twiml != NULL)
		tob_form_add(form, "Twiml", row->twiml);
	else
		tob_form_add(form, "Url", row->call_url);
	add_status_callback(form, row);
	for (i = 0; i < row->nparams; i++)
		tob_form_add(form, row->param_names[i], row->param_values[i]);
}

static void
build_form(StringInfo form, const TobClaimedRow *row, const char *sender)
{
	char		number[16];
	int			i;

	if (row->is_call)
	{
		build_call_form(form, row, sender);
		return;
	}
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
	add_status_callback(form, row);
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

/*---- outcomes ----*/

static char *
keep(const char *s)
{
	return (s && s[0]) ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

static void
add_pending(const TobRecord *rec)
{
	TobRecord  *r;

	if (npending == pending_cap)
	{
		pending_cap = Max(64, pending_cap * 2);
		pending = pending ? repalloc(pending, sizeof(TobRecord) * pending_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(TobRecord) * pending_cap);
	}
	r = &pending[npending++];
	*r = *rec;
	r->sid = keep(rec->sid);
	r->delivery_status = keep(rec->delivery_status);
	r->error = keep(rec->error);
	if (strcmp(rec->status, "retrying") == 0 &&
		(next_due_at == 0 || rec->next_attempt_at < next_due_at))
		next_due_at = rec->next_attempt_at;
}

/* The entry's outcome is decided: queue its record and forget the request. */
static void
finish(InFlight *e, TobRecord *rec)
{
	rec->id = e->id;
	if (rec->at == 0)
		rec->at = GetCurrentTimestamp();
	rec->unconfirmed_since = rec->unconfirmed ? e->claimed_at : 0;
	add_pending(rec);

	LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
	tob_shared->pools[e->pool].in_flight--;
	if (strcmp(rec->status, "sent") == 0)
	{
		tob_shared->totals.sent++;
		if (e->is_call)
			tob_shared->totals.calls_sent++;
		tob_shared->pools[e->pool].sent++;
	}
	else if (strcmp(rec->status, "retrying") == 0)
		tob_shared->totals.retried++;
	else if (strcmp(rec->status, "failed") == 0)
		tob_shared->totals.failed++;
	LWLockRelease(tob_shared->lock);

	if (e->to)
		pfree(e->to);
	if (e->form)
		pfree(e->form);
	if (e->look)
		tob_lookup_free(e->look);
	hash_search(in_flight, &e->id, HASH_REMOVE, NULL);
}

/* Back to retrying at `next`, the attempt not spent, still unsettled or not. */
static void
finish_retry(InFlight *e, TimestampTz next, bool unconfirmed, int http_status,
			 const char *error)
{
	TobRecord	rec = {0};

	rec.status = "retrying";
	rec.attempts = e->attempts + (e->posted ? 1 : 0);
	rec.unconfirmed = unconfirmed;
	rec.http_status = http_status;
	rec.error = (char *) error;
	rec.next_attempt_at = next;
	finish(e, &rec);
}

/* Record what the policy decided for an answer to a POST (or a lookup's 401). */
static void
finish_outcome(InFlight *e, const TobOutcome *o, TimestampTz at)
{
	TobRecord	rec = {0};

	rec.status = o->kind == TOB_OUTCOME_SENT ? "sent" :
		o->kind == TOB_OUTCOME_RETRY ? "retrying" :
		o->kind == TOB_OUTCOME_AUTH ? "queued" : "failed";
	/* a refused request gives its attempt back */
	rec.attempts = e->attempts + ((e->posted && o->kind != TOB_OUTCOME_AUTH) ? 1 : 0);
	/* a 2xx settles the row; otherwise it stays unsettled, or became so now */
	rec.unconfirmed = o->kind != TOB_OUTCOME_SENT && (e->unknown || (e->posted && o->ambiguous));
	rec.sid = (char *) o->sid;
	rec.delivery_status = (char *) o->delivery_status;
	rec.http_status = o->http_status;
	rec.error_code = o->error_code;
	rec.error = (char *) o->error;
	rec.at = at;
	rec.next_attempt_at = o->next_attempt_at;
	finish(e, &rec);
}

/*---- starting requests ----*/

/*
 * Start the entry's request (its lookup page, or its POST).  When that
 * fails the row is recorded as retrying with backoff: nothing went out.
 */
static void
start_request(InFlight *e, const char *url, TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool started = false;

	PG_TRY();
	{
		tob_inject_fault("start_request");
		if (e->lookup)
			tob_http_start(e->id, url, api_user(), api_password(), NULL, LOOKUP_MAX_BODY);
		else
			tob_http_start(e->id, url, api_user(), api_password(), e->form, TOB_HTTP_MAX_BODY);
		started = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(WARNING,
				(errmsg("twilio_outbox could not start a request for message %lld: %s",
						(long long) e->id, edata->message)));
		if (!e->lookup)
			e->posted = false;	/* it never went out */
		finish_retry(e, now + tob_backoff_us(e->attempts + 1), e->unknown, 0,
					 "the request could not be started");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (started)
		tob_policy_started(e->pool, e->id);
}

static void
post(InFlight *e, TimestampTz now)
{
	char	   *url = e->is_call ? tob_calls_url() : tob_messages_url();

	if (e->look)
	{
		tob_lookup_free(e->look);
		e->look = NULL;
	}
	e->lookup = false;
	e->posted = true;
	start_request(e, url, now);
}

/*
 * A claimed row whose number opted out: recorded failed with Twilio's
 * opt-out code 21610, as if Twilio had refused it, but without a request.
 */
static void
fail_opted_out(const TobClaimedRow *row, int pool, int attempts)
{
	InFlight   *e;
	TobRecord	rec = {0};
	bool		found;

	e = hash_search(in_flight, &row->id, HASH_ENTER, &found);
	memset(((char *) e) + sizeof(int64), 0, sizeof(InFlight) - sizeof(int64));
	e->pool = pool;
	e->attempts = attempts;
	rec.status = "failed";
	rec.attempts = attempts;
	rec.error_code = OPTED_OUT_CODE;
	rec.error = "not sent: the recipient opted out (twilio_opt_outs)";
	finish(e, &rec);
}

/* One claimed row, with its pool. */
typedef struct Claimed
{
	TobClaimedRow *row;
	int			pool;
} Claimed;

bool
tob_dispatch_claim_and_send(const char *schema, const TobWake *wake, bool all, TimestampTz now)
{
	TobMono		mono = tob_mono_now();
	int			budget = tob_policy_account_budget(tob_http_in_flight(), mono);
	int			order[TOB_MAX_POOLS * TOB_KINDS];
	int			ncand;
	int			share;
	int			i;
	int			k;
	bool		more = false;
	Claimed    *claimed;
	int			nclaimed = 0;
	int64	   *ids;
	int		   *attempts;
	StringInfoData form;

	/* first: a wake-up taken is not lost even when nothing may go now */
	if (wake->pending)
		tob_pools_mark_woken(wake);
	if (budget <= 0)
		return false;
	ncand = tob_pools_ready(mono, all, order);
	if (ncand == 0)
		return false;
	share = Max(1, budget / ncand);
	claimed = palloc(sizeof(Claimed) * Max(budget, 1));
	ids = palloc(sizeof(int64) * Max(budget, 1));
	attempts = palloc(sizeof(int) * Max(budget, 1));

	tob_xact_begin("twilio_outbox: claiming due messages");
	for (i = 0; i < ncand && budget > 0; i++)
	{
		int			s = TOB_READY_POOL(order[i]);
		TobKind		kind = TOB_READY_KIND(order[i]);
		bool		calls = kind == TOB_KIND_CALL;
		TobPoolSlot *slot = &tob_shared->pools[s];
		TobPoolLocal *local = &tob_pool_local[s];
		int			pool_budget = tob_policy_pool_budget(s, mono);
		TobClaimedRow *rows;
		char		name[TOB_POOL_NAME_LEN];
		int			limit;
		int			n;

		LWLockAcquire(tob_shared->lock, LW_SHARED);
		limit = Min(Min(tob_pacing_available(slot, mono), Min(share, budget)),
					Min(pool_budget, MAX_CLAIM_PER_POOL));
		if (calls)
			limit = Min(limit, tob_pacing_available(&tob_shared->calls, mono));
		strlcpy(name, slot->name, sizeof(name));
		LWLockRelease(tob_shared->lock);
		if (limit < 1)
			continue;

		/*
		 * Go on from where the last claim ended, so that the dead index
		 * entries of the rows claimed before are not read again; start over
		 * when a pass reaches the end, and every CURSOR_PASS_US anyway, for
		 * rows that were due before the cursor (locked, or given an earlier
		 * send_after) when it passed them.
		 */
		if (local->cursor[kind].valid && mono - local->cursor_since[kind] > CURSOR_PASS_US)
			local->cursor[kind].valid = false;
		n = tob_claim_candidates(schema, name, calls, limit, &local->cursor[kind], &rows);

		/*
		 * Accept rows in order while the bucket lets their segments go (a
		 * call costs one, and one of the account's calls per second).
		 */
		LWLockAcquire(tob_shared->lock, LW_EXCLUSIVE);
		local->need[kind] = 1;
		for (k = 0; k < n; k++)
		{
			if (rows[k].opted_out)
				continue;
			if (calls && tob_pacing_wait_us(&tob_shared->calls, 1, mono) > 0)
				break;
			if (!tob_pacing_spend(slot, rows[k].segments, mono))
			{
				local->need[kind] = rows[k].segments;
				break;
			}
			if (calls)
				(void) tob_pacing_spend(&tob_shared->calls, 1, mono);
		}
		slot->next_cost = k < n ? rows[k].segments : 0;
		tob_pacing_update_tokens(slot, mono);
		tob_pacing_update_tokens(&tob_shared->calls, mono);
		slot->in_flight += k;
		LWLockRelease(tob_shared->lock);

		local->backlog[kind] = (n == limit) || (k < n);
		if (n < limit)
			local->cursor[kind].valid = false;
		else if (k > 0)
		{
			if (!local->cursor[kind].valid)
				local->cursor_since[kind] = mono;
			local->cursor[kind].valid = true;
			local->cursor[kind].priority = rows[k - 1].priority;
			local->cursor[kind].next_attempt_at = rows[k - 1].next_attempt_at;
			local->cursor[kind].id = rows[k - 1].id;
		}
		if (n == limit && k == n && limit < pool_budget && tob_pacing_available(slot, mono) > 0 &&
			!(calls && tob_pacing_available(&tob_shared->calls, mono) == 0))
			more = true;
		budget -= k;
		for (n = 0; n < k; n++)
		{
			TobClaimedRow *row = &rows[n];

			claimed[nclaimed].row = row;
			claimed[nclaimed].pool = s;
			ids[nclaimed] = row->id;
			/* a lookup spends no attempt; a POST spends one now */
			attempts[nclaimed] = row->attempt - ((row->unconfirmed || row->opted_out) ? 1 : 0);
			nclaimed++;
		}
	}
	if (nclaimed > 0)
		tob_mark_sending(schema, ids, attempts, nclaimed);
	tob_xact_end();

	/*
	 * Committed: now the requests may go, unless the commit may not have
	 * reached a synchronous standby, or the worker is stopping; then the
	 * rows stay in sending for the next worker to look up.
	 */
	if (nclaimed > 0 && tob_xact_uncertain())
		return false;
	tob_inject_fault("after_claim");
	initStringInfo(&form);
	for (i = 0; i < nclaimed; i++)
	{
		TobClaimedRow *row = claimed[i].row;
		int			s = claimed[i].pool;
		InFlight   *e;
		bool		found;

		if (row->opted_out)
		{
			fail_opted_out(row, s, row->attempt - 1);
			continue;
		}
		build_form(&form, row, tob_pool_local[s].sender);
		e = hash_search(in_flight, &row->id, HASH_ENTER, &found);
		memset(((char *) e) + sizeof(int64), 0, sizeof(InFlight) - sizeof(int64));
		e->pool = s;
		e->is_call = row->is_call;
		e->attempts = row->attempt - 1;
		e->unknown = row->unconfirmed;
		e->expired = row->expired;
		e->claimed_at = now;
		e->to = MemoryContextStrdup(TopMemoryContext, row->to_number);
		e->form = MemoryContextStrdup(TopMemoryContext, form.data);
		if (row->unconfirmed)
		{
			/* an earlier attempt may have reached Twilio: ask first */
			e->lookup = true;
			e->look = tob_lookup_new(row->is_call, row->to_number, tob_pool_local[s].sender,
									 row->body, row->content_sid, row->nmedia,
									 row->unconfirmed_since ? row->unconfirmed_since : now);
			start_request(e, tob_lookup_first_url(e->look), now);
		}
		else
		{
			e->posted = true;
			start_request(e, row->is_call ? tob_calls_url() : tob_messages_url(), now);
		}
	}
	return more;
}

/*---- cancels at Twilio ----*/

int
tob_dispatch_cancel_budget(void)
{
	return Min(MAX_CANCELS_PER_ROUND,
			   tob_policy_account_budget(tob_http_in_flight(), tob_mono_now()));
}

void
tob_dispatch_start_cancels(const TobCancel *cancels, int n)
{
	StringInfoData form;
	int			i;

	initStringInfo(&form);
	tob_form_add(&form, "Status", "canceled");
	for (i = 0; i < n; i++)
	{
		InFlight   *e;
		bool		found;
		MemoryContext cxt = CurrentMemoryContext;

		e = hash_search(in_flight, &cancels[i].id, HASH_ENTER, &found);
		if (found)
			continue;			/* cannot happen: the load left ours out */
		memset(((char *) e) + sizeof(int64), 0, sizeof(InFlight) - sizeof(int64));
		e->pool = -1;
		e->is_call = true;
		e->cancel = true;
		e->to = MemoryContextStrdup(TopMemoryContext, cancels[i].sid);	/* the call's sid */
		PG_TRY();
		{
			tob_http_start(e->id, tob_call_url(cancels[i].sid), api_user(), api_password(),
						   form.data, TOB_HTTP_MAX_BODY);
		}
		PG_CATCH();
		{
			/* tried again at the next maintenance */
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
			pfree(e->to);
			hash_search(in_flight, &cancels[i].id, HASH_REMOVE, NULL);
		}
		PG_END_TRY();
	}
}

/* The answer to a cancel: what to write, if anything, and forget the request. */
static void
cancel_answered(InFlight *e, const TobHttpResult *r)
{
	TobTwilioResponse answer;
	TobCancel	c = {0};
	char		error[320];

	tob_parse_response(r->body, r->body_len, &answer);
	c.id = e->id;
	c.http_status = (int) r->status;
	c.done = true;
	if (r->status >= 200 && r->status < 300 && strcmp(answer.status, "canceled") == 0)
	{
		c.delivery_status = "canceled";
		count(&tob_shared->totals.calls_canceled);
	}
	else if (r->status >= 200 && r->status < 300)
	{
		snprintf(error, sizeof(error), "Twilio did not cancel the call: it is %s",
				 answer.status[0] ? answer.status : "in an unknown state");
		c.error = error;
	}
	else if (r->status >= 400 && r->status < 500 && r->status != 429 &&
			 r->status != 401 && r->status != 403)
	{
		snprintf(error, sizeof(error), "Twilio did not cancel the call: HTTP %ld%s%s", r->status,
				 answer.message[0] ? ": " : "", answer.message);
		c.error = error;
	}
	else
		c.done = false;			/* a fault: the next maintenance asks again */

	if (c.done)
	{
		if (npending_cancels == pending_cancels_cap)
		{
			pending_cancels_cap = Max(16, pending_cancels_cap * 2);
			pending_cancels = pending_cancels ?
				repalloc(pending_cancels, sizeof(TobCancel) * pending_cancels_cap) :
				MemoryContextAlloc(TopMemoryContext, sizeof(TobCancel) * pending_cancels_cap);
		}
		c.error = c.error ? MemoryContextStrdup(TopMemoryContext, c.error) : NULL;
		pending_cancels[npending_cancels++] = c;
	}
	pfree(e->to);
	hash_search(in_flight, &e->id, HASH_REMOVE, NULL);
}

/*---- answers ----*/

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

/* What a lookup's answer says about Twilio's limits, for the policy. */
static TobSignal
lookup_signal(const TobHttpResult *r)
{
	if (r->status == 0 || r->status >= 500)
		return TOB_SIGNAL_FAULT;
	if (r->status == 429)
		return TOB_SIGNAL_CONCURRENCY;
	if (r->status == 401 || r->status == 403)
		return TOB_SIGNAL_AUTH;
	return TOB_SIGNAL_OK;
}

/*
 * The list told nothing.  Try again later with a backoff that grows with
 * the time the row has been unsettled (honouring Retry-After, and through
 * the claim, every hold); only once that exceeds reconcile_timeout_ms is
 * the message sent again without knowing.
 */
static void
lookup_failed(InFlight *e, const TobHttpResult *r, bool shutting_down, TimestampTz now)
{
	char		error[320];
	int64		unsettled_us = now - e->look->since;
	int64		cap_us;
	int64		delay_us;

	if (r->status == 0)
		snprintf(error, sizeof(error), "looking it up at Twilio failed: %s", r->error);
	else
		snprintf(error, sizeof(error), "looking it up at Twilio failed: HTTP %ld", r->status);
	count(&tob_shared->totals.lookup_failures);

	if (unsettled_us >= (int64) tob_reconcile_timeout_ms * 1000 && !shutting_down)
	{
		if (e->expired)
		{
			/* too late to send, and no way to know: let the expiry take it */
			finish_retry(e, now, false, (int) r->status,
						 "expired; an earlier attempt may have reached Twilio (the lookup kept failing)");
			return;
		}
		count(&tob_shared->totals.resent_blind);
		post(e, now);
		return;
	}

	cap_us = Min((int64) tob_backoff_max_ms * 1000, Max(unsettled_us, tob_settle_us()));
	delay_us = cap_us / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (cap_us / 2));
	if (r->retry_after_s >= 0)
		delay_us = Max(delay_us, (int64) r->retry_after_s * 1000000);
	finish_retry(e, now + Max(delay_us, tob_settle_us()), true, (int) r->status, error);
}

/* Is a POST to the same number out?  Its message may be listed already. */
static bool
post_to_same_number(const InFlight *e)
{
	HASH_SEQ_STATUS seq;
	InFlight   *other;
	bool		busy = false;

	hash_seq_init(&seq, in_flight);
	while ((other = hash_seq_search(&seq)) != NULL)
		if (other != e && other->posted && !other->lookup && other->to &&
			strcmp(other->to, e->to) == 0)
		{
			busy = true;
			hash_seq_term(&seq);
			break;
		}
	return busy;
}

/*
 * Settle the lookups that have seen their whole window: a candidate that
 * no row holds makes the row sent; none means Twilio does not have it, so
 * this attempt goes out as a POST after all.
 */
static void
settle_lookups(const char *schema, InFlight **done, int n, bool shutting_down,
			   TimestampTz now)
{
	TobLookup **lookups = palloc(sizeof(TobLookup *) * n);
	int		   *chosen = palloc(sizeof(int) * n);
	char	  **busy = palloc(sizeof(char *) * Max(npending, 1));
	int			nbusy = 0;
	volatile bool checked = false;
	MemoryContext cxt = CurrentMemoryContext;
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].sid)
			busy[nbusy++] = pending[i].sid;
	for (i = 0; i < n; i++)
		lookups[i] = done[i]->look;

	PG_TRY();
	{
		tob_xact_begin("twilio_outbox: reconciling with Twilio");
		tob_inject_fault("lookup_check");
		tob_lookup_choose(schema, lookups, n, busy, nbusy, chosen);
		tob_xact_end();
		checked = true;
	}
	PG_CATCH();
	{
		/* without the check no match can be trusted: look again later */
		tob_xact_report_and_abort(cxt);
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		InFlight   *e = done[i];

		if (!checked || post_to_same_number(e))
		{
			finish_retry(e, now + tob_settle_us(), true, 0, NULL);
			continue;
		}
		if (chosen[i] >= 0)
		{
			TobRecord	rec = {0};

			count(&tob_shared->totals.reconciled);
			rec.status = "sent";
			rec.attempts = e->attempts;
			rec.sid = e->look->cand[chosen[i]];
			rec.delivery_status = e->look->cand_status[chosen[i]];
			rec.http_status = 200;
			rec.at = now;
			finish(e, &rec);
			continue;
		}
		/* Twilio does not have it */
		e->unknown = false;
		if (e->expired || shutting_down)
			finish_retry(e, now, false, 0, NULL);	/* the expiry, or the next worker, takes it */
		else
			post(e, now);
	}
}

void
tob_dispatch_collect(const char *schema, bool shutting_down)
{
	TobHttpResult result;
	InFlight  **done = NULL;
	int			ndone = 0;

	while (tob_http_next_result(&result))
	{
		InFlight   *e = hash_search(in_flight, &result.id, HASH_FIND, NULL);
		TobMono		mono = tob_mono_now();
		TimestampTz now = result.finished_at;

		if (e == NULL)
			continue;			/* cannot happen: every request is entered */
		count_request(result.status);

		if (e->cancel)
		{
			tob_policy_observe(-1, e->id, result.status == 0 || result.status >= 500 ?
							   TOB_SIGNAL_FAULT : result.status == 429 ? TOB_SIGNAL_CONCURRENCY :
							   TOB_SIGNAL_OK, true, &result, tob_http_in_flight(), mono);
			cancel_answered(e, &result);
			continue;
		}

		if (e->lookup)
		{
			TobSignal	signal = lookup_signal(&result);
			char	   *next_url;

			count(&tob_shared->totals.lookups);
			tob_policy_observe(e->pool, e->id, signal, true, &result, tob_http_in_flight(), mono);
			if (signal == TOB_SIGNAL_AUTH)
			{
				TobOutcome	o = {0};

				o.kind = TOB_OUTCOME_AUTH;
				o.http_status = (int) result.status;
				snprintf(o.error, sizeof(o.error), "looking it up at Twilio: HTTP %ld", result.status);
				o.next_attempt_at = now;
				finish_outcome(e, &o, now);
				continue;
			}
			switch (tob_lookup_page(e->look, &result, &next_url))
			{
				case TOB_LOOKUP_MORE:
					if (shutting_down)
						finish_retry(e, now, true, 0, NULL);
					else
						start_request(e, next_url, now);
					break;
				case TOB_LOOKUP_DONE:
					if (done == NULL)
						done = palloc(sizeof(InFlight *) * (tob_http_in_flight() + hash_get_num_entries(in_flight) + 1));
					done[ndone++] = e;
					break;
				case TOB_LOOKUP_FAILED:
					lookup_failed(e, &result, shutting_down, now);
					break;
			}
		}
		else
		{
			TobTwilioResponse answer;
			TobOutcome	outcome;

			tob_parse_response(result.body, result.body_len, &answer);
			tob_policy_decide(&result, &answer, e->is_call, e->attempts + 1, now, &outcome);
			tob_policy_observe(e->pool, e->id, outcome.signal, false, &result, tob_http_in_flight(), mono);
			finish_outcome(e, &outcome, now);
		}
	}
	if (ndone > 0)
		settle_lookups(schema, done, ndone, shutting_down, GetCurrentTimestamp());
}

/*---- recording ----*/

/*
 * In the record's transaction: a send Twilio refused with 21610 puts its
 * number on twilio_opt_outs.
 */
static void
opt_out_refused(const char *schema)
{
	int64	   *ids = palloc(sizeof(int64) * Max(npending, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < npending; i++)
		if (pending[i].error_code == OPTED_OUT_CODE && pending[i].http_status != 0)
			ids[n++] = pending[i].id;
	tob_opt_out_refused(schema, ids, n);
}

void
tob_dispatch_record(const char *schema)
{
	int			i;

	if ((npending == 0 && npending_cancels == 0) || schema == NULL)
		return;
	tob_xact_begin("twilio_outbox: recording results");
	tob_inject_fault("record");
	if (npending > 0)
		tob_record(schema, pending, npending);
	opt_out_refused(schema);
	if (npending_cancels > 0)
		tob_record_cancels(schema, pending_cancels, npending_cancels);
	tob_xact_end();
	for (i = 0; i < npending_cancels; i++)
		if (pending_cancels[i].error)
			pfree(pending_cancels[i].error);
	npending_cancels = 0;
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

int
tob_dispatch_pending(void)
{
	return npending + npending_cancels;
}

int
tob_dispatch_own_ids(int64 **ids)
{
	HASH_SEQ_STATUS seq;
	InFlight   *e;
	int			n = 0;
	int			i;

	*ids = palloc(sizeof(int64) * (hash_get_num_entries(in_flight) + npending + 1));
	hash_seq_init(&seq, in_flight);
	while ((e = hash_seq_search(&seq)) != NULL)
		(*ids)[n++] = e->id;
	for (i = 0; i < npending; i++)
		(*ids)[n++] = pending[i].id;
	return n;
}

TimestampTz
tob_dispatch_take_next_due(bool take)
{
	TimestampTz due = next_due_at;

	if (take)
		next_due_at = 0;
	return due;
}
