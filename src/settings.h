/*-------------------------------------------------------------------------
 *
 * settings.h
 *		The twilio_outbox.* configuration parameters.
 *
 * IDENTIFICATION
 *	  src/settings.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_SETTINGS_H
#define TOB_SETTINGS_H

/*---- GUC variables ----*/
extern char *tob_database;
extern bool tob_enabled;
extern char *tob_account_sid;
extern char *tob_auth_token;
extern char *tob_api_key_sid;
extern char *tob_api_key_secret;
extern char *tob_api_base_url;
extern int	tob_max_concurrency;
extern int	tob_request_timeout_ms;
extern int	tob_max_attempts;
extern int	tob_backoff_base_ms;
extern int	tob_backoff_max_ms;
extern int	tob_retention_s;
extern char *tob_auth_token_file;
extern char *tob_api_key_secret_file;
extern char *tob_ca_file;
extern char *tob_webhook_listen;
extern char *tob_webhook_public_url;
extern int	tob_lookup_settle_ms;
extern double tob_calls_per_second;
extern int	tob_reconcile_timeout_ms;
extern char *tob_debug_inject_faults;

extern void tob_define_settings(bool preloading);

/*
 * The secrets in force: read from the *_file settings when those are set
 * (again whenever the file changes), else the plain settings.
 * tob_load_secrets() reads the files now (warning again about one that
 * cannot be read); the workers call it at start and after every reload.
 */
extern void tob_load_secrets(void);
extern const char *tob_auth_token_value(void);
extern const char *tob_api_key_secret_value(void);

/*
 * Keep the secrets' values out of the server log (an emit_log_hook) and
 * refuse statements that would put them in the statement log or
 * pg_stat_statements (a ProcessUtility hook).
 */
extern void tob_install_secret_hooks(void);

/*
 * Split twilio_outbox.webhook_listen ("host:port", "[v6]:port") into host and
 * port; false when it is not of that form.  host must hold 256 bytes.
 */
extern bool tob_parse_listen(const char *listen, char *host, int *port);

#endif							/* TOB_SETTINGS_H */
