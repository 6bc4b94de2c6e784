/*-------------------------------------------------------------------------
 *
 * json_model.c
 *		An oracle for fuzz_response: a plain recursive-descent JSON reader,
 *		sharing no code with PostgreSQL's, that notes what the outbox's
 *		parsers should keep.  See json_model.h for the language it accepts.
 *
 * IDENTIFICATION
 *	  test/fuzz/json_model.c
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_model.h"

typedef enum Role
{
	ROLE_OTHER,
	ROLE_TOP,					/* the top-level value */
	ROLE_MESSAGES,				/* the value of a top-level "messages" key */
	ROLE_MESSAGE				/* an element of such a value, if an array */
} Role;

typedef struct Reader
{
	const unsigned char *p;
	const unsigned char *end;
	char	   *arena;
	size_t		used;
	JmResult   *r;
} Reader;

typedef struct Value
{
	JmType		type;
	const char *text;
	size_t		len;
} Value;

static bool read_value(Reader *rd, int depth, Role role, Value *v);

static void
skip_ws(Reader *rd)
{
	while (rd->p < rd->end &&
		   (*rd->p == ' ' || *rd->p == '\t' || *rd->p == '\n' || *rd->p == '\r'))
		rd->p++;
}

static bool
is_word_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void
put_utf8(Reader *rd, uint32_t cp)
{
	char	   *o = rd->arena + rd->used;

	if (cp < 0x80)
	{
		o[0] = (char) cp;
		rd->used += 1;
	}
	else if (cp < 0x800)
	{
		o[0] = (char) (0xC0 | (cp >> 6));
		o[1] = (char) (0x80 | (cp & 0x3F));
		rd->used += 2;
	}
	else if (cp < 0x10000)
	{
		o[0] = (char) (0xE0 | (cp >> 12));
		o[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char) (0x80 | (cp & 0x3F));
		rd->used += 3;
	}
	else
	{
		o[0] = (char) (0xF0 | (cp >> 18));
		o[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
		o[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
		o[3] = (char) (0x80 | (cp & 0x3F));
		rd->used += 4;
	}
}

/* Four hex digits after "\u"; -1 if they are not there. */
static long
read_hex4(Reader *rd)
{
	long		cp = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		int			h;

		if (rd->p >= rd->end || (h = hex_value(*rd->p)) < 0)
			return -1;
		cp = cp * 16 + h;
		rd->p++;
	}
	return cp;
}

/* A string token, rd->p at its opening quote; decoded into the arena. */
static bool
read_string(Reader *rd, Value *v)
{
	size_t		start;

	rd->p++;
	start = rd->used;
	for (;;)
	{
		unsigned char c;

		if (rd->p >= rd->end)
			return false;
		c = *rd->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return false;
		if (c != '\\')
		{
			rd->arena[rd->used++] = (char) c;
			continue;
		}
		if (rd->p >= rd->end)
			return false;
		c = *rd->p++;
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				rd->arena[rd->used++] = (char) c;
				break;
			case 'b':
				rd->arena[rd->used++] = '\b';
				break;
			case 'f':
				rd->arena[rd->used++] = '\f';
				break;
			case 'n':
				rd->arena[rd->used++] = '\n';
				break;
			case 'r':
				rd->arena[rd->used++] = '\r';
				break;
			case 't':
				rd->arena[rd->used++] = '\t';
				break;
			case 'u':
				{
					long		cp = read_hex4(rd);

					if (cp < 0)
						return false;
					if (cp >= 0xDC00 && cp <= 0xDFFF)
						return false;	/* low surrogate first */
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						long		lo;

						/* a high surrogate must be followed right away by a low one */
						if (rd->end - rd->p < 2 || rd->p[0] != '\\' || rd->p[1] != 'u')
							return false;
						rd->p += 2;
						lo = read_hex4(rd);
						if (lo < 0xDC00 || lo > 0xDFFF)
							return false;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					if (cp == 0)
						return false;	/* text cannot hold NUL */
					put_utf8(rd, (uint32_t) cp);
					break;
				}
			default:
				return false;
		}
	}
	v->type = JM_STRING;
	v->text = rd->arena + start;
	v->len = rd->used - start;
	rd->arena[rd->used++] = '\0';
	return true;
}

