#!/usr/bin/env python3
"""End-to-end: the worker's life.

It shows in pg_stat_activity and twilio_worker_status; with the extension
dropped it waits quietly (same pid, one LOG line, no crash loop) and sends
again after CREATE EXTENSION; a SIGHUP reload of api_base_url moves the next
message to another double; after a restart it comes back and sends.
"""

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH_TOKEN, Double, Tap, form, start, wait_until  # noqa: E402

STATES = {"starting", "waiting_for_extension", "disabled", "unconfigured", "idle", "sending",
          "throttled", "auth_failed"}

t = Tap()
pg, double = start()
second = None


def worker_pids():
    return [int(r[0]) for r in pg.sql("SELECT pid FROM pg_stat_activity "
                                      "WHERE backend_type = 'twilio_outbox worker'")]


def setup_pool(paused=False):
    pg.add_pool("life", "+15005550501", mps=100, burst=10, paused=paused)


def sent_to(d, to, timeout):
    return wait_until(lambda: [r for r in d.requests() if form(r).get("To") == to], timeout)


setup_pool()
WORKER = {}


@t.case("the worker is visible")
def visible():
    pids = worker_pids()
    t.eq(len(pids), 1, "one backend with backend_type 'twilio_outbox worker' in pg_stat_activity")
    if not pids:
        return
    WORKER["pid"] = pids[0]
    status = pg.sql_dicts("SELECT pid, state, in_flight FROM twilio_worker_status")
    t.eq(len(status), 1, "twilio_worker_status has one row")
    if status:
        t.eq(status[0]["pid"], pids[0], "twilio_worker_status shows the worker's pid")
        t.ok(status[0]["state"] in STATES, "its state is a known one", repr(status[0]))
    t.ok(wait_until(lambda: pg.sql_value("SELECT state FROM twilio_worker_status") == "idle", 5),
         "the worker is idle within 5 s with nothing to send", pg.diagnose)
    row_id = pg.enqueue("+14155010000", "hello", pool="life")
    t.ok(pg.wait_terminal([row_id], 10) and sent_to(double, "+14155010000", 1),
         "it sends a message", pg.diagnose)


@t.case("DROP EXTENSION: the worker waits quietly")
def dropped():
    offset = len(pg.log_text())
    pg.sql("DROP EXTENSION twilio_outbox")
    seen = set()
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        seen.update(worker_pids() or [None])
        time.sleep(0.2)
    t.eq(seen, {WORKER.get("pid")}, "the same worker pid for 3 s after DROP EXTENSION")
    log = pg.log_text()[offset:]
    waiting = [line for line in log.splitlines() if re.search(r"twilio_outbox.*waiting", line)]
    t.ok(len(waiting) >= 1, "the worker logs that it is waiting", log[-3000:])
    t.ok(len(waiting) <= 1, "... once", "\n".join(waiting))
    crashes = [line for line in log.splitlines()
               if re.search(r"twilio_outbox.*(exited with exit code|terminated by signal)", line)
               or re.search(r"twilio_outbox worker (ERROR|FATAL|PANIC)", line)]
    t.eq(crashes, [], "no worker error, exit or crash in the log")


@t.case("CREATE EXTENSION again: the worker sends")
def recreated():
    pg.sql("CREATE EXTENSION twilio_outbox")
    setup_pool()
    row_id = pg.enqueue("+14155010001", "after re-create", pool="life")
    t.ok(pg.wait_terminal([row_id], 10), "the new message finished within 10 s", pg.diagnose)
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", row_id), "sent",
         "it is sent")
    t.ok(sent_to(double, "+14155010001", 1), "the double got it")
    t.eq(worker_pids(), [WORKER.get("pid")], "still the same worker")


@t.case("SIGHUP: api_base_url moves to a second double")
def reload_url():
    global second
    second = Double("double2")
    before = len(double.requests())
    pg.reload(**{"twilio_outbox.api_base_url": second.url})
    t.ok(wait_until(lambda: pg.sql_value("SHOW twilio_outbox.api_base_url") == second.url, 5),
         "the new api_base_url is in effect for new sessions")
    row_id = pg.enqueue("+14155010002", "to the second double", pool="life")
    t.ok(pg.wait_terminal([row_id], 10), "the message finished", pg.diagnose)
    t.ok(sent_to(second, "+14155010002", 2), "the second double got it", pg.diagnose)
    t.eq(len(double.requests()), before, "the first double got nothing more")
    t.eq(worker_pids(), [WORKER.get("pid")], "no worker restart was needed")


@t.case("restart: the worker comes back and sends what was queued")
def restarted():
    # a new pool, paused from the start (a pause of a known pool takes up to 1 s)
    pg.add_pool("held", "+15005550502", mps=100, burst=10, paused=True)
    row_id = pg.enqueue("+14155010003", "queued across a restart", pool="held")
    pg.restart()
    pids = wait_until(worker_pids, 10, 0.1)
    t.ok(pids and pids != [WORKER.get("pid")], "a new worker runs after the restart",
         repr(pids))
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", row_id), "queued",
         "the row is still queued")
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'held'")
    t.ok(pg.wait_terminal([row_id], 10), "it is sent after unpausing", pg.diagnose)
    t.ok(sent_to(second, "+14155010003", 2), "to the second double (ALTER SYSTEM persisted)")


@t.case("a slow request in flight just after the worker starts is sent once")
def in_flight_at_start():
    pg.add_pool("slow", "+15005550503", mps=100, burst=10)
    pg.restart()
    second.config(delay_ms=2500)
    t.ok(wait_until(lambda: pg.sql_value("SELECT state FROM twilio_worker_status") == "idle",
                    10, 0.05), "the restarted worker is idle", pg.diagnose)
    row_id = pg.enqueue("+14155010004", "exactly once", pool="slow")
    t.ok(pg.wait_terminal([row_id], 15), "the row finished", pg.diagnose)
    wait_until(lambda: second.stats()["in_flight"] == 0, 10)
    got = [(form(r).get("Attempt"), r["status"], r["sid"])
           for r in second.requests() if form(r).get("To") == "+14155010004"]
    t.eq(len(got), 1, "the message was sent once (a request still in flight is not "
         "recovered as if an earlier worker had left it)",
         lambda: f"requests (Attempt, status, sid): {got}\n" + pg.diagnose())
    second.config(delay_ms=0)


@t.case("secrets")
def secrets():
    t.ok(AUTH_TOKEN not in pg.log_text(), "the auth token never appears in the server log")


t.done()
