/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *		The sender worker's requests: claim due rows and start their
 *		requests, collect the answers, record the outcomes.
 *
 * IDENTIFICATION
 *	  src/dispatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_DISPATCH_H
#define TOB_DISPATCH_H

#include "datatype/timestamp.h"

/* Once, at worker start. */
extern void tob_dispatch_init(void);

/*
 * Claim what the account's window, the pools' buckets and breakers allow
 * and start the requests.  `wake`: the pools commits added rows to; `all`:
 * look at every pool, backlog or not.  Returns true when some pool could
 * send more right away.
 */
struct TobWake;
extern bool tob_dispatch_claim_and_send(const char *schema, const struct TobWake *wake,
										bool all, TimestampTz now);

/*
 * Turn finished requests into outcomes to record; a lookup may go on with
 * its next page or with the POST.  While shutting down nothing new is
 * sent: such rows are recorded for later instead.
 */
extern void tob_dispatch_collect(const char *schema, bool shutting_down);

/* How many cancels at Twilio may start now. */
extern int	tob_dispatch_cancel_budget(void);

/* Start cancels of calls at Twilio (POST .../Calls/{sid}.json Status=canceled). */
struct TobCancel;
extern void tob_dispatch_start_cancels(const struct TobCancel *cancels, int n);

/* Write the outcomes in one transaction; they stay pending if that fails. */
extern void tob_dispatch_record(const char *schema);

/* Outcomes not yet written. */
extern int	tob_dispatch_pending(void);

/* The rows that are ours: in flight or with an outcome not yet written. */
extern int	tob_dispatch_own_ids(int64 **ids);

/* The earliest next_attempt_at among retries recorded since it was last taken. */
extern TimestampTz tob_dispatch_take_next_due(bool take);

#endif							/* TOB_DISPATCH_H */
