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

extern void tob_define_settings(bool preloading);

#endif							/* TOB_SETTINGS_H */
