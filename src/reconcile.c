/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *		Looking an ambiguous attempt up in Twilio's Messages list.
 *
 * Twilio's Messages API has no idempotency key.  When an attempt ended so
 * that Twilio may have created the message (a 5xx, a timeout, a lost
 * connection after the request went out), the row is marked unconfirmed,
 * and before it is sent again the worker reads
 *
 *		GET .../Messages.json?To=<to>&From=<sender>&PageSize=50
 *
 * (From only where the pool has a phone number or sender id: a Messaging
 * Service picks its own), newest first, following next_page_uri until
 * the messages are older than the first ambiguous attempt's claim (minus
 * CLOCK_SKEW_US, for the two clocks).  DateSent is of no use: it filters
 * on date_sent, which is null while a message waits in Twilio's queue,
 * exactly when answers are slow or ambiguous.
 *
 * A listed message is a candidate when it can be this row's: to that
 * number, from that sender (or that Messaging Service), created in the
 * window, and with the row's body when the row has one.  A template row
 * (ContentSid: Twilio lists the rendered text) or a media-only row (listed
 * with an empty body) can prove no more than number, sender and window, so
 * any such message that no other row holds is taken as its own: if
 * something outside the outbox texted the same number from the same
 * sender in that window, the row is taken for sent (README, "Delivery
 * guarantee").
 *
 * A call is looked up the same way in the Calls list (GET .../Calls.json
 * ?To=...&From=...): a call has no text, so any call to that number from
 * that number, created in the window, that no row holds is the row's.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/reconcile.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "form.h"
#include "queue.h"
#include "reconcile.h"
#include "settings.h"

#define CLOCK_SKEW_US		(30 * USECS_PER_SEC)
#define LOOKUP_PAGE_SIZE	"50"
#define LOOKUP_MAX_PAGES	20

TobLookup *
tob_lookup_new(bool is_call, const char *to, const char *sender, const char *body,
			   bool content_sid, int nmedia, TimestampTz since)
{
	TobLookup  *l = MemoryContextAllocZero(TopMemoryContext, sizeof(TobLookup));

	l->is_call = is_call;
	l->to = MemoryContextStrdup(TopMemoryContext, to);
	l->sender = MemoryContextStrdup(TopMemoryContext, sender);
	l->media_only = !is_call && !content_sid && nmedia > 0 && (body == NULL || body[0] == '\0');
	l->by_content = is_call || content_sid || l->media_only;
	l->body = (!l->by_content && body) ? MemoryContextStrdup(TopMemoryContext, body) : NULL;
	l->since = since;
	return l;
}

void
tob_lookup_free(TobLookup *l)
{
	pfree(l->to);
	pfree(l->sender);
	if (l->body)
		pfree(l->body);
	pfree(l);
}

static bool
is_service(const char *sender)
{
	return strncmp(sender, "MG", 2) == 0;
}

/* The API base URL without trailing slashes, and its length. */
static int
base_len(void)
{
	int			len = strlen(tob_api_base_url);

	while (len > 0 && tob_api_base_url[len - 1] == '/')
		len--;
	return len;
}

char *
tob_messages_url(void)
{
	return psprintf("%.*s/2010-04-01/Accounts/%s/Messages.json",
					base_len(), tob_api_base_url, tob_account_sid);
}

char *
tob_calls_url(void)
{
	return psprintf("%.*s/2010-04-01/Accounts/%s/Calls.json",
					base_len(), tob_api_base_url, tob_account_sid);
}

char *
tob_call_url(const char *sid)
{
	return psprintf("%.*s/2010-04-01/Accounts/%s/Calls/%s.json",
					base_len(), tob_api_base_url, tob_account_sid, sid);
}

char *
tob_lookup_first_url(const TobLookup *l)
{
	StringInfoData q;

	initStringInfo(&q);
	tob_form_add(&q, "To", l->to);
	if (!is_service(l->sender))
		tob_form_add(&q, "From", l->sender);
	tob_form_add(&q, "PageSize", LOOKUP_PAGE_SIZE);
	return psprintf("%s?%s", l->is_call ? tob_calls_url() : tob_messages_url(), q.data);
}

/* Could the listed message be this row's, going by what the row proves? */
static bool
could_be_ours(const TobLookup *l, const TobListed *m)
{
	if (strcmp(m->to, l->to) != 0)
		return false;
	if (l->is_call)
		return strcmp(m->from, l->sender) == 0;
	if (is_service(l->sender) ? pg_strcasecmp(m->messaging_service_sid, l->sender) != 0 :
		strcmp(m->from, l->sender) != 0)
		return false;
	if (l->media_only)
		return m->body == NULL || m->body[0] == '\0';
	if (l->by_content)
		return true;
	return l->body != NULL && m->body != NULL && strcmp(m->body, l->body) == 0;
}

TobLookupStep
tob_lookup_page(TobLookup *l, const TobHttpResult *result, char **next_url)
{
	TobListed  *items;
	char	   *next_page_uri;
	bool		window_passed = false;
	int			n;
	int			i;

	*next_url = NULL;
	if (result->status != 200)
		return TOB_LOOKUP_FAILED;
	n = tob_parse_list(result->body, result->body_len, l->is_call ? "calls" : "messages",
					   &items, &next_page_uri);
	if (n < 0)
		return TOB_LOOKUP_FAILED;
	l->pages++;

	for (i = 0; i < n; i++)
	{
		TobListed  *m = &items[i];
		time_t		created = curl_getdate(m->date_created, NULL);

		if (!(l->is_call ? tob_is_call_sid(m->sid) : tob_is_message_sid(m->sid)) || created < 0)
			continue;
		if (time_t_to_timestamptz(created) < l->since - CLOCK_SKEW_US)
		{
			/* newest first: the rest are older still */
			window_passed = true;
			break;
		}
		if (could_be_ours(l, m) && l->ncand < TOB_LOOKUP_MAX_CANDIDATES)
		{
			strlcpy(l->cand[l->ncand], m->sid, TOB_SID_LEN);
			strlcpy(l->cand_status[l->ncand], m->status, TOB_STATUS_LEN);
			l->ncand++;
		}
	}
	if (window_passed || next_page_uri == NULL)
		return TOB_LOOKUP_DONE;

	/*
	 * The credentials go with the next page too: only ever to our own API
	 * base, whatever the answer names.
	 */
	if (next_page_uri[0] != '/' || l->pages >= LOOKUP_MAX_PAGES)
		return TOB_LOOKUP_FAILED;
	*next_url = psprintf("%.*s%s", base_len(), tob_api_base_url, next_page_uri);
	return TOB_LOOKUP_MORE;
}

/* qsort: lookups (by index into sort_lookups) oldest ambiguous attempt first */
static TobLookup **sort_lookups;

static int
by_since(const void *a, const void *b)
{
	TimestampTz sa = sort_lookups[*(const int *) a]->since;
	TimestampTz sb = sort_lookups[*(const int *) b]->since;

	return sa < sb ? -1 : sa > sb ? 1 : 0;
}

void
tob_lookup_choose(const char *schema, TobLookup **lookups, int n,
				  char **busy, int nbusy, int *chosen)
{
	int			total = 0;
	char	  **sids;
	bool	   *in_use;
	int		   *first = palloc(sizeof(int) * Max(n, 1));
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	int			i;
	int			j;
	int			k;

	for (i = 0; i < n; i++)
	{
		first[i] = total;
		total += lookups[i]->ncand;
		order[i] = i;
		chosen[i] = -1;
	}
	sids = palloc(sizeof(char *) * (total + 1));
	in_use = palloc0(sizeof(bool) * (total + 1));
	for (i = 0; i < n; i++)
		for (j = 0; j < lookups[i]->ncand; j++)
			sids[first[i] + j] = lookups[i]->cand[j];
	if (total > 0)
		tob_sids_in_use(schema, sids, total, in_use);

	/* sids answered but not yet written are held too */
	for (k = 0; k < total; k++)
		for (j = 0; j < nbusy && !in_use[k]; j++)
			in_use[k] = strcmp(sids[k], busy[j]) == 0;

	sort_lookups = lookups;
	qsort(order, n, sizeof(int), by_since);
	for (i = 0; i < n; i++)
	{
		int			l = order[i];

		/* the oldest candidate is the likeliest to be this row's own */
		for (j = lookups[l]->ncand - 1; j >= 0 && chosen[l] < 0; j--)
			if (!in_use[first[l] + j])
				chosen[l] = j;
		if (chosen[l] < 0)
			continue;
		/* one message settles one row */
		for (k = 0; k < total; k++)
			if (strcmp(sids[k], lookups[l]->cand[chosen[l]]) == 0)
				in_use[k] = true;
	}
}
