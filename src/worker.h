/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The sender background worker.
 *
 * IDENTIFICATION
 *	  src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_WORKER_H
#define TOB_WORKER_H

#include "compat.h"

extern void tob_register_worker(void);
/* Signals, database connection and search_path for a worker of ours. */
extern void tob_bgworker_connect(const char *name);

/* Register a background worker of ours running function_name, named name. */
extern void tob_register_bgworker(const char *function_name, const char *name);

extern PGDLLEXPORT TOB_NORETURN_PREFIX void twilio_outbox_worker_main(Datum main_arg) TOB_NORETURN_SUFFIX;

#endif							/* TOB_WORKER_H */