/* A number token: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, not followed by a word character. */
static bool
read_number(Reader *rd, Value *v)
{
	const unsigned char *start = rd->p;

	if (rd->p < rd->end && *rd->p == '-')
		rd->p++;
	if (rd->p >= rd->end || !is_digit(*rd->p))
		return false;
	if (*rd->p == '0')
		rd->p++;
	else
		while (rd->p < rd->end && is_digit(*rd->p))
			rd->p++;
	if (rd->p < rd->end && *rd->p == '.')
	{
		rd->p++;
		if (rd->p >= rd->end || !is_digit(*rd->p))
			return false;
		while (rd->p < rd->end && is_digit(*rd->p))
			rd->p++;
	}
	if (rd->p < rd->end && (*rd->p == 'e' || *rd->p == 'E'))
	{
		rd->p++;
		if (rd->p < rd->end && (*rd->p == '+' || *rd->p == '-'))
			rd->p++;
		if (rd->p >= rd->end || !is_digit(*rd->p))
			return false;
		while (rd->p < rd->end && is_digit(*rd->p))
			rd->p++;
	}
	if (rd->p < rd->end && is_word_char(*rd->p))
		return false;
	v->type = JM_NUMBER;
	v->len = rd->p - start;
	v->text = rd->arena + rd->used;
	memcpy(rd->arena + rd->used, start, v->len);
	rd->used += v->len;
	rd->arena[rd->used++] = '\0';
	return true;
}

static bool
read_word(Reader *rd, Value *v)
{
	const unsigned char *start = rd->p;
	size_t		n;

	while (rd->p < rd->end && is_word_char(*rd->p))
		rd->p++;
	n = rd->p - start;
	v->text = NULL;
	v->len = 0;
	if (n == 4 && memcmp(start, "true", 4) == 0)
		v->type = JM_TRUE;
	else if (n == 5 && memcmp(start, "false", 5) == 0)
		v->type = JM_FALSE;
	else if (n == 4 && memcmp(start, "null", 4) == 0)
		v->type = JM_NULL;
	else
		return false;
	return true;
}

static void
note(JmField *f, const Value *v)
{
	f->count++;
	f->type = v->type;
	f->text = v->text;
	f->len = v->len;
}

/* An object, rd->p at '{', nested depth deep (1 = top level). */
static bool
read_object(Reader *rd, int depth, Role role)
{
	JmResult   *r = rd->r;
	JmMessage  *m = NULL;

	if (role == ROLE_MESSAGE)
	{
		if (r->n_messages < JM_MAX_MESSAGES)
		{
			m = &r->messages[r->n_messages];
			memset(m, 0, sizeof(*m));
		}
		r->n_messages++;
	}
	rd->p++;
	skip_ws(rd);
	if (rd->p < rd->end && *rd->p == '}')
	{
		rd->p++;
		return true;
	}
	for (;;)
	{
		Value		name;
		Value		v;
		Role		vrole = ROLE_OTHER;

		skip_ws(rd);
		if (rd->p >= rd->end || *rd->p != '"' || !read_string(rd, &name))
			return false;
		skip_ws(rd);
		if (rd->p >= rd->end || *rd->p != ':')
			return false;
		rd->p++;
		if (role == ROLE_TOP && strcmp(name.text, "messages") == 0)
			vrole = ROLE_MESSAGES;
		if (!read_value(rd, depth, vrole, &v))
			return false;
		if (role == ROLE_TOP)
		{
			if (strcmp(name.text, "sid") == 0)
				note(&r->sid, &v);
			else if (strcmp(name.text, "status") == 0)
				note(&r->status, &v);
			else if (strcmp(name.text, "code") == 0)
				note(&r->code, &v);
			else if (strcmp(name.text, "message") == 0)
				note(&r->message, &v);
		}
		else if (m != NULL)
		{
			if (strcmp(name.text, "sid") == 0)
				note(&m->sid, &v);
			else if (strcmp(name.text, "body") == 0)
				note(&m->body, &v);
			else if (strcmp(name.text, "date_created") == 0)
				note(&m->date_created, &v);
		}
		skip_ws(rd);
		if (rd->p >= rd->end)
			return false;
		if (*rd->p == '}')
		{
			rd->p++;
			return true;
		}
		if (*rd->p != ',')
			return false;
		rd->p++;
	}
}

