#!/usr/bin/env python3
"""Chaos: throttling, with each of Twilio's limits answered by its own lever.

Part 1, intermittent 429s: 40 % of create requests are answered 429/20429
with Retry-After: 1 (a seeded probability rule) while 200 messages drain
through one pool at mps 100.  A 429 is about the account's concurrent
requests, so the pool is never paused and its rate never cut; only the
account's concurrency window moves, and each 429'd row waits for its
Retry-After.  All are sent, none lost, none twice, none tried before its
next_attempt_at or within the second Retry-After asks for, nothing fails;
the drain takes a small multiple of the ideal (create requests / mps, plus
the longest chain of Retry-After waits one row went through).

Part 2, a concurrency limit: the double allows 10 requests in flight (429
above) and answers in 200 ms, max_concurrency is 50.  The window settles
near the limit: from 2 s on until 90 % are sent, goodput reaches at least
90 % of limit / latency and fewer than 5 % of the requests are answered 429.

Part 3, a sender's queue: the double queues the pool's sender at 10 mps and
answers 400/21611 once 20 messages wait, while the pool is configured at
100 mps.  21611 is the pool's rate signal: its effective_mps falls below
mps, the 21611s thin out, and every message is sent.
"""

import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap  # noqa: E402
import chaos  # noqa: E402

t = Tap()
# part 2 runs first, on a fresh worker: its window starts at max_concurrency
pg, double = chaos.start_chaos(max_concurrency=10)


def sample(pool):
    def fn():
        got = pg.sql_dicts("SELECT w.state, w.concurrency_window, p.effective_mps, p.mps, "
                           "p.paused_until, p.breaker FROM twilio_worker_status w, "
                           "twilio_pool_status p WHERE p.pool = :'p1'", pool, timeout=10)
        return got[0] if got else None
    return chaos.Sampler(fn, 0.1)


def by_to(reqs):
    out = collections.defaultdict(list)
    for r in reqs:
        to = chaos.request_to(r)
        if to:
            out[to].append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["time"])
    return out


