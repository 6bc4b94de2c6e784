#!/usr/bin/env python3
"""Reconciliation against Twilio's real list: never text twice.

Each part gives some rows an ambiguous answer (the message exists at the
double, but the answer is a 500, a 504 or a dropped connection) and checks
that the lookup finds it, so it is recorded with that sid and never POSTed
again; 0 lost, 0 duplicates, no request before its next_attempt_at.

(a) Twilio's own queue: created messages stay queued with date_sent null
    for 5 s (a DateSent filter would miss every one of them).
(b) A busy recipient: after the ambiguous answer 120 other messages reach
    the same number, so the row's message is on the third page of the list;
    the lookup follows next_page_uri back to the attempt.
(c) Rows without text to compare: a ContentSid template (listed with its
    rendered text) and a media-only message (listed with an empty body)
    are matched by number, sender and time; two template rows to the same
    number each get their own message; a media-only row whose message was
    never created is looked up, not found, and sent.
(d) A message of another row in flight to the same number is never taken:
    row A's attempt was lost without a message, row B's message to the same
    number exists but B's answer is still on its way when A looks up.  A
    must not take B's message; A is sent, B keeps its own sid.
(e) The flag that says "look it up first" holds: a row that failed after an
    ambiguous last attempt (max_attempts) stays unconfirmed, and
    twilio_retry() does not clear it: the retried row is looked up and
    reconciled, not sent again.
"""

import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, pg_array, start, wait_until  # noqa: E402
import chaos  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                             "twilio_outbox.backoff_max_ms": 2000,
                             "twilio_outbox.max_concurrency": 8,
                             "twilio_outbox.lookup_settle_ms": 1000})
chaos.install_history(pg)
SENDER = "+15005551801"
pg.add_pool("rec", SENDER, mps=100, burst=10)


def since_now():
    return max((r["seq"] for r in double.requests(create_only=False)), default=0)


def per_to(reqs):
    out = collections.defaultdict(list)
    for r in reqs:
        out[chaos.request_to(r)].append(r)
    return out


def created_sids(reqs, to):
    """Sids of the messages the double stored for `to` in these requests."""
    return [r["sid"] for r in reqs if r["kind"] == "messages_create"
            and chaos.request_to(r) == to and r["sid"]]


def row(i):
    return pg.sql_dicts("SELECT id, status, twilio_sid, unconfirmed, attempts, last_error "
                        "FROM twilio_outbox WHERE id = :'p1'", i)[0]


