/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Syntax checks shared by twilio_enqueue, the trigger function and the
 *		settings' check hooks.
 *
 * These are deliberately strict and deliberately small: they accept what
 * Twilio accepts and what the outbox can send, nothing that needs guessing.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "validate.h"

#define WHATSAPP_PREFIX "whatsapp:"

bool
tob_is_e164(const char *s, bool allow_whatsapp)
{
	int			ndigits = 0;

	if (allow_whatsapp && pg_strncasecmp(s, WHATSAPP_PREFIX, strlen(WHATSAPP_PREFIX)) == 0)
		s += strlen(WHATSAPP_PREFIX);
	if (*s++ != '+')
		return false;
	if (*s < '1' || *s > '9')
		return false;
	for (; *s; s++, ndigits++)
		if (!isdigit((unsigned char) *s))
			return false;
	return ndigits >= 1 && ndigits <= 15;
}

bool
tob_is_twilio_sid(const char *s, const char *prefix)
{
	int			i;

	if (strncmp(s, prefix, 2) != 0)
		return false;
	for (i = 2; i < 34; i++)
		if (!isxdigit((unsigned char) s[i]))
			return false;
	return s[34] == '\0';
}

/*
 * Split an http(s) URL far enough to look at its host.  Returns false when
 * it is not an absolute http(s) URL with a non-empty host.  *host points into
 * url and *hostlen is its length (brackets of an IPv6 literal included).
 */
static bool
url_host(const char *url, bool *https, const char **host, int *hostlen)
{
	const char *p;
	const char *end;
	const char *colon = NULL;

	if (pg_strncasecmp(url, "https://", 8) == 0)
	{
		*https = true;
		p = url + 8;
	}
	else if (pg_strncasecmp(url, "http://", 7) == 0)
	{
		*https = false;
		p = url + 7;
	}
	else
		return false;

	for (end = p; *end && *end != '/' && *end != '?' && *end != '#'; end++)
	{
		if (*end == '@')
			return false;		/* no credentials in URLs we store */
		if (*end == ']')
			colon = NULL;
		else if (*end == ':')
			colon = end;
	}
	if (*p == '[')
		colon = (colon && colon > p && colon[-1] == ']') ? colon : NULL;
	*host = p;
	*hostlen = (int) ((colon ? colon : end) - p);
	if (colon)
	{
		const char *d;

		if (colon + 1 == end)
			return false;
		for (d = colon + 1; d < end; d++)
			if (!isdigit((unsigned char) *d))
				return false;
	}
	return *hostlen > 0;
}

bool
tob_is_http_url(const char *url)
{
	bool		https;
	const char *host;
	int			hostlen;
	const char *p;

	if (!url_host(url, &https, &host, &hostlen))
		return false;
	for (p = url; *p; p++)
		if (isspace((unsigned char) *p) || iscntrl((unsigned char) *p))
			return false;
	return true;
}

bool
tob_is_secure_url(const char *url)
{
	bool		https;
	const char *host;
	int			hostlen;

	if (!tob_is_http_url(url) || !url_host(url, &https, &host, &hostlen))
		return false;
	if (https)
		return true;
	return (hostlen == 9 && pg_strncasecmp(host, "localhost", 9) == 0) ||
		(hostlen == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
		(hostlen == 5 && strncmp(host, "[::1]", 5) == 0);
}
