#!/usr/bin/env python3
"""End-to-end: the worker reads again only the rows of twilio_pools that a
commit changed (src/pool_slots.c names them in shared memory).

- With 200 pools, a change of one pool's row is read as that one row (the
  worker's statement by name returns 1 row, pg_stat_statements), and
  twilio_pool_status shows the new rate; the other pools keep theirs.
- A rename, a delete, a pause and its end, and one transaction changing
  more pools than shared memory names (every row is read then) all reach
  twilio_pool_status within the contract's 1 s (2 s allowed here).
- A statement that changes no row, and a transaction rolled back, make
  the worker read nothing.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, start, wait_until  # noqa: E402

t = Tap()
pg, double = start(settings={"shared_preload_libraries": "twilio_outbox,pg_stat_statements",
                             "pg_stat_statements.track": "all"})
pg.sql("CREATE EXTENSION pg_stat_statements")


def status():
    return {r["pool"]: r for r in pg.sql_dicts("SELECT pool, mps, burst, paused FROM twilio_pool_status")}


def reads():
    """(calls, rows) of the worker's read of all pools and of its read by name."""
    out = {"all": (0, 0), "some": (0, 0)}
    for r in pg.sql_dicts("SELECT query, calls, rows FROM pg_stat_statements "
                          "WHERE query LIKE 'SELECT name, sender%twilio_pools%'"):
        key = "some" if "ANY" in r["query"] else "all"
        out[key] = (out[key][0] + r["calls"], out[key][1] + r["rows"])
    return out


def settle():
    """Wait for the worker to have read what was committed before."""
    time.sleep(2.2)


@t.case("200 pools: a change of one pool is read as one row")
def one_row():
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) "
           "SELECT 'p' || lpad(i::text, 3, '0'), '+15005550100', 10, 1 FROM generate_series(1, 200) i")
    t.ok(wait_until(lambda: len(status()) == 200, 10, 0.1), "twilio_pool_status has 200 pools",
         lambda: len(status()))
    settle()
    pg.sql("SELECT pg_stat_statements_reset()")
    pg.sql("UPDATE twilio_pools SET mps = 7, burst = 3 WHERE name = 'p150'")
    t.ok(wait_until(lambda: status()["p150"]["mps"] == 7, 2, 0.05), "the new rate is in force",
         lambda: status()["p150"])
    t.eq(status()["p150"]["burst"], 3, "and the new burst")
    t.ok(all(v["mps"] == 10 for k, v in status().items() if k != "p150"), "the other pools keep theirs")
    got = reads()
    t.eq(got["some"], (1, 1), "the worker read that one row by name", got)
    t.eq(got["all"][0], 0, "and did not read every pool", got)


@t.case("rename, delete, pause and its end")
def changes():
    pg.sql("UPDATE twilio_pools SET name = 'renamed' WHERE name = 'p001'")
    t.ok(wait_until(lambda: "renamed" in status() and "p001" not in status(), 2, 0.05),
         "a renamed pool is served under its new name only", lambda: sorted(status())[:3])
    pg.sql("DELETE FROM twilio_pools WHERE name IN ('p002', 'renamed')")
    t.ok(wait_until(lambda: "p002" not in status() and "renamed" not in status(), 2, 0.05),
         "deleted pools are gone", lambda: sorted(status())[:3])
    t.eq(len(status()), 198, "198 pools are left")
    pg.sql("UPDATE twilio_pools SET paused = true WHERE name = 'p003'")
    t.ok(wait_until(lambda: status()["p003"]["paused"], 2, 0.05), "a paused pool shows paused")
    i = pg.enqueue("+14155550100", "waits for the pause", pool="p003")
    time.sleep(1.5)
    t.eq(pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", i), "queued",
         "its message stays queued")
    pg.sql("SELECT twilio_pool_pause('p004', now() + interval '1 second')")
    t.ok(wait_until(lambda: status()["p004"]["paused"], 2, 0.05), "a timed pause shows paused")
    t.ok(wait_until(lambda: not status()["p004"]["paused"], 4, 0.05), "and ends by itself")
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'p003'")
    t.ok(pg.wait_terminal([i], 5) and
         pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", i) == "sent",
         "once resumed, its message is sent", pg.diagnose)


@t.case("more pools changed in one transaction than shared memory names")
def many():
    settle()
    pg.sql("SELECT pg_stat_statements_reset()")
    pg.sql("UPDATE twilio_pools SET mps = 20 WHERE name BETWEEN 'p100' AND 'p139'")
    t.ok(wait_until(lambda: sum(1 for v in status().values() if v["mps"] == 20) == 40, 2, 0.05),
         "all 40 pools have the new rate",
         lambda: sum(1 for v in status().values() if v["mps"] == 20))
    got = reads()
    t.ok(got["all"][0] >= 1, "every pool was read once", got)
    pg.sql("BEGIN; INSERT INTO twilio_pools (name, sender, mps) "
           "SELECT 'q' || i, '+15005550100', 5 FROM generate_series(1, 20) i; "
           "UPDATE twilio_pools SET mps = 9 WHERE name = 'p199'; COMMIT")
    t.ok(wait_until(lambda: sum(1 for k in status() if k.startswith("q")) == 20 and
                    status()["p199"]["mps"] == 9, 2, 0.05),
         "20 new pools and a change of another, in one transaction, are all in force")


@t.case("no change, no read")
def nothing():
    settle()
    pg.sql("SELECT pg_stat_statements_reset()")
    pg.sql("UPDATE twilio_pools SET mps = mps WHERE false")
    pg.sql("BEGIN; UPDATE twilio_pools SET mps = 1 WHERE name = 'p010'; ROLLBACK")
    time.sleep(2.5)
    got = reads()
    t.eq((got["all"][0], got["some"][0]), (0, 0),
         "a statement that changed no row and a rollback made the worker read nothing", got)
    t.eq(status()["p010"]["mps"], 10, "the rolled-back rate is not in force")


t.done()
