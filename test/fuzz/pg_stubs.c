/*-------------------------------------------------------------------------
 *
 * pg_stubs.c
 *		The backend services that src/form.c, src/response.c and PostgreSQL's
 *		JSON parser need, for fuzzing them without a running server.
 *
 * Memory: palloc() and friends hand out tracked malloc() chunks, so that
 * AddressSanitizer sees every byte, the harness can free all of them after
 * each input (as MemoryContextReset of the worker's turn context does) and
 * check that an input of n bytes never has more than O(n) bytes live.
 * palloc() past MaxAllocSize, pfree(NULL) and pfree/repalloc of a foreign
 * pointer abort, as they would raise or crash in the backend.
 *
 * Errors: errstart() at WARNING or above aborts in errfinish() with the
 * message: the worker must never raise (or log) from these modules, so an
 * ereport/elog reached while fuzzing is a finding.  Below WARNING nothing is
 * emitted, as with the default log_min_messages.
 *
 * Encoding: the database encoding is UTF8 unless TOB_FUZZ_SERVER_ENCODING
 * names SQL_ASCII or LATIN1.  It drives pg_mbcliplen() (mbutils.c) and
 * pg_unicode_to_server(), which the backend JSON lexer calls for each \uXXXX
 * escape.  When the harness links the frontend build of jsonapi.o (all that
 * Debian ships), build.sh renames that object's call to unicode_to_utf8()
 * to tob_fuzz_json_unicode_to_utf8() below, which does what the backend's
 * pg_unicode_to_server() would do at the same point.
 *
 * IDENTIFICATION
 *	  test/fuzz/pg_stubs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "pg_stubs.h"

/*---- reporting ----*/

