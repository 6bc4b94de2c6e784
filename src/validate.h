/*-------------------------------------------------------------------------
 *
 * validate.h
 *		Syntax checks for phone numbers, URLs and Twilio identifiers.
 *		Pure functions: they report, the callers raise the errors.
 *
 * IDENTIFICATION
 *	  src/validate.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_VALIDATE_H
#define TOB_VALIDATE_H

/* "+" and 1-15 digits, the first not 0; with allow_whatsapp also "whatsapp:" + that */
extern bool tob_is_e164(const char *s, bool allow_whatsapp);

/* "AC" (or another two-letter prefix) followed by 32 hex digits */
extern bool tob_is_twilio_sid(const char *s, const char *prefix);

/* an absolute http:// or https:// URL with a host and no white space */
extern bool tob_is_http_url(const char *url);

/* https://, or http:// whose host is localhost, 127.0.0.1 or [::1] */
extern bool tob_is_secure_url(const char *url);

#endif							/* TOB_VALIDATE_H */
