/*-------------------------------------------------------------------------
 *
 * settings.c
 *		Defines the twilio_outbox.* configuration parameters.
 *
 * Secrets (auth_token, api_key_secret) are GUC_SUPERUSER_ONLY and
 * GUC_NO_SHOW_ALL, and a show hook masks them: members of
 * pg_read_all_settings (pg_monitor among them) may read superuser-only
 * settings, so SHOW and current_setting() give "********" to everyone.
 *
 * The safe way to give a secret is a file named by the *_file settings: a
 * process re-reads it whenever the file changes (stat before each use), so
 * a rotated secret reaches long-lived connections and the workers without
 * a reload.
 *
 * A secret set by a statement would be kept wherever statement texts go:
 * the statement log (log_statement = ddl logs ALTER SYSTEM before it runs)
 * and pg_stat_statements (it keeps the text of utility statements that
 * succeed).  So a ProcessUtility hook refuses ALTER SYSTEM, SET, ALTER
 * DATABASE/ROLE ... SET and function SET clauses that give a secret a
 * value (RESET stays allowed), replacing the text pg_stat_activity shows
 * for the session, and an emit_log_hook keeps the text of any
 * statement that names a secret out of the server log.  PostgreSQL itself
 * logs 'parameter "x" changed to "value"' on a reload of postgresql.conf;
 * the hook recognises that line by its untranslated message id, so in any
 * lc_messages, and masks the value.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <sys/stat.h>

#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
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

static emit_log_hook_type prev_emit_log_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* The settings that hold a secret, as GUC names (compared case-insensitively). */
static const char *const secret_gucs[] = {
	"twilio_outbox.auth_token", "twilio_outbox.api_key_secret"
};

#define STATEMENT_HIDDEN "(statement not shown: it names a twilio_outbox secret setting)"
char	   *tob_webhook_listen = NULL;
char	   *tob_webhook_public_url = NULL;
int			tob_lookup_settle_ms = 2000;
double		tob_calls_per_second = 1.0;
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

	DefineCustomRealVariable("twilio_outbox.calls_per_second",
							 gettext_noop("Sets how many calls per second the worker places over all pools (Twilio's CPS for the account)."),
							 gettext_noop("Twilio queues calls above its CPS for up to a day; pacing them here keeps that queue empty."),
							 &tob_calls_per_second, 1.0, 0.001, 1000.0,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

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

/*---- secrets from files ----*/

/* A secret read from a file, and the state of the file when it was read. */
typedef struct SecretFile
{
	const char *guc;			/* the *_file setting, for messages */
	bool		loaded;			/* path, st and value are filled in */
	bool		failed;			/* the file could not be read (warned once) */
	char		path[MAXPGPATH];
	struct stat st;
	char		value[SECRET_MAX];
} SecretFile;

static SecretFile auth_token_file = {"twilio_outbox.auth_token_file"};
static SecretFile api_key_secret_file = {"twilio_outbox.api_key_secret_file"};

/*
 * Read the first line of a secret file, without trailing white space, into
 * buf.  On failure warn (naming the file, never its content), leave buf
 * empty (the secret counts as not set) and return false.
 */
static bool
read_secret_file(const char *guc, const char *path, char *buf)
{
	FILE	   *f;
	size_t		len;

	buf[0] = '\0';
	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" named by %s: %m", path, guc)));
		return false;
	}
	if (fgets(buf, SECRET_MAX, f) == NULL)
		buf[0] = '\0';
	FreeFile(f);
	len = strcspn(buf, "\r\n");
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (len == 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file \"%s\" named by %s is empty", path, guc)));
		return false;
	}
	return true;
}

static bool
same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
		a->st_size == b->st_size &&
		a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
		a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * The secret in force: from the file when the *_file setting names one
 * (read again whenever the file's inode, size, or modification or change
 * time differs from when it was read), else the plain setting.  A file
 * replaced by rename, rewritten in place or swapped behind a symbolic link
 * is seen at the next use.  A file that cannot be read gives the empty
 * string, with one WARNING until it changes.
 */
static const char *
secret_value(SecretFile *sf, const char *path, const char *plain)
{
	struct stat st;

	if (path == NULL || path[0] == '\0')
		return plain;
	if (stat(path, &st) != 0)
	{
		if (!(sf->loaded && sf->failed && strcmp(sf->path, path) == 0))
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\" named by %s: %m", path, sf->guc)));
		memset(&sf->st, 0, sizeof(sf->st));
		strlcpy(sf->path, path, MAXPGPATH);
		sf->value[0] = '\0';
		sf->loaded = true;
		sf->failed = true;
		return sf->value;
	}
	if (!sf->loaded || strcmp(sf->path, path) != 0 || !same_file_state(&st, &sf->st))
	{
		sf->failed = !read_secret_file(sf->guc, path, sf->value);
		strlcpy(sf->path, path, MAXPGPATH);
		sf->st = st;
		sf->loaded = true;
	}
	return sf->value;
}

void
tob_load_secrets(void)
{
	auth_token_file.loaded = false;
	api_key_secret_file.loaded = false;
	(void) tob_auth_token_value();
	(void) tob_api_key_secret_value();
}

const char *
tob_auth_token_value(void)
{
	return secret_value(&auth_token_file, tob_auth_token_file, tob_auth_token);
}

const char *
tob_api_key_secret_value(void)
{
	return secret_value(&api_key_secret_file, tob_api_key_secret_file, tob_api_key_secret);
}

/*---- secrets set by statement ----*/

