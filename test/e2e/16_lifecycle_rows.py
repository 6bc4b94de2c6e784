#!/usr/bin/env python3
"""Chaos: the life of rows under failure.

- expiry: rows with a short valid_for in a paused pool become `expired` and
  are never sent once the pool resumes (a row without valid_for is);
- expiry after an ambiguous attempt (a 500 after the double stored the
  message; the pool paused while the request was in flight, so no retry
  before valid_for passes): the message exists at Twilio, so the row must
  end sent (reconciled), not `expired` ("never sent"); and one whose
  connection dropped before anything was stored ends expired, not sent late;
- cancel during backoff: a 503 leaves a row retrying with a long backoff
  (backoff_base_ms 5000); twilio_cancel makes it `canceled` and it is never
  sent again;
- retry of a failed row: a permanent 400 fails it; the double is fixed;
  twilio_retry queues it again and it is sent;
- max_attempts = 3 with a persistent 503 for one number: `failed` with
  attempts = 3 and last_http_status 503, after exactly 3 requests;
- SIGTERM of the worker (pg_terminate_backend) mid-drain, with some requests
  slower than the worker's shutdown grace: the worker restarts by itself
  (bgworker restart after ~10 s), the slow ones are reconciled, and
  everything ends sent with zero duplicates.
Every case also checks none lost, none twice and no attempt before its
next_attempt_at.
"""

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, wait_until  # noqa: E402
import chaos  # noqa: E402

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=8)
pg.add_pool("exp", "+15005551601", mps=100, burst=10, paused=True)
pg.add_pool("exp2", "+15005551606", mps=100, burst=10)
pg.add_pool("cancel", "+15005551602", mps=100, burst=10)
pg.add_pool("retry", "+15005551603", mps=100, burst=10)
pg.add_pool("maxatt", "+15005551604", mps=100, burst=10)
pg.add_pool("term", "+15005551605", mps=100, burst=10)


def requests_to(to, since=0):
    return [r for r in double.requests(since=since, create_only=False)
            if chaos.request_to(r) == to]


def row(row_id):
    return chaos.rows(pg, [row_id])[row_id]


@t.case("expiry while the pool is paused")
def expiry():
    ids = [pg.enqueue(f"+141516000{i:02d}", f"expires {i}", pool="exp", valid_for="2 seconds")
           for i in range(5)]
    keep = pg.enqueue("+14151600099", "does not expire", pool="exp")
    t.ok(wait_until(lambda: chaos.counts(pg, ids) == {"expired": 5}, 10),
         "the 5 rows with valid_for 2 s are expired within 10 s while the pool is paused",
         pg.diagnose)
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'exp'")
    t.ok(pg.wait_terminal([keep], 10), "after the pool resumes the row without valid_for is "
         "sent", pg.diagnose)
    time.sleep(1.5)
    chaos.check_final(t, pg, double, ids + [keep],
                      lambda r: "sent" if r["id"] == keep else "expired", "expiry",
                      never_send=ids)
    tos = {f"+141516000{i:02d}" for i in range(5)}
    t.eq([r["seq"] for r in double.requests(create_only=False) if chaos.request_to(r) in tos],
         [], "the double never saw a request for an expired row")
    t.eq({r["attempts"] for r in chaos.rows(pg, ids).values()}, {0},
         "the expired rows have attempts = 0")


