/*-------------------------------------------------------------------------
 *
 * queue.h
 *		The worker's SQL access to the outbox: short transactions that find
 *		the extension, claim due rows and record outcomes.
 *
 * IDENTIFICATION
 *	  src/queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_QUEUE_H
#define TOB_QUEUE_H

/* Open a transaction with SPI and a snapshot; activity shows in pg_stat_activity. */
extern void tob_xact_begin(const char *activity);
/* Close what tob_xact_begin opened, committing. */
extern void tob_xact_end(void);

/*
 * The schema twilio_outbox is installed in, quoted for SQL and allocated in
 * the caller's context, or NULL while the extension does not exist (or is
 * being created or dropped).  Caller must be inside tob_xact_begin/end.
 */
extern char *tob_extension_schema(void);

#endif							/* TOB_QUEUE_H */
