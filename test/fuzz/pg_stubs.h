/*-------------------------------------------------------------------------
 *
 * pg_stubs.h
 *		What the fuzz harnesses ask of the stand-in backend in pg_stubs.c.
 *
 * pg_stubs.c replaces the few backend services that src/form.c,
 * src/response.c and PostgreSQL's JSON parser use: palloc and friends (a
 * tracked arena that the harness resets after every input, like the
 * worker's per-turn memory context), the database encoding, and
 * ereport/elog, which abort(): the worker must never raise from these
 * modules, so any ereport reached while fuzzing is a finding.
 *
 * IDENTIFICATION
 *	  test/fuzz/pg_stubs.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_FUZZ_PG_STUBS_H
#define TOB_FUZZ_PG_STUBS_H

#include <stddef.h>

/* Read TOB_FUZZ_SERVER_ENCODING (UTF8, SQL_ASCII or LATIN1; UTF8 by default). */
extern void tob_fuzz_init(void);

/* Name of the database encoding the stubs pretend to run under. */
extern const char *tob_fuzz_encoding_name(void);

/* Free everything palloc'd since the last reset (MemoryContextReset). */
extern void tob_fuzz_mem_reset(void);

/* Bytes requested by palloc and still live / at most live since the last reset. */
extern size_t tob_fuzz_mem_live(void);
extern size_t tob_fuzz_mem_peak(void);

/* Deepest check_stack_depth() call seen since the last reset, in bytes of stack. */
extern void tob_fuzz_stack_base(void *base);
extern size_t tob_fuzz_stack_peak(void);

/* Report a violated property and abort (libFuzzer then saves the input). */
extern void tob_fuzz_fail(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

#endif							/* TOB_FUZZ_PG_STUBS_H */
