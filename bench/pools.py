#!/usr/bin/env python3
"""bench/pools' driver: one cluster with pg_stat_statements (track = all, so
the worker's SPI statements are counted); first one pool at 100 mps (the
same total rate as the 20 busy pools), then one pool at 5 mps alone, then
200 pools with 20 busy at 5 mps each; the figures of each side by side
(see bench/pools).

For each case:
- a drain of DURATION s from a backlog (burst 1) to the test double:
  each busy pool's achieved rate / mps past its first second and the most
  messages in any sliding 1-s window; the worker's CPU (utime + stime) per
  second and per message; the claim statements (the ones ending in FOR
  UPDATE SKIP LOCKED): calls, ms per call and ms per second;
- REFRESHES changes of twilio_pools (one pool's row updated) 1.1 s apart,
  idle: the ms per call of the worker's statement that reads the changed
  rows; then one change of every row: its read of every pool (which it
  also does every 30 s);
- 20 polls of each view: the server's execution time (EXPLAIN (ANALYZE,
  TIMING OFF)), median, and the client's round trip, median, beside it.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import form, start  # noqa: E402
from benchlib import Pg, cpu_seconds, max_in_window, plot  # noqa: E402

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 20
REFRESHES = int(sys.argv[2]) if len(sys.argv) > 2 else 8
POLLS = 20
MPS = 5                         # each busy pool's
NBUSY = 20
pg, double = start(settings={"shared_preload_libraries": "twilio_outbox,pg_stat_statements",
                             "pg_stat_statements.track": "all",
                             "pg_stat_statements.max": 10000})
pg.sql("CREATE EXTENSION pg_stat_statements")
db = Pg(host=str(pg.dir), port=pg.port, user="postgres", database=pg.db)
VIEWS = ("twilio_queue_stats", "twilio_pool_status", "twilio_worker_status")


def load():
    return open("/proc/loadavg").read().split()[0]


def statements():
    rows = db.query("SELECT query, calls, total_exec_time FROM pg_stat_statements")
    return {q: (int(c), float(t)) for q, c, t in rows}


def delta(before, after, match):
    calls = ms = 0
    for q, (c, t) in after.items():
        if match(q):
            c0, t0 = before.get(q, (0, 0.0))
            calls, ms = calls + c - c0, ms + t - t0
    return calls, ms


def is_claim(q):
    return "FOR UPDATE SKIP LOCKED" in q and "twilio_outbox o" in q


def is_refresh(q):
    """The worker's read of the pools a commit changed, by name."""
    return "twilio_pools" in q and q.lstrip().startswith("SELECT name, sender") and "ANY" in q


def is_full_read(q):
    """Its read of every pool: every 30 s, and after changes of more than 16 pools at once."""
    return "twilio_pools" in q and q.lstrip().startswith("SELECT name, sender") and "ANY" not in q


def poll(view):
    server, client = [], []
    for _ in range(POLLS):
        plan = db.query(f"EXPLAIN (ANALYZE, TIMING OFF) SELECT * FROM {view}")
        server.append(float(next(r[0] for r in plan if r[0].startswith("Execution Time"))
                            .split()[2]))
        began = time.perf_counter()
        rows = db.query(f"SELECT * FROM {view}")
        client.append((time.perf_counter() - began) * 1000)
    return statistics.median(server), statistics.median(client), len(rows)


