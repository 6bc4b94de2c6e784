/*-------------------------------------------------------------------------
 *
 * fuzz_response.c
 *		libFuzzer harness for src/response.c: tob_parse_response() and
 *		tob_parse_list() over an untrusted answer body.
 *
 * Each input is handed to both parsers as a buffer of exactly its length
 * (not NUL-terminated), as the worker hands them the body it read.  Beyond
 * "no crash, no sanitizer report, no ereport" (see pg_stubs.c) it checks:
 *
 * - every kept string is NUL-terminated inside its buffer and valid UTF-8;
 *   a listed body is NULL or valid UTF-8;
 * - the list has at most TOB_LIST_MAX messages;
 * - memory: at most 8 bytes live per input byte (+64 KiB), and the stack
 *   reached by the JSON parser stays far below max_stack_depth;
 * - against json_model.c, an independent reader: the body counts as a JSON
 *   object exactly when it is valid JSON whose top level is an object and
 *   whose nesting is at most 32; then a top-level "sid", "status", "code"
 *   or "message" that occurs once is kept as the model says (a string
 *   value only if valid UTF-8, sid only if shorter than 64 bytes, status
 *   and message cut at a character boundary to fit), and the list holds
 *   the first TOB_LIST_MAX objects of the top-level "messages" array with
 *   their sid, body and date_created;
 * - tob_is_message_sid() agrees with ^(SM|MM)[0-9a-fA-F]{32}$.
 *
 * TOB_FUZZ_SERVER_ENCODING=SQL_ASCII (or LATIN1 with the backend build)
 * runs the parsers as in a database of that encoding.
 *
 * IDENTIFICATION
 *	  test/fuzz/fuzz_response.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

#include "json_model.h"
#include "pg_stubs.h"

#define MAX_NESTING 32
/* far more than 32 levels of pg_parse_json need, far less than max_stack_depth */
#define STACK_LIMIT (512 * 1024)

static JmResult model;

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	tob_fuzz_init();
	return 0;
}

/* A string the parser kept: NUL-terminated within size bytes, valid UTF-8. */
static void
check_kept(const char *what, int index, const char *buf, size_t size)
{
	const char *nul = memchr(buf, '\0', size);

	if (nul == NULL)
		tob_fuzz_fail("%s[%d] is not NUL-terminated within its %zu bytes", what, index, size);
	if (!jm_utf8_valid(buf, nul - buf))
		tob_fuzz_fail("%s[%d] is not valid UTF-8", what, index);
}

