/*-------------------------------------------------------------------------
 *
 * settings.c
 *		Defines the twilio_outbox.* configuration parameters.
 *
 * Secrets (auth_token, api_key_secret) are GUC_SUPERUSER_ONLY and
 * GUC_NO_SHOW_ALL, and a show hook masks them: members of
 * pg_read_all_settings (pg_monitor among them) may read superuser-only
 * settings, so SHOW and current_setting() give "********" to everyone.
 * PostgreSQL itself logs 'parameter "x" changed to "value"' on a reload;
 * an emit_log_hook cuts the value off for the secrets, and hides the
 * statement text of errors in statements that name them.  Operators who
 * keep the secrets out of postgresql.conf altogether use the *_file
 * settings, read by the worker at start and on every reload.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "storage/fd.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "settings.h"
#include "validate.h"

/*---- GUC variables ----*/
char	   *tob_database = NULL;
bool		tob_enabled = true;
char	   *tob_account_sid = NULL;
char	   *tob_auth_token = NULL;
char	   *tob_api_key_sid = NULL;
char	   *tob_api_key_secret = NULL;
char	   *tob_api_base_url = NULL;
int			tob_max_concurrency = 50;
int			tob_request_timeout_ms = 10000;
int			tob_max_attempts = 10;
int			tob_backoff_base_ms = 1000;
int			tob_backoff_max_ms = 600000;
int			tob_retention_s = 7 * 24 * 3600;
char	   *tob_auth_token_file = NULL;
char	   *tob_api_key_secret_file = NULL;
char	   *tob_ca_file = NULL;

#define SECRET_MAX 1024
#define SECRET_MASK "********"

static char auth_token_from_file[SECRET_MAX];
static char api_key_secret_from_file[SECRET_MAX];
static emit_log_hook_type prev_emit_log_hook = NULL;
char	   *tob_webhook_listen = NULL;
char	   *tob_webhook_public_url = NULL;
int			tob_lookup_settle_ms = 2000;
int			tob_reconcile_timeout_ms = 600000;
char	   *tob_debug_inject_faults = NULL;

#define SECRET_FLAGS (GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE)

static bool
check_account_sid(char **newval, void **extra, GucSource source)
{
	if (**newval == '\0' || tob_is_twilio_sid(*newval, "AC"))
		return true;
	GUC_check_errdetail("An Account SID is \"AC\" followed by 32 hexadecimal digits.");
	return false;
}

static bool
check_api_key_sid(char **newval, void **extra, GucSource source)
{
	if (**newval == '\0' || tob_is_twilio_sid(*newval, "SK"))
		return true;
	GUC_check_errdetail("An API Key SID is \"SK\" followed by 32 hexadecimal digits.");
	return false;
}

static bool
check_api_base_url(char **newval, void **extra, GucSource source)
{
	if (tob_is_secure_url(*newval))
		return true;
	GUC_check_errdetail("The API base URL must start with https://; http:// is accepted only for localhost, 127.0.0.1 and [::1].");
	return false;
}

static const char *
show_auth_token(void)
{
	return tob_auth_token[0] ? SECRET_MASK : "";
}

static const char *
show_api_key_secret(void)
{
	return tob_api_key_secret[0] ? SECRET_MASK : "";
}

bool
tob_parse_listen(const char *listen, char *host, int *port)
{
	const char *colon;
	const char *h = listen;
	int			hlen;
	char	   *end;
	long		p;

	if (listen[0] == '[')
	{
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':')
			return false;
		h = listen + 1;
		hlen = close - h;
		colon = close + 1;
	}
	else
	{
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return false;
		hlen = colon - listen;
	}
	if (hlen <= 0 || hlen >= 256)
		return false;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (int) p;
	return true;
}

static bool
check_webhook_listen(char **newval, void **extra, GucSource source)
{
	char		host[256];
	int			port;

	if (**newval == '\0' || tob_parse_listen(*newval, host, &port))
		return true;
	GUC_check_errdetail("Give host:port, for example 127.0.0.1:8089 or [::1]:8089, or an empty string to turn the listener off.");
	return false;
}