def run(label, npools, nbusy, mps):
    db.query("DELETE FROM twilio_outbox")
    db.query("DELETE FROM twilio_pools")
    db.query("VACUUM twilio_outbox")
    db.query(f"INSERT INTO twilio_pools (name, sender, mps, burst) "
             f"SELECT 'p' || i, '+1500555' || lpad(i::text, 4, '0'), {mps}, 1 "
             f"FROM generate_series(1, {npools}) i")
    time.sleep(1.5)
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    per = int(mps * DURATION) + 20
    # the busy pools spread over the 200: every tenth
    step = max(1, npools // nbusy)
    busy = [f"p{1 + i * step}" for i in range(nbusy)]
    senders = {f"+1500555{int(name[1:]):04d}": name for name in busy}
    pid = pg.worker_pid()
    db.query("SELECT pg_stat_statements_reset()")
    stmts0 = statements()
    db.query(f"SELECT count(twilio_enqueue('+1415' || lpad((p * 10000 + i)::text, 7, '0'), "
             f"'pools ' || i, pool => 'p' || p)) "
             f"FROM unnest(ARRAY[{', '.join(b[1:] for b in busy)}]) p, generate_series(1, {per}) i")
    began, cpu0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(DURATION)
    cpu1, elapsed, stmts1 = cpu_seconds(pid), time.monotonic() - began, statements()
    drain_load = load()
    db.query("UPDATE twilio_outbox SET status = 'canceled' WHERE status IN ('queued', 'retrying')")
    reqs = [r for r in double.requests(since=seq0) if r["status"] == 201]
    by_pool = {name: [] for name in busy}
    for r in reqs:
        name = senders.get(form(r)["From"])
        if name:
            by_pool[name].append(r["time"])
    rates, windows, seconds = [], [], {}
    for name, times in by_pool.items():
        times.sort()
        if len(times) < 3:
            rates.append(0.0)
            continue
        steady = [x for x in times if x >= times[0] + 1.0]      # past the burst
        rates.append((len(steady) - 1) / (steady[-1] - steady[0]) / mps)
        windows.append(max_in_window([(t, 1) for t in times]))
        # each arrival's rate: 1 / the gap since the pool's previous one
        seconds[name] = [(b - times[0], 1 / (b - a)) for a, b in zip(times, times[1:]) if b > a]
    sent = len(reqs)
    claims, claim_ms = delta(stmts0, stmts1, is_claim)
    top = sorted(((t - stmts0.get(q, (0, 0.0))[1], c - stmts0.get(q, (0, 0.0))[0], q)
                  for q, (c, t) in stmts1.items()), reverse=True)[:6]
    time.sleep(1.5)

    db.query("SELECT pg_stat_statements_reset()")
    before = statements()
    for _ in range(REFRESHES):
        db.query("UPDATE twilio_pools SET burst = burst WHERE name = 'p1'")
        time.sleep(1.1)
    after = statements()
    refreshes, refresh_ms = delta(before, after, is_refresh)
    # then every pool's row at once: more than 16 pools make the worker read them all
    db.query("UPDATE twilio_pools SET burst = burst")
    time.sleep(1.1)
    full_reads, full_ms = delta(after, statements(), is_full_read)
    out = dict(label=label, npools=npools, rates=sorted(rates), windows=windows, seconds=seconds,
               sent=sent, load=drain_load,
               cpu_ms_per_s=(cpu1 - cpu0) / elapsed * 1000,
               cpu_us_per_msg=(cpu1 - cpu0) / max(sent, 1) * 1e6,
               claims_per_msg=claims / max(sent, 1),
               claim_ms=claim_ms / max(claims, 1), claim_ms_per_s=claim_ms / elapsed,
               refreshes=refreshes, refresh_ms=refresh_ms / max(refreshes, 1),
               full_reads=full_reads, full_ms=full_ms / full_reads if full_reads else None)
    for view in VIEWS:
        out[view], out[view + "_client"], out[view + "_rows"] = poll(view)
    r = out["rates"]
    print(f"{label} (load {drain_load}): {len(r)} busy pools' rate/mps min {r[0]:.3f} median "
          f"{statistics.median(r):.3f} max {r[-1]:.3f}, busiest 1-s window {max(windows)} "
          f"(mps {mps:g}, burst 1); {sent} messages; worker CPU {out['cpu_ms_per_s']:.1f} ms/s, "
          f"{out['cpu_us_per_msg']:.0f} us/message; {claims} claims ({out['claims_per_msg']:.2f} "
          f"per message) at {out['claim_ms']:.3f} ms, {out['claim_ms_per_s']:.1f} ms/s; "
          f"{refreshes} pool refreshes after a change of one pool at {out['refresh_ms']:.3f} ms"
          + (f", {full_reads} reads of every pool at {out['full_ms']:.3f} ms; " if full_reads else "; ")
          + "; ".join(f"{v} {out[v]:.3f} ms ({out[v + '_rows']} rows, client {out[v + '_client']:.2f})"
                      for v in VIEWS), flush=True)
    print("  the drain's statements by total time (pg_stat_statements): " + "; ".join(
        f"{ms:.0f} ms in {calls} calls: {' '.join(q.split())[:70]}" for ms, calls, q in top))
    return out


one = run(f"1 pool at {NBUSY * MPS} mps", 1, 1, NBUSY * MPS)
alone = run(f"1 pool at {MPS} mps", 1, 1, MPS)
many = run(f"200 pools, {NBUSY} busy at {MPS} mps", 200, NBUSY, MPS)

print(f"\nload average now {open('/proc/loadavg').read().split()[0]} (2 cores, shared)")
print(f"{'figure':<40} {'1 pool':>9} {'200 pools':>9} {'ratio':>6}  goal    result")


def row(name, a, b, goal=2.0):
    ratio = b / a if a > 0 else float("inf")
    print(f"{name:<40} {a:>9.3f} {b:>9.3f} {ratio:>6.2f}  <= {goal:<4g}  "
          f"{'pass' if ratio <= goal else 'FAIL'}")


def pacing_row(name, pick):
    a, b = pick(alone["rates"]), pick(many["rates"])
    ok = 0.98 <= b <= 1.005 and abs(b - 1) <= abs(a - 1) + 0.01
    print(f"{name:<40} {a:>9.3f} {b:>9.3f} {b / a:>6.2f}  0.98-1.00, as 1 pool  "
          f"{'pass' if ok else 'FAIL'}")


print(f"pacing: 1 pool at {MPS} mps alone against the {NBUSY} busy of 200 pools at {MPS} mps")
pacing_row("  busy pools' rate/mps, min", min)
pacing_row("  busy pools' rate/mps, median", statistics.median)
pacing_row("  busy pools' rate/mps, max", max)
wa, wb = max(alone["windows"]), max(many["windows"])
print(f"{'  busiest 1-s window, messages':<40} {wa:>9} {wb:>9} {wb / wa:>6.2f}  <= {MPS + 1:<4}  "
      f"{'pass' if wb <= MPS + 1 else 'FAIL'}")
print(f"costs: 1 pool at {NBUSY * MPS} mps (the same total rate) against 200 pools, {NBUSY} busy")
row("  worker CPU, ms per s", one["cpu_ms_per_s"], many["cpu_ms_per_s"])
row("  worker CPU, us per message", one["cpu_us_per_msg"], many["cpu_us_per_msg"])
row("  claim statement, ms per call", one["claim_ms"], many["claim_ms"])
row("  claim statements, ms per s", one["claim_ms_per_s"], many["claim_ms_per_s"])
row("  pool refresh after a change, ms/call", one["refresh_ms"], many["refresh_ms"])
if many["full_ms"] is not None:
    print(f"{'  read of every pool, ms per call':<40} {'':>9} {many['full_ms']:>9.3f}          "
          f"(every 30 s: {many['full_ms'] / 30 * 1000:.0f} us/s; after > 16 pools change at once)")
for v in VIEWS:
    row(f"  {v}, ms (server)", one[v], many[v])
for v in VIEWS:
    print(f"{'  ' + v + ', us per pool (server)':<40} {one[v] * 1000:>9.1f} {many[v] * 1000 / 200:>9.1f} "
          f"{many[v] / 200 / one[v]:>6.2f}  (information: a pool's share of the view)")
for v in VIEWS:
    print(f"{'  ' + v + ', ms (client round trip)':<40} {one[v + '_client']:>9.3f} "
          f"{many[v + '_client']:>9.3f} {many[v + '_client'] / one[v + '_client']:>6.2f}  "
          f"(information: {one[v + '_rows']} and {many[v + '_rows']} rows decoded in Python)")

# the plot: each busy pool's rate at each arrival (1 / the gap since its previous one)
series = [{"title": f"{NBUSY} busy pools of 200 at {MPS} mps, one thin line each" if i == 0 else "",
           "width": 1, "color": "#1f77b4", "points": points}
          for i, points in enumerate(many["seconds"].values())]
series.append({"title": f"1 pool alone at {MPS} mps", "width": 2, "color": "#ff7f0e",
               "points": next(iter(alone["seconds"].values()))})
series.append({"title": f"mps {MPS}", "color": "#2ca02c", "dash": 2, "width": 2,
               "points": [(0, MPS), (DURATION, MPS)]})
plot("pools", f"Each busy pool's rate, {NBUSY} busy of 200 pools and 1 pool alone, burst 1 "
     f"(2 cores, load {many['load']})", "seconds since the pool's first arrival",
     "segments per second: 1 / gap since the pool's previous arrival", series,
     key="bottom right", size=(900, 420),
     settings=[f"set yrange [0:{MPS * 2}]", f"set xrange [0:{DURATION}]", "set ytics 1"])
