/*-------------------------------------------------------------------------
 *
 * http.c
 *		The worker's HTTP client, on libcurl's multi interface driven by
 *		curl_multi_socket_action() and a WaitEventSet that holds the
 *		worker's latch, the postmaster-death event and libcurl's sockets.
 *		So the worker sleeps in one place and wakes for whichever comes
 *		first: a commit, an answer, or a timer.
 *
 * libcurl's callbacks must never raise a PostgreSQL error (a longjmp
 * through libcurl leaves it in pieces), so they only touch malloc'ed
 * buffers of fixed capacity and plain variables; everything that can fail
 * the PostgreSQL way happens outside them.
 *
 * A POST body is handed to libcurl through a read callback whose seek
 * callback refuses to rewind.  libcurl otherwise silently sends the request
 * again when a reused keep-alive connection turns out to be closed after the
 * body went out; for a Messages request that can text a customer twice.
 * Refusing the rewind turns that case into an error the failure policy sees.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "http.h"
#include "settings.h"

_Static_assert(LIBCURL_VERSION_NUM >= 0x075500, "libcurl 7.85 or later is needed (CURLOPT_PROTOCOLS_STR)");

#define MAX_WATCHED 2048

/* One request in flight.  malloc'ed: libcurl's callbacks write into it. */
typedef struct Transfer
{
	CURL	   *easy;
	int64		id;
	char	   *form;
	size_t		form_len;
	size_t		form_sent;
	struct curl_slist *headers;
	char	   *body;			/* body_cap bytes, grown up to max_body */
	size_t		body_len;
	size_t		body_cap;
	size_t		max_body;
	int			retry_after_s;
	int			concurrent_requests;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

/* A socket libcurl asked us to watch, and for what. */
typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
	int			pos;			/* position in wait_set, -1 when not added */
	bool		dirty;			/* `what` changed since it was added */
} WatchedSocket;

typedef struct ReadySocket
{
	curl_socket_t fd;
	int			mask;			/* CURL_CSELECT_* */
} ReadySocket;

static CURLM *multi = NULL;
static int	in_flight = 0;
static Transfer *finished = NULL;	/* the last result handed out */

static WatchedSocket watched[MAX_WATCHED];
static int	nwatched = 0;
static bool set_stale = true;	/* sockets came or went: rebuild wait_set */
static WaitEventSet *wait_set = NULL;
static ReadySocket ready[MAX_WATCHED];
static int	nready = 0;

static bool timer_armed = false;
static TimestampTz timer_deadline = 0;

static char user_agent[64];

/*---- libcurl callbacks: no palloc, no ereport ----*/

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nwatched; i++)
		if (watched[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nwatched)
		{
			watched[i] = watched[--nwatched];
			set_stale = true;
		}
	}
	else if (i < nwatched)
	{
		if (watched[i].what != what)
		{
			watched[i].what = what;
			watched[i].dirty = true;
		}
	}
	else if (nwatched < MAX_WATCHED)
	{
		watched[nwatched].fd = fd;
		watched[nwatched].what = what;
		watched[nwatched].pos = -1;
		watched[nwatched].dirty = false;
		nwatched++;
		set_stale = true;
	}
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_armed = timeout_ms >= 0;
	if (timer_armed)
		timer_deadline = GetCurrentTimestamp() + (TimestampTz) timeout_ms * 1000;
	return 0;
}

static size_t
read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	Transfer   *t = arg;
	size_t		n = Min(size * nitems, t->form_len - t->form_sent);

	memcpy(buf, t->form + t->form_sent, n);
	t->form_sent += n;
	return n;
}

static int
seek_cb(void *arg, curl_off_t offset, int origin)
{
	/* never send a body twice; see the file header */
	return CURL_SEEKFUNC_FAIL;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	Transfer   *t = arg;
	size_t		n = size * nmemb;
	size_t		keep = Min(n, t->max_body - t->body_len);

	/* keep the first max_body bytes, read and drop the rest */
	if (t->body_len + keep > t->body_cap)
	{
		size_t		cap = Min(t->max_body, Max(t->body_cap * 2, t->body_len + keep));
		char	   *body = realloc(t->body, cap);

		if (body == NULL)
			return 0;			/* abort the transfer: an error, not a short body */
		t->body = body;
		t->body_cap = cap;
	}
	memcpy(t->body + t->body_len, data, keep);
	t->body_len += keep;
	return n;
}

