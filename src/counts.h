/*-------------------------------------------------------------------------
 *
 * counts.h
 *		The outbox's counts for the monitoring views (src/counts.c): the
 *		pending rows and the rows finished recently, kept by row triggers
 *		in _twilio_pending_counts and _twilio_recent_counts and folded by
 *		the worker (tob_fold_counts, src/queue.c).
 *
 * IDENTIFICATION
 *	  src/counts.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_COUNTS_H
#define TOB_COUNTS_H

/*
 * Rows that finished (sent, failed) more than this long before the writing
 * transaction began are not counted in _twilio_recent_counts, and the fold
 * drops its minutes older than this.  The views read the last hour; the
 * other hour is a margin for readers whose now() lags their snapshot.
 * Also in the update and delete triggers' WHEN clauses (twilio_outbox--*.sql).
 */
#define TOB_RECENT_HORIZON_S 7200

/*
 * The fold keeps sent rows' counts by second as well for this long (the
 * views' last minute and a margin); by minute only after that.
 */
#define TOB_RECENT_SECONDS_S 120

/* count rows folded a second at most, per table (tob_fold_counts) */
#define TOB_FOLD_ROWS 100000

#endif							/* TOB_COUNTS_H */
