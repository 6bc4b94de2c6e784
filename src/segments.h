/*-------------------------------------------------------------------------
 *
 * segments.h
 *		How many SMS segments a body takes: the unit Twilio paces in.
 *
 * IDENTIFICATION
 *	  src/segments.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_SEGMENTS_H
#define TOB_SEGMENTS_H

/* Segments of a UTF-8 body of len bytes; an empty body counts as 1. */
extern int	tob_count_segments(const char *utf8, int len);

#endif							/* TOB_SEGMENTS_H */