@t.case("expiry of a row whose ambiguous attempt Twilio accepted")
def expiry_unconfirmed():
    # The double stores the message, then answers 500 after 1.5 s; meanwhile
    # the pool is paused (and the worker has seen it), so the row waits in
    # retrying, unconfirmed, until valid_for has passed.  The message exists
    # at Twilio, so the row must not end `expired` ("never sent"): it is
    # reconciled (sent, with the accepted sid).
    to = "+14151605000"
    double.config(rules=[{"match": {"to": to}, "count": 1, "status": 500, "code": 20500,
                          "process": True, "delay_ms": 1500}])
    row_id = pg.enqueue(to, "accepted, then expired?", pool="exp2", valid_for="4 seconds")
    t.ok(wait_until(lambda: row(row_id)["status"] == "sending", 5, 0.02),
         "the row is being sent", pg.diagnose)
    pg.sql("UPDATE twilio_pools SET paused = true WHERE name = 'exp2'")
    t.ok(wait_until(lambda: pg.sql_value("SELECT paused FROM twilio_pool_status "
                                         "WHERE pool = 'exp2'") == "t", 3, 0.02),
         "the worker saw the pause while the request was in flight")
    t.ok(wait_until(lambda: row(row_id)["status"] == "retrying", 5, 0.02),
         "the 500 leaves the row retrying", pg.diagnose)
    accepted = [m["sid"] for m in double.control("messages")["messages"] if m["to"] == to]
    t.eq(len(accepted), 1, "the double accepted the message before answering 500")
    wait_until(lambda: time.time() > row(row_id)["created_at"] + 5.0, 10, 0.2)
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'exp2'")
    pg.wait_terminal([row_id], 10)
    time.sleep(2.0)
    r = row(row_id)
    t.diag(f"unconfirmed expiry: status {r['status']}, twilio_sid {r['twilio_sid']}, "
           f"last_error {r['last_error']!r}; the double has {accepted}")
    t.ok(r["status"] != "expired", "a row whose message Twilio accepted does not end "
         "`expired` (never sent)", repr(r))
    t.eq((r["status"], r["twilio_sid"]), ("sent", accepted[0] if accepted else None),
         "it ends sent with the sid of the accepted message (reconciled)")
    chaos.check_final(t, pg, double, [row_id], {"sent": 1}, "unconfirmed expiry, found")

    # The other way round: the connection drops after 1.5 s and nothing was
    # stored; valid_for (3 s) passes before the retry, which waits at least
    # request_timeout_ms (2 s here) after a lost connection.  Nothing exists
    # at Twilio, so the row ends expired and is not sent late.
    pg.reload(**{"twilio_outbox.request_timeout_ms": 2000})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.request_timeout_ms") == "2s", 5)
    to = "+14151605001"
    double.config(rules=[{"match": {"to": to}, "count": 1, "drop": True, "delay_ms": 1500}])
    lost_id = pg.enqueue(to, "dropped, then expired", pool="exp2", valid_for="3 seconds")
    t.ok(pg.wait_terminal([lost_id], 15), "the dropped row finishes within 15 s", pg.diagnose)
    time.sleep(1.0)
    r = row(lost_id)
    t.diag(f"unconfirmed expiry, not found: status {r['status']}, last_error "
           f"{r['last_error']!r}")
    t.eq(r["status"], "expired", "a row whose message Twilio does not have ends expired")
    kinds = [x["kind"] for x in requests_to(to)]
    t.eq(kinds.count("messages_create"), 1, "it was not sent late (one create request)",
         repr(kinds))
    chaos.check_final(t, pg, double, [lost_id], {"expired": 1}, "unconfirmed expiry, not found",
                      never_send=[lost_id])
    pg.reload(**{"twilio_outbox.request_timeout_ms": None})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.request_timeout_ms") == "10s", 5)
    double.config(rules=[])


@t.case("cancel during backoff")
def cancel():
    pg.reload(**{"twilio_outbox.backoff_base_ms": 5000, "twilio_outbox.backoff_max_ms": 20000})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.backoff_base_ms") == "5s", 5)
    to = "+14151610000"
    double.config(rules=[{"match": {"to": to}, "status": 503, "code": 20503}])
    row_id = pg.enqueue(to, "cancel me", pool="cancel")
    t.ok(wait_until(lambda: row(row_id)["status"] == "retrying", 10),
         "a 503 puts the row in retrying", pg.diagnose)
    canceled = wait_until(lambda: pg.sql_value("SELECT twilio_cancel(:'p1')", row_id) == "t",
                          30, 0.05)
    t.ok(canceled, "twilio_cancel returns true while it waits for its backoff", pg.diagnose)
    cancel_at = time.time()
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    double.config(rules=[])
    r = row(row_id)
    t.eq(r["status"], "canceled", "the row is canceled")
    t.eq(r["last_http_status"], 503, "last_http_status keeps the 503")
    hist = chaos.history(pg, [row_id])[row_id]
    retrying = [h for h in hist if h["new"] == "retrying"]
    if retrying:
        t.diag(f"cancel: backoff was {retrying[-1]['next_at'] - retrying[-1]['at']:.2f} s "
               f"at attempt {retrying[-1]['attempts']}; canceled after "
               f"{len(requests_to(to))} request(s)")
    # watch until well past the retry the row was waiting for when it was canceled
    due = max((h["next_at"] for h in hist if h["new"] == "retrying"), default=time.time())
    time.sleep(min(12.0, max(1.0, due - time.time() + 1.0)))
    after = [x for x in requests_to(to, seq0) if x["time"] >= cancel_at]
    t.eq(after, [], "the double saw no request for it after the cancel")
    t.eq(row(row_id)["status"], "canceled", "it stays canceled")
    chaos.check_final(t, pg, double, [row_id], {"canceled": 1}, "cancel", never_send=[row_id])
    pg.reload(**{"twilio_outbox.backoff_base_ms": 100, "twilio_outbox.backoff_max_ms": 2000})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.backoff_base_ms") == "100ms", 5)