static bool
looks_like_message_sid(const char *s)
{
	int			i;

	if (!((s[0] == 'S' || s[0] == 'M') && s[1] == 'M'))
		return false;
	for (i = 2; i < 34; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
			  (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return s[34] == '\0';
}

static void
check_sid_test(const char *sid)
{
	if (tob_is_message_sid(sid) != looks_like_message_sid(sid))
		tob_fuzz_fail("tob_is_message_sid(\"%s\") returned %d", sid, (int) tob_is_message_sid(sid));
}

/*
 * A kept string against the model's value of the key.  size is the buffer's
 * size; clip says whether a long value is cut to fit (else dropped).
 */
static void
expect_text(const char *what, int index, const char *got, size_t size,
			const JmField *f, bool clip)
{
	size_t		want;

	if (f->count > 1)
		return;					/* repeated key: which one wins is not specified */
	if (f->count == 0 || f->type != JM_STRING)
	{
		if (got[0] != '\0')
			tob_fuzz_fail("%s[%d] is \"%s\" but the key is %s", what, index, got,
						  f->count == 0 ? "absent" : "not a string");
		return;
	}
	if (!jm_utf8_valid(f->text, f->len))
	{
		/* dropped, or the valid head of it that fits when clipping */
		if (got[0] != '\0' &&
			(!clip || strncmp(got, f->text, strlen(got)) != 0))
			tob_fuzz_fail("%s[%d] is \"%s\" but the value is not valid UTF-8", what, index, got);
		return;
	}
	if (clip)
		want = jm_utf8_clip(f->text, f->len, size - 1);
	else
		want = f->len < size ? f->len : 0;
	if (strlen(got) != want || memcmp(got, f->text, want) != 0)
		tob_fuzz_fail("%s[%d] is \"%s\" (%zu bytes) but should be the first %zu bytes of the %zu-byte value \"%.80s\"",
					  what, index, got, strlen(got), want, f->len, f->text);
}

static int
expected_code(const JmField *f)
{
	char	   *end;
	long		code;

	if (f->count == 0 || (f->type != JM_NUMBER && f->type != JM_STRING))
		return 0;
	code = strtol(f->text, &end, 10);
	if (end != f->text && *end == '\0' && code > 0 && code < INT_MAX)
		return (int) code;
	return 0;
}

static bool
expect_object(void)
{
	return model.valid && model.top == JM_OBJECT && model.depth <= MAX_NESTING;
}

static void
explain_object(bool got)
{
	tob_fuzz_fail("parser says %s, model says %s JSON, top-level %s, nesting %d%s",
				  got ? "a JSON object" : "not a JSON object",
				  model.valid ? "valid" : "invalid",
				  model.top == JM_OBJECT ? "object" : "not an object",
				  model.depth, model.too_deep ? " or more" : "");
}

static void
check_memory(const char *what, size_t size)
{
	size_t		limit = 8 * size + 64 * 1024;

	if (tob_fuzz_mem_peak() > limit)
		tob_fuzz_fail("%s had %zu bytes live for a %zu-byte input (limit %zu)",
					  what, tob_fuzz_mem_peak(), size, limit);
	if (tob_fuzz_stack_peak() > STACK_LIMIT)
		tob_fuzz_fail("%s: the JSON parser used %zu bytes of stack", what, tob_fuzz_stack_peak());
}

static void
check_response(const char *body, size_t size)
{
	TobTwilioResponse out;
	static const TobTwilioResponse zero;

	memset(&out, 0xA5, sizeof(out));	/* whatever is not set shows */
	tob_parse_response(body, size, &out);
	check_memory("tob_parse_response", size);

	check_kept("sid", 0, out.sid, sizeof(out.sid));
	check_kept("status", 0, out.status, sizeof(out.status));
	check_kept("message", 0, out.message, sizeof(out.message));
	check_sid_test(out.sid);

	if (out.is_object != expect_object())
		explain_object(out.is_object);
	if (!out.is_object)
	{
		if (memcmp(&out, &zero, sizeof(out)) != 0)
			tob_fuzz_fail("not an object, but the answer is not all zero");
		return;
	}
	expect_text("sid", 0, out.sid, sizeof(out.sid), &model.sid, false);
	expect_text("status", 0, out.status, sizeof(out.status), &model.status, true);
	expect_text("message", 0, out.message, sizeof(out.message), &model.message, true);
	if (model.code.count <= 1 && out.code != expected_code(&model.code))
		tob_fuzz_fail("code is %d, should be %d", out.code, expected_code(&model.code));
}

static void
check_list(const char *body, size_t size)
{
	TobListed  *messages = NULL;
	char	   *next_page_uri = NULL;
	int			n = tob_parse_list(body, size, "messages", &messages, &next_page_uri);
	int			want;
	int			i;

	check_memory("tob_parse_list", size);
	if (messages == NULL)
		tob_fuzz_fail("tob_parse_list left messages NULL");
	if (n < -1 || n > TOB_LIST_MAX)
		tob_fuzz_fail("tob_parse_list returned %d", n);
	if (n < 0 && next_page_uri != NULL)
		tob_fuzz_fail("tob_parse_list gave a next_page_uri for an answer that is not a list");
	if (next_page_uri != NULL && (strlen(next_page_uri) >= TOB_NEXT_URI_MAX ||
								  !jm_utf8_valid(next_page_uri, strlen(next_page_uri))))
		tob_fuzz_fail("next_page_uri is too long or not valid UTF-8");

	want = !expect_object() ? -1 : Min(model.n_messages, TOB_LIST_MAX);
	if (n != want)
	{
		if ((n < 0) != (want < 0))
			explain_object(n >= 0);
		tob_fuzz_fail("%d messages listed, the model sees %d in \"messages\" (at most %d kept)",
					  n, model.n_messages, TOB_LIST_MAX);
	}
	for (i = 0; i < n; i++)
	{
		TobListed  *m = &messages[i];
		const JmMessage *mm = &model.messages[i];

		check_kept("list sid", i, m->sid, sizeof(m->sid));
		check_kept("list from", i, m->from, sizeof(m->from));
		check_kept("list to", i, m->to, sizeof(m->to));
		check_kept("list messaging_service_sid", i, m->messaging_service_sid,
				   sizeof(m->messaging_service_sid));
		check_kept("list status", i, m->status, sizeof(m->status));
		check_kept("list date_created", i, m->date_created, sizeof(m->date_created));
		check_sid_test(m->sid);
		if (m->body != NULL && !jm_utf8_valid(m->body, strlen(m->body)))
			tob_fuzz_fail("list body[%d] is not valid UTF-8", i);

		expect_text("list sid", i, m->sid, sizeof(m->sid), &mm->sid, false);
		expect_text("list date_created", i, m->date_created, sizeof(m->date_created),
					&mm->date_created, true);
		if (mm->body.count <= 1)
		{
			bool		want_body = mm->body.count == 1 && mm->body.type == JM_STRING &&
				jm_utf8_valid(mm->body.text, mm->body.len);

			if (want_body != (m->body != NULL) ||
				(want_body && strcmp(m->body, mm->body.text) != 0))
				tob_fuzz_fail("list body[%d] is %s%.80s%s, should be %s%.80s%s", i,
							  m->body ? "\"" : "", m->body ? m->body : "NULL", m->body ? "\"" : "",
							  want_body ? "\"" : "", want_body ? mm->body.text : "NULL",
							  want_body ? "\"" : "");
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *) data;
	char		stack_here;

	jm_parse(body, size, &model);

	tob_fuzz_stack_base(&stack_here);
	check_response(body, size);
	tob_fuzz_mem_reset();

	tob_fuzz_stack_base(&stack_here);
	check_list(body, size);
	tob_fuzz_mem_reset();

	jm_free(&model);
	return 0;
}
