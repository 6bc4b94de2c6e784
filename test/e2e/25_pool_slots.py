#!/usr/bin/env python3
"""End-to-end: the worker's 256 pool slots and twilio_pool_status.

- A deleted pool's slot (kept until nothing of it is in flight) is not
  shown by twilio_pool_status, not even as a pool named ''.
- 256 pools are all served: each has its slot, a message to the last of
  them (by name) is sent, and the worker never warns that it cannot serve
  a pool; the 257th is refused at INSERT.
- A pool name of 63 bytes that is 32 characters (UTF-8) is served under
  its whole name.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SqlError, Tap, start, wait_until  # noqa: E402

t = Tap()
pg, double = start()


def pool_names():
    return sorted(r[0] for r in pg.sql("SELECT pool FROM twilio_pool_status"))


def drop_pools():
    """Delete every pool and wait until the worker has let go of their slots
    (it frees the slots of deleted pools only after placing new ones)."""
    pg.sql("DELETE FROM twilio_outbox; DELETE FROM twilio_pools")
    t.ok(wait_until(lambda: pool_names() == [], 10, 0.1), "the worker let go of the pools",
         lambda: repr(pool_names()))


@t.case("a deleted pool's slot is not shown")
def freed_slot():
    for name in ("a", "b", "c"):
        pg.add_pool(name, "+15005550100")
    t.ok(wait_until(lambda: pool_names() == ["a", "b", "c"], 10, 0.1),
         "twilio_pool_status shows the three pools", lambda: repr(pool_names()))
    pg.sql("DELETE FROM twilio_pools WHERE name = 'a'")
    t.ok(wait_until(lambda: pool_names() == ["b", "c"], 10, 0.1),
         "after deleting the first one, only the other two", lambda: repr(pool_names()))
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_pool_status WHERE pool = ''"), "0",
         "no pool named ''")
    t.ok("pools" in pg.sql_dicts("SELECT * FROM twilio_worker_status")[0] and
         all(p["pool"] for p in pg.sql_dicts("SELECT * FROM twilio_worker_status")[0]["pools"]),
         "twilio_worker_status.pools has no nameless entry either")
    drop_pools()


@t.case("256 pools are served; the 257th is refused")
def all_slots():
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) "
           "SELECT 'p' || lpad(i::text, 3, '0'), '+15005550100', 100, 10 FROM generate_series(1, 256) i")
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_pool_status") == "256", 15, 0.2),
         "twilio_pool_status has 256 pools", lambda: pg.sql_value("SELECT count(*) FROM twilio_pool_status"))
    i = pg.enqueue("+14155550100", "to the last pool", pool="p256")
    t.ok(pg.wait_terminal([i], 20) and
         pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", i) == "sent",
         "a message to the 256th pool is sent", pg.diagnose)
    try:
        pg.add_pool("p257", "+15005550100")
        err = None
    except SqlError as exc:
        err = str(exc)
    t.ok(err and "the most the worker can serve" in err, "the 257th pool is refused", err)
    t.ok("cannot serve pool" not in pg.log_text(), "the worker never warned that it cannot serve a pool",
         lambda: pg.log_tail(10))
    drop_pools()


@t.case("a 63-byte pool name of 32 characters is served under its whole name")
def multibyte_name():
    name = "é" * 31 + "p"
    pg.add_pool(name, "+15005550100")
    t.ok(wait_until(lambda: pool_names() == [name], 10, 0.1), "twilio_pool_status shows the whole name",
         lambda: repr(pool_names()))
    i = pg.enqueue("+14155550101", "multibyte pool", pool=name)
    t.ok(pg.wait_terminal([i], 20) and
         pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", i) == "sent",
         "and its message is sent", pg.diagnose)


t.done()
