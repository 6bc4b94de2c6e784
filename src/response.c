/*-------------------------------------------------------------------------
 *
 * response.c
 *		Reads Twilio's JSON answers with PostgreSQL's JSON parser.
 *
 * Only the top-level fields the outbox records are kept: sid and status of
 * a Message resource, code and message of an error.  The parser reports
 * malformed input as an error code instead of raising, so a hostile or
 * truncated body can never take the worker down; text that is not valid
 * UTF-8 is dropped before it could reach a text column.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/response.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "response.h"

#define MAX_NESTING 32

typedef enum ResponseField
{
	FIELD_NONE,
	FIELD_SID,
	FIELD_STATUS,
	FIELD_CODE,
	FIELD_MESSAGE
} ResponseField;

typedef struct ParseState
{
	TobTwilioResponse *out;
	int			depth;			/* object/array nesting; 1 = top level */
	ResponseField field;		/* top-level field whose value comes next */
} ParseState;

static TOB_JSON_ACTION
on_struct_start(void *arg)
{
	ParseState *st = arg;

	st->depth++;
	st->field = FIELD_NONE;
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
on_struct_end(void *arg)
{
	((ParseState *) arg)->depth--;
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
on_field_start(void *arg, char *fname, bool isnull)
{
	ParseState *st = arg;

	st->field = FIELD_NONE;
	if (st->depth != 1)
		TOB_JSON_ACTION_DONE;
	if (strcmp(fname, "sid") == 0)
		st->field = FIELD_SID;
	else if (strcmp(fname, "status") == 0)
		st->field = FIELD_STATUS;
	else if (strcmp(fname, "code") == 0)
		st->field = FIELD_CODE;
	else if (strcmp(fname, "message") == 0)
		st->field = FIELD_MESSAGE;
	TOB_JSON_ACTION_DONE;
}

/* Copy a string value if it is valid UTF-8 and fits; otherwise leave dst empty. */
static void
copy_text(char *dst, size_t size, const char *src)
{
	size_t		len = strlen(src);

	if (len >= size)
		len = pg_encoding_mbcliplen(PG_UTF8, src, len, size - 1);
	if (pg_encoding_verifymbstr(PG_UTF8, src, len) != len)
		return;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static TOB_JSON_ACTION
on_scalar(void *arg, char *token, JsonTokenType type)
{
	ParseState *st = arg;
	TobTwilioResponse *out = st->out;

	switch (st->field)
	{
		case FIELD_SID:
			if (type == JSON_TOKEN_STRING && strlen(token) < TOB_SID_LEN)
				copy_text(out->sid, TOB_SID_LEN, token);
			break;
		case FIELD_STATUS:
			if (type == JSON_TOKEN_STRING)
				copy_text(out->status, TOB_STATUS_LEN, token);
			break;
		case FIELD_CODE:
			if (type == JSON_TOKEN_NUMBER || type == JSON_TOKEN_STRING)
			{
				char	   *end;
				long		code = strtol(token, &end, 10);

				if (end != token && *end == '\0' && code > 0 && code < INT_MAX)
					out->code = (int) code;
			}
			break;
		case FIELD_MESSAGE:
			if (type == JSON_TOKEN_STRING)
				copy_text(out->message, TOB_MESSAGE_LEN, token);
			break;
		case FIELD_NONE:
			break;
	}
	st->field = FIELD_NONE;
	TOB_JSON_ACTION_DONE;
}

/*
 * The deepest nesting of arrays and objects in body, ignoring brackets
 * inside strings.  PostgreSQL's parser recurses per level and raises an
 * error near the stack limit, so deep input is refused before parsing.
 */
static int
nesting_depth(const char *body, size_t len)
{
	int			depth = 0;
	int			max = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			depth++;
			max = Max(max, depth);
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return max;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The code unit of a \uXXXX escape at s (s[0] == '\\'), or -1. */
static int
escape_unit(const char *s, size_t left)
{
	int			v = 0;
	int			i;

	if (left < 6 || s[0] != '\\' || s[1] != 'u')
		return -1;
	for (i = 2; i < 6; i++)
	{
		int			h = hex_value(s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/*
 * Copy body to dst (len + 1 bytes) with every \u escape of a character
 * outside ASCII written as that character in UTF-8, and NUL-terminate;
 * returns the new length.  PostgreSQL's JSON parser turns such escapes
 * into the database encoding, but passes raw bytes through as they are:
 * in a database that is not UTF8 the two would mix, and Twilio's answers
 * (which escape non-ASCII text) could not be compared with the UTF-8 the
 * worker sends.  Escapes of ASCII characters (\u0022 ...) are kept for the
 * parser, and so is anything malformed.
 */
static size_t
copy_unescaped(char *dst, const char *body, size_t len)
{
	size_t		i = 0;
	size_t		n = 0;
	bool		in_string = false;

	while (i < len)
	{
		char		c = body[i];
		int			unit;

		if (in_string && c == '\\' && (unit = escape_unit(body + i, len - i)) >= 0x80)
		{
			pg_wchar	cp = unit;
			size_t		used = 6;
			unsigned char utf8[8];
			int			k;

			if (unit >= 0xD800 && unit <= 0xDBFF)
			{
				int			low = escape_unit(body + i + 6, len - i - 6);

				if (low < 0xDC00 || low > 0xDFFF)
					goto verbatim;	/* the parser reports it */
				cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
				used = 12;
			}
			else if (unit >= 0xDC00 && unit <= 0xDFFF)
				goto verbatim;
			unicode_to_utf8(cp, utf8);
			for (k = 0; k < pg_utf_mblen(utf8); k++)
				dst[n++] = utf8[k];
			i += used;
			continue;
		}
verbatim:
		if (in_string && c == '\\' && i + 1 < len)
		{
			dst[n++] = body[i++];
			dst[n++] = body[i++];
			continue;
		}
		if (c == '"')
			in_string = !in_string;
		dst[n++] = body[i++];
	}
	dst[n] = '\0';
	return n;
}

/*
 * Run PostgreSQL's JSON parser over body with the given actions, if body
 * is a JSON object of bounded nesting.  Returns whether it parsed.
 */
static bool
parse_object(const char *body, size_t len, JsonSemAction *sem)
{
	MemoryContext cxt = CurrentMemoryContext;
	JsonLexContext *lex;
	char	   *copy;
	size_t		i;
	volatile bool ok = false;

	/* an answer that does not start like an object is not one (and may be huge) */
	for (i = 0; i < len && isspace((unsigned char) body[i]); i++)
		;
	if (i == len || body[i] != '{' || nesting_depth(body, len) > MAX_NESTING)
		return false;

	copy = palloc(len + 1);
	len = copy_unescaped(copy, body, len);

	/*
	 * The parser reports bad JSON as a result, but can still raise: a \u
	 * escape the database encoding cannot hold, the stack limit.  Such an
	 * answer is simply not one we understand.
	 */
	PG_TRY();
	{
		lex = TOB_JSON_LEX(copy, (int) len);
		ok = pg_parse_json(lex, sem) == JSON_SUCCESS;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	pfree(copy);
	return ok;
}

void
tob_parse_response(const char *body, size_t len, TobTwilioResponse *out)
{
	ParseState	st = {out, 0, FIELD_NONE};
	JsonSemAction sem = {0};

	memset(out, 0, sizeof(*out));
	sem.semstate = &st;
	sem.object_start = on_struct_start;
	sem.object_end = on_struct_end;
	sem.array_start = on_struct_start;
	sem.array_end = on_struct_end;
	sem.object_field_start = on_field_start;
	sem.scalar = on_scalar;

	if (parse_object(body, len, &sem))
		out->is_object = true;
	else
		memset(out, 0, sizeof(*out));
}

/*---- a list page: Messages.json or Calls.json ----*/

typedef enum ListField
{
	LIST_NONE,
	LIST_SID,
	LIST_BODY,
	LIST_FROM,
	LIST_TO,
	LIST_SERVICE,
	LIST_STATUS,
	LIST_DATE_CREATED
} ListField;

typedef struct ListState
{
	const char *array_name;		/* "messages" or "calls" */
	int			depth;
	bool		items_next;		/* the top-level array of items comes next */
	bool		next_uri_next;	/* the top-level "next_page_uri" value comes next */
	int			items_depth;	/* depth of its array, 0 when not inside */
	ListField	field;
	bool		in_kept;		/* inside an element that has a slot in items */
	TobListed  *items;
	int			n;
	int			cap;
	char	   *next_page_uri;
} ListState;

static TOB_JSON_ACTION
list_object_start(void *arg)
{
	ListState  *st = arg;

	st->depth++;
	if (st->items_depth > 0 && st->depth == st->items_depth + 1)
	{
		st->in_kept = st->n < TOB_LIST_MAX;
		if (st->in_kept && st->n == st->cap)
		{
			/* grown as items come: memory follows the answer's size */
			st->cap = Min(TOB_LIST_MAX, st->cap * 2);
			st->items = repalloc(st->items, sizeof(TobListed) * st->cap);
		}
		if (st->in_kept)
			memset(&st->items[st->n++], 0, sizeof(TobListed));
	}
	st->field = LIST_NONE;
	st->items_next = st->next_uri_next = false;
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
list_array_start(void *arg)
{
	ListState  *st = arg;

	st->depth++;
	if (st->items_next)
		st->items_depth = st->depth;
	st->items_next = st->next_uri_next = false;
	st->field = LIST_NONE;
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
list_struct_end(void *arg)
{
	ListState  *st = arg;

	if (st->depth == st->items_depth)
		st->items_depth = 0;
	st->depth--;
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
list_field_start(void *arg, char *fname, bool isnull)
{
	ListState  *st = arg;

	st->field = LIST_NONE;
	st->items_next = (st->depth == 1 && strcmp(fname, st->array_name) == 0);
	st->next_uri_next = (st->depth == 1 && strcmp(fname, "next_page_uri") == 0);
	if (st->items_depth > 0 && st->depth == st->items_depth + 1 && st->in_kept)
	{
		if (strcmp(fname, "sid") == 0)
			st->field = LIST_SID;
		else if (strcmp(fname, "body") == 0)
			st->field = LIST_BODY;
		else if (strcmp(fname, "from") == 0)
			st->field = LIST_FROM;
		else if (strcmp(fname, "to") == 0)
			st->field = LIST_TO;
		else if (strcmp(fname, "messaging_service_sid") == 0)
			st->field = LIST_SERVICE;
		else if (strcmp(fname, "status") == 0)
			st->field = LIST_STATUS;
		else if (strcmp(fname, "date_created") == 0)
			st->field = LIST_DATE_CREATED;
	}
	TOB_JSON_ACTION_DONE;
}

static TOB_JSON_ACTION
list_scalar(void *arg, char *token, JsonTokenType type)
{
	ListState  *st = arg;
	ListField	field = st->field;
	bool		next_uri = st->next_uri_next;
	size_t		len = strlen(token);
	TobListed  *m;

	/* whatever the value's type, the field is done */
	st->field = LIST_NONE;
	st->items_next = st->next_uri_next = false;
	if (type != JSON_TOKEN_STRING)
		TOB_JSON_ACTION_DONE;
	if (next_uri)
	{
		if (len < TOB_NEXT_URI_MAX && pg_encoding_verifymbstr(PG_UTF8, token, len) == len)
			st->next_page_uri = pstrdup(token);
		TOB_JSON_ACTION_DONE;
	}
	if (field == LIST_NONE)
		TOB_JSON_ACTION_DONE;
	m = &st->items[st->n - 1];
	switch (field)
	{
		case LIST_SID:
			if (len < TOB_SID_LEN)
				copy_text(m->sid, TOB_SID_LEN, token);
			break;
		case LIST_FROM:
			if (len < TOB_ADDRESS_LEN)
				copy_text(m->from, TOB_ADDRESS_LEN, token);
			break;
		case LIST_TO:
			if (len < TOB_ADDRESS_LEN)
				copy_text(m->to, TOB_ADDRESS_LEN, token);
			break;
		case LIST_SERVICE:
			if (len < TOB_SID_LEN)
				copy_text(m->messaging_service_sid, TOB_SID_LEN, token);
			break;
		case LIST_STATUS:
			copy_text(m->status, TOB_STATUS_LEN, token);
			break;
		case LIST_DATE_CREATED:
			copy_text(m->date_created, sizeof(m->date_created), token);
			break;
		case LIST_BODY:
			if (pg_encoding_verifymbstr(PG_UTF8, token, len) == len)
				m->body = pstrdup(token);
			break;
		case LIST_NONE:
			break;
	}
	TOB_JSON_ACTION_DONE;
}

int
tob_parse_list(const char *body, size_t len, const char *array_name,
			   TobListed **items, char **next_page_uri)
{
	ListState	st = {0};
	JsonSemAction sem = {0};

	st.array_name = array_name;
	st.cap = 4;
	st.items = palloc(sizeof(TobListed) * st.cap);
	sem.semstate = &st;
	sem.object_start = list_object_start;
	sem.object_end = list_struct_end;
	sem.array_start = list_array_start;
	sem.array_end = list_struct_end;
	sem.object_field_start = list_field_start;
	sem.scalar = list_scalar;

	if (next_page_uri)
		*next_page_uri = NULL;
	if (!parse_object(body, len, &sem))
	{
		*items = st.items;
		return -1;
	}
	*items = st.items;
	if (next_page_uri)
		*next_page_uri = st.next_page_uri;
	return st.n;
}

/* Whether s is two letters (already checked) and 32 hex digits. */
static bool
hex_sid_tail(const char *s)
{
	int			i;

	for (i = 2; i < 34; i++)
		if (!isxdigit((unsigned char) s[i]))
			return false;
	return s[34] == '\0';
}

bool
tob_is_message_sid(const char *s)
{
	return (s[0] == 'S' || s[0] == 'M') && s[1] == 'M' && hex_sid_tail(s);
}

bool
tob_is_call_sid(const char *s)
{
	return s[0] == 'C' && s[1] == 'A' && hex_sid_tail(s);
}
