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

/*
 * Append name=value to buf, separated from what is there by '&'.  Every
 * byte outside A-Z a-z 0-9 - . _ ~ is percent-encoded, so '+' goes out as
 * %2B (a bare '+' means a space to Twilio) and any UTF-8 text survives.
 */
extern void tob_form_add(StringInfo buf, const char *name, const char *value);

#endif							/* TOB_FORM_H */
