/*-------------------------------------------------------------------------
 *
 * json_model.h
 *		A small JSON reader written apart from PostgreSQL's, as an oracle
 *		for fuzz_response: what tob_parse_response and
 *		tob_parse_list should have found in an input.
 *
 * It accepts exactly the language of pg_parse_json() in PostgreSQL 15 with
 * de-escaping on (RFC 8259 JSON, whitespace = space, tab, LF, CR; \u0000
 * and unpaired UTF-16 surrogates refused; the bytes of a string are not
 * checked for valid UTF-8) and decodes \uXXXX escapes to UTF-8, as a UTF8
 * database does.
 *
 * IDENTIFICATION
 *	  test/fuzz/json_model.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_FUZZ_JSON_MODEL_H
#define TOB_FUZZ_JSON_MODEL_H

#include <stdbool.h>
#include <stddef.h>

typedef enum JmType
{
	JM_NONE = 0,
	JM_OBJECT,
	JM_ARRAY,
	JM_STRING,
	JM_NUMBER,
	JM_TRUE,
	JM_FALSE,
	JM_NULL
} JmType;

/* The occurrences of one key in one object. */
typedef struct JmField
{
	int			count;			/* how often the key occurs */
	JmType		type;			/* type of the last occurrence's value */
	const char *text;			/* its decoded string or number text, else NULL */
	size_t		len;			/* strlen(text) */
} JmField;

typedef struct JmMessage
{
	JmField		sid;
	JmField		body;
	JmField		date_created;
} JmMessage;

/* deeper than this the model gives up: PostgreSQL's caller refuses it anyway */
#define JM_MAX_DEPTH 256
#define JM_MAX_MESSAGES 256

typedef struct JmResult
{
	bool		valid;			/* the input is one JSON value and nothing else */
	bool		too_deep;		/* gave up at JM_MAX_DEPTH (valid is then false) */
	int			depth;			/* deepest array/object nesting; top level = 1 */
	JmType		top;			/* type of the top-level value */
	/* top-level keys of a top-level object */
	JmField		sid;
	JmField		status;
	JmField		code;
	JmField		message;
	/* objects directly inside the top-level "messages" arrays, in order */
	int			n_messages;
	JmMessage	messages[JM_MAX_MESSAGES];
	char	   *arena;			/* decoded strings; freed by jm_free */
} JmResult;

extern void jm_parse(const char *buf, size_t len, JmResult *r);
extern void jm_free(JmResult *r);

/* Strict UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF, no NUL). */
extern bool jm_utf8_valid(const char *s, size_t len);

/* Longest prefix of valid UTF-8 s that is at most limit bytes and ends on a character boundary. */
extern size_t jm_utf8_clip(const char *s, size_t len, size_t limit);

#endif							/* TOB_FUZZ_JSON_MODEL_H */
