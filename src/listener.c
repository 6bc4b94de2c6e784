/*-------------------------------------------------------------------------
 *
 * listener.c
 *		The webhook listener: serves POST /twilio/status and POST
 *		/twilio/inbound with libmicrohttpd, acknowledging a callback once
 *		it is stored in twilio_inbox.  The sender worker applies it later.
 *
 * Threads: none.  PostgreSQL's backend code is not thread-safe, so the
 * daemon runs in "external select" mode with epoll: its epoll descriptor
 * sits in a WaitEventSet beside the latch, and MHD_run() is called from
 * this process' only thread.  libmicrohttpd's callbacks therefore run on
 * this thread too, but inside libmicrohttpd's stack, so they never call
 * anything that can ereport (no palloc): they malloc, collect the body and
 * suspend the connection.  After MHD_run() returns, every request that
 * arrived in that turn is checked and the accepted ones are stored in ONE
 * transaction; then each connection is resumed, and the next MHD_run()
 * sends its answer (a response may only be queued from the access handler).
 *
 * Answers: 200 (status; empty body), 200 with an empty TwiML <Response/>
 * (inbound), 403 for a signature that does not match (nothing stored), 404
 * for other paths, 405 for other methods, 413 for a body over 64 kB, 415 for
 * a body that is not form-encoded, 400 for a malformed one, 503 while the
 * extension does not exist or a store fails (Twilio may retry).
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/listener.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bgworker.h"
#include "compat.h"
#include "form.h"
#include "inbox.h"
#include "listener.h"
#include "settings.h"
#include "shmem.h"

#define MAX_BODY			(64 * 1024)
#define HTTP_TOO_LARGE		413	/* named differently across libmicrohttpd versions */
#define MAX_SLEEP_MS		1000
#define SCHEMA_RECHECK_US	1000000
/*
 * Connections: at most CONNECTION_LIMIT in all and CONNECTIONS_PER_CLIENT
 * from one address, so that a few slow or idle clients cannot crowd out
 * Twilio; one that sends nothing for CONNECTION_TIMEOUT_S is closed.
 * Twilio sends its request as soon as it is connected and gives up on the
 * whole exchange after 15 s, so a connection idle for 10 s serves nobody.
 * (A suspended connection, waiting for its store, does not time out.)
 */
#define CONNECTION_LIMIT	1000
#define CONNECTIONS_PER_CLIENT 50
#define CONNECTION_TIMEOUT_S 10

static const char twiml_empty[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/* One request, malloc'd: libmicrohttpd's callbacks must not palloc. */
typedef struct TobRequest
{
	const char *kind;			/* "status" or "inbound" */
	const char *path;
	char	   *body;
	size_t		len;
	size_t		cap;
	char	   *signature;		/* X-Twilio-Signature, NULL when absent */
	char	   *token;			/* I-Twilio-Idempotency-Token, NULL when absent */
	int			answer;			/* HTTP status to answer, 0 until decided */
	bool		suspended;
	struct MHD_Connection *conn;
	struct TobRequest *next;	/* in the waiting list */
} TobRequest;

static struct MHD_Daemon *daemon_ = NULL;
static TobRequest *waiting = NULL;	/* suspended, to be checked and stored */
static TobRequest **waiting_tail = &waiting;
static int	nwaiting = 0;
static struct MHD_Response *resp_status = NULL;
static struct MHD_Response *resp_inbound = NULL;
static struct MHD_Response *resp_plain[600];	/* by status: error answers */
static char *schema = NULL;		/* quoted, TopMemoryContext; NULL: no extension */
static TimestampTz schema_checked_at = 0;
static bool warned_unconfigured = false;

void
tob_register_listener(void)
{
	if (tob_webhook_listen == NULL || tob_webhook_listen[0] == '\0')
		return;
	tob_register_bgworker("twilio_outbox_listener_main", "twilio_outbox webhooks");
}

/*---- libmicrohttpd callbacks: no ereport, no palloc ----*/

static void
free_request(TobRequest *req)
{
	free(req->body);
	free(req->signature);
	free(req->token);
	free(req);
}

static char *
header_copy(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);

	return v ? strdup(v) : NULL;
}