@t.case("part 2: a concurrency limit of 10 with 200 ms answers, max_concurrency 50")
def concurrency_limit():
    n, limit, latency = 500, 10, 0.2
    pg.reload(**{"twilio_outbox.max_concurrency": 50})
    pg.add_pool("conc", "+15005551102", mps=1000, burst=100)
    double.config(account_concurrency=limit, delay_ms=int(latency * 1000))
    sampler = sample("conc")
    since = len(double.requests(create_only=False))
    began = time.time()
    ids = chaos.enqueue_series(pg, n, "conc", "+1415111", "limited ")
    done = chaos.wait_terminal(pg, ids, 120)
    samples = [s for _, s in sampler.stop()]
    t.ok(done, f"all {n} rows finished within 120 s", pg.diagnose)
    reqs = double.requests(create_only=False)[since:]
    chaos.check_final(t, pg, double, ids, {"sent": n}, "concurrency limit", requests=reqs)

    creates = sorted((r for r in reqs if r["kind"] == "messages_create"), key=lambda r: r["time"])
    ok_times = sorted(r["time"] for r in creates if r["status"] == 201)
    # the steady state: after the first 2 s, until 90 % are sent (the tail has
    # fewer rows left than the window, and its 429'd rows wait out their backoff)
    settled, until = began + 2.0, ok_times[int(0.9 * len(ok_times))]
    later = [r for r in creates if settled <= r["time"] <= until]
    n429 = sum(1 for r in later if r["status"] == 429)
    goodput = sum(1 for x in ok_times if settled <= x <= until) / max(until - settled, 1e-3)
    ceiling = limit / latency
    t.diag(f"from 2 s until 90 % were sent: goodput {goodput:.1f} msgs/s = {goodput / ceiling:.2f} of "
           f"limit/latency ({ceiling:.0f}/s); {n429} of {len(later)} requests answered 429 "
           f"({100 * n429 / max(len(later), 1):.1f} %); in the first 2 s "
           f"{sum(1 for r in creates if r['time'] < settled and r['status'] == 429)} 429s")
    t.ok(goodput >= 0.9 * ceiling, f"goodput >= 90 % of limit/latency ({goodput:.1f} msgs/s)")
    t.ok(n429 < 0.05 * max(len(later), 1), f"429s under 5 % of requests after 2 s ({n429})")
    windows = [s["concurrency_window"] for s in samples[len(samples) // 2:]
               if s["concurrency_window"] is not None]
    if windows:
        t.diag(f"concurrency window in the second half: {min(windows):.1f} .. {max(windows):.1f}")
    t.ok(windows and max(windows) <= 2 * limit,
         "the window settled near the limit, not at max_concurrency", lambda: repr(windows[:20]))
    double.config(account_concurrency=None, delay_ms=0)
    pg.reload(**{"twilio_outbox.max_concurrency": 10})


@t.case("part 1: 40 % of requests answered 429 with Retry-After: 1")
def intermittent():
    n, mps = 200, 100
    pg.add_pool("thr", "+15005551101", mps=mps, burst=10)
    double.config(seed=11, rules=[{"probability": 0.4, "status": 429, "code": 20429,
                                   "retry_after": "1", "message": "Too Many Requests"}])
    sampler = sample("thr")
    since = len(double.requests(create_only=False))
    http_429_before = chaos.worker_status(pg)["http_429"]
    began = time.time()
    ids = chaos.enqueue_series(pg, n, "thr", "+1415110", "throttled ")
    done = chaos.wait_terminal(pg, ids, 120)
    drain = time.time() - began
    samples = [s for _, s in sampler.stop()]
    t.ok(done, f"all {n} rows finished within 120 s", pg.diagnose)

    reqs = double.requests(create_only=False)[since:]
    chaos.check_final(t, pg, double, ids, {"sent": n}, "intermittent 429s", requests=reqs)
    creates = [r for r in reqs if r["kind"] == "messages_create"]
    n429 = sum(1 for r in creates if r["status"] == 429)
    rows = by_to(reqs)
    soon = [(to, round(b["time"] - a["time"], 3)) for to, rs in rows.items()
            for a, b in zip(rs, rs[1:])
            if a["status"] == 429 and b["time"] - a["time"] < 1.0 - chaos.CLOCK_SLACK_S]
    t.eq(soon[:10], [], "no 429'd message was tried again within 1 s (Retry-After respected)")
    longest_chain = max((sum(1 for r in rs if r["status"] == 429) for rs in rows.values()),
                        default=0)
    ideal = len(creates) / mps + longest_chain * 1.0
    t.diag(f"drain {drain:.1f} s for {n} messages: {len(creates)} create requests, {n429} "
           f"answered 429, longest chain of 429s {longest_chain}; ideal {ideal:.1f} s, "
           f"ratio {drain / ideal:.2f}")
    t.ok(drain <= 3 * ideal + 2, f"the drain takes at most 3x the ideal + 2 s "
         f"({drain:.1f} s vs {ideal:.1f} s)")
    t.ok(n429 > 0, "the double answered some requests 429")
    st = chaos.worker_status(pg)
    t.eq(st and st["http_429"] - http_429_before, n429,
         "twilio_worker_status.http_429 counts every 429")
    t.ok(len(samples) >= 10, f"the worker's state was sampled ({len(samples)} samples)")
    paused = [s for s in samples if s["paused_until"] or s["breaker"] != "closed"]
    t.eq(paused[:3], [], "the pool was never paused or held: a 429 is not about its rate")
    cut = [s for s in samples if s["effective_mps"] < s["mps"]]
    t.eq(cut[:3], [], "the pool's effective_mps stayed at mps")
    windows = [s["concurrency_window"] for s in samples if s["concurrency_window"] is not None]
    t.ok(windows and min(windows) < 10, "the account's concurrency window narrowed",
         lambda: repr(windows[:20]))
    if windows:
        t.diag(f"concurrency window: min {min(windows):.1f}, last {windows[-1]:.1f} (max 10)")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")
    double.config(rules=[])


@t.case("part 3: the sender's queue at Twilio is full (400/21611)")
def sender_queue():
    n, mps = 150, 100
    sender = "+15005551103"
    pg.add_pool("queue", sender, mps=mps, burst=10)
    double.config(sender_mps={sender: 10}, sender_queue_limit=20)
    sampler = sample("queue")
    since = len(double.requests(create_only=False))
    ids = chaos.enqueue_series(pg, n, "queue", "+1415112", "queue full ")
    done = chaos.wait_terminal(pg, ids, 180)
    samples = [s for _, s in sampler.stop()]
    t.ok(done, f"all {n} rows finished within 180 s", pg.diagnose)
    reqs = double.requests(create_only=False)[since:]
    chaos.check_final(t, pg, double, ids, {"sent": n}, "sender queue full", requests=reqs)
    creates = sorted((r for r in reqs if r["kind"] == "messages_create"), key=lambda r: r["time"])
    full = [r for r in creates if r["code"] == 21611]
    t.ok(full, f"the double answered 21611 ({len(full)} times)")
    low = [s["effective_mps"] for s in samples if s["effective_mps"] < s["mps"]]
    t.ok(low, "the pool's effective_mps fell below mps", lambda: repr(samples[:5]))
    if low:
        t.diag(f"effective_mps: min {min(low):.2f} (mps {mps}, the sender's real rate 10)")
    half = len(creates) // 2
    first, second = creates[:half], creates[half:]
    rate = [sum(1 for r in part if r["code"] == 21611) / max(len(part), 1) for part in (first, second)]
    t.diag(f"21611 share: first half {rate[0]:.2f}, second half {rate[1]:.2f}")
    t.ok(rate[1] < rate[0], "21611s thin out once the pool slows down")
    double.config(sender_mps={}, sender_queue_limit=None)


t.done()
