/*-------------------------------------------------------------------------
 *
 * http.h
 *		The worker's HTTP client: many POSTs in flight over libcurl's multi
 *		interface, with keep-alive connections reused.
 *
 * IDENTIFICATION
 *	  src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_HTTP_H
#define TOB_HTTP_H

#include "datatype/timestamp.h"
#include "storage/latch.h"

#define TOB_HTTP_MAX_BODY (64 * 1024)	/* bytes of an answer kept, by default */

/* What became of one request. */
typedef struct TobHttpResult
{
	int64		id;				/* the caller's id for the request */
	long		status;			/* HTTP status, 0 when no answer came */
	bool		maybe_sent;		/* no answer, and Twilio may have the request */
	bool		timed_out;		/* no answer within request_timeout_ms */
	char		error[256];		/* transport error, empty when an answer came */
	char	   *body;			/* the answer, up to TOB_HTTP_MAX_BODY bytes */
	size_t		body_len;
	int			retry_after_s;	/* Retry-After in seconds, -1 when absent */
	int			concurrent_requests;	/* Twilio-Concurrent-Requests, -1 when absent */
	int64		elapsed_us;		/* how long the request took */
	TimestampTz finished_at;
} TobHttpResult;

/* Set up libcurl; call once in the worker, after connecting. */
extern void tob_http_init(void);

/* Apply the HTTP settings (timeout, concurrency) after a reload. */
extern void tob_http_configure(void);

/*
 * Start a POST of form (application/x-www-form-urlencoded) to url with HTTP
 * Basic credentials, or with form NULL a GET of url.  The strings are
 * copied.  Up to max_body bytes of the answer are kept (the rest is read
 * and dropped).
 */
extern void tob_http_start(int64 id, const char *url, const char *user,
						   const char *password, const char *form, size_t max_body);

/* Requests started and not yet returned by tob_http_next_result. */
extern int	tob_http_in_flight(void);

/* Move transfers along without blocking. */
extern void tob_http_perform(void);

/*
 * Fetch one finished request into *result (its body stays valid until the
 * next call).  Returns false when none is waiting.
 */
extern bool tob_http_next_result(TobHttpResult *result);

/* Milliseconds until libcurl wants to be called again, -1 for no timer. */
extern long tob_http_timeout_ms(void);

/*
 * Wait for the latch, a socket libcurl watches, or timeout_ms, whichever
 * comes first.  Returns the WaitEvent events seen (WL_LATCH_SET etc.).
 */
extern int	tob_http_wait(long timeout_ms, uint32 wait_event_info);

#endif							/* TOB_HTTP_H */
