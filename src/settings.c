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

	MarkGUCPrefixReserved("twilio_outbox");
}