@t.case("(a) messages wait in Twilio's queue: no date_sent")
def queued():
    seq0 = since_now()
    double.config(queued_for_s=5, rules=[
        {"count": 4, "status": 500, "code": 20500, "process": True},
        {"count": 3, "status": 504, "code": 20500, "process": True},
        {"count": 3, "drop": True, "process": True},
    ])
    ids = chaos.enqueue_series(pg, 30, "rec", "+1415180", "queued at Twilio ")
    done = chaos.wait_terminal(pg, ids, 60)
    t.ok(done, "all 30 rows finished within 60 s", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    lookups = [r for r in reqs if r["kind"] == "messages_list"]
    listed_null = [r for r in lookups if r["status"] == 200]
    t.ok(len(listed_null) >= 10, f"the 10 ambiguous rows were looked up ({len(lookups)} lookups)")
    t.ok(all("DateSent" not in r["query"] for r in lookups), "no lookup filters on DateSent")
    chaos.check_final(t, pg, double, ids, {"sent": 30}, "queued", requests=reqs)
    double.config(queued_for_s=0, rules=[])


@t.case("(b) a busy recipient: the message is past the first page")
def busy():
    seq0 = since_now()
    to = "+14151810000"
    double.config(rules=[{"match": {"to": to}, "count": 1, "status": 500, "code": 20500,
                          "process": True}])
    pg.reload(**{"twilio_outbox.lookup_settle_ms": 3000})
    i = pg.enqueue(to, "the busy one's message", pool="rec")
    wait_until(lambda: row(i)["unconfirmed"], 10)
    double.seed(to, SENDER, "someone else's", 120)
    t.ok(pg.wait_terminal([i], 30), "the row finished within 30 s", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    pages = [r for r in reqs if r["kind"] == "messages_list"]
    created = created_sids(reqs, to)
    got = row(i)
    t.eq(len(created), 1, "one message was created for the row")
    t.eq((got["status"], got["twilio_sid"]), ("sent", created[0] if created else None),
         "the row is sent with the sid of its message")
    t.ok(len(pages) >= 3, f"the lookup read {len(pages)} pages (its message is on the third)")
    t.ok(all("PageToken" in r["query"] for r in pages[1:]),
         "later pages follow next_page_uri (PageToken)")
    st = chaos.worker_status(pg)
    t.ok(st["lookups"] >= len(pages), "twilio_worker_status.lookups counts every page")
    pg.reload(**{"twilio_outbox.lookup_settle_ms": 1000})
    double.config(rules=[])


@t.case("(c) templates and media-only rows")
def no_text():
    seq0 = since_now()
    tmpl_to, media_to, lost_to = "+14151820000", "+14151820001", "+14151820002"
    double.config(rules=[
        {"match": {"to": [tmpl_to, media_to]}, "count": 3, "status": 500, "code": 20500,
         "process": True},
        {"match": {"to": lost_to}, "count": 1, "drop": True},
    ])
    ids = pg.enqueue_batch([
        dict(to=tmpl_to, body=None, pool="rec",
             params={"ContentSid": "HX" + "1" * 32, "ContentVariables": '{"1": "a"}'}),
        dict(to=tmpl_to, body=None, pool="rec", params={"ContentSid": "HX" + "2" * 32}),
        dict(to=media_to, body=None, pool="rec", media_urls=["https://example.com/a.png"]),
        dict(to=lost_to, body=None, pool="rec", media_urls=["https://example.com/b.png"]),
    ])
    done = pg.wait_terminal(ids, 60)
    t.ok(done, "the 4 rows finished within 60 s", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    rows = [row(i) for i in ids]
    tmpl_sids = created_sids(reqs, tmpl_to)
    t.eq(len(tmpl_sids), 2, "one message was created for each template row")
    t.eq(sorted(r["twilio_sid"] for r in rows[:2]), sorted(tmpl_sids),
         "each template row holds its own message (none shared, none resent)")
    t.eq(created_sids(reqs, media_to), [rows[2]["twilio_sid"]],
         "the media-only row was reconciled with its message, not sent again")
    t.eq(len(created_sids(reqs, lost_to)), 1, "the media-only row whose message never existed "
         "was sent once after its lookup")
    t.ok(any(r["kind"] == "messages_list" for r in per_to(reqs)[lost_to]),
         "... after a lookup")
    t.eq([r["status"] for r in rows], ["sent"] * 4, "all are sent")
    double.config(rules=[])


@t.case("(d) a message of another row in flight to the same number is never taken")
def in_flight_sid():
    seq0 = since_now()
    to = "+14151830000"
    # A (first) loses its connection before Twilio stores anything; B's message
    # is stored at once but answered 4 s later, while A looks up
    double.config(rules=[
        {"match": {"to": to}, "count": 1, "drop": True},
        {"match": {"to": to}, "count": 1, "delay_ms": 4000, "early": True},
    ])
    a = pg.enqueue(to, None, media_urls=["https://example.com/a.png"], pool="rec")
    wait_until(lambda: any(r["kind"] == "messages_create" and r["dropped"]
                           for r in double.requests(since=seq0)), 10)
    b = pg.enqueue(to, None, media_urls=["https://example.com/b.png"], pool="rec")
    t.ok(pg.wait_terminal([a, b], 40), "both rows finished within 40 s", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    ra, rb = row(a), row(b)
    b_sid = next((r["sid"] for r in reqs if r["kind"] == "messages_create"
                  and form(r).get("MediaUrl") == "https://example.com/b.png" and r["sid"]), None)
    t.eq(rb["twilio_sid"], b_sid, "B holds its own message")
    t.ok(ra["status"] == "sent" and ra["twilio_sid"] not in (None, b_sid),
         "A did not take B's message: A was sent with a message of its own", repr(ra))
    t.eq(len(created_sids(reqs, to)), 2, "two messages in all, one per row")
    double.config(rules=[])


@t.case("(e) unconfirmed survives max_attempts and twilio_retry")
def flag_holds():
    seq0 = since_now()
    to = "+14151840000"
    pg.reload(**{"twilio_outbox.max_attempts": 1})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.max_attempts") == "1", 5)
    double.config(rules=[{"match": {"to": to}, "count": 1, "status": 500, "code": 20500,
                          "process": True}])
    i = pg.enqueue(to, "failed, but maybe sent", pool="rec")
    t.ok(wait_until(lambda: row(i)["status"] == "failed", 20), "the row failed at max_attempts")
    got = row(i)
    t.ok(got["unconfirmed"], "... and stays unconfirmed (its last attempt may have reached "
         "Twilio)", repr(got))
    pg.reload(**{"twilio_outbox.max_attempts": None})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.max_attempts") == "10", 5)
    pg.sql("SELECT twilio_pool_pause('rec')")   # so that the worker does not settle it first
    t.eq(pg.sql_value("SELECT twilio_retry(:'p1')", i), "t", "twilio_retry queues it again")
    t.eq(pg.sql_value("SELECT unconfirmed FROM twilio_outbox WHERE id = :'p1'", i), "t",
         "twilio_retry keeps unconfirmed")
    pg.sql("SELECT twilio_pool_resume('rec')")
    t.ok(pg.wait_terminal([i], 20), "the retried row finished", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    created = created_sids(reqs, to)
    got = row(i)
    t.eq(len(created), 1, "it was not sent a second time")
    t.eq((got["status"], got["twilio_sid"], got["unconfirmed"]),
         ("sent", created[0] if created else None, False),
         "the lookup found the first message: sent with its sid, settled")
    double.config(rules=[])


t.done()
