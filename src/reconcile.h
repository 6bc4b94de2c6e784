/*-------------------------------------------------------------------------
 *
 * reconcile.h
 *		Finding out whether Twilio already has a message whose attempt
 *		ended ambiguously, before it is sent again.
 *
 * IDENTIFICATION
 *	  src/reconcile.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_RECONCILE_H
#define TOB_RECONCILE_H

#include "datatype/timestamp.h"

#include "http.h"
#include "response.h"

#define TOB_LOOKUP_MAX_CANDIDATES 64

/*
 * One row's lookup: what the row can prove, and what the pages read so far
 * showed.  Allocated in TopMemoryContext by tob_lookup_new.
 */
typedef struct TobLookup
{
	bool		is_call;		/* in the Calls list, not the Messages list */
	char	   *to;				/* UTF-8 */
	char	   *sender;			/* the pool's sender: a From, or an MG... service */
	char	   *body;			/* UTF-8; NULL when the row has none */
	bool		by_content;		/* a template or media only: no text to compare */
	bool		media_only;
	TimestampTz since;			/* the first ambiguous attempt was claimed then */
	int			pages;			/* pages read so far */
	int			ncand;
	char		cand[TOB_LOOKUP_MAX_CANDIDATES][TOB_SID_LEN];	/* newest first */
	char		cand_status[TOB_LOOKUP_MAX_CANDIDATES][TOB_STATUS_LEN];
} TobLookup;

typedef enum TobLookupStep
{
	TOB_LOOKUP_MORE,			/* read the next page */
	TOB_LOOKUP_DONE,			/* every message of the window was seen */
	TOB_LOOKUP_FAILED			/* the list told nothing */
} TobLookupStep;

extern TobLookup *tob_lookup_new(bool is_call, const char *to, const char *sender,
								 const char *body, bool content_sid, int nmedia,
								 TimestampTz since);
extern void tob_lookup_free(TobLookup *lookup);

/*
 * The URLs of the API: {api_base_url}/2010-04-01/Accounts/{sid}/Messages.json,
 * .../Calls.json, and .../Calls/{call_sid}.json.
 */
extern char *tob_messages_url(void);
extern char *tob_calls_url(void);
extern char *tob_call_url(const char *sid);

/* The first page to read: the messages (calls) to that number from that sender, newest first. */
extern char *tob_lookup_first_url(const TobLookup *lookup);

/*
 * Take in one answered page.  On TOB_LOOKUP_MORE, *next_url is the page
 * to read next.
 */
extern TobLookupStep tob_lookup_page(TobLookup *lookup, const TobHttpResult *result,
									 char **next_url);

/*
 * Decide finished lookups together: each takes the oldest of its
 * candidates that no row holds (the database, the `nbusy` sids in `busy`
 * that are still to be recorded, or an earlier lookup of the batch),
 * oldest ambiguous attempt first.  chosen[i] is the index of lookup i's
 * candidate, or -1.  Needs a transaction.
 */
extern void tob_lookup_choose(const char *schema, TobLookup **lookups, int n,
							  char **busy, int nbusy, int *chosen);

#endif							/* TOB_RECONCILE_H */
