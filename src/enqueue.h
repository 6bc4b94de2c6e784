/*-------------------------------------------------------------------------
 *
 * enqueue.h
 *		Validating a message and inserting it into the outbox.
 *
 * IDENTIFICATION
 *	  src/enqueue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_ENQUEUE_H
#define TOB_ENQUEUE_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/jsonb.h"

/*
 * The arguments of twilio_enqueue, or of twilio_enqueue_call (is_call, with
 * twiml or url instead of body and media_urls); NULL pointers are SQL NULLs.
 */
typedef struct TobMessage
{
	bool		is_call;
	const char *to_number;
	text	   *body;
	text	   *twiml;			/* calls: the TwiML to run */
	const char *url;			/* calls: or the URL that returns it */
	const char *pool;
	ArrayType  *media_urls;
	bool		has_send_after;
	TimestampTz send_after;
	Interval   *valid_for;
	int32		priority;
	const char *dedup_key;
	const char *status_callback;
	Jsonb	   *params;
} TobMessage;

/*
 * Validate msg and insert it into the outbox of the extension living in
 * schema nsp, in the caller's transaction.  Returns the message id, or the
 * id of the row that already has msg->dedup_key.
 */
extern int64 tob_enqueue(const TobMessage *msg, Oid nsp);

/* Escape text for an XML document (TwiML): & < > " ' */
extern void tob_append_xml_escaped(StringInfo out, const char *s);

#endif							/* TOB_ENQUEUE_H */