static enum MHD_Result
queue_answer(struct MHD_Connection *conn, TobRequest *req)
{
	struct MHD_Response *resp;

	if (req->answer == MHD_HTTP_OK)
		resp = strcmp(req->kind, "inbound") == 0 ? resp_inbound : resp_status;
	else
		resp = resp_plain[req->answer];
	return MHD_queue_response(conn, req->answer, resp);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
		   const char *method, const char *version, const char *upload_data,
		   size_t *upload_data_size, void **con_cls)
{
	TobRequest *req = *con_cls;

	if (req == NULL)
	{
		const char *ctype;

		req = calloc(1, sizeof(TobRequest));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		req->conn = conn;
		req->kind = tob_webhook_kind(url);
		req->path = url;
		ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			req->answer = MHD_HTTP_METHOD_NOT_ALLOWED;
		else if (req->kind == NULL)
			req->answer = MHD_HTTP_NOT_FOUND;
		else if (ctype == NULL ||
				 strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0)
			req->answer = MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->answer != 0)
			return MHD_YES;		/* already refused: drain the body */
		if (req->len + n > MAX_BODY)
		{
			req->answer = HTTP_TOO_LARGE;
			return MHD_YES;
		}
		if (req->len + n + 1 > req->cap)
		{
			size_t		cap = Max(req->cap * 2, Min(MAX_BODY + 1, req->len + n + 1024));
			char	   *body = realloc(req->body, cap);

			if (body == NULL)
				return MHD_NO;
			req->body = body;
			req->cap = cap;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		return MHD_YES;
	}

	/* the whole request is here */
	if (req->answer != 0)
		return queue_answer(conn, req);
	if (!req->suspended)
	{
		req->signature = header_copy(conn, "X-Twilio-Signature");
		req->token = header_copy(conn, "I-Twilio-Idempotency-Token");
		req->suspended = true;
		req->next = NULL;
		*waiting_tail = req;
		waiting_tail = &req->next;
		nwaiting++;
		MHD_suspend_connection(conn);
		return MHD_YES;
	}
	/* resumed without an answer: cannot happen */
	req->answer = MHD_HTTP_INTERNAL_SERVER_ERROR;
	return queue_answer(conn, req);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	TobRequest *req = *con_cls;

	if (req != NULL)
		free_request(req);
	*con_cls = NULL;
}

/*---- checking and storing, in the worker's own code ----*/

