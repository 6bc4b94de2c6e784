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

extern PGDLLEXPORT TOB_NORETURN_PREFIX void twilio_outbox_worker_main(Datum main_arg) TOB_NORETURN_SUFFIX;

#endif							/* TOB_WORKER_H */
