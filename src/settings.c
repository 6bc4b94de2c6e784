/*-------------------------------------------------------------------------
 *
 * settings.c
 *		Defines the twilio_outbox.* configuration parameters.
 *
 * Secrets (auth_token, api_key_secret) are GUC_SUPERUSER_ONLY and
 * GUC_NO_SHOW_ALL so that other roles cannot read them through SHOW,
 * current_setting() or pg_settings; nothing in the extension logs them.
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
char	   *tob_webhook_listen = NULL;
char	   *tob_webhook_public_url = NULL;

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

	MarkGUCPrefixReserved("twilio_outbox");
}
