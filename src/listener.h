/*-------------------------------------------------------------------------
 *
 * listener.h
 *		The webhook listener: a second background worker serving Twilio's
 *		status callbacks and inbound messages over HTTP.
 *
 * IDENTIFICATION
 *	  src/listener.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_LISTENER_H
#define TOB_LISTENER_H

#include "compat.h"

/* Register the listener when twilio_outbox.webhook_listen is set. */
extern void tob_register_listener(void);

extern PGDLLEXPORT TOB_NORETURN_PREFIX void twilio_outbox_listener_main(Datum main_arg) TOB_NORETURN_SUFFIX;

#endif							/* TOB_LISTENER_H */
