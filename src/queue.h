/*-------------------------------------------------------------------------
 *
 * queue.h
 *		The worker's SQL access to the outbox: claim due rows, record
 *		outcomes, recover, expire and trim.  Each runs inside a
 *		transaction opened with tob_xact_begin (bgworker.h).
 *
 * IDENTIFICATION
 *	  src/queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_QUEUE_H
#define TOB_QUEUE_H

#include "datatype/timestamp.h"

#include "shmem.h"

/* A row of twilio_pools. */
typedef struct TobPoolConfig
{
	char	   *name;
	char	   *sender;
	double		mps;
	int			burst;
	bool		paused;
} TobPoolConfig;

/* A claimed row, with what its request needs. */
typedef struct TobClaimedRow
{
	int64		id;
	bool		is_call;		/* a call: twiml or call_url instead of body and media */
	char	   *twiml;
	char	   *call_url;
	int			segments;
	int			attempt;		/* this attempt's number, from 1 */
	char	   *to_number;
	char	   *body;			/* NULL when absent */
	char	   *status_callback;	/* NULL when absent */
	int			nmedia;
	char	  **media;
	int			nparams;
	char	  **param_names;
	char	  **param_values;
	int			validity_s;		/* ValidityPeriod to send, 0 for none */
	bool		unconfirmed;	/* an earlier attempt may have reached Twilio */
	TimestampTz unconfirmed_since;	/* the first such attempt was claimed then */
	bool		content_sid;	/* a template (params has ContentSid) */
	bool		expired;		/* past expires_at: only looked up, never sent */
	bool		opted_out;		/* to_number is in twilio_opt_outs: fail, never send */
	int32		priority;		/* where it stands in the claim's order */
	TimestampTz next_attempt_at;
} TobClaimedRow;

/* Where the last claim of a pool and kind ended: the last row it took. */
typedef struct TobClaimCursor
{
	bool		valid;
	int32		priority;
	TimestampTz next_attempt_at;
	int64		id;
} TobClaimCursor;

/* An outcome to write back. */
typedef struct TobRecord
{
	int64		id;
	const char *status;			/* sent, retrying, failed, or queued (attempt given back) */
	int			attempts;		/* the row's attempts from now on */
	bool		unconfirmed;	/* Twilio may have it: look it up before sending */
	TimestampTz unconfirmed_since;	/* when it became so (kept if it already was) */
	char	   *sid;
	char	   *delivery_status;
	int			http_status;	/* 0: NULL */
	int			error_code;		/* 0: NULL */
	char	   *error;
	TimestampTz at;				/* when the answer came */
	TimestampTz next_attempt_at;
} TobRecord;

/*
 * The rows of twilio_pools: all of them (names NULL), in strcmp's order of
 * their names, or those of the nnames names (the others are gone).
 */
extern int	tob_load_pools(const char *schema, char (*names)[TOB_POOL_NAME_LEN], int nnames,
						   TobPoolConfig **pools);

/*
 * Lock up to limit due rows of a pool, messages or calls, best first
 * (FOR UPDATE SKIP LOCKED); with a valid cursor only rows after it in that
 * order, or of a higher priority.
 */
extern int	tob_claim_candidates(const char *schema, const char *pool, bool calls, int limit,
								 const TobClaimCursor *after, TobClaimedRow **rows);

/* A call to cancel at Twilio (twilio_cancel), and what came of it. */
typedef struct TobCancel
{
	int64		id;
	char	   *sid;
	const char *delivery_status;	/* the call's status when Twilio canceled it, else NULL */
	int			http_status;
	char	   *error;			/* why Twilio did not, NULL when it did */
	bool		done;			/* false: try again (a fault) */
} TobCancel;

/*
 * Up to limit calls whose cancel was requested and that Twilio has (sent,
 * with a sid), other than the nkeep ids of keep; cancel requests of rows
 * that ended otherwise are dropped.
 */
extern int	tob_load_cancels(const char *schema, const int64 *keep, int nkeep, int limit,
							 TobCancel **cancels);

/* Record what came of cancel requests (done ones only). */
extern void tob_record_cancels(const char *schema, const TobCancel *cancels, int n);

/* Turn locked rows into sending, with their attempts from now on. */
extern void tob_mark_sending(const char *schema, const int64 *ids, const int *attempts, int n);

/* Write outcomes back in one statement. */
extern void tob_record(const char *schema, const TobRecord *records, int n);

/* Which of the sids are already recorded on a row. */
extern void tob_sids_in_use(const char *schema, char **sids, int n, bool *in_use);

/* Queued and retrying rows past expires_at become expired; returns how many. */
extern int	tob_expire_due(const char *schema);

/*
 * Rows in sending other than the `nkeep` ids of `keep` (those the worker
 * has in flight or still to record) have no request: they become retrying
 * and unconfirmed, to be looked up at Twilio after settle_us before they
 * are sent again.  Returns how many.
 */
extern int	tob_recover_sending(const char *schema, const int64 *keep, int nkeep, int64 settle_us);

/*
 * Once a second: end timed pool pauses that are over, trim the error log,
 * and delete finished rows and applied callbacks older than retention_s
 * (0: keep them; see retention.h).  Returns how many outbox rows were
 * deleted.
 */
extern int	tob_housekeeping(const char *schema, int retention_s);

/*
 * Once a second: fold the +1/-1 rows the outbox's triggers appended to
 * _twilio_pending_counts and _twilio_recent_counts (src/counts.c) into one
 * row per group, and drop recent minutes past TOB_RECENT_HORIZON_S and
 * seconds past TOB_RECENT_SECONDS_S.
 * Returns how many rows were folded (each leaves a dead tuple behind).
 */
extern int	tob_fold_counts(const char *schema);

#endif							/* TOB_QUEUE_H */