/* The URL Twilio signed: the public URL (without a trailing slash) + path. */
static char *
signed_url(const char *path)
{
	int			len = strlen(tob_webhook_public_url);

	while (len > 0 && tob_webhook_public_url[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", len, tob_webhook_public_url, path);
}

/*
 * Check every waiting request and store the accepted ones in one
 * transaction; decide each answer.  Runs in the worker's memory context,
 * which the caller resets.
 */
static void
check_and_store(TobRequest **reqs, int n)
{
	const char **kinds = palloc(sizeof(char *) * n);
	const char **jsons = palloc(sizeof(char *) * n);
	const char **tokens = palloc(sizeof(char *) * n);
	TobRequest **accepted = palloc(sizeof(TobRequest *) * n);
	int			naccepted = 0;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	tob_xact_begin("twilio_outbox: storing webhooks");
	if (schema == NULL || now - schema_checked_at >= SCHEMA_RECHECK_US)
	{
		char	   *found = tob_extension_schema();

		if (schema)
			pfree(schema);
		schema = found ? MemoryContextStrdup(TopMemoryContext, found) : NULL;
		schema_checked_at = now;
	}
	if (schema == NULL)
	{
		tob_xact_end();
		for (i = 0; i < n; i++)
			reqs[i]->answer = MHD_HTTP_SERVICE_UNAVAILABLE;
		return;
	}
	if ((tob_auth_token_value()[0] == '\0' || tob_webhook_public_url[0] == '\0') && !warned_unconfigured)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("twilio_outbox webhook listener refuses every callback: twilio_outbox.auth_token or twilio_outbox.webhook_public_url is not set"),
				 errhint("Set both and reload; callbacks are answered 403 until then.")));
		warned_unconfigured = true;
	}

	for (i = 0; i < n; i++)
	{
		TobRequest *req = reqs[i];
		TobParam   *params;
		int			nparams = tob_form_parse(req->body ? req->body : "", req->len, &params);
		StringInfoData json;

		if (nparams < 0)
		{
			req->answer = MHD_HTTP_BAD_REQUEST;
			pg_atomic_fetch_add_u64(&tob_shared->webhooks.errors, 1);
			continue;
		}
		if (tob_webhook_public_url[0] == '\0' ||
			!tob_webhook_verify(signed_url(req->path), params, nparams, req->signature))
		{
			if (tob_webhook_public_url[0] == '\0')
			{
				pg_atomic_fetch_add_u64(&tob_shared->webhooks.requests, 1);
				pg_atomic_fetch_add_u64(&tob_shared->webhooks.rejected, 1);
			}
			req->answer = MHD_HTTP_FORBIDDEN;
			continue;
		}
		initStringInfo(&json);
		tob_params_json(&json, params, nparams);
		kinds[naccepted] = req->kind;
		jsons[naccepted] = json.data;
		tokens[naccepted] = req->token;
		accepted[naccepted++] = req;
	}
	(void) tob_inbox_store(schema, naccepted, kinds, jsons, tokens);
	tob_xact_end();
	for (i = 0; i < naccepted; i++)
		accepted[i]->answer = MHD_HTTP_OK;
}

/* Check and store what arrived, then let each connection answer. */
static void
answer_waiting(MemoryContext cxt)
{
	TobRequest **reqs;
	TobRequest *req;
	int			n = 0;
	int			i;

	if (nwaiting == 0)
		return;
	reqs = palloc(sizeof(TobRequest *) * nwaiting);
	for (req = waiting; req; req = req->next)
		reqs[n++] = req;
	waiting = NULL;
	waiting_tail = &waiting;
	nwaiting = 0;

	PG_TRY();
	{
		check_and_store(reqs, n);
	}
	PG_CATCH();
	{
		/* nothing was stored: Twilio may try again */
		tob_xact_report_and_abort(cxt);
		pg_atomic_fetch_add_u64(&tob_shared->webhooks.errors, n);
		for (i = 0; i < n; i++)
			if (reqs[i]->answer == 0 || reqs[i]->answer == MHD_HTTP_OK)
				reqs[i]->answer = MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		if (reqs[i]->answer == 0)
			reqs[i]->answer = MHD_HTTP_SERVICE_UNAVAILABLE;
		MHD_resume_connection(reqs[i]->conn);
	}
}

/*---- setup ----*/

static struct MHD_Response *
fixed_response(const char *body, const char *content_type)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_PERSISTENT);

	if (resp == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return resp;
}

static void
make_responses(void)
{
	static const int codes[] = {400, 403, 404, 405, 413, 415, 500, 503};
	int			i;

	resp_status = fixed_response("", NULL);
	resp_inbound = fixed_response(twiml_empty, "text/xml");
	for (i = 0; i < lengthof(codes); i++)
		resp_plain[codes[i]] = fixed_response("", NULL);
}

