/*-------------------------------------------------------------------------
 *
 * form.h
 *		application/x-www-form-urlencoded encoding of a Twilio request.
 *
 * IDENTIFICATION
 *	  src/form.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_FORM_H
#define TOB_FORM_H

#include "lib/stringinfo.h"

#include "signature.h"

/*
 * Append name=value to buf, separated from what is there by '&'.  Every
 * byte outside A-Z a-z 0-9 - . _ ~ is percent-encoded, so '+' goes out as
 * %2B (a bare '+' means a space to Twilio) and any UTF-8 text survives.
 */
extern void tob_form_add(StringInfo buf, const char *name, const char *value);

/*
 * Decode an application/x-www-form-urlencoded body ('+' is a space, %XX a
 * byte) into palloc'd name/value pairs.  Returns how many, or -1 when the
 * body is malformed (a bad %-escape or a NUL byte).
 */
extern int	tob_form_parse(const char *body, size_t len, TobParam **params);

#endif							/* TOB_FORM_H */
