#!/usr/bin/env python3
"""End-to-end: the worker's own session, encodings, callbacks and shutdown.

(a) Database- and role-level settings meant for applications
    (statement_timeout, lock_timeout and idle_in_transaction_session_timeout
    of 1 ms, serializable and read-only default transactions,
    synchronous_commit = off) do not reach the worker's transactions: after
    a restart with all of them set, it sends everything and logs none of
    their errors.
(b) In a LATIN1 database the text goes to Twilio in UTF-8, and an ambiguous
    attempt of a non-ASCII message is still found by its lookup (no
    duplicate).
(c) StatusCallback defaults to webhook_public_url + /twilio/status; a row's
    own status_callback wins.
(d) Shutdown sends nothing new: a lookup that is out when the server stops
    and finds nothing does not turn into a POST during the shutdown; the
    message is sent once after the restart.
(e) A server-level default_transaction_read_only (as pg_auto_failover sets
    it on a node it has not confirmed as primary) holds the worker in state
    read_only: nothing is claimed or sent, one LOG line and no WARNINGs;
    the reload that lifts it starts the sending.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Cluster, Double, Tap, form, start, wait_until  # noqa: E402
import chaos  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                             "twilio_outbox.backoff_max_ms": 1000,
                             "twilio_outbox.lookup_settle_ms": 300})
pg.add_pool("default", "+15005552201", mps=200, burst=20)


@t.case("(a) database-level settings do not reach the worker")
def pinned():
    # the suite's own sessions undo them on their command line
    pg.client_options = ("-c statement_timeout=0 -c lock_timeout=0 "
                         "-c idle_in_transaction_session_timeout=0 "
                         "-c default_transaction_isolation=read\\ committed "
                         "-c default_transaction_read_only=off")
    pg.sql(f"""ALTER DATABASE "{pg.db}" SET statement_timeout = '1ms';
               ALTER DATABASE "{pg.db}" SET lock_timeout = '1ms';
               ALTER DATABASE "{pg.db}" SET default_transaction_isolation = 'serializable';
               ALTER ROLE postgres IN DATABASE "{pg.db}" SET idle_in_transaction_session_timeout = '1ms';
               ALTER ROLE postgres IN DATABASE "{pg.db}" SET default_transaction_read_only = on;
               ALTER ROLE postgres SET synchronous_commit = off;""")
    log_from = len(pg.log_text())
    pg.restart()
    t.ok(chaos.wait_worker(pg, 20), "the worker is back after the restart")
    ids = [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue('+1415220' || lpad(i::text, 4, '0'), 'pinned ' || i) "
        "FROM generate_series(1, 50) i")]
    t.ok(pg.wait_terminal(ids, 30), "all 50 are sent", pg.diagnose)
    t.eq(pg.statuses(ids), {"sent": 50}, "... every one of them")
    log = pg.log_text()[log_from:]
    bad = [line for line in log.splitlines() if "twilio_outbox" in line and (
        "read-only transaction" in line or "statement timeout" in line or "lock timeout" in line
        or "could not serialize" in line or "idle-in-transaction" in line)]
    t.eq(bad[:5], [], "the worker's log has none of those settings' errors")
    pg.sql(f"""ALTER DATABASE "{pg.db}" RESET ALL; ALTER ROLE postgres IN DATABASE "{pg.db}" RESET ALL;
               ALTER ROLE postgres RESET ALL""")
    pg.client_options = ""
    pg.restart()
    chaos.wait_worker(pg, 20)


@t.case("(c) StatusCallback defaults to webhook_public_url + /twilio/status")
def status_callback():
    pg.reload(**{"twilio_outbox.webhook_public_url": "https://hooks.example.com/base/"})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.webhook_public_url") != "", 5)
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    a = pg.enqueue("+14152210001", "default callback")
    b = pg.enqueue("+14152210002", "own callback", status_callback="https://mine.example.com/cb")
    t.ok(pg.wait_terminal([a, b], 15), "both are sent", pg.diagnose)
    got = {form(r)["To"]: form(r).get("StatusCallback") for r in double.requests(since=seq0)}
    t.eq(got.get("+14152210001"), "https://hooks.example.com/base/twilio/status",
         "without its own, a message carries webhook_public_url + /twilio/status")
    t.eq(got.get("+14152210002"), "https://mine.example.com/cb", "a row's own status_callback wins")
    pg.reload(**{"twilio_outbox.webhook_public_url": None})


@t.case("(d) shutdown sends nothing new")
def shutdown():
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    to = "+14152230000"
    double.config(rules=[{"match": {"to": to}, "count": 1, "drop": True},
                         {"match": {"to": to, "path": "messages_list"}, "count": 1,
                          "delay_ms": 2000}])
    i = pg.enqueue(to, "the lookup is out at shutdown")
    out = wait_until(lambda: [r for r in double.requests(since=seq0, create_only=False)
                              if r["kind"] == "messages_list" and r["status"] is None], 15, 0.02)
    t.ok(out, "the lookup of the lost attempt is in flight")
    stop_at = time.time()
    pg.stop()
    restart_at = time.time()
    creates = [r for r in double.requests(since=seq0) if stop_at <= r["time"] <= restart_at]
    t.eq(creates, [], "no POST went out while the server stopped, though the lookup found nothing")
    pg.start()
    chaos.wait_worker(pg, 20)
    t.ok(pg.wait_terminal([i], 20), "after the restart it is sent", pg.diagnose)
    posts = [r for r in double.requests(since=seq0) if r["status"] == 201]
    t.eq(len(posts), 1, "exactly once")
    double.config(rules=[])


@t.case("(e) a read-only server holds the worker until a reload lifts it")
def read_only():
    pg.client_options = "-c default_transaction_read_only=off"
    log_from = len(pg.log_text())
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    pg.reload(default_transaction_read_only="on")
    t.ok(wait_until(lambda: chaos.worker_status(pg)["state"] == "read_only", 10),
         "the worker's state is read_only", lambda: chaos.worker_status(pg))
    ids = [pg.enqueue("+1415225000" + str(k), "read-only " + str(k)) for k in range(3)]
    time.sleep(3)
    t.eq(pg.statuses(ids), {"queued": 3}, "nothing is claimed while the server is read-only")
    t.eq(double.requests(since=seq0, create_only=False), [], "nothing went to Twilio")
    log = pg.log_text()[log_from:].splitlines()
    t.eq([line for line in log if "WARNING" in line][:5], [], "the worker logged no WARNING")
    t.eq(len([line for line in log if "the server is read-only" in line]), 1,
         "one LOG line says why it waits")
    pg.reload(default_transaction_read_only=None)
    t.ok(pg.wait_terminal(ids, 10), "the reload that lifts it lets them go", pg.diagnose)
    t.eq(pg.statuses(ids), {"sent": 3}, "... all three sent")
    t.ok(chaos.worker_status(pg)["state"] in ("idle", "sending"), "the worker is back to work")
    pg.client_options = ""


@t.case("(b) a LATIN1 database sends UTF-8 and reconciles non-ASCII text")
def latin1():
    d2 = Double(name="double_latin1")
    other = Cluster(double=d2, name="latin1", db="twilio_latin1", db_encoding="LATIN1",
                    settings={"twilio_outbox.lookup_settle_ms": 300})
    t.eq(other.sql_value("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                         "WHERE datname = current_database()"), "LATIN1", "the database is LATIN1")
    other.add_pool("default", "+15005552202", mps=100, burst=10)
    d2.config(rules=[{"count": 1, "status": 500, "code": 20500, "process": True}])
    body = "Grüße aus Köln, señor"
    i = other.enqueue("+14152240000", body)
    j = other.enqueue("+14152240001", body + " (twice)")
    t.ok(other.wait_terminal([i, j], 20), "both are sent", other.diagnose)
    got = sorted(form(r)["Body"] for r in d2.requests() if r["status"] == 201 or r["sid"])
    t.eq(got, sorted([body, body + " (twice)"]), "Twilio received the text in UTF-8, each once")
    t.eq(other.sql_value("SELECT count(*) FROM twilio_outbox WHERE status = 'sent' "
                         "AND twilio_sid IS NOT NULL"), "2", "both hold their sid")
    st = chaos.worker_status(other)
    t.eq(st["reconciled"], 1, "the ambiguous one was found by its lookup")
    other.stop()


t.done()
