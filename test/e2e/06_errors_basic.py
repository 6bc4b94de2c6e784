#!/usr/bin/env python3
"""End-to-end: the failures the contract already fixes (the full failure
policy is a later issue).

A 400/21211 for one number fails that row (last_http_status 400,
last_error_code 21211) while the rest of its batch is sent; a 503 leaves the
rows it hit retrying with last_http_status 503 and they are sent after the
backoff; nothing is lost and nothing is sent twice.  Status changes are
recorded by a trigger, so short-lived states are seen for sure.
"""

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TERMINAL, Tap, form, start  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                             "twilio_outbox.backoff_max_ms": 1000})
pg.install_history()
pg.add_pool("err", "+15005550401", mps=1000, burst=100)
ALL_IDS = []
EARLIER = []  # request records from before a double.reset()


def row(row_id):
    return pg.sql_dicts("SELECT id, to_number, status, attempts, twilio_sid, last_http_status, "
                        "last_error_code, last_error FROM twilio_outbox WHERE id = :'p1'",
                        row_id)[0]


def answers_for(to):
    return [r["status"] for r in double.requests() if form(r).get("To") == to]


@t.case("400 with code 21211 fails only that row")
def invalid_number():
    bad = "+14154010999"
    double.config(rules=[{"match": {"to": bad}, "status": 400, "code": 21211,
                          "message": "The 'To' number +14154010999 is not a valid phone number."}])
    tos = [f"+1415401{i:04d}" for i in range(4)] + [bad]
    ids = pg.enqueue_batch([dict(to=to, body="batch with a bad number", pool="err")
                            for to in tos])
    ALL_IDS.extend(ids)
    t.ok(pg.wait_terminal(ids, 20), "the whole batch finished", pg.diagnose)
    r = row(ids[-1])
    t.eq(r["status"], "failed", "the row the double refused with 400/21211 is failed",
         lambda: repr(r))
    t.eq(r["last_http_status"], 400, "its last_http_status is 400")
    t.eq(r["last_error_code"], 21211, "its last_error_code is 21211")
    t.ok(r["last_error"] and "\n" not in r["last_error"],
         "its last_error is a one-line description", repr(r["last_error"]))
    t.eq(answers_for(bad), [400], "it was attempted once (a 400 is not retried)")
    t.eq(pg.statuses(ids[:-1]), {"sent": 4}, "the other 4 rows of the batch are sent",
         pg.diagnose)
    double.config(rules=[])


@t.case("503 for two requests: retrying, then sent")
def unavailable():
    EARLIER.extend(double.requests())
    double.reset()
    double.config(rules=[{"count": 2, "status": 503, "code": 20503}])
    tos = [f"+1415402{i:04d}" for i in range(4)]
    ids = pg.enqueue_batch([dict(to=to, body="503 then fine", pool="err") for to in tos])
    ALL_IDS.extend(ids)
    t.ok(pg.wait_terminal(ids, 30), "all 4 rows finished within 30 s", pg.diagnose)
    t.eq(pg.statuses(ids), {"sent": 4}, "all 4 are eventually sent", pg.diagnose)
    reqs = double.requests()
    hit = {form(r)["To"] for r in reqs if r["status"] == 503}
    t.eq(len(hit), 2, "the double answered 503 to two requests for two rows",
         lambda: repr([(form(r)["To"], r["status"]) for r in reqs]))
    by_to = {r["to_number"]: r for r in pg.sql_dicts(
        "SELECT id, to_number, attempts, last_http_status FROM twilio_outbox "
        "WHERE id = ANY(:'p1'::bigint[])", "{" + ",".join(map(str, ids)) + "}")}
    hist = pg.history(ids)
    hit_ids = {by_to[to]["id"] for to in hit if to in by_to}
    seen_retrying = {h["id"] for h in hist if h["new"] == "retrying" and h["http"] == 503}
    t.eq(seen_retrying, hit_ids, "exactly those rows went to retrying with last_http_status "
         "503", lambda: "\n".join(map(repr, hist)))
    t.eq(sorted((to, r["attempts"]) for to, r in by_to.items() if to in hit),
         sorted((to, 2) for to in hit), "the rows hit by a 503 took 2 attempts")
    t.eq(sorted(r["attempts"] for to, r in by_to.items() if to not in hit), [1, 1],
         "the others took 1")
    t.eq(sorted({r["last_http_status"] for r in by_to.values()}), [201],
         "last_http_status is the latest attempt's: 201")
    attempts_sent = sorted((form(r)["To"], form(r).get("Attempt")) for r in reqs
                           if form(r)["To"] in hit)
    t.eq(attempts_sent, sorted([(to, "1") for to in hit] + [(to, "2") for to in hit]),
         "the retry carries Attempt=2")
    double.config(rules=[])


@t.case("nothing lost, nothing sent twice")
def accounting():
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE status <> ALL(:'p1'::text[])",
                      "{" + ",".join(TERMINAL) + "}"), "0",
         "every row is in a final status", pg.diagnose)
    created = collections.Counter(form(r)["To"] for r in EARLIER + double.requests()
                                  if r["status"] == 201)
    t.eq(sorted(to for to, n in created.items() if n > 1), [], "no row was accepted twice")
    t.eq(pg.bad_transitions(), [], "every status change followed the contract's graph")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


t.done()