static void
start_daemon(void)
{
	char		host[256];
	int			port;
	char		port_text[16];
	struct addrinfo hints;
	struct addrinfo *addrs = NULL;
	struct sockaddr_storage addr;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	int			rc;

	if (!tob_parse_listen(tob_webhook_listen, host, &port))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid twilio_outbox.webhook_listen \"%s\"", tob_webhook_listen)));
	snprintf(port_text, sizeof(port_text), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port_text, &hints, &addrs);
	if (rc != 0 || addrs == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not resolve twilio_outbox.webhook_listen host \"%s\": %s",
						host, gai_strerror(rc))));
	memset(&addr, 0, sizeof(addr));
	memcpy(&addr, addrs->ai_addr, Min(addrs->ai_addrlen, sizeof(addr)));
	if (addrs->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	freeaddrinfo(addrs);

	daemon_ = MHD_start_daemon(flags, (uint16) port, NULL, NULL, on_request, NULL,
							   MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
							   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
							   MHD_OPTION_CONNECTION_LIMIT, (unsigned int) CONNECTION_LIMIT,
							   MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) CONNECTIONS_PER_CLIENT,
							   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) CONNECTION_TIMEOUT_S,
							   MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
							   MHD_OPTION_END);
	if (daemon_ == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("twilio_outbox webhook listener could not listen on \"%s\"", tob_webhook_listen),
				 errhint("Check that the address is local and the port is free; the listener tries again in 10 seconds.")));
}

static void
listener_detach(int code, Datum arg)
{
	if (daemon_)
	{
		/* nothing is suspended here: every turn answers what it suspended */
		MHD_stop_daemon(daemon_);
		daemon_ = NULL;
	}
	SpinLockAcquire(&tob_shared->mutex);
	if (tob_shared->listener_pid == MyProcPid)
		tob_shared->listener_pid = 0;
	SpinLockRelease(&tob_shared->mutex);
}

void
twilio_outbox_listener_main(Datum main_arg)
{
	MemoryContext turn_cxt;
	WaitEventSet *wait_set;
	const union MHD_DaemonInfo *info;
	uint32		wait_event;

	tob_require_shmem();
	tob_bgworker_connect("twilio_outbox webhooks");
	wait_event = TOB_WAIT_EVENT("TwilioOutboxWebhooks");

	make_responses();
	start_daemon();
	SpinLockAcquire(&tob_shared->mutex);
	tob_shared->listener_pid = MyProcPid;
	SpinLockRelease(&tob_shared->mutex);
	before_shmem_exit(listener_detach, (Datum) 0);

	info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL)
		elog(ERROR, "libmicrohttpd has no epoll descriptor");
	wait_set = TOB_CREATE_WAIT_EVENT_SET(3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);

	turn_cxt = AllocSetContextCreate(TopMemoryContext, "twilio_outbox webhooks turn",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("twilio_outbox webhook listener started on %s", tob_webhook_listen)));

	while (!ShutdownRequestPending)
	{
		MemoryContext old;
		WaitEvent	event;
		MHD_UNSIGNED_LONG_LONG mhd_ms;
		long		sleep_ms = MAX_SLEEP_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			tob_bgworker_reload();
			tob_load_secrets();
			warned_unconfigured = false;
		}

		/* read, parse and suspend what arrived; send what was answered */
		MHD_run(daemon_);
		if (nwaiting > 0)
		{
			old = MemoryContextSwitchTo(turn_cxt);
			answer_waiting(turn_cxt);
			MemoryContextSwitchTo(old);
			MemoryContextReset(turn_cxt);
			pgstat_report_activity(STATE_IDLE, NULL);
			continue;			/* the resumed connections answer at once */
		}

		if (MHD_get_timeout(daemon_, &mhd_ms) == MHD_YES)
			sleep_ms = Min(sleep_ms, (long) mhd_ms);
		(void) WaitEventSetWait(wait_set, sleep_ms, &event, 1, wait_event);
		ResetLatch(MyLatch);
	}

	/*
	 * Non-zero, like every worker of ours: exit 0 would unregister the
	 * listener, and after a pg_terminate_backend it would stay away until
	 * the server restarts.  At shutdown the postmaster restarts nothing.
	 */
	ereport(LOG, (errmsg("twilio_outbox webhook listener shutting down")));
	proc_exit(1);
}