static bool
check_webhook_public_url(char **newval, void **extra, GucSource source)
{
	if (**newval == '\0' || strncmp(*newval, "https://", 8) == 0 ||
		strncmp(*newval, "http://", 7) == 0)
		return true;
	GUC_check_errdetail("The public URL is the http:// or https:// URL Twilio is configured with, without the /twilio/... path.");
	return false;
}

/*
 * Define every parameter.  PGC_POSTMASTER ones only while preloading: they
 * cannot be defined after the postmaster has started.
 */
void
tob_define_settings(bool preloading)
{
	if (preloading)
		DefineCustomStringVariable("twilio_outbox.database",
								   gettext_noop("Sets the database the twilio_outbox worker serves."),
								   NULL, &tob_database, "postgres",
								   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
								   NULL, NULL, NULL);
	if (preloading)
		DefineCustomStringVariable("twilio_outbox.webhook_listen",
								   gettext_noop("Sets the host:port the webhook listener serves Twilio's callbacks on; empty turns it off."),
								   NULL, &tob_webhook_listen, "",
								   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
								   check_webhook_listen, NULL, NULL);

	DefineCustomBoolVariable("twilio_outbox.enabled",
							 gettext_noop("Lets the twilio_outbox worker send messages."),
							 gettext_noop("When off the worker stays connected but claims nothing."),
							 &tob_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.account_sid",
							   gettext_noop("Sets the Twilio Account SID used in the request URL."),
							   NULL, &tob_account_sid, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_account_sid, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.auth_token",
							   gettext_noop("Sets the Twilio Auth Token (secret)."),
							   NULL, &tob_auth_token, "",
							   PGC_SIGHUP, SECRET_FLAGS,
							   NULL, NULL, show_auth_token);

	DefineCustomStringVariable("twilio_outbox.auth_token_file",
							   gettext_noop("Sets a file the Auth Token is read from, instead of auth_token."),
							   gettext_noop("Read by the worker at start and on every reload; it must be readable by the server's OS user."),
							   &tob_auth_token_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.api_key_sid",
							   gettext_noop("Sets the Twilio API Key SID; when set it is used for authentication instead of the Auth Token."),
							   NULL, &tob_api_key_sid, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_api_key_sid, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.api_key_secret",
							   gettext_noop("Sets the Twilio API Key secret (secret)."),
							   NULL, &tob_api_key_secret, "",
							   PGC_SIGHUP, SECRET_FLAGS,
							   NULL, NULL, show_api_key_secret);

	DefineCustomStringVariable("twilio_outbox.api_key_secret_file",
							   gettext_noop("Sets a file the API Key secret is read from, instead of api_key_secret."),
							   NULL, &tob_api_key_secret_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.ca_file",
							   gettext_noop("Sets a file of CA certificates to verify Twilio's TLS certificate with."),
							   gettext_noop("Empty: the system's certificate store."),
							   &tob_ca_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.api_base_url",
							   gettext_noop("Sets the base URL of the Twilio REST API."),
							   NULL, &tob_api_base_url, "https://api.twilio.com",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_api_base_url, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.max_concurrency",
							gettext_noop("Sets the most HTTP requests in flight at once, over all pools."),
							NULL, &tob_max_concurrency, 50, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.request_timeout_ms",
							gettext_noop("Sets the time limit of one HTTP request to Twilio."),
							NULL, &tob_request_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.max_attempts",
							gettext_noop("Sets how many HTTP attempts a message gets before it fails."),
							NULL, &tob_max_attempts, 10, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.backoff_base_ms",
							gettext_noop("Sets the first retry delay; it doubles with every attempt."),
							NULL, &tob_backoff_base_ms, 1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.backoff_max_ms",
							gettext_noop("Sets the longest retry delay."),
							NULL, &tob_backoff_max_ms, 600000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.retention",
							gettext_noop("Sets how long sent, failed, expired and canceled rows are kept."),
							gettext_noop("0 keeps them forever."),
							&tob_retention_s, 7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.webhook_public_url",
							   gettext_noop("Sets the URL Twilio is configured with for webhooks, without the path; signatures are checked against it."),
							   NULL, &tob_webhook_public_url, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_webhook_public_url, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.lookup_settle_ms",
							gettext_noop("Sets how long after an ambiguous answer the message is first looked up at Twilio."),
							gettext_noop("Twilio's list may not show a message at once; a lookup before this would miss it."),
							&tob_lookup_settle_ms, 2000, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("twilio_outbox.reconcile_timeout_ms",
							gettext_noop("Sets how long lookups of an ambiguous attempt may keep failing before the message is sent again without knowing."),
							gettext_noop("Counted from the ambiguous answer; such a resend is counted in resent_blind."),
							&tob_reconcile_timeout_ms, 600000, 1000, 7 * 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomStringVariable("twilio_outbox.debug_inject_faults",
							   gettext_noop("Makes the worker fail at the named points (for testing only)."),
							   gettext_noop("A comma-separated list of: start_request, record, lookup_check."),
							   &tob_debug_inject_faults, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("twilio_outbox");
}

/*
 * Read a secret file into buf: the first line, without trailing white
 * space.  On failure warn (naming the file, never its content) and leave
 * buf empty, so the worker reports itself unconfigured.
 */
static void
read_secret_file(const char *guc, const char *path, char *buf)
{
	FILE	   *f;
	size_t		len;

	buf[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return;
	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" named by %s: %m", path, guc)));
		return;
	}
	if (fgets(buf, SECRET_MAX, f) == NULL)
		buf[0] = '\0';
	FreeFile(f);
	len = strcspn(buf, "\r\n");
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (len == 0)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file \"%s\" named by %s is empty", path, guc)));
}

