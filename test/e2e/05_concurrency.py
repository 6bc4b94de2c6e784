#!/usr/bin/env python3
"""End-to-end: twilio_outbox.max_concurrency caps the requests in flight.

The double answers after 300 ms; with max_concurrency = 4 its max_in_flight
never exceeds 4 and reaches at least 3 (the cap is used), connections are
kept alive, and a reload to 2 lowers the cap.
"""

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, start, wait_until  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.max_concurrency": 4})
pg.add_pool("fast", "+15005550301", mps=1000, burst=100)


def burst_of(n, prefix):
    return pg.enqueue_batch([dict(to=f"{prefix}{i:04d}", body=f"concurrency {i}", pool="fast")
                             for i in range(n)])


@t.case("max_concurrency = 4 with 300 ms answers")
def cap4():
    double.reset()
    double.config(delay_ms=300)
    ids = burst_of(40, "+1415301")
    t.ok(pg.wait_terminal(ids, 40), "all 40 rows finished within 40 s", pg.diagnose)
    t.eq(pg.statuses(ids), {"sent": 40}, "all 40 are sent", pg.diagnose)
    stats = double.stats()
    t.diag(f"double stats: max_in_flight {stats['max_in_flight']}, by_status "
           f"{stats['by_status']}")
    t.ok(stats["max_in_flight"] <= 4, "never more than 4 requests in flight",
         f"max_in_flight {stats['max_in_flight']}")
    t.ok(stats["max_in_flight"] >= 3, "at least 3 in flight at once (the cap is used)",
         f"max_in_flight {stats['max_in_flight']}")
    reqs = double.requests()
    t.eq(collections.Counter(r["status"] for r in reqs), {201: 40},
         "40 create requests, all answered 201")
    dups = collections.Counter(form(r).get("To") for r in reqs)
    t.eq(sorted(to for to, n in dups.items() if n > 1), [], "no message was sent twice")
    conns = {r["conn"] for r in reqs}
    t.diag(f"{len(reqs)} requests over {len(conns)} connections")
    t.ok(len(conns) <= 10, "connections are kept alive (<= 10 connections for 40 requests)",
         f"{len(conns)} distinct connections")
    # 40 requests of 300 ms, 4 at a time: about 3 s; serial would be 12 s
    times = sorted(r["time"] for r in reqs)
    span = times[-1] - times[0]
    t.diag(f"40 requests started over {span:.2f} s")
    t.ok(span < 8.0, "the requests overlapped (40 x 300 ms started within 8 s)",
         f"{span:.2f} s")


@t.case("a reload to max_concurrency = 2 lowers the cap")
def cap2():
    pg.reload(**{"twilio_outbox.max_concurrency": 2})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.max_concurrency") == "2", 5)
    double.reset()
    double.config(delay_ms=300)
    ids = burst_of(12, "+1415302")
    t.ok(pg.wait_terminal(ids, 30), "all 12 rows finished", pg.diagnose)
    stats = double.stats()
    t.ok(stats["max_in_flight"] <= 2, "never more than 2 in flight after the reload",
         f"max_in_flight {stats['max_in_flight']}")
    t.ok(stats["max_in_flight"] == 2, "2 in flight at once", f"{stats['max_in_flight']}")


double.config(delay_ms=0)
t.eq(double.stats()["spec_violations"], [], "no spec violations")
t.done()
