/*-------------------------------------------------------------------------
 *
 * policy.h
 *		The failure policy: what an answer means for its message, and what
 *		it means for the pool and the account that sent it.
 *
 * IDENTIFICATION
 *	  src/policy.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_POLICY_H
#define TOB_POLICY_H

#include "clock.h"
#include "http.h"
#include "response.h"

typedef enum TobOutcomeKind
{
	TOB_OUTCOME_SENT,
	TOB_OUTCOME_RETRY,			/* retrying, at next_attempt_at */
	TOB_OUTCOME_FAILED,
	TOB_OUTCOME_AUTH			/* back to queued, attempt given back */
} TobOutcomeKind;

/* Which of Twilio's limits (or faults) an answer speaks for. */
typedef enum TobSignal
{
	TOB_SIGNAL_OK,				/* Twilio answered and took or judged the request */
	TOB_SIGNAL_CONCURRENCY,		/* 429: too many requests of the account in flight */
	TOB_SIGNAL_SENDER_FULL,		/* 21611: the sender's queue at Twilio is full */
	TOB_SIGNAL_FAULT,			/* 5xx or transport: Twilio or the way to it failed */
	TOB_SIGNAL_AUTH				/* 401/403: the credentials were refused */
} TobSignal;

typedef struct TobOutcome
{
	TobOutcomeKind kind;
	TobSignal	signal;
	int			http_status;	/* 0 for a transport error */
	int			error_code;		/* Twilio's code, 0 when none */
	char		error[320];		/* one line, empty when sent */
	char		sid[TOB_SID_LEN];
	char		delivery_status[TOB_STATUS_LEN];
	TimestampTz next_attempt_at;	/* when kind is RETRY or AUTH */
	bool		ambiguous;		/* Twilio may have created it after all */
} TobOutcome;

/*
 * Decide the outcome of attempt number `attempt` of a message (or a call)
 * from the HTTP result and the parsed answer.
 */
extern void tob_policy_decide(const TobHttpResult *result, const TobTwilioResponse *answer,
							  bool is_call, int attempt, TimestampTz now, TobOutcome *out);

/* The backoff before attempt+1: full jitter, in microseconds. */
extern int64 tob_backoff_us(int attempt);

/* The earliest an ambiguous attempt may be looked up again, from now. */
extern int64 tob_settle_us(void);

/*---- reactions: the account's window and holds, the pools' rates and breakers ----*/

/* At worker start: a full window, nothing held. */
extern void tob_policy_reset(void);

/* After a reload: a held account probes at once; the window's cap may change. */
extern void tob_policy_reload(void);

/* A pool slot was (re)assigned to a new pool. */
extern void tob_policy_pool_added(int pool);

/*
 * Take in the answer to request `id` of `pool` (-1: of no pool; a page of
 * the list or another request that says nothing about sending when
 * `lookup`): the window, holds and breakers move.  in_flight: our requests
 * still in flight.
 */
extern void tob_policy_observe(int pool, int64 id, TobSignal signal, bool lookup,
							   const TobHttpResult *result, int in_flight, TobMono now);

/* How many requests may start now over all pools (0 while held). */
extern int	tob_policy_account_budget(int in_flight, TobMono now);

/* How many requests `pool` may start now: 0 while held, 1 for a probe. */
extern int	tob_policy_pool_budget(int pool, TobMono now);

/* Request `id` of `pool` was started; a probe is remembered as such. */
extern void tob_policy_started(int pool, int64 id);

/*
 * When a hold of the account, or of the pool, ends and a probe may go: 0
 * when nothing is held, TOB_MONO_NEVER while its probe is out.
 */
extern TobMono tob_policy_account_wake(void);
extern TobMono tob_policy_pool_wake(int pool);

/* Whether the account is held because Twilio refused the credentials. */
extern bool tob_policy_auth_failed(void);

/*
 * Once a second with the pools' configuration: rates slowed by 21611 climb
 * back to mps.  Caller holds tob_shared->lock exclusively.
 */
extern void tob_policy_pool_tick(int pool, TobMono now);

#endif							/* TOB_POLICY_H */