/* The value of header `name` in a header line, trimmed, or NULL. */
static char *
header_value(char *line, size_t n, const char *name, char *buf, size_t bufsize)
{
	size_t		len = strlen(name);
	char	   *value;
	char	   *end;

	if (n <= len || n >= bufsize || pg_strncasecmp(line, name, len) != 0 || line[len] != ':')
		return NULL;
	memcpy(buf, line, n);
	buf[n] = '\0';
	for (value = buf + len + 1; *value == ' ' || *value == '\t'; value++)
		;
	for (end = value + strlen(value); end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '); end--)
		*(end - 1) = '\0';
	return value;
}

static size_t
header_cb(char *data, size_t size, size_t nitems, void *arg)
{
	Transfer   *t = arg;
	size_t		n = size * nitems;
	char		line[128];
	char	   *value;
	char	   *end;
	long		number;
	time_t		when;

	if ((value = header_value(data, n, "Retry-After", line, sizeof(line))) != NULL)
	{
		/* delay-seconds, or an HTTP date */
		number = strtol(value, &end, 10);
		if (end != value && *end == '\0')
			t->retry_after_s = (int) Max(0, Min(number, 86400));
		else if ((when = curl_getdate(value, NULL)) != -1)
			t->retry_after_s = (int) Max(0, Min(when - time(NULL), 86400));
	}
	else if ((value = header_value(data, n, "Twilio-Concurrent-Requests", line, sizeof(line))) != NULL)
	{
		number = strtol(value, &end, 10);
		if (end != value && *end == '\0' && number >= 0)
			t->concurrent_requests = (int) Min(number, 1000000);
	}
	return n;
}

/*---- setup ----*/

static void
tob_http_exit(int code, Datum arg)
{
	if (multi != NULL)
		curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}

#define CHECK_MULTI(call) \
	do { CURLMcode rc_ = (call); \
		if (rc_ != CURLM_OK) \
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), \
							errmsg("libcurl multi call failed: %s", curl_multi_strerror(rc_)))); \
	} while (0)

#define CHECK_EASY(call) \
	do { CURLcode rc_ = (call); \
		if (rc_ != CURLE_OK) \
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), \
							errmsg("libcurl option could not be set: %s", curl_easy_strerror(rc_)))); \
	} while (0)

void
tob_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("could not create a libcurl multi handle")));
	on_proc_exit(tob_http_exit, (Datum) 0);

	CHECK_MULTI(curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb));
	CHECK_MULTI(curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb));
	snprintf(user_agent, sizeof(user_agent), "twilio_outbox/%s libcurl/%s",
			 TWILIO_OUTBOX_VERSION, curl_version_info(CURLVERSION_NOW)->version);
	tob_http_configure();
}

void
tob_http_configure(void)
{
	/* one connection per request in flight, kept alive for the next ones */
	CHECK_MULTI(curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) tob_max_concurrency));
	CHECK_MULTI(curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) tob_max_concurrency));
}

/*---- requests ----*/

static void
free_transfer(Transfer *t)
{
	if (t->easy)
		curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t->form);
	free(t->body);
	free(t);
}

void
tob_http_start(int64 id, const char *url, const char *user, const char *password,
			   const char *form, size_t max_body)
{
	Transfer   *t = calloc(1, sizeof(Transfer));
	CURL	   *easy;

	if (t == NULL || (t->form = strdup(form ? form : "")) == NULL ||
		(t->body = malloc(Min(max_body, TOB_HTTP_MAX_BODY))) == NULL ||
		(t->easy = curl_easy_init()) == NULL)
	{
		if (t)
			free_transfer(t);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory for an HTTP request")));
	}
	t->id = id;
	t->form_len = strlen(t->form);
	t->body_cap = Min(max_body, TOB_HTTP_MAX_BODY);
	t->max_body = max_body;
	t->retry_after_s = -1;
	t->concurrent_requests = -1;
	t->headers = curl_slist_append(NULL, "Accept: application/json");
	if (form != NULL)
		t->headers = curl_slist_append(t->headers, "Content-Type: application/x-www-form-urlencoded");
	t->headers = curl_slist_append(t->headers, "Expect:");
	easy = t->easy;

	PG_TRY();
	{
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_PRIVATE, t));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_URL, url));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http"));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L));
		if (tob_ca_file[0] != '\0')
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_CAINFO, tob_ca_file));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) tob_request_timeout_ms));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(tob_request_timeout_ms, 5000)));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_USERNAME, user));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_PASSWORD, password));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_USERAGENT, user_agent));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers));
		if (form != NULL)
		{
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_POST, 1L));
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) t->form_len));
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_cb));
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_READDATA, t));
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_cb));
			CHECK_EASY(curl_easy_setopt(easy, CURLOPT_SEEKDATA, t));
		}
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_WRITEDATA, t));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_HEADERDATA, t));
		CHECK_EASY(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf));
		CHECK_MULTI(curl_multi_add_handle(multi, easy));
	}
	PG_CATCH();
	{
		free_transfer(t);
		PG_RE_THROW();
	}
	PG_END_TRY();
	in_flight++;
}

