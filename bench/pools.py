#!/usr/bin/env python3
"""bench/pools' driver: one cluster with pg_stat_statements; first one pool,
then 200 (20 busy); the figures of each, side by side (see bench/pools)."""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "e2e"))
from harness import form, start  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "e2e"))
import idle  # noqa: E402  (cpu_seconds)

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 20
MPS = 5                         # each busy pool's
pg, double = start(settings={"shared_preload_libraries": "twilio_outbox,pg_stat_statements",
                             "pg_stat_statements.track": "all"})
pg.sql("CREATE EXTENSION pg_stat_statements")


def poll_ms(query, n=20):
    times = []
    for _ in range(n):
        began = time.perf_counter()
        pg.sql(query)
        times.append((time.perf_counter() - began) * 1000)
    base = []
    for _ in range(n):
        began = time.perf_counter()
        pg.sql("SELECT 1")
        base.append((time.perf_counter() - began) * 1000)
    return statistics.median(times) - statistics.median(base)


def statements():
    rows = pg.sql_dicts("SELECT query, calls, total_exec_time FROM pg_stat_statements")
    return {r["query"]: (r["calls"], r["total_exec_time"]) for r in rows}


def run(label, npools, nbusy, mps):
    pg.sql("DELETE FROM twilio_outbox; DELETE FROM twilio_pools; SELECT pg_stat_statements_reset()")
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) "
           "SELECT 'p' || i, '+1500555' || lpad(i::text, 4, '0'), :'p1'::numeric, 1 "
           "FROM generate_series(1, :'p2'::int) i", mps, npools)
    time.sleep(1.5)
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    per = int(mps * DURATION) + 20
    pg.sql("SELECT twilio_enqueue('+1415' || lpad((p * 10000 + i)::text, 7, '0'), 'pools ' || i, "
           "pool => 'p' || p) FROM generate_series(1, :'p1'::int) p, generate_series(1, :'p2'::int) i",
           nbusy, per)
    pid = pg.worker_pid()
    cpu0, stmts0 = idle.cpu_seconds(pid), statements()
    time.sleep(DURATION)
    cpu1, stmts1 = idle.cpu_seconds(pid), statements()
    reqs = [r for r in double.requests(since=seq0) if r["status"] == 201]
    by_sender = {}
    for r in reqs:
        by_sender.setdefault(form(r)["From"], []).append(r["time"])
    rates, windows = [], []
    for times in by_sender.values():
        times.sort()
        steady = [x for x in times if x >= times[0] + 1.0]      # past the burst
        if len(steady) > 1:
            rates.append((len(steady) - 1) / (steady[-1] - steady[0]) / mps)
        windows.append(max(sum(1 for x in times if s <= x < s + 1.0) for s in times))
    sent = len(reqs)
    refresh = [(q, c1 - stmts0.get(q, (0, 0))[0], t1 - stmts0.get(q, (0, 0))[1])
               for q, (c1, t1) in stmts1.items() if "twilio_pools" in q and "ORDER BY name" in q]
    refresh_ms = sum(t for _, _, t in refresh) / max(sum(c for _, c, _ in refresh), 1)
    claims = sum(c1 - stmts0.get(q, (0, 0))[0] for q, (c1, _) in stmts1.items()
                 if "FOR UPDATE SKIP LOCKED" in q)
    out = dict(label=label, rate_min=min(rates), rate_max=max(rates), window=max(windows),
               cpu_us_per_msg=(cpu1 - cpu0) / max(sent, 1) * 1e6, sent=sent,
               claims_per_msg=claims / max(sent, 1), refresh_ms=refresh_ms,
               pool_status_ms=poll_ms("SELECT * FROM twilio_pool_status"),
               queue_stats_ms=poll_ms("SELECT * FROM twilio_queue_stats"))
    print(f"{label}: busy pools' rate/mps {out['rate_min']:.3f}..{out['rate_max']:.3f}, busiest "
          f"1-s window {out['window']} (mps {mps}, burst 1); worker CPU {out['cpu_us_per_msg']:.0f} "
          f"us/message over {sent} messages, {out['claims_per_msg']:.2f} claim statements per "
          f"message; pool refresh {refresh_ms:.3f} ms; twilio_pool_status "
          f"{out['pool_status_ms']:.2f} ms, twilio_queue_stats {out['queue_stats_ms']:.2f} ms",
          flush=True)
    pg.sql("UPDATE twilio_outbox SET status = 'canceled' WHERE status IN ('queued', 'retrying')")
    time.sleep(1.0)
    return out


# the same total rate from one pool, then one pool at a busy pool's rate alone
one = run(f"1 pool at {20 * MPS} mps", 1, 1, 20 * MPS)
alone = run(f"1 pool at {MPS} mps", 1, 1, MPS)
many = run(f"200 pools, 20 busy at {MPS} mps", 200, 20, MPS)
print()
print(f"{'figure':<28} {'1 pool':>10} {'200 pools':>10} {'ratio':>7}  goal "
      f"(1 pool at {20 * MPS} mps, the same total rate)")
for key, name in (("cpu_us_per_msg", "worker CPU us/message"), ("refresh_ms", "pool refresh ms"),
                  ("pool_status_ms", "twilio_pool_status ms"),
                  ("queue_stats_ms", "twilio_queue_stats ms")):
    print(f"{name:<28} {one[key]:>10.3f} {many[key]:>10.3f} {many[key] / max(one[key], 1e-9):>7.2f}"
          f"  <= 2")
print(f"{'busy pool rate/mps (worst)':<28} {alone['rate_min']:>10.3f} {many['rate_min']:>10.3f}"
      f"          as one pool alone at {MPS} mps")
print(f"{'busiest 1-s window':<28} {alone['window']:>10} {many['window']:>10}          <= mps + 1")
