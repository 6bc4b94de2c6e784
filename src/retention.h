/*-------------------------------------------------------------------------
 *
 * retention.h
 *		Deleting rows past twilio_outbox.retention: finished outbox rows
 *		and applied callbacks, oldest first, in batches timed to disturb
 *		nothing.  Runs inside a transaction opened with tob_xact_begin.
 *
 * IDENTIFICATION
 *	  src/retention.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_RETENTION_H
#define TOB_RETENTION_H

#define TOB_RETENTION_BATCH 1000	/* rows per statement at first, and at least */
#define TOB_RETENTION_BATCH_MAX 50000
#define TOB_RETENTION_STATEMENT_MS 10	/* a batch is sized to take about this long */
#define TOB_RETENTION_ROUND_MS 50	/* one call starts no batch after this long */
#define TOB_RETENTION_RESCAN_S 3600	/* from the oldest row again at least this often, */
#define TOB_RETENTION_RESCAN_DEAD 100000	/* when the table has fewer dead rows */

/*
 * Delete finished outbox rows (sent, failed, expired, canceled) whose
 * finished_at is older than retention_s (0: keep them), oldest first, in
 * batches sized to take TOB_RETENTION_STATEMENT_MS, until none is left or
 * TOB_RETENTION_ROUND_MS have passed.  Returns how many rows were deleted.
 */
extern int	tob_retention_trim_outbox(const char *schema, int retention_s);

/* The same for applied twilio_inbox rows, by received_at. */
extern int	tob_retention_trim_inbox(const char *schema, int retention_s);

#endif							/* TOB_RETENTION_H */
