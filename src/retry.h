/*-------------------------------------------------------------------------
 *
 * retry.h
 *		The failure policy: what an HTTP result means for the message.
 *
 * IDENTIFICATION
 *	  src/retry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_RETRY_H
#define TOB_RETRY_H

#include "http.h"
#include "response.h"

typedef enum TobOutcomeKind
{
	TOB_OUTCOME_SENT,
	TOB_OUTCOME_RETRY,			/* retrying, at next_attempt_at */
	TOB_OUTCOME_FAILED,
	TOB_OUTCOME_AUTH			/* back to queued, attempt given back */
} TobOutcomeKind;

typedef struct TobOutcome
{
	TobOutcomeKind kind;
	int			http_status;	/* 0 for a transport error */
	int			error_code;		/* Twilio's code, 0 when none */
	char		error[320];		/* one line, empty when sent */
	char		sid[TOB_SID_LEN];
	char		delivery_status[TOB_STATUS_LEN];
	TimestampTz next_attempt_at;	/* when kind is RETRY */
	bool		throttled;		/* a 429: the pool must slow down */
	bool		edge_error;		/* 502/503/504: Twilio's edge is struggling */
	bool		unconfirmed;	/* Twilio may have the message after all */
} TobOutcome;

/*
 * Decide the outcome of attempt number `attempt` of a message from the HTTP
 * result and the parsed answer.
 */
extern void tob_decide(const TobHttpResult *result, const TobTwilioResponse *answer,
					   int attempt, TimestampTz now, TobOutcome *out);

/* The backoff before attempt+1: full jitter, in microseconds. */
extern int64 tob_backoff_us(int attempt);

#endif							/* TOB_RETRY_H */