/* The secret setting name is (its canonical spelling), or NULL. */
static const char *
secret_guc(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(secret_gucs); i++)
		if (pg_strcasecmp(name, secret_gucs[i]) == 0)
			return secret_gucs[i];
	return NULL;
}

/* Refuse a statement that gives a secret setting a value. */
static void
refuse_secret_value(VariableSetStmt *stmt, const char *how)
{
	const char *name;

	if (stmt == NULL || stmt->kind != VAR_SET_VALUE || stmt->name == NULL)
		return;
	name = secret_guc(stmt->name);
	if (name == NULL)
		return;
	/* pg_stat_activity would keep showing the statement after the error */
	pgstat_report_activity(STATE_RUNNING, STATEMENT_HIDDEN);
	ereport(ERROR,
			(errcode(ERRCODE_CANT_CHANGE_RUNTIME_PARAM),
			 errmsg("%s cannot be set with %s", name, how),
			 errdetail("The statement's text, secret included, would be kept by the server log (log_statement) and by pg_stat_statements."),
			 errhint("Write the secret to a file that only the server's operating system user can read, then ALTER SYSTEM SET %s_file = '/path/to/that/file' and SELECT pg_reload_conf().",
					 name)));
}

/* The SET clauses of CREATE FUNCTION / ALTER FUNCTION / ALTER PROCEDURE. */
static void
refuse_secret_in_options(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "set") == 0 && def->arg != NULL && IsA(def->arg, VariableSetStmt))
			refuse_secret_value((VariableSetStmt *) def->arg, "a function's SET clause");
	}
}

static void
tob_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	switch (nodeTag(stmt))
	{
		case T_AlterSystemStmt:
			refuse_secret_value(((AlterSystemStmt *) stmt)->setstmt, "ALTER SYSTEM");
			break;
		case T_VariableSetStmt:
			refuse_secret_value((VariableSetStmt *) stmt, "SET");
			break;
		case T_AlterDatabaseSetStmt:
			refuse_secret_value(((AlterDatabaseSetStmt *) stmt)->setstmt, "ALTER DATABASE ... SET");
			break;
		case T_AlterRoleSetStmt:
			refuse_secret_value(((AlterRoleSetStmt *) stmt)->setstmt, "ALTER ROLE ... SET");
			break;
		case T_CreateFunctionStmt:
			refuse_secret_in_options(((CreateFunctionStmt *) stmt)->options);
			break;
		case T_AlterFunctionStmt:
			refuse_secret_in_options(((AlterFunctionStmt *) stmt)->actions);
			break;
		default:
			break;
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*---- the server log ----*/

/*
 * Where word occurs in text, case-insensitively, not followed by a
 * character that would continue an identifier (so "auth_token" does not
 * match "auth_token_file"); NULL when it does not.
 */
static const char *
find_word(const char *text, const char *word)
{
	size_t		len = strlen(word);
	const char *p;

	for (p = text; *p; p++)
	{
		unsigned char next;

		if (pg_strncasecmp(p, word, len) != 0)
			continue;
		next = (unsigned char) p[len];
		if (!(isalnum(next) || next == '_' || next == '$'))
			return p;
	}
	return NULL;
}

/*
 * Does a statement's text name a secret setting?  Looks for the words, not
 * the dotted name, so that "twilio_outbox"."auth_token", any case and
 * white space around the dot count too.
 */
static bool
names_a_secret(const char *text)
{
	return find_word(text, "twilio_outbox") != NULL &&
		(find_word(text, "auth_token") != NULL || find_word(text, "api_key_secret") != NULL);
}

/* The secret setting a message names, or NULL. */
static const char *
secret_in_message(const char *message)
{
	int			i;

	for (i = 0; i < lengthof(secret_gucs); i++)
		if (find_word(message, secret_gucs[i]) != NULL)
			return secret_gucs[i];
	return NULL;
}

/* Replace the statement's text where message quotes it. */
static char *
without_statement(const char *message, const char *statement)
{
	const char *at = strstr(message, statement);

	if (at == NULL || statement[0] == '\0')
		return NULL;
	return psprintf("%.*s%s%s", (int) (at - message), message, STATEMENT_HIDDEN,
					at + strlen(statement));
}

/*
 * Keep the secrets out of the server log: mask the value in PostgreSQL's
 * 'parameter "..." changed to "..."' (found by its message id, so in any
 * language), keep the text of statements that name a secret out of every
 * line (log_statement, log_min_duration_statement, the STATEMENT: of
 * errors), and drop error context and internal queries that name one.
 */
static void
tob_emit_log_hook(ErrorData *edata)
{
	if (edata->message_id != NULL && edata->message != NULL &&
		strcmp(edata->message_id, "parameter \"%s\" changed to \"%s\"") == 0)
	{
		const char *name = secret_in_message(edata->message);

		if (name != NULL)
			edata->message = psprintf(_(edata->message_id), name, SECRET_MASK);
	}
	if (debug_query_string != NULL && names_a_secret(debug_query_string))
	{
		edata->hide_stmt = true;
		if (edata->message != NULL)
		{
			char	   *hidden = without_statement(edata->message, debug_query_string);

			if (hidden != NULL)
				edata->message = hidden;
		}
	}
	if (edata->context != NULL && names_a_secret(edata->context))
		edata->context = NULL;
	if (edata->internalquery != NULL && names_a_secret(edata->internalquery))
	{
		edata->internalquery = NULL;
		edata->internalpos = 0;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
tob_install_secret_hooks(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = tob_emit_log_hook;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = tob_ProcessUtility;
}