int
tob_http_in_flight(void)
{
	return in_flight;
}

void
tob_http_perform(void)
{
	int			running;
	int			i;
	int			rounds;

	for (i = 0; i < nready; i++)
		(void) curl_multi_socket_action(multi, ready[i].fd, ready[i].mask, &running);
	nready = 0;

	/* a timer libcurl set to "now" while acting is served right away */
	for (rounds = 0; rounds < 16 && timer_armed && timer_deadline <= GetCurrentTimestamp(); rounds++)
	{
		timer_armed = false;
		(void) curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/* Were none of the request's bytes sent?  Then Twilio cannot have it. */
static bool
never_sent(CURL *easy, CURLcode rc)
{
	long		request_size = 0;

	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return true;
		default:
			break;
	}
	(void) curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
	return request_size == 0;
}

bool
tob_http_next_result(TobHttpResult *result)
{
	CURLMsg    *msg;
	int			left;
	Transfer   *t;

	if (finished != NULL)
	{
		free_transfer(finished);
		finished = NULL;
	}
	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
			break;
	}
	if (msg == NULL)
		return false;

	(void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
	memset(result, 0, sizeof(*result));
	result->id = t->id;
	result->retry_after_s = t->retry_after_s;
	result->concurrent_requests = t->concurrent_requests;
	result->finished_at = GetCurrentTimestamp();
	{
		curl_off_t	total_us = 0;

		(void) curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
		result->elapsed_us = (int64) total_us;
	}
	if (msg->data.result == CURLE_OK)
	{
		(void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &result->status);
		result->body = t->body;
		result->body_len = t->body_len;
	}
	else
	{
		result->maybe_sent = !never_sent(t->easy, msg->data.result);
		result->timed_out = msg->data.result == CURLE_OPERATION_TIMEDOUT;
		snprintf(result->error, sizeof(result->error), "%s%s%s",
				 curl_easy_strerror(msg->data.result),
				 t->errbuf[0] ? ": " : "", t->errbuf);
	}

	curl_multi_remove_handle(multi, t->easy);
	in_flight--;
	finished = t;				/* freed on the next call: the body is the caller's till then */
	return true;
}

/*---- waiting ----*/

long
tob_http_timeout_ms(void)
{
	TimestampTz now;

	if (!timer_armed)
		return -1;
	now = GetCurrentTimestamp();
	return timer_deadline <= now ? 0 : (long) ((timer_deadline - now + 999) / 1000);
}

static uint32
wait_events_for(int what)
{
	switch (what)
	{
		case CURL_POLL_IN:
			return WL_SOCKET_READABLE;
		case CURL_POLL_OUT:
			return WL_SOCKET_WRITEABLE;
		default:
			return WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE;
	}
}

/* Bring wait_set up to date with the sockets libcurl watches. */
static void
prepare_wait_set(void)
{
	int			i;

	if (set_stale || wait_set == NULL)
	{
		if (wait_set != NULL)
			FreeWaitEventSet(wait_set);
		wait_set = TOB_CREATE_WAIT_EVENT_SET(nwatched + 2);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < nwatched; i++)
		{
			watched[i].pos = AddWaitEventToSet(wait_set, wait_events_for(watched[i].what),
											   watched[i].fd, NULL, NULL);
			watched[i].dirty = false;
		}
		set_stale = false;
		return;
	}
	for (i = 0; i < nwatched; i++)
		if (watched[i].dirty)
		{
			ModifyWaitEvent(wait_set, watched[i].pos, wait_events_for(watched[i].what), NULL);
			watched[i].dirty = false;
		}
}

int
tob_http_wait(long timeout_ms, uint32 wait_event_info)
{
	WaitEvent	events[64];
	long		curl_ms = tob_http_timeout_ms();
	int			n;
	int			i;
	int			seen = 0;

	if (curl_ms >= 0 && curl_ms < timeout_ms)
		timeout_ms = curl_ms;
	prepare_wait_set();
	n = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events), wait_event_info);
	for (i = 0; i < n; i++)
	{
		seen |= events[i].events;
		if ((events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)) && nready < MAX_WATCHED)
		{
			ready[nready].fd = events[i].fd;
			ready[nready].mask = ((events[i].events & WL_SOCKET_READABLE) ? CURL_CSELECT_IN : 0) |
				((events[i].events & WL_SOCKET_WRITEABLE) ? CURL_CSELECT_OUT : 0);
			nready++;
		}
	}
	if (n == 0)
		seen |= WL_TIMEOUT;
	return seen;
}