/* Which files the buffers were read from: a process reads a file once. */
static char auth_token_read_from[MAXPGPATH];
static char api_key_secret_read_from[MAXPGPATH];

void
tob_load_secrets(void)
{
	read_secret_file("twilio_outbox.auth_token_file", tob_auth_token_file, auth_token_from_file);
	strlcpy(auth_token_read_from, tob_auth_token_file, MAXPGPATH);
	read_secret_file("twilio_outbox.api_key_secret_file", tob_api_key_secret_file,
					 api_key_secret_from_file);
	strlcpy(api_key_secret_read_from, tob_api_key_secret_file, MAXPGPATH);
}

/* The secret from its file (read on first use in this process) or the setting. */
static const char *
secret_value(const char *guc, const char *file, char *read_from, char *buf,
			 const char *value)
{
	if (file[0] == '\0')
		return value;
	if (strcmp(read_from, file) != 0)
	{
		read_secret_file(guc, file, buf);
		strlcpy(read_from, file, MAXPGPATH);
	}
	return buf;
}

const char *
tob_auth_token_value(void)
{
	return secret_value("twilio_outbox.auth_token_file", tob_auth_token_file,
						auth_token_read_from, auth_token_from_file, tob_auth_token);
}

const char *
tob_api_key_secret_value(void)
{
	return secret_value("twilio_outbox.api_key_secret_file", tob_api_key_secret_file,
						api_key_secret_read_from, api_key_secret_from_file, tob_api_key_secret);
}

static bool
names_a_secret(const char *text)
{
	return strstr(text, "twilio_outbox.auth_token") != NULL ||
		strstr(text, "twilio_outbox.api_key_secret") != NULL;
}

/*
 * Cut the value off PostgreSQL's 'parameter "..." changed to "..."' for the
 * secrets, and hide the text of a statement that names them when it fails.
 */
static void
tob_emit_log_hook(ErrorData *edata)
{
	static const char prefix[] = "parameter \"twilio_outbox.";

	if (edata->message != NULL &&
		strncmp(edata->message, prefix, sizeof(prefix) - 1) == 0 &&
		names_a_secret(edata->message))
	{
		char	   *cut = strstr(edata->message, "\" changed to \"");

		if (cut != NULL)
			strcpy(cut, "\" changed");
	}
	if (debug_query_string != NULL && names_a_secret(debug_query_string))
		edata->hide_stmt = true;
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
tob_install_log_filter(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = tob_emit_log_hook;
}
