/*-------------------------------------------------------------------------
 *
 * response.h
 *		Reading Twilio's JSON answers: a Message resource or an error.
 *
 * IDENTIFICATION
 *	  src/response.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_RESPONSE_H
#define TOB_RESPONSE_H

#define TOB_SID_LEN 64
#define TOB_STATUS_LEN 32
#define TOB_MESSAGE_LEN 256

typedef struct TobTwilioResponse
{
	bool		is_object;		/* the body was a well-formed JSON object */
	char		sid[TOB_SID_LEN];	/* "sid", empty when absent or malformed */
	char		status[TOB_STATUS_LEN]; /* "status" of a Message resource */
	int			code;			/* "code" of an error, 0 when absent */
	char		message[TOB_MESSAGE_LEN];	/* "message" of an error */
} TobTwilioResponse;

/*
 * Parse a response body of len bytes (not necessarily NUL-terminated, may
 * contain NULs) with PostgreSQL's JSON parser.  Never raises an error: a
 * body that is not a JSON object leaves is_object false.
 */
extern void tob_parse_response(const char *body, size_t len, TobTwilioResponse *out);

/* One message of a Messages list answer. */
typedef struct TobListedMessage
{
	char		sid[TOB_SID_LEN];
	char	   *body;			/* NULL when absent */
	char		date_created[64];	/* RFC 2822, as Twilio gives it */
} TobListedMessage;

#define TOB_LIST_MAX 200

/*
 * Parse an answer of GET .../Messages.json: the elements of its top-level
 * "messages" array, at most TOB_LIST_MAX.  Returns -1 when the body is not
 * such an answer.  Never raises an error.
 */
extern int	tob_parse_message_list(const char *body, size_t len, TobListedMessage **messages);

/* Whether s looks like a Message SID: SM or MM and 32 hex digits. */
extern bool tob_is_message_sid(const char *s);

#endif							/* TOB_RESPONSE_H */
