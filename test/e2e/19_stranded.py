#!/usr/bin/env python3
"""End-to-end: nothing strands, nothing is dropped, faults at every step.

With twilio_outbox.debug_inject_faults the running worker fails on purpose
at one step of its turn; in every case the same worker (same pid) ends with
every row sent exactly once:

(a) after_claim: the claim committed, no request started, the turn is
    abandoned.  The rows sit in sending with nothing in flight; the worker's
    own once-a-second sweep takes them back (twilio_worker_status.recovered)
    and they are looked up and sent: not at the next restart.
(b) start_request: starting a request fails; the row goes back to retrying
    with backoff, nothing went out.
(c) record: the outcomes cannot be written.  They stay in memory, the rows
    stay ours in sending (the sweep leaves them alone), nothing more is
    claimed meanwhile, and once the write works they are recorded with the
    sids Twilio gave; none is sent twice.
(d) lookup_check: the check of a lookup's candidates against the recorded
    sids fails; the row is looked up again later, never resent blind.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, wait_until  # noqa: E402
import chaos  # noqa: E402

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=8)
pg.reload(**{"twilio_outbox.lookup_settle_ms": 300})
for i, name in enumerate(("st_a", "st_b", "st_c", "st_d")):
    pg.add_pool(name, f"+1500555190{i}", mps=100, burst=10)
PID = pg.worker_pid()


def faults(value):
    pg.reload(**{"twilio_outbox.debug_inject_faults": value})
    want = value or ""
    wait_until(lambda: (pg.sql_value("SELECT current_setting('twilio_outbox.debug_inject_faults')")
                        or "") == want, 5)


def since_now():
    return max((r["seq"] for r in double.requests(create_only=False)), default=0)


@t.case("(a) the turn fails after the claim committed")
def after_claim():
    before = chaos.worker_status(pg)
    seq0 = since_now()
    faults("after_claim")
    ids = chaos.enqueue_series(pg, 20, "st_a", "+1415190", "stranded ")
    stuck = wait_until(lambda: int(pg.sql_value(
        "SELECT count(*) FROM twilio_outbox WHERE pool = 'st_a' AND status = 'sending'")), 10)
    t.ok(stuck, f"rows were left in sending without a request ({stuck})")
    t.eq(len(double.requests(since=seq0)), 0, "no request went out while the fault lasted")
    time.sleep(1.5)
    faults(None)
    t.ok(chaos.wait_terminal(pg, ids, 30), "the same worker sent them all within 30 s",
         pg.diagnose)
    t.eq(pg.worker_pid(), PID, "without a restart (same pid)")
    chaos.check_final(t, pg, double, ids, {"sent": 20}, "after_claim",
                      requests=double.requests(since=seq0, create_only=False))
    after = chaos.worker_status(pg)
    t.ok(after["recovered"] > before["recovered"],
         f"twilio_worker_status.recovered counts them ({after['recovered']})")
    t.ok("took back" in pg.log_text(), "the server log says so")


@t.case("(b) starting a request fails")
def start_request():
    seq0 = since_now()
    faults("start_request")
    ids = chaos.enqueue_series(pg, 10, "st_b", "+1415191", "cannot start ")
    wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE pool = 'st_b' "
                                    "AND last_error = 'the request could not be started'") == "10",
               10)
    # one snapshot: a row may already be claimed for its next try (which
    # fails again the same way while the fault is on)
    t.eq(pg.sql_dicts("SELECT count(*) FILTER (WHERE status = 'retrying' AND NOT unconfirmed) AS retrying, "
                      "count(*) FILTER (WHERE status = 'sending' AND NOT unconfirmed) AS trying_again, "
                      "count(*) FILTER (WHERE unconfirmed OR status NOT IN ('retrying', 'sending')) AS other "
                      "FROM twilio_outbox WHERE pool = 'st_b'")[0]["other"], 0,
         "each row is back to retrying (or being tried again), none unconfirmed (nothing went out)")
    faults(None)
    t.ok(chaos.wait_terminal(pg, ids, 30), "then they are sent", pg.diagnose)
    chaos.check_final(t, pg, double, ids, {"sent": 10}, "start_request",
                      requests=double.requests(since=seq0, create_only=False))
    t.eq(pg.sql_value("SELECT max(attempts) FROM twilio_outbox WHERE pool = 'st_b'"), "1",
         "the attempts that never started were not counted")


@t.case("(c) recording the outcomes fails")
def record():
    seq0 = since_now()
    faults("record")
    ids = chaos.enqueue_series(pg, 20, "st_c", "+1415192", "unrecorded ")
    # the first claim fills the window (max_concurrency 8); while their outcomes
    # cannot be written the worker claims nothing more
    t.ok(wait_until(lambda: len(double.requests(since=seq0)) >= 8, 10),
         "the first 8 messages went out")
    time.sleep(2.5)             # two sweeps and more
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE pool = 'st_c' "
                      "AND status = 'sending'"), "8",
         "while the write fails they stay in sending: the sweep leaves the worker's own alone")
    t.eq(len(double.requests(since=seq0)), 8,
         "nothing was sent again, and nothing more was claimed, meanwhile")
    faults(None)
    t.ok(chaos.wait_terminal(pg, ids, 20), "once the write works they are recorded", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    chaos.check_final(t, pg, double, ids, {"sent": 20}, "record", requests=reqs)
    t.eq(pg.worker_pid(), PID, "the same worker")


@t.case("(d) checking a lookup's candidates fails")
def lookup_check():
    seq0 = since_now()
    double.config(rules=[{"count": 5, "status": 500, "code": 20500, "process": True}])
    faults("lookup_check")
    ids = chaos.enqueue_series(pg, 10, "st_d", "+1415193", "check fails ")
    wait_until(lambda: sum(1 for r in double.requests(since=seq0, create_only=False)
                           if r["kind"] == "messages_list") >= 5, 15)
    time.sleep(1.0)
    faults(None)
    t.ok(chaos.wait_terminal(pg, ids, 30), "all 10 finished", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    lookups = sum(1 for r in reqs if r["kind"] == "messages_list")
    t.ok(lookups > 5, f"the ambiguous rows were looked up again after the failed check "
         f"({lookups} lookups)")
    chaos.check_final(t, pg, double, ids, {"sent": 10}, "lookup_check", requests=reqs)
    double.config(rules=[])


t.done()
