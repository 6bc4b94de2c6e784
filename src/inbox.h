/*-------------------------------------------------------------------------
 *
 * inbox.h
 *		Twilio's callbacks: checking one, storing accepted ones in
 *		twilio_inbox, and applying stored ones to the outbox and the
 *		opt-out list.
 *
 * IDENTIFICATION
 *	  src/inbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_INBOX_H
#define TOB_INBOX_H

#include "lib/stringinfo.h"

#include "signature.h"

#define TOB_STATUS_PATH "/twilio/status"
#define TOB_INBOUND_PATH "/twilio/inbound"

/* "status" or "inbound" for a webhook path, NULL for any other path. */
extern const char *tob_webhook_kind(const char *path);

/*
 * Does the signature match url and params (which get sorted) for the
 * configured auth token?  url may be signed with or without its scheme's
 * default port.  Counts the request as received, and as rejected when it
 * does not match.  Needs a transaction.
 */
extern bool tob_webhook_verify(const char *url, TobParam *params, int n,
							   const char *signature);

/* The params as a JSON object of strings (text) in buf. */
extern void tob_params_json(StringInfo buf, const TobParam *params, int n);

/*
 * Store n accepted callbacks in one statement (a duplicate of one already
 * stored, by idempotency token or by MessageSid and MessageStatus, is
 * skipped).  tokens[i] may be NULL.  Counts them as accepted and returns how
 * many were new.  Needs a transaction with SPI connected.
 */
extern int	tob_inbox_store(const char *schema, int n, const char **kinds,
							const char **params_json, const char **tokens);

/*
 * Apply stored callbacks, a batch of at most max_events (retention.h
 * deletes them later).  Returns how many were applied.  Needs a
 * transaction with SPI connected.
 */
extern int	tob_inbox_apply(const char *schema, int max_events);

/*
 * Add the To numbers of rows Twilio refused with 21610 (the recipient
 * opted out) to twilio_opt_outs.  Needs a transaction with SPI connected.
 */
extern void tob_opt_out_refused(const char *schema, const int64 *ids, int n);

#endif							/* TOB_INBOX_H */
