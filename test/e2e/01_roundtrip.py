#!/usr/bin/env python3
"""End-to-end: enqueue -> the worker sends -> the row records Twilio's answer.

100 messages committed in one transaction all become `sent` with the SID and
status the double returned, and the double saw exactly those 100 requests;
a rolled-back transaction sends nothing; a message committed while the
worker is idle reaches the double within 1 s.
"""

import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ACCOUNT_SID, MESSAGES_PATH, SID_RE, Tap, form, start,  # noqa: E402
                     wait_until)

SENDER = "+15005550001"
N = 100

t = Tap()
pg, double = start()
pg.install_history()
pg.add_pool("rt", SENDER, mps=1000, burst=100)


@t.case("100 messages committed in one transaction")
def roundtrip():
    msgs = [dict(to=f"+1415555{i:04d}", body=f"roundtrip message {i}", pool="rt")
            for i in range(N)]
    ids = pg.enqueue_batch(msgs)
    t.eq(len(ids), N, "twilio_enqueue returned 100 ids")
    done = pg.wait_terminal(ids, 30)
    t.ok(done, "every row reached a final status within 30 s", pg.diagnose)

    rows = {r["to_number"]: r for r in pg.sql_dicts(
        "SELECT id, to_number, body, status, twilio_sid, sent_at, attempts, delivery_status, "
        "last_http_status FROM twilio_outbox WHERE pool = 'rt'")}
    t.eq(collections.Counter(r["status"] for r in rows.values()), {"sent": N},
         "all 100 rows are sent", pg.diagnose)
    bad_sid = [r["twilio_sid"] for r in rows.values()
               if not SID_RE.match(r["twilio_sid"] or "")]
    t.eq(bad_sid, [], "every twilio_sid matches ^SM[0-9a-f]{32}$")
    t.eq([r["id"] for r in rows.values() if r["sent_at"] is None], [], "every sent_at is set")
    t.eq(sorted({r["attempts"] for r in rows.values()}), [1], "attempts = 1 everywhere")

    reqs = double.requests()
    t.eq(len(reqs), N, "the double saw exactly 100 create requests")
    t.eq(len(double.requests(create_only=False)), N, "... and no other request")
    forms = [form(r) for r in reqs]
    seen = collections.Counter(f.get("To") for f in forms)
    t.eq([to for to, n in seen.items() if n > 1], [], "no destination was sent twice")
    t.eq(set(seen), set(rows), "the requests' To are exactly the rows' to_number")
    mismatched = [(f.get("To"), f.get("Body"), f.get("From"))
                  for f in forms if f.get("To") in rows
                  and (f.get("Body") != rows[f["To"]]["body"] or f.get("From") != SENDER)]
    t.eq(mismatched, [], "Body and From match the row of the same To")
    sid_of = {form(r).get("To"): r["sid"] for r in reqs if r["status"] == 201}
    t.eq([to for to, r in rows.items() if sid_of.get(to) != r["twilio_sid"]], [],
         "each row's twilio_sid is the sid the double returned for it")
    status_of = {m["sid"]: m["status"] for m in double.control("messages")["messages"]}
    t.eq([r["id"] for r in rows.values()
          if r["delivery_status"] != status_of.get(r["twilio_sid"])], [],
         "delivery_status is the status the double returned")
    t.eq(sorted({r["last_http_status"] for r in rows.values()}, key=str), [201],
         "last_http_status is 201")
    t.eq(sorted({r["auth_user"] for r in reqs}, key=str), [ACCOUNT_SID],
         "HTTP Basic auth user is the account sid")
    t.eq(sorted({r["path"] for r in reqs}), [MESSAGES_PATH],
         "path is /2010-04-01/Accounts/{sid}/Messages.json")
    t.eq(sorted({r["method"] for r in reqs}), ["POST"], "method is POST")
    t.eq(sorted({f.get("Attempt") for f in forms}, key=str), ["1"], "Attempt=1 is sent")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")
    t.eq(pg.bad_transitions(ids), [], "status changes follow the contract's graph")


@t.case("a rolled-back transaction sends nothing")
def rollback():
    before = len(double.requests())
    msgs = [dict(to=f"+1415666{i:04d}", body=f"rolled back {i}", pool="rt") for i in range(5)]
    pg.enqueue_batch(msgs, rollback=True)
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE to_number LIKE '+1415666%'"),
         "0", "no row is left by the rolled-back transaction")
    time.sleep(2)  # proving an absence: give the worker time to misbehave
    marker = pg.enqueue("+14157770000", "after the rollback", pool="rt")
    got = wait_until(lambda: [r for r in double.requests(before)
                              if form(r).get("To") == "+14157770000"], 10)
    t.ok(got, "a message committed afterwards is sent", pg.diagnose)
    leaked = [form(r).get("To") for r in double.requests(before)
              if form(r).get("To", "").startswith("+1415666")]
    t.eq(leaked, [], "the double saw none of the rolled-back messages")
    pg.wait_terminal([marker], 10)


@t.case("a message committed while the worker is idle arrives within 1 s")
def idle_latency():
    latencies = []
    for i in range(3):
        # the worker is idle: nothing due, and nothing arrived for a while
        wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE status "
                                        "NOT IN ('sent', 'failed', 'expired', 'canceled')")
                   == "0", 10)
        time.sleep(1.2)
        to = f"+1415888{i:04d}"
        # the time just before COMMIT: the latency measured is an upper bound
        committed = float(pg.sql(
            "BEGIN; SELECT twilio_enqueue(:'p1', 'idle latency', pool => 'rt'); "
            "SELECT extract(epoch FROM clock_timestamp()); COMMIT;", to)[-1][0])
        got = wait_until(lambda: [r for r in double.requests() if form(r).get("To") == to], 5)
        if not got:
            t.ok(False, f"message {i + 1} committed while idle arrived", pg.diagnose)
            return
        latencies.append(got[0]["time"] - committed)
    t.diag("idle commit -> request latency: " + ", ".join(f"{x * 1000:.0f} ms"
                                                         for x in latencies))
    t.ok(max(latencies) <= 1.0, "each of 3 messages committed while idle arrived within 1 s",
         f"latencies {latencies}")


t.done()
