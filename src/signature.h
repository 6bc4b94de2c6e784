/*-------------------------------------------------------------------------
 *
 * signature.h
 *		X-Twilio-Signature: HMAC-SHA1 over the URL and the sorted POST
 *		parameters, keyed with the auth token, base64-encoded.
 *
 * IDENTIFICATION
 *	  src/signature.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_SIGNATURE_H
#define TOB_SIGNATURE_H

/* base64 of a 20-byte SHA-1 digest, and its terminating zero */
#define TOB_SIGNATURE_LEN 29

/* One POST parameter, decoded. */
typedef struct TobParam
{
	char	   *name;
	char	   *value;
} TobParam;

/*
 * Sort params by name (then value), as Twilio's validators do; equal
 * name/value pairs are signed once.  Sorts the array in place.
 */
extern void tob_sort_params(TobParam *params, int n);

/*
 * Compute the signature of url plus the params (sorted by tob_sort_params
 * first) with key token into out.  Needs a resource owner (call it inside a
 * transaction).
 */
extern void tob_twilio_signature(const char *token, const char *url,
								 const TobParam *params, int n,
								 char out[TOB_SIGNATURE_LEN]);

/*
 * Does the received signature match the expected one?  Compares in time
 * that does not depend on where they differ.
 */
extern bool tob_signature_matches(const char *expected, const char *received);

/*
 * url with the scheme's default port added when it has no port, or taken
 * away when it has the default port ("https://h/x" <-> "https://h:443/x",
 * "http://h/x" <-> "http://h:80/x"); NULL for another port or a URL that is
 * not http(s).  Palloc'd.
 */
extern char *tob_url_port_variant(const char *url);

#endif							/* TOB_SIGNATURE_H */
