/*-------------------------------------------------------------------------
 *
 * clock.h
 *		Monotonic time for pacing, timers and holds.
 *
 * The wall clock can jump (NTP steps, a VM resumed); a token bucket or a
 * pause kept in wall-clock time would then stall for as long as the jump
 * or let a burst through.  Everything the worker only compares with
 * itself is kept in microseconds of CLOCK_MONOTONIC, which is the same in
 * every process of the machine, so the views can read it too.  Times that
 * are stored in tables (next_attempt_at) stay timestamptz.
 *
 * IDENTIFICATION
 *	  src/clock.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_CLOCK_H
#define TOB_CLOCK_H

#include <time.h>

#include "datatype/timestamp.h"
#include "utils/timestamp.h"

/* Microseconds of CLOCK_MONOTONIC; 0 means "not set" wherever it is stored. */
typedef int64 TobMono;

/* A wake-up time meaning "not by a timer": an answer will come first. */
#define TOB_MONO_NEVER PG_INT64_MAX

static inline TobMono
tob_mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (TobMono) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The wall-clock time a monotonic instant corresponds to, for the views. */
static inline TimestampTz
tob_mono_to_timestamptz(TobMono m)
{
	return GetCurrentTimestamp() + (m - tob_mono_now());
}

#endif							/* TOB_CLOCK_H */
