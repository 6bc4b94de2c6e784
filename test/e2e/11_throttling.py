#!/usr/bin/env python3
"""Chaos: throttling (429 with Retry-After).

40 % of create requests are answered 429/20429 with Retry-After: 1 (a
seeded probability rule) while 200 messages drain through one pool (mps 50,
burst 5).  All are sent, none lost, none twice; no attempt goes before the
next_attempt_at the worker recorded, and a 429'd message is not tried again
within the second Retry-After asks for; twilio_worker_status.http_429 > 0;
the pool's effective_mps (twilio_pool_status, polled) dropped below mps and
the pool was throttled (worker state 'throttled' or paused_until set) at
some point.  The drain time is printed.
"""

import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap  # noqa: E402
import chaos  # noqa: E402

N = 200
MPS = 50
DRAIN_TIMEOUT = 300

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=10)
pg.add_pool("thr", "+15005551101", mps=MPS, burst=5)


def sample():
    w = pg.sql_dicts("SELECT w.state, p.effective_mps, p.mps, p.paused_until "
                     "FROM twilio_worker_status w, twilio_pool_status p WHERE p.pool = 'thr'",
                     timeout=10)
    return w[0] if w else None


@t.case("40 % of requests answered 429 with Retry-After: 1")
def throttled():
    double.config(seed=11, rules=[{"probability": 0.4, "status": 429, "code": 20429,
                                   "retry_after": "1", "message": "Too Many Requests"}])
    sampler = chaos.Sampler(sample, 0.1)
    began = time.time()
    ids = chaos.enqueue_series(pg, N, "thr", "+1415110", "throttled ")
    done = chaos.wait_terminal(pg, ids, DRAIN_TIMEOUT)
    drain = time.time() - began
    samples = sampler.stop()
    t.ok(done, f"all {N} rows finished within {DRAIN_TIMEOUT} s", pg.diagnose)
    t.diag(f"drain time: {drain:.1f} s for {N} messages at mps {MPS} with 40 % 429s")

    reqs = double.requests(create_only=False)
    chaos.check_final(t, pg, double, ids, {"sent": N}, "throttling", requests=reqs)

    creates = [r for r in reqs if r["kind"] == "messages_create"]
    n429 = sum(1 for r in creates if r["status"] == 429)
    t.diag(f"{len(creates)} create requests, {n429} answered 429")
    t.ok(n429 > 0, "the double answered some requests 429")
    # Retry-After: 1 -- the next request for a 429'd message comes >= 1 s later
    by_to = collections.defaultdict(list)
    for r in reqs:
        to = chaos.request_to(r)
        if to:
            by_to[to].append(r)
    soon = []
    for to, rs in by_to.items():
        rs.sort(key=lambda r: r["time"])
        for a, b in zip(rs, rs[1:]):
            if a["kind"] == "messages_create" and a["status"] == 429 \
                    and b["time"] - a["time"] < 1.0 - chaos.CLOCK_SLACK_S:
                soon.append((to, round(b["time"] - a["time"], 3)))
    t.eq(soon[:10], [], "no 429'd message was tried again within 1 s (Retry-After respected)",
         lambda: f"{len(soon)} too soon")
    gaps = [b["time"] - a["time"] for rs in by_to.values() for a, b in zip(rs, rs[1:])
            if a["kind"] == "messages_create" and a["status"] == 429]
    if gaps:
        t.diag(f"gap after a 429: min {min(gaps):.3f} s, max {max(gaps):.3f} s")

    st = chaos.worker_status(pg)
    t.ok(st and st["http_429"] > 0, "twilio_worker_status.http_429 > 0",
         lambda: repr(st))
    if st:
        t.diag(f"worker: http_429 {st['http_429']}, retried {st['retried']}, "
               f"sent {st['sent']}, requests {st['requests']}")
    t.eq(st and st["http_429"], n429, "http_429 counts every 429 the double answered")
    t.ok(len(samples) >= 10, f"twilio_pool_status was polled during the run "
         f"({len(samples)} samples)")
    low = [s["effective_mps"] for _, s in samples if s["effective_mps"] < s["mps"]]
    t.ok(low, "the pool's effective_mps dropped below mps at some point",
         lambda: repr(samples[:5]))
    if samples:
        t.diag(f"effective_mps: min {min(s['effective_mps'] for _, s in samples):.2f} "
               f"(mps {MPS})")
    held = [s for _, s in samples if s["state"] == "throttled" or s["paused_until"]]
    t.ok(held, "the pool was throttled at some point (state 'throttled' or paused_until set)",
         lambda: repr(collections.Counter(s["state"] for _, s in samples)))
    t.diag(f"{len(held)} of {len(samples)} samples throttled; states: "
           f"{dict(collections.Counter(s['state'] for _, s in samples))}")
    # pacing is still respected while throttled: never more than mps*W + burst in W
    times = sorted(r["time"] for r in creates)
    worst = max((sum(1 for x in times if s <= x < s + 1.0) for s in times), default=0)
    t.ok(worst <= MPS + 5 + 1, f"at most mps + burst requests in any 1 s window ({worst})")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


t.done()
