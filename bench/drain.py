#!/usr/bin/env python3
"""Enqueue N messages in one committed transaction into a pool and time the
worker's drain: commit to the last row sent (max sent_at).  Used by
bench/drain and bench/slow_api.  Prints figures; writes them as JSON too.

    drain.py --messages N --mps MPS --burst B [--timeout S] [--json FILE] [--perf FILE]
             [--poll-views]

--poll-views: meanwhile, twice a second, the server's execution time of
twilio_queue_stats and twilio_delivery_stats (EXPLAIN ANALYZE) and the size
of the counts tables the outbox's triggers keep; printed as median and
maximum (the views' cost under load, when the counts take the most rows).
"""

import argparse
import json
import signal
import subprocess
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Pg, drain, ensure_pool, worker_pid  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--messages", type=int, required=True)
parser.add_argument("--mps", type=float, default=10000)
parser.add_argument("--burst", type=int, default=100)
parser.add_argument("--pool", default="drain")
parser.add_argument("--sender", default="+15005550006")
parser.add_argument("--timeout", type=float, default=120)
parser.add_argument("--json")
parser.add_argument("--perf", help="record the worker with perf record -g into this file meanwhile")
parser.add_argument("--poll-views", action="store_true")
args = parser.parse_args()

VIEWS = ("twilio_queue_stats", "twilio_delivery_stats")


def poll_views(stop, polls):
    """EXPLAIN ANALYZE each view twice a second until stop is set."""
    viewer = Pg()
    while not stop.is_set():
        for v in VIEWS:
            plan = viewer.query(f"EXPLAIN (ANALYZE, TIMING OFF) SELECT * FROM {v}")
            ms = [float(r[0].split()[2]) for r in plan if r[0].startswith("Execution Time")]
            polls.setdefault(v, []).append(ms[0])
        size = viewer.query("SELECT pg_relation_size('_twilio_pending_counts') + "
                            "pg_relation_size('_twilio_recent_counts')")[0][0]
        polls.setdefault("counts_bytes", []).append(int(size))
        stop.wait(0.5)

pg = Pg()
ensure_pool(pg, args.pool, args.sender, args.mps, args.burst)
pid = worker_pid(pg)
perf = None
if args.perf:
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "999", "-p", str(pid),
                             "-o", args.perf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
polls = {}
stop = threading.Event()
poller = threading.Thread(target=poll_views, args=(stop, polls), daemon=True) if args.poll_views else None
if poller:
    poller.start()
r = drain(pg, args.messages, args.pool, timeout=args.timeout)
if poller:
    stop.set()
    poller.join()
    r["views"] = polls
if perf:
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
r["worker_pid"] = pid
# the drain curve: rows sent by each time since the commit (at most ~1,000 points)
times = [float(row[0]) - r["commit"] for row in pg.query(
    "SELECT extract(epoch FROM sent_at) FROM twilio_outbox "
    f"WHERE pool = '{args.pool}' AND sent_at IS NOT NULL "
    f"AND created_at >= to_timestamp({r['commit']} - 600) ORDER BY sent_at")]
step = max(1, len(times) // 1000)
r["curve"] = [(0.0, 0)] + [(times[i], i + 1) for i in range(0, len(times), step)] + \
    ([(times[-1], len(times))] if times else [])
r["worker"] = dict(zip(("requests", "sent", "retried", "failed", "http_429", "http_5xx",
                        "transport_errors", "commit_wakeups"),
                       pg.query("SELECT requests, sent, retried, failed, http_429, http_5xx, "
                                "transport_errors, commit_wakeups FROM twilio_worker_status")[0]))
if args.json:
    Path(args.json).write_text(json.dumps(r))

print(f"{args.messages} messages, one transaction, pool mps {args.mps:g} burst {args.burst}:")
if r["rate"] is None:
    print(f"  nothing was sent within {args.timeout:g} s; statuses {r['statuses']}")
    sys.exit(0)
print(f"  commit -> first sent  {1000 * (r['first_sent'] - r['commit']):8.1f} ms")
print(f"  commit -> last sent   {r['elapsed']:8.3f} s   "
      f"{r['rate']:8.0f} msgs/s" + ("" if r["done"] else
                                    f"   (NOT all sent within {args.timeout:g} s)"))
print(f"  worker CPU            {r['cpu']:8.2f} s   ({100 * r['cpu'] / r['elapsed']:.0f}% of one core; "
      f"{1e6 * r['cpu'] / max(1, int(r['statuses'].get('sent', 0))):.0f} us per message)")
print(f"  whole machine         {100 * r['machine_busy']:8.0f}% busy of {r['ncpu']} CPUs meanwhile "
      f"(worker, nginx or the double, PostgreSQL, this poller)")
print(f"  rows by status        {r['statuses']}")
print(f"  worker totals so far  {r['worker']}")
if poller and polls:
    for v in VIEWS:
        t = polls.get(v, [])
        if t:
            print(f"  {v + ' meanwhile':40s} median {statistics.median(t):6.1f} ms, "
                  f"max {max(t):6.1f} ms over {len(t)} polls (server execution time)")
    b = polls["counts_bytes"]
    print(f"  {'counts tables meanwhile':40s} median {statistics.median(b) / 1024:6.0f} kB, "
          f"max {max(b) / 1024:6.0f} kB")
