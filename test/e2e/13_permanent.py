#!/usr/bin/env python3
"""Chaos: permanent errors fail the row at once.

The double answers 400 with 21211, 21610, 21614 and 21408 (and Twilio's
message) for chosen numbers mixed into a batch of good ones: those rows are
`failed` after one attempt, with last_http_status 400, last_error_code the
code and last_error mentioning Twilio's message; the rest are sent, none
lost, none twice, no attempt before its next_attempt_at.
"""

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form  # noqa: E402
import chaos  # noqa: E402

PERMANENT = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number {to} is not a valid mobile number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
           "'To' number: {to}.",
}
N_GOOD = 60

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=10)
pg.add_pool("perm", "+15005551301", mps=100, burst=10)


@t.case("permanent 400s among good messages")
def permanent():
    # 2 numbers per code, interleaved with the good ones
    bad = {}
    for k, code in enumerate(PERMANENT):
        for j in range(2):
            bad[f"+1415130{k}{j:03d}"] = code
    double.config(rules=[{"match": {"to": to}, "status": 400, "code": code,
                          "message": PERMANENT[code].format(to=to)}
                         for to, code in bad.items()])
    msgs = [dict(to=f"+1415139{i:04d}", body=f"good {i}", pool="perm") for i in range(N_GOOD)]
    for n, to in enumerate(bad):
        msgs.insert(n * 7 + 3, dict(to=to, body=f"bad {to}", pool="perm"))
    ids = pg.enqueue_batch(msgs)
    t.ok(chaos.wait_terminal(pg, ids, 60), f"all {len(ids)} rows finished within 60 s",
         pg.diagnose)
    rowmap = chaos.rows(pg, ids)
    by_to = {r["to_number"]: r for r in rowmap.values()}

    chaos.check_final(t, pg, double, ids,
                      lambda r: "failed" if r["to_number"] in bad else "sent", "permanent",
                      never_send=[by_to[to]["id"] for to in bad])

    failed = [by_to[to] for to in bad]
    t.eq([(r["to_number"], r["attempts"]) for r in failed if r["attempts"] != 1], [],
         "every refused row took exactly 1 attempt")
    t.eq([(r["to_number"], r["last_http_status"]) for r in failed
          if r["last_http_status"] != 400], [], "their last_http_status is 400")
    t.eq([(r["to_number"], r["last_error_code"], bad[r["to_number"]]) for r in failed
          if r["last_error_code"] != bad[r["to_number"]]], [],
         "their last_error_code is the code the double answered")
    missing = [(r["to_number"], r["last_error"]) for r in failed
               if PERMANENT[bad[r["to_number"]]].format(to=r["to_number"])
               not in (r["last_error"] or "")]
    t.eq(missing, [], "their last_error contains Twilio's message")
    t.eq([r["to_number"] for r in failed if "\n" in (r["last_error"] or "")], [],
         "... on one line")

    reqs = double.requests()
    per_to = collections.Counter(form(r)["To"] for r in reqs)
    t.eq(sorted((to, per_to[to]) for to in bad if per_to[to] != 1), [],
         "the double saw exactly one request per refused number (no retry)")
    hist = chaos.history(pg, [by_to[to]["id"] for to in bad])
    went_retrying = sorted(i for i, hs in hist.items() if any(h["new"] == "retrying" for h in hs))
    t.eq(went_retrying, [], "no refused row ever went to retrying (failed at once)")
    t.eq(sorted(r["attempts"] for r in rowmap.values() if r["to_number"] not in bad),
         [1] * N_GOOD, "every good row was sent with 1 attempt")
    st = chaos.worker_status(pg)
    t.ok(st["failed"] >= len(bad), f"twilio_worker_status.failed counts them ({st['failed']})")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


t.done()
