#!/usr/bin/env python3
"""End-to-end: what is sent when.

Priority order within a pool, send_after, paused pools (nothing sent, resumes
within ~1.5 s of unpausing), a pool created while the worker runs,
twilio_cancel, and expiry (valid_for) -- each against the double's arrival
records.  And in the middle of a long drain (where each claim goes on from
where the last one ended): a high-priority row still goes next, and rows
behind the claim's cursor (a send_after in the past, a row locked by another
transaction while the claim passed it) still go, within the claim's 10-s
pass.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, start, wait_until  # noqa: E402

t = Tap()
pg, double = start()
pg.install_history()


def arrivals(prefix_or_set):
    """Create requests whose To starts with the prefix (or is in the set), in arrival order."""
    def match(to):
        return to in prefix_or_set if isinstance(prefix_or_set, (set, list)) \
            else to.startswith(prefix_or_set)
    return [r for r in double.requests() if match(form(r).get("To", ""))]


def wait_arrived(tos, timeout):
    return wait_until(lambda: len({form(r)["To"] for r in arrivals(set(tos))}) >= len(tos),
                      timeout)


@t.case("priority order within a pool")
def priority():
    pg.add_pool("prio", "+15005550101", mps=2, burst=1, paused=True)
    low = [f"+1415100{i:04d}" for i in range(4)]
    high = [f"+1415101{i:04d}" for i in range(4)]
    ids = pg.enqueue_batch([dict(to=to, body="low", pool="prio", priority=-10) for to in low]
                           + [dict(to=to, body="high", pool="prio", priority=50)
                              for to in high])
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'prio'")
    t.ok(pg.wait_terminal(ids, 20), "all 8 rows finished", pg.diagnose)
    order = [form(r)["To"] for r in arrivals(set(low + high))]
    t.eq(len(order), 8, "8 requests")
    t.eq(set(order[:4]), set(high), "the 4 high-priority rows arrived first",
         lambda: f"arrival order: {order}")


@t.case("send_after in the future")
def send_after():
    pg.add_pool("later", "+15005550102", mps=1000, burst=100)
    rows = pg.sql("BEGIN; SELECT twilio_enqueue('+14151020000', 'later', pool => 'later', "
                  "send_after => clock_timestamp() + interval '2 seconds'); COMMIT; "
                  "SELECT extract(epoch FROM next_attempt_at) FROM twilio_outbox "
                  "WHERE to_number = '+14151020000';")
    row_id, due = int(rows[0][0]), float(rows[1][0])
    t.ok(due > time.time() + 1.0, "next_attempt_at is the future send_after",
         f"due {due} now {time.time()}")
    got = wait_until(lambda: arrivals({"+14151020000"}), 10)
    t.ok(got, "the message is sent", pg.diagnose)
    if got:
        late = got[0]["time"] - due
        t.diag(f"arrived {late * 1000:.0f} ms after send_after")
        t.ok(late >= 0, "not sent before send_after", f"{-late:.3f} s early")
        t.ok(late <= 2.0, "sent within 2 s after send_after", f"{late:.3f} s late")
    pg.wait_terminal([row_id], 5)


@t.case("a paused pool sends nothing and resumes when unpaused")
def paused():
    pg.add_pool("pz", "+15005550103", mps=1000, burst=100, paused=True)
    tos = [f"+1415103{i:04d}" for i in range(3)]
    ids = pg.enqueue_batch([dict(to=to, body="paused", pool="pz") for to in tos])
    time.sleep(2)  # proving an absence
    t.eq(arrivals(set(tos)), [], "nothing sent in 2 s while paused")
    t.eq(pg.statuses(ids), {"queued": 3}, "the rows stay queued")
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'pz'")
    unpaused = time.time()
    t.ok(wait_arrived(tos, 10), "sent after UPDATE twilio_pools SET paused = false",
         pg.diagnose)
    got = arrivals(set(tos))
    if got:
        delay = max(r["time"] for r in got) - unpaused
        t.diag(f"last arrival {delay * 1000:.0f} ms after unpausing")
        t.ok(delay <= 1.5, "all arrived within 1.5 s of unpausing", f"{delay:.3f} s")
    pg.wait_terminal(ids, 5)


@t.case("a pool created after the worker started is served")
def new_pool():
    pg.add_pool("late1", "+15005550104", mps=1000, burst=100)
    a = pg.enqueue("+14151040000", "new pool", pool="late1")
    # the pool and its first message in the same transaction
    b = int(pg.sql("BEGIN; INSERT INTO twilio_pools (name, sender, mps) "
                   "VALUES ('late2', '+15005550105', 50); "
                   "SELECT twilio_enqueue('+14151050000', 'new pool 2', pool => 'late2'); "
                   "COMMIT;")[0][0])
    t.ok(pg.wait_terminal([a, b], 10), "both rows finished within 10 s", pg.diagnose)
    t.eq(pg.statuses([a, b]), {"sent": 2}, "both are sent")
    t.eq(len(arrivals({"+14151040000", "+14151050000"})), 2, "the double got both")


@t.case("twilio_cancel")
def cancel():
    pg.add_pool("cx", "+15005550106", mps=1000, burst=100, paused=True)
    keep, drop = pg.enqueue_batch([dict(to="+14151060000", body="keep", pool="cx"),
                                   dict(to="+14151060001", body="cancel me", pool="cx")])
    t.eq(pg.sql_value("SELECT twilio_cancel(:'p1')", drop), "t",
         "twilio_cancel of a queued row returns true")
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'cx'")
    t.ok(pg.wait_terminal([keep], 10), "the other row is sent", pg.diagnose)
    time.sleep(0.5)
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", drop), "canceled",
         "the canceled row stays canceled")
    t.eq(arrivals({"+14151060001"}), [], "the canceled row was never sent")
    t.eq(pg.sql_value("SELECT twilio_cancel(:'p1')", keep), "f",
         "twilio_cancel of a sent row returns false")


@t.case("expired rows are never sent")
def expiry():
    pg.add_pool("ex", "+15005550107", mps=1000, burst=100, paused=True)
    gone, marker = pg.enqueue_batch([
        dict(to="+14151070000", body="expires", pool="ex", valid_for="1 second"),
        dict(to="+14151070001", body="no expiry", pool="ex")])
    expires = float(pg.sql_value("SELECT extract(epoch FROM expires_at) FROM twilio_outbox "
                                 "WHERE id = :'p1'", gone))
    wait_until(lambda: time.time() > expires + 0.3, 5)
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'ex'")
    t.ok(pg.wait_terminal([gone, marker], 10), "both rows finished", pg.diagnose)
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", gone), "expired",
         "the row past expires_at became expired")
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", marker), "sent",
         "the pool's other row was sent")
    t.eq(arrivals({"+14151070000"}), [], "the expired row was never sent")
    # twilio_retry queues it again, its past expiry cleared, and it is sent
    t.eq(pg.sql_value("SELECT twilio_retry(:'p1')", gone), "t", "twilio_retry returns true")
    t.ok(pg.wait_terminal([gone], 10), "the retried row finished", pg.diagnose)
    t.eq(pg.sql_value("SELECT status || ' ' || attempts FROM twilio_outbox WHERE id = :'p1'",
                      gone), "sent 1", "the retried row is sent with attempts = 1")


@t.case("during a long drain: higher priority first, rows behind the cursor not forgotten")
def mid_drain():
    pg.add_pool("drain", "+15005550109", mps=100, burst=10)
    bulk = [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue('+1415109' || lpad(i::text, 4, '0'), 'bulk ' || i, pool => 'drain', "
        "priority => -5) FROM generate_series(1, 1500) i")]
    wait_until(lambda: int(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE pool = 'drain' "
                                        "AND status = 'sent'")) >= 300, 20)
    urgent = pg.enqueue("+14151089999", "urgent", pool="drain", priority=50)
    late = pg.enqueue("+14151089998", "due an hour ago", pool="drain",
                      send_after="2026-01-01 00:00:00+00", priority=-5)
    t.ok(pg.wait_terminal([urgent], 5), "the urgent row is sent", pg.diagnose)
    left = int(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE id = ANY(:'p1'::bigint[]) "
                            "AND status <> 'sent'", "{" + ",".join(map(str, bulk)) + "}"))
    t.ok(left > 100, f"... while {left} bulk rows were still waiting: it went ahead of them")
    t.ok(pg.wait_terminal([late], 15), "a row due before the claim's cursor is sent within its "
         "10-s pass", pg.diagnose)
    t.ok(pg.wait_terminal(bulk, 30), "the bulk drain finishes", pg.diagnose)


t.eq(pg.bad_transitions(), [], "every status change followed the contract's graph")
t.eq(double.stats()["spec_violations"], [], "no spec violations")
t.done()
