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

#define TOB_ADDRESS_LEN 64		/* a phone number, whatsapp: address or sender id */
#define TOB_NEXT_URI_MAX 4096

/* One item of a list answer: a Message (or a Call) as Twilio lists it. */
typedef struct TobListed
{
	char		sid[TOB_SID_LEN];
	char	   *body;			/* NULL when absent or null */
	char		from[TOB_ADDRESS_LEN];
	char		to[TOB_ADDRESS_LEN];
	char		messaging_service_sid[TOB_SID_LEN];
	char		status[TOB_STATUS_LEN];
	char		date_created[64];	/* RFC 2822, as Twilio gives it */
} TobListed;

#define TOB_LIST_MAX 200

/*
 * Parse a page of GET .../Messages.json (array_name "messages") or
 * .../Calls.json ("calls"): the elements of its top-level array, at most
 * TOB_LIST_MAX, and its next_page_uri (NULL when none; next_page_uri may
 * be NULL when not wanted).  Returns -1 when the body is not such an answer.
 * Never raises an error; strings that are not valid UTF-8 are dropped.
 */
extern int	tob_parse_list(const char *body, size_t len, const char *array_name,
						   TobListed **items, char **next_page_uri);

/* Whether s looks like a Call SID: CA and 32 hex digits. */
extern bool tob_is_call_sid(const char *s);

/* Whether s looks like a Message SID: SM or MM and 32 hex digits. */
extern bool tob_is_message_sid(const char *s);

#endif							/* TOB_RESPONSE_H */
