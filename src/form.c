/*-------------------------------------------------------------------------
 *
 * form.c
 *		application/x-www-form-urlencoded encoding.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/form.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "form.h"

static void
append_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 0x0F]);
		}
	}
}

void
tob_form_add(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	append_encoded(buf, name);
	appendStringInfoChar(buf, '=');
	append_encoded(buf, value);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode len bytes of s; NULL when malformed. */
static char *
decode(const char *s, size_t len)
{
	char	   *out = palloc(len + 1);
	size_t		i;
	size_t		o = 0;

	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '+')
			c = ' ';
		else if (c == '%')
		{
			int			hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
			int			lo = i + 2 < len ? hex_value(s[i + 2]) : -1;

			if (hi < 0 || lo < 0)
			{
				pfree(out);
				return NULL;
			}
			c = (char) (hi * 16 + lo);
			i += 2;
		}
		if (c == '\0')
		{
			pfree(out);
			return NULL;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}

int
tob_form_parse(const char *body, size_t len, TobParam **params)
{
	size_t		start = 0;
	int			n = 0;
	int			cap = 16;

	*params = palloc(sizeof(TobParam) * cap);
	while (start < len)
	{
		size_t		end = start;
		size_t		eq;

		while (end < len && body[end] != '&')
			end++;
		if (end > start)
		{
			for (eq = start; eq < end && body[eq] != '='; eq++)
				;
			if (n == cap)
			{
				cap *= 2;
				*params = repalloc(*params, sizeof(TobParam) * cap);
			}
			(*params)[n].name = decode(body + start, eq - start);
			(*params)[n].value = decode(body + Min(eq + 1, end), end - Min(eq + 1, end));
			if ((*params)[n].name == NULL || (*params)[n].value == NULL)
				return -1;
			n++;
		}
		start = end + 1;
	}
	return n;
}