void
tob_fuzz_fail(const char *fmt,...)
{
	va_list		ap;

	fputs("\n*** twilio_outbox fuzz property violated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	fflush(stderr);
	abort();
}

/*---- memory ----*/

#define CHUNK_MAGIC UINT64CONST(0x7462666f757a7a21)

typedef struct FuzzChunk
{
	struct FuzzChunk *prev;
	struct FuzzChunk *next;
	size_t		size;
	uint64		magic;
} FuzzChunk;					/* 32 bytes: keeps malloc's alignment */

static FuzzChunk chunks = {&chunks, &chunks, 0, 0};
static size_t mem_live;
static size_t mem_peak;

MemoryContext CurrentMemoryContext = NULL;

static void *
chunk_alloc(size_t size, bool zero)
{
	FuzzChunk  *c;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	c = zero ? calloc(1, sizeof(FuzzChunk) + size) : malloc(sizeof(FuzzChunk) + size);
	if (c == NULL)
		tob_fuzz_fail("out of memory allocating %zu bytes", size);
	c->size = size;
	c->magic = CHUNK_MAGIC;
	c->next = chunks.next;
	c->prev = &chunks;
	chunks.next->prev = c;
	chunks.next = c;
	mem_live += size;
	if (mem_live > mem_peak)
		mem_peak = mem_live;
	return c + 1;
}

static FuzzChunk *
chunk_of(void *pointer, const char *caller)
{
	FuzzChunk  *c;

	if (pointer == NULL)
		tob_fuzz_fail("%s(NULL): the backend would crash", caller);
	c = (FuzzChunk *) pointer - 1;
	if (c->magic != CHUNK_MAGIC)
		tob_fuzz_fail("%s of a pointer that palloc did not return", caller);
	return c;
}

static void
chunk_unlink(FuzzChunk *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	mem_live -= c->size;
	c->magic = 0;
}

void *
palloc(Size size)
{
	return chunk_alloc(size, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(size, true);
}

void *
repalloc(void *pointer, Size size)
{
	FuzzChunk  *c = chunk_of(pointer, "repalloc");
	void	   *fresh;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	/* always move, so that a caller keeping the old pointer is caught */
	fresh = chunk_alloc(size, false);
	memcpy(fresh, pointer, Min(size, c->size));
	chunk_unlink(c);
	free(c);
	return fresh;
}

void
pfree(void *pointer)
{
	FuzzChunk  *c = chunk_of(pointer, "pfree");

	chunk_unlink(c);
	free(c);
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = chunk_alloc(len + 1, false);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = chunk_alloc(len + 1, false);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	return pstrdup(string);
}

void
tob_fuzz_mem_reset(void)
{
	while (chunks.next != &chunks)
	{
		FuzzChunk  *c = chunks.next;

		chunk_unlink(c);
		free(c);
	}
	mem_live = 0;
	mem_peak = 0;
}

size_t
tob_fuzz_mem_live(void)
{
	return mem_live;
}

size_t
tob_fuzz_mem_peak(void)
{
	return mem_peak;
}

/*---- ereport / elog ----*/

static int	err_level;
static char err_text[1024];

static void
err_append(const char *label, const char *fmt, va_list ap)
{
	size_t		used = strlen(err_text);

	if (used + strlen(label) + 1 >= sizeof(err_text))
		return;
	strcat(err_text, label);
	used = strlen(err_text);
	vsnprintf(err_text + used, sizeof(err_text) - used, fmt, ap);
}

bool
message_level_is_interesting(int elevel)
{
	return elevel >= WARNING;
}

bool
errstart(int elevel, const char *domain)
{
	if (elevel < WARNING)
		return false;
	err_level = elevel;
	err_text[0] = '\0';
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	tob_fuzz_fail("ereport(%s) reached at %s:%d (%s): %s",
				  err_level >= ERROR ? "ERROR or worse" : "WARNING",
				  filename ? filename : "?", lineno, funcname ? funcname : "?", err_text);
}

int
errcode(int sqlerrcode)
{
	return 0;
}

#define ERR_APPENDER(name, label) \
int \
name(const char *fmt,...) \
{ \
	va_list		ap; \
 \
	va_start(ap, fmt); \
	err_append(label, fmt, ap); \
	va_end(ap); \
	return 0; \
}

ERR_APPENDER(errmsg, "")
ERR_APPENDER(errmsg_internal, "")
ERR_APPENDER(errdetail, " DETAIL: ")
ERR_APPENDER(errdetail_internal, " DETAIL: ")
ERR_APPENDER(errhint, " HINT: ")
ERR_APPENDER(errcontext_msg, " CONTEXT: ")

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

void
pg_re_throw(void)
{
	tob_fuzz_fail("pg_re_throw reached");
}

/*
 * response.c wraps the parser in PG_TRY; errstart() above aborts at ERROR,
 * so the catch block is never entered here: a raise is still a finding.
 */
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

void
FlushErrorState(void)
{
	tob_fuzz_fail("FlushErrorState reached");
}

void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	tob_fuzz_fail("Assert(%s) failed at %s:%d", conditionName, fileName, lineNumber);
}

/*---- stack depth ----*/

static char *stack_base;
static size_t stack_peak;

void
tob_fuzz_stack_base(void *base)
{
	stack_base = base;
	stack_peak = 0;
}

size_t
tob_fuzz_stack_peak(void)
{
	return stack_peak;
}

/* As in postgres.c, with the default max_stack_depth of 2MB. */
void
check_stack_depth(void)
{
	char		here;
	size_t		depth;

	if (stack_base == NULL)
		return;
	depth = stack_base > &here ? (size_t) (stack_base - &here) : 0;
	if (depth > stack_peak)
		stack_peak = depth;
	if (depth > 2048 * 1024L)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded")));
}

/*---- database encoding (mbutils.c) ----*/

static int	server_encoding = PG_UTF8;

void
tob_fuzz_init(void)
{
	const char *name = getenv("TOB_FUZZ_SERVER_ENCODING");

	if (name == NULL || name[0] == '\0' || strcmp(name, "UTF8") == 0)
		server_encoding = PG_UTF8;
	else if (strcmp(name, "SQL_ASCII") == 0)
		server_encoding = PG_SQL_ASCII;
	else if (strcmp(name, "LATIN1") == 0)
	{
#ifdef TOB_FUZZ_FRONTEND_JSONAPI
		fprintf(stderr, "TOB_FUZZ_SERVER_ENCODING=LATIN1 needs the backend build of jsonapi (PG_SRC)\n");
		exit(2);
#endif
		server_encoding = PG_LATIN1;
	}
	else
	{
		fprintf(stderr, "TOB_FUZZ_SERVER_ENCODING must be UTF8, SQL_ASCII or LATIN1\n");
		exit(2);
	}
}

const char *
tob_fuzz_encoding_name(void)
{
	return GetDatabaseEncodingName();
}

int
GetDatabaseEncoding(void)
{
	return server_encoding;
}

const char *
GetDatabaseEncodingName(void)
{
	return server_encoding == PG_UTF8 ? "UTF8" :
		server_encoding == PG_LATIN1 ? "LATIN1" : "SQL_ASCII";
}

int
pg_database_encoding_max_length(void)
{
	return pg_encoding_max_length(server_encoding);
}

int
pg_mblen(const char *mbstr)
{
	return pg_encoding_mblen(server_encoding, mbstr);
}

/*
 * pg_encoding_mbcliplen: the byte length of the longest prefix of mbstr (len
 * bytes, stopping at a NUL) that is at most limit bytes and does not split a
 * character of the encoding.  Same algorithm as mbutils.c.
 */
int
pg_encoding_mbcliplen(int encoding, const char *mbstr, int len, int limit)
{
	int			clen = 0;

	if (pg_encoding_max_length(encoding) == 1)
	{
		len = Min(len, limit);
		while (clen < len && mbstr[clen])
			clen++;
		return clen;
	}
	while (len > 0 && *mbstr)
	{
		int			l = pg_encoding_mblen(encoding, mbstr);

		if (clen + l > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		mbstr += l;
	}
	return clen;
}

/* pg_mbcliplen: the same in the database encoding */
int
pg_mbcliplen(const char *mbstr, int len, int limit)
{
	return pg_encoding_mbcliplen(server_encoding, mbstr, len, limit);
}

/*
 * pg_unicode_to_server: what mbutils.c does for the database encodings the
 * harness knows.  Non-ASCII code points raise unless the database is UTF8
 * or (for U+0080..U+00FF) LATIN1: a SQL_ASCII database has no conversion
 * function, LATIN1 none for the rest.
 */
void
pg_unicode_to_server(pg_wchar c, unsigned char *s)
{
	if (!is_valid_unicode_codepoint(c))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid Unicode code point")));
	if (c <= 0x7F)
	{
		s[0] = (unsigned char) c;
		s[1] = '\0';
		return;
	}
	if (server_encoding == PG_UTF8)
	{
		unicode_to_utf8(c, s);
		s[pg_utf_mblen(s)] = '\0';
		return;
	}
	if (server_encoding == PG_LATIN1 && c <= 0xFF)
	{
		s[0] = (unsigned char) c;
		s[1] = '\0';
		return;
	}
	if (server_encoding == PG_LATIN1)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("character U+%04X in encoding \"UTF8\" has no equivalent in encoding \"LATIN1\"",
						(unsigned int) c)));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("conversion between UTF8 and %s is not supported",
					GetDatabaseEncodingName())));
}

/*
 * The frontend jsonapi.o appends unicode_to_utf8(ch) for each \uXXXX escape
 * where the backend appends pg_unicode_to_server(ch); build.sh points that
 * call here.  With a UTF8 database both give the same bytes.
 */
unsigned char *tob_fuzz_json_unicode_to_utf8(pg_wchar c, unsigned char *utf8string);

unsigned char *
tob_fuzz_json_unicode_to_utf8(pg_wchar c, unsigned char *utf8string)
{
	if (server_encoding != PG_UTF8 && c > 0x7F)
	{
		unsigned char buf[MAX_UNICODE_EQUIVALENT_STRING + 1];

		pg_unicode_to_server(c, buf);	/* raises: LATIN1 is refused above */
	}
	return unicode_to_utf8(c, utf8string);
}
