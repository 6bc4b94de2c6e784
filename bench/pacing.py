#!/usr/bin/env python3
"""bench/pacing's driver: pools at several rates (burst 1) send together from
a backlog for DURATION seconds; the test double's arrival times per sender
give each pool's achieved rate and the most segments in any 1-s window.
One round with 1-segment messages, one with 3-segment messages.

    pacing.py [--rates 1,3,10,50] [--burst 1] [--duration 20] [--segments 1,3]
"""

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Double, Pg, ensure_pool, form, max_in_window, plot, wait_for  # noqa: E402

BODIES = {
    1: "'Pacing check ' || i",                                 # 1 segment
    3: "'Pacing check ' || i || ' ' || repeat('abcdefghij', 38)",  # ~400 GSM chars: 3
}

parser = argparse.ArgumentParser()
parser.add_argument("--rates", default="1,3,10,50")
parser.add_argument("--burst", type=int, default=1)
parser.add_argument("--duration", type=float, default=20)
parser.add_argument("--segments", default="1,3")
args = parser.parse_args()
rates = [float(r) for r in args.rates.split(",")]

pg, double = Pg(), Double()


def run_round(round_no, segs):
    pools = {f"pace{round_no}_{i}": (f"+1500555{round_no}{i:03d}", mps)
             for i, mps in enumerate(rates)}
    for name, (sender, mps) in pools.items():
        ensure_pool(pg, name, sender, mps, args.burst, paused=True)
    pg.query("BEGIN")
    for k, (name, (sender, mps)) in enumerate(pools.items()):
        n = math.ceil((args.duration + 6) * mps / segs) + 2
        pg.query(f"SELECT count(twilio_enqueue('+1415{round_no}{k}' || lpad(i::text, 5, '0'), "
                 f"{BODIES[segs]}, '{name}')) FROM generate_series(1, {n}) i")
    pg.query("COMMIT")
    stored = pg.query("SELECT DISTINCT num_segments FROM twilio_outbox "
                      f"WHERE pool LIKE 'pace{round_no}\\_%'")
    names = ", ".join(f"'{n}'" for n in pools)
    double.reset()
    pg.query(f"UPDATE twilio_pools SET paused = false WHERE name IN ({names})")
    time.sleep(args.duration + 3)
    pg.query(f"UPDATE twilio_pools SET paused = true WHERE name IN ({names})")
    wait_for(lambda: pg.value(f"SELECT count(*) FROM twilio_pool_status WHERE pool IN ({names}) "
                              "AND (NOT paused OR in_flight > 0)") == "0", 5)
    records = double.requests()

    print(f"\n{segs}-segment messages (num_segments stored: {', '.join(r[0] for r in stored)}), "
          f"burst {args.burst}, {args.duration:g} s from each pool's first arrival:")
    header = (f"{'mps':>6} {'msgs':>5} {'segs':>5} {'segs/s':>8} {'rate/mps':>9} "
              f"{'max segs in 1 s':>16} {'goal ceil(mps)+burst':>21}")
    if segs > args.burst:
        header += f" {'whole-message bound':>20}"
    print(header + "  gaps ms: nominal  min  median  max  not 201")
    for name, (sender, mps) in pools.items():
        mine = sorted((r for r in records if form(r).get("From") == sender),
                      key=lambda r: r["time"])
        bad = sum(1 for r in mine if r["status"] != 201)
        times = [r["time"] for r in mine if r["status"] == 201]
        if len(times) < 2:
            print(f"{mps:6g} only {len(times)} messages arrived")
            continue
        window = [t for t in times if t <= times[0] + args.duration]
        span = window[-1] - window[0]
        rate = segs * (len(window) - 1) / span
        peak = max_in_window([(t, segs) for t in times])
        goal = math.ceil(mps) + args.burst
        line = (f"{mps:6g} {len(window):5d} {segs * len(window):5d} {rate:8.3f} "
                f"{rate / mps:9.3f} {peak:16d} {goal:21d}")
        if segs > args.burst:
            line += f" {math.ceil(mps) + max(args.burst, segs):20d}"
        gaps = sorted(1000 * (b - a) for a, b in zip(window, window[1:]))
        line += (f"  {1000 * segs / mps:14.1f} {gaps[0]:5.1f} {gaps[len(gaps) // 2]:7.1f} "
                 f"{gaps[-1]:6.1f}")
        print(line + f"  {bad:7d}")
    plot_round(round_no, segs, pools, records)
    pg.query(f"DELETE FROM twilio_outbox WHERE pool IN ({names})")
    pg.query(f"DELETE FROM twilio_pools WHERE name IN ({names})")


COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def plot_round(round_no, segs, pools, records):
    """Segments each pool sent in each second (steps) against its mps (dashed).

    Second k of a pool is [k - 0.5, k + 0.5) after its first arrival, so that
    a 1-mps pool's arrivals, a second apart, do not straddle the edges.
    """
    end = int(args.duration)
    series = []
    for k, (name, (sender, mps)) in enumerate(pools.items()):
        times = [r["time"] for r in records if r["status"] == 201 and form(r).get("From") == sender]
        if not times:
            continue
        t0 = min(times)
        counts = [0] * (end + 1)
        for t in times:
            if round(t - t0) < end:
                counts[round(t - t0)] += segs
        color = COLORS[k % len(COLORS)]
        series.append({"title": f"mps {mps:g}: segments in each second", "color": color, "style": "steps",
                       # second 0 is only half a second long: it starts at the first arrival
                       "points": [(i, max(c, 0.5)) for i, c in enumerate(counts[:end]) if i > 0]
                       + [(end, max(counts[end - 1], 0.5))]})
        series.append({"title": f"mps {mps:g}", "color": color, "dash": 2, "width": 1,
                       "points": [(0, mps), (end, mps)]})
    load = open("/proc/loadavg").read().split()[0]
    plot(f"pacing_{segs}seg", f"Pacing: {len(pools)} pools together, {segs}-segment messages, burst {args.burst} "
         f"(2 cores, load {load})", "seconds since the pool's first arrival", "segments per second (log scale)",
         series, key="outside right top", size=(1000, 480),
         settings=["set logscale y", f"set yrange [0.4:{max(m for _, m in pools.values()) * 2}]",
                   f"set xrange [0.5:{end}]"])


print("segs/s: segments of all arrivals but the last in the window / time from the first to the last"
      " (goal rate/mps 0.98-1.00);\nmax segs in 1 s: most segments arriving in any sliding 1-s window"
      " [t, t+1) over the whole run.")
for round_no, segs in enumerate((int(s) for s in args.segments.split(",")), start=1):
    run_round(round_no, segs)