@t.case("retry of a failed row")
def retry():
    to = "+14151620000"
    double.config(rules=[{"match": {"to": to}, "status": 400, "code": 21211,
                          "message": f"The 'To' number {to} is not a valid phone number."}])
    row_id = pg.enqueue(to, "retry me", pool="retry")
    t.ok(pg.wait_terminal([row_id], 10), "the row finishes", pg.diagnose)
    r = row(row_id)
    t.eq((r["status"], r["attempts"], r["last_http_status"], r["last_error_code"]),
         ("failed", 1, 400, 21211), "a permanent 400/21211 fails it after 1 attempt")
    double.config(rules=[])
    t.eq(pg.sql_value("SELECT twilio_retry(:'p1')", row_id), "t", "twilio_retry returns true")
    t.ok(pg.wait_terminal([row_id], 10), "the row finishes again", pg.diagnose)
    r = row(row_id)
    t.eq((r["status"], r["attempts"]), ("sent", 1), "it is sent, with attempts = 1 "
         "(reset by twilio_retry)")
    t.eq([x["status"] for x in requests_to(to)], [400, 201],
         "the double saw two requests: the 400, then the 201")
    chaos.check_final(t, pg, double, [row_id], {"sent": 1}, "retry")


@t.case("max_attempts = 3 with a persistent 503")
def max_attempts():
    pg.reload(**{"twilio_outbox.max_attempts": 3})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.max_attempts") == "3", 5)
    to = "+14151630000"
    double.config(rules=[{"match": {"to": to}, "status": 503, "code": 20503}])
    row_id = pg.enqueue(to, "always 503", pool="maxatt")
    good = chaos.enqueue_series(pg, 10, "maxatt", "+1415163100", "fine ")
    t.ok(pg.wait_terminal([row_id] + good, 40), "the rows finish within 40 s", pg.diagnose)
    r = row(row_id)
    t.eq((r["status"], r["attempts"], r["last_http_status"], r["last_error_code"]),
         ("failed", 3, 503, 20503), "the 503 row is failed with attempts = 3 and "
         "last_http_status 503")
    t.eq([x["status"] for x in requests_to(to)], [503, 503, 503],
         "the double saw exactly 3 requests for it")
    double.config(rules=[])
    chaos.check_final(t, pg, double, [row_id] + good,
                      lambda x: "failed" if x["id"] == row_id else "sent", "max_attempts",
                      never_send=[row_id])
    pg.reload(**{"twilio_outbox.max_attempts": None})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.max_attempts") == "10", 5)


@t.case("SIGTERM of the worker mid-drain")
def sigterm():
    n, slow = 400, [f"+141516400{i:02d}" for i in range(5)]
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    # the first five take 8 s: still in flight when the worker's 3 s grace ends
    double.config(rules=[{"match": {"to": slow}, "delay_ms": 8000}])
    log_offset = len(pg.log_text())
    pid = chaos.worker_pid(pg)
    began = time.time()
    ids = chaos.enqueue_series(pg, n, "term", "+1415164", "sigterm ")
    time.sleep(2.0)
    progress = chaos.counts(pg, ids).get("sent", 0)
    t.eq(pg.sql_value("SELECT pg_terminate_backend(:'p1')", pid), "t",
         "pg_terminate_backend(worker pid) returns true")
    term_at = time.time()
    t.diag(f"sigterm: terminated {pid} with {progress} of {n} sent")
    t.ok(0 < progress < n, "the SIGTERM came in the middle of the drain", f"{progress} sent")
    new_pid = chaos.wait_worker(pg, 30, not_pid=pid)
    t.ok(new_pid, "a new worker starts by itself within 30 s", pg.diagnose)
    t.diag(f"sigterm: the new worker {new_pid} appeared {time.time() - term_at:.1f} s after "
           "the SIGTERM")
    done = chaos.wait_terminal(pg, ids, 60)
    t.ok(done, f"all {n} rows finished", pg.diagnose)
    t.diag(f"sigterm: drain time {time.time() - began:.1f} s")
    reqs = double.requests(since=seq0, create_only=False)
    chaos.check_final(t, pg, double, ids, {"sent": n}, "sigterm", requests=reqs)
    log = pg.log_text()[log_offset:]
    t.ok(re.search(r"twilio_outbox worker shutting down with \d+ requests in flight", log),
         "the worker logged its shutdown", log[-2000:])
    t.ok("reinitializing" not in log and "terminated by signal" not in log,
         "no crash recovery: the worker exited normally", log[-2000:])
    st = chaos.worker_status(pg)
    t.diag(f"sigterm: new worker's counters: reconciled {st['reconciled']}, resent_blind "
           f"{st['resent_blind']}")
    t.ok(st["reconciled"] >= len(slow), f"the {len(slow)} slow messages, accepted after the "
         "worker had gone, were reconciled by the new worker", repr(st))
    double.config(rules=[])


t.done()
