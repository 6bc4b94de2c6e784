/*-------------------------------------------------------------------------
 *
 * bgworker.h
 *		What both background workers (the sender and the webhook listener)
 *		share: registration, connecting with pinned session settings, the
 *		transaction bracket of every database step, and finding the
 *		extension.
 *
 * IDENTIFICATION
 *	  src/bgworker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_BGWORKER_H
#define TOB_BGWORKER_H

/* The schema version this library's workers need (the extension's SQL). */
#define TOB_SCHEMA_VERSION "0.2.0"

/* Register a background worker of ours running function_name, named name. */
extern void tob_register_bgworker(const char *function_name, const char *name);

/*
 * Signals, the connection to twilio_outbox.database, and session settings
 * pinned against database- and role-level ones that would break the
 * worker's transactions.
 */
extern void tob_bgworker_connect(const char *name);

/*
 * Open a transaction with SPI and a snapshot; activity shows in
 * pg_stat_activity.  Results of the SPI helpers are allocated in the
 * memory context that was current here, which is current again after
 * tob_xact_end.
 */
extern void tob_xact_begin(const char *activity);
extern void tob_xact_end(void);
/* After an error: abort the transaction and restore the caller's context. */
extern void tob_xact_abort(void);
/* In a PG_CATCH: log the error, clear it, and abort as tob_xact_abort does. */
extern void tob_xact_report_and_abort(MemoryContext cxt);

/* The memory context tob_xact_begin was called in: where results go. */
extern MemoryContext tob_xact_caller_context(void);

/*
 * VACUUM (TRUNCATE false) schema.table for each of tables, as a statement
 * of its own (outside tob_xact_begin/end: VACUUM runs its own
 * transactions); schema quoted, as tob_extension_lookup returns it.
 * Without the truncation, which would wait for an exclusive lock on a
 * table that is written all the time.
 */
extern void tob_vacuum(const char *schema, const char *const *tables, int ntables);

/*
 * On SIGHUP: the configuration files again, and the server-level
 * default_transaction_read_only (the database's and the role's stay
 * ignored).
 */
extern void tob_bgworker_reload(void);

/*
 * The server is read-only (default_transaction_read_only at server level,
 * as pg_auto_failover sets it on a node that may not yet be the primary):
 * the worker may read but not claim, record or apply anything.
 */
extern bool tob_server_read_only(void);

/*
 * After a commit: may it have stayed local, short of the synchronous
 * standby (the wait for it was cut off by a shutdown or the postmaster's
 * death), or is the process about to stop?  Then nothing it claimed may
 * be sent: the next worker (here, or on the promoted standby) settles it.
 */
extern bool tob_xact_uncertain(void);

/*
 * Within a transaction: the schema twilio_outbox is installed in, quoted
 * for SQL, or NULL while the extension does not exist (or is being created
 * or dropped).  With version non-NULL, also its installed version.
 */
extern char *tob_extension_lookup(char **version);
extern char *tob_extension_schema(void);

/*
 * twilio_outbox.debug_inject_faults: raise an ERROR at the named point
 * when the setting lists it (for the crash and fault tests).
 */
extern void tob_inject_fault(const char *point);

#endif							/* TOB_BGWORKER_H */