static bool
read_array(Reader *rd, int depth, Role role)
{
	Role		erole = role == ROLE_MESSAGES ? ROLE_MESSAGE : ROLE_OTHER;

	rd->p++;
	skip_ws(rd);
	if (rd->p < rd->end && *rd->p == ']')
	{
		rd->p++;
		return true;
	}
	for (;;)
	{
		Value		v;

		if (!read_value(rd, depth, erole, &v))
			return false;
		skip_ws(rd);
		if (rd->p >= rd->end)
			return false;
		if (*rd->p == ']')
		{
			rd->p++;
			return true;
		}
		if (*rd->p != ',')
			return false;
		rd->p++;
	}
}

/* A value inside depth levels of arrays/objects. */
static bool
read_value(Reader *rd, int depth, Role role, Value *v)
{
	v->text = NULL;
	v->len = 0;
	skip_ws(rd);
	if (rd->p >= rd->end)
		return false;
	switch (*rd->p)
	{
		case '{':
		case '[':
			if (depth + 1 > rd->r->depth)
				rd->r->depth = depth + 1;
			if (depth + 1 > JM_MAX_DEPTH)
			{
				rd->r->too_deep = true;
				return false;
			}
			if (*rd->p == '{')
			{
				v->type = JM_OBJECT;
				return read_object(rd, depth + 1, role);
			}
			v->type = JM_ARRAY;
			return read_array(rd, depth + 1, role);
		case '"':
			return read_string(rd, v);
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			return read_number(rd, v);
		default:
			return read_word(rd, v);
	}
}

void
jm_parse(const char *buf, size_t len, JmResult *r)
{
	Reader		rd;
	Value		v;

	memset(r, 0, offsetof(JmResult, messages));
	r->arena = malloc(2 * len + 16);
	rd.p = (const unsigned char *) buf;
	rd.end = rd.p + len;
	rd.arena = r->arena;
	rd.used = 0;
	rd.r = r;
	/* peek at the top-level type before reading, so that it is known even if reading fails */
	skip_ws(&rd);
	if (rd.p < rd.end)
		r->top = *rd.p == '{' ? JM_OBJECT : *rd.p == '[' ? JM_ARRAY : JM_NONE;
	if (!read_value(&rd, 0, ROLE_TOP, &v))
		return;
	skip_ws(&rd);
	r->top = v.type;
	r->valid = rd.p == rd.end;
}

void
jm_free(JmResult *r)
{
	free(r->arena);
	r->arena = NULL;
}

/* Length of the UTF-8 character at s (at most n bytes), or 0 if it is not valid. */
static size_t
utf8_char(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c >= 0x01 && c <= 0x7F)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF)
	{
		unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
		unsigned char hi = c == 0xED ? 0x9F : 0xBF;

		return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xF0 && c <= 0xF4)
	{
		unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
		unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;

		return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
			(s[3] & 0xC0) == 0x80 ? 4 : 0;
	}
	return 0;
}

bool
jm_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		l = utf8_char(p + i, len - i);

		if (l == 0)
			return false;
		i += l;
	}
	return true;
}

size_t
jm_utf8_clip(const char *s, size_t len, size_t limit)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		l = utf8_char(p + i, len - i);

		if (l == 0 || i + l > limit)
			break;
		i += l;
	}
	return i;
}
