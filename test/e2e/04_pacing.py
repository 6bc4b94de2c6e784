#!/usr/bin/env python3
"""End-to-end: each pool is paced by its own token bucket, in segments.

Pools A (mps 5, burst 1) and B (mps 2, burst 1) drain in parallel, each at
its own rate (judged from the double's arrival times, with generous bounds:
exact figures belong to benchmarks); a 3-segment message costs 3 tokens.
"""

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, start  # noqa: E402

t = Tap()
pg, double = start()
pg.install_history()


def arrival_times(sender):
    return sorted(r["time"] for r in double.requests() if form(r).get("From") == sender)


def max_in_window(times, window=1.0):
    """Most arrivals in any half-open window [x, x + window)."""
    best, j = 0, 0
    for i, start_time in enumerate(times):
        while j < len(times) and times[j] < start_time + window:
            j += 1
        best = max(best, j - i)
    return best


def fmt(times):
    if not times:
        return "no arrivals"
    return "arrivals (s after the first): " + " ".join(f"{x - times[0]:.2f}" for x in times)


POOLS = {"A": ("+15005550201", 5, 20), "B": ("+15005550202", 2, 8)}


@t.case("two pools paced independently and in parallel")
def two_pools():
    msgs = []
    for name, (sender, mps, n) in POOLS.items():
        pg.add_pool(name, sender, mps=mps, burst=1, paused=True)
        msgs += [dict(to=f"+14152{ord(name):03d}{i:03d}", body=f"pool {name} #{i}", pool=name)
                 for i in range(n)]
    ids = pg.enqueue_batch(msgs)
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name IN ('A', 'B')")
    unpaused = time.time()
    t.ok(pg.wait_terminal(ids, 30), "all 28 rows finished within 30 s", pg.diagnose)
    t.eq(pg.statuses(ids), {"sent": 28}, "all are sent", pg.diagnose)
    spans = {}
    for name, (sender, mps, n) in POOLS.items():
        times = arrival_times(sender)
        t.eq(len(times), n, f"pool {name}: {n} requests")
        if len(times) < 2:
            continue
        burst_limit = math.ceil(mps) + 1 + 1
        t.ok(max_in_window(times) <= burst_limit,
             f"pool {name} (mps {mps}): at most {burst_limit} requests in any 1 s window",
             lambda times=times: f"max {max_in_window(times)}; {fmt(times)}")
        rate = (len(times) - 1) / (times[-1] - times[0])
        t.diag(f"pool {name}: {rate:.2f} msg/s over {times[-1] - times[0]:.2f} s (mps {mps})")
        t.ok(0.7 * mps <= rate <= 1.2 * mps,
             f"pool {name}: overall rate within 0.7..1.2 x {mps}/s",
             lambda rate=rate, times=times: f"rate {rate:.2f}; {fmt(times)}")
        t.ok(times[0] - unpaused <= 1.5, f"pool {name}: first request within 1.5 s of unpausing",
             f"{times[0] - unpaused:.2f} s")
        spans[name] = (times[0], times[-1])
    if len(spans) == 2:
        (a0, a1), (b0, b1) = spans["A"], spans["B"]
        t.ok(a0 < b1 and b0 < a1, "the two pools drained at the same time",
             f"A {a0:.2f}..{a1:.2f}, B {b0:.2f}..{b1:.2f}")


@t.case("a 3-segment message costs 3 tokens")
def segments():
    sender = "+15005550203"
    pg.add_pool("C", sender, mps=3, burst=3, paused=True)
    body = ("0123456789" * 40)  # 400 GSM-7 characters: 3 segments of 153
    ids = pg.enqueue_batch([dict(to=f"+1415203{i:04d}", body=body, pool="C")
                            for i in range(6)])
    t.eq(pg.sql("SELECT DISTINCT num_segments FROM twilio_outbox WHERE pool = 'C'"),
         [("3",)], "num_segments = 3")
    pg.sql("UPDATE twilio_pools SET paused = false WHERE name = 'C'")
    t.ok(pg.wait_terminal(ids, 30), "all 6 rows finished within 30 s", pg.diagnose)
    times = arrival_times(sender)
    t.eq(len(times), 6, "6 requests")
    if len(times) == 6:
        # 18 segments at 3/s with 3 in the bucket: the last goes ~5 s after the first
        span = times[-1] - times[0]
        t.diag(f"6 x 3 segments took {span:.2f} s (ideal 5.0)")
        t.ok(span >= 4.0, "6 three-segment messages at mps 3 burst 3 take >= 4 s", fmt(times))
        t.ok(span <= 5.0 / 0.7, "... and no more than 5 s / 0.7", fmt(times))
        t.ok(max_in_window(times) <= 2, "at most 2 such messages in any 1 s window",
             fmt(times))


t.eq(double.stats()["spec_violations"], [], "no spec violations")
t.eq(pg.bad_transitions(), [], "every status change followed the contract's graph")
t.done()
