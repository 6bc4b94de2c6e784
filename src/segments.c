/*-------------------------------------------------------------------------
 *
 * segments.c
 *		Counts the SMS segments of a message body.
 *
 * A body made only of GSM-7 characters is sent in 7-bit septets: 160 fit
 * in a single segment, 153 in each part of a concatenated message (the
 * user data header takes the rest).  Characters of the GSM-7 extension
 * table take two septets (an escape and the character) and are never split
 * across parts.  Any other character makes the whole body UCS-2: 70 UTF-16
 * code units in one segment, 67 per part, and a surrogate pair is never
 * split.  Twilio and the carriers count throughput in these segments.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/segments.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "segments.h"

#define GSM_SINGLE		160
#define GSM_PART		153
#define UCS2_SINGLE		70
#define UCS2_PART		67

/* The GSM 03.38 default alphabet, outside printable ASCII. */
static const pg_wchar gsm_basic_extra[] = {
	0x00A3, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7,
	0x00D8, 0x00F8, 0x00C5, 0x00E5, 0x0394, 0x03A6, 0x0393, 0x039B,
	0x03A9, 0x03A0, 0x03A8, 0x03A3, 0x0398, 0x039E, 0x00C6, 0x00E6,
	0x00DF, 0x00C9, 0x00A4, 0x00A1, 0x00C4, 0x00D6, 0x00D1, 0x00DC,
	0x00A7, 0x00BF, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0
};

/* gsm_septets() of each ASCII character, filled on first use */
static int8 ascii_septets[128];
static bool ascii_septets_ready = false;

/* Septets of one character: 1 or 2 for GSM-7, 0 when it needs UCS-2. */
static int
gsm_septets(pg_wchar c)
{
	int			i;

	switch (c)
	{
		case '\n':
		case '\r':
			return 1;
		case '\f':
		case '^':
		case '{':
		case '}':
		case '\\':
		case '[':
		case '~':
		case ']':
		case '|':
		case 0x20AC:			/* euro sign */
			return 2;
		case '`':
			return 0;
	}
	if (c >= 0x20 && c <= 0x7E)
		return 1;
	for (i = 0; i < lengthof(gsm_basic_extra); i++)
		if (gsm_basic_extra[i] == c)
			return 1;
	return 0;
}

/*
 * Fill parts of `part` units greedily with characters of the given widths,
 * never splitting one character.  Returns the number of parts.
 */
static int
count_parts(const pg_wchar *chars, int n, int (*width) (pg_wchar), int part)
{
	int			parts = 1;
	int			used = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		int			w = width(chars[i]);

		if (used + w > part)
		{
			parts++;
			used = 0;
		}
		used += w;
	}
	return parts;
}

static int
utf16_units(pg_wchar c)
{
	return c > 0xFFFF ? 2 : 1;
}

int
tob_count_segments(const char *utf8, int len)
{
	pg_wchar   *chars;
	int			n;
	int			i;
	int			septets = 0;
	int			units = 0;
	bool		gsm = true;
	int			result;

	if (len == 0)
		return 1;

	/*
	 * Most bodies are short ASCII: one byte is one character, so count them
	 * in place; only a body that may need more than one segment, or one with
	 * other characters, is decoded and counted below.
	 */
	if (!ascii_septets_ready)
	{
		for (i = 0; i < 128; i++)
			ascii_septets[i] = (int8) gsm_septets((pg_wchar) i);
		ascii_septets_ready = true;
	}
	for (i = 0; i < len && !IS_HIGHBIT_SET(utf8[i]); i++)
	{
		int			s = ascii_septets[(unsigned char) utf8[i]];

		if (s == 0)
			gsm = false;
		septets += s;
	}
	if (i == len && (gsm ? septets <= GSM_SINGLE : len <= UCS2_SINGLE))
		return 1;
	septets = 0;
	gsm = true;

	chars = palloc((len + 1) * sizeof(pg_wchar));
	n = pg_encoding_mb2wchar_with_len(PG_UTF8, utf8, chars, len);
	for (i = 0; i < n; i++)
	{
		int			s = gsm_septets(chars[i]);

		if (s == 0)
			gsm = false;
		septets += s;
		units += utf16_units(chars[i]);
	}

	if (gsm)
		result = septets <= GSM_SINGLE ? 1 :
			count_parts(chars, n, gsm_septets, GSM_PART);
	else
		result = units <= UCS2_SINGLE ? 1 :
			count_parts(chars, n, utf16_units, UCS2_PART);
	pfree(chars);
	return result;
}
