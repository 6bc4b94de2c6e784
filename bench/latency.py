#!/usr/bin/env python3
"""bench/latency's driver: one message per transaction, commit to arrival.

A session of our own (benchlib.Pg, no psql in between) runs BEGIN;
SELECT twilio_enqueue(...); COMMIT and takes time.time() as soon as the
server's answer to COMMIT has been read; the test double stamps each request
with time.time() when it has read it.  Same machine, same clock.  The
worker is woken once the commit record is flushed, just before the server
answers COMMIT, so the client's stamp is late by the answer's trip over the
Unix socket (tens of microseconds: the printed commit -> claim start, where
claimed_at is the claiming transaction's now(), shows it) plus our own
scheduling; the double's stamp is late by its thread's wake-up.  Both are
well under 1 ms.  Each message has its own `To`, which pairs the two.

    latency.py SCENARIO=COUNTxINTERVAL_S ...   e.g. idle=30x1.5 steady=60x0.25
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Double, Pg, ensure_pool, form, percentile, plot, wait_for  # noqa: E402

pg, double = Pg(), Double()
ensure_pool(pg, "lat", "+15005550006", 100, 10)


def run(idx, name, count, interval):
    double.reset()
    commits, bounds = {}, []
    start = time.monotonic() + 0.5
    for i in range(count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        to = f"+1415{idx}{i:06d}"
        pg.query("BEGIN")
        pg.query(f"SELECT twilio_enqueue('{to}', 'Your code is {100000 + i}', 'lat')")
        before = time.time()
        pg.query("COMMIT")
        commits[to] = time.time()
        bounds.append(commits[to] - before)
    arrived = lambda: [r for r in double.requests() if form(r).get("To") in commits]  # noqa: E731
    wait_for(lambda: len(arrived()) >= count, 10, 0.1)
    got = {form(r)["To"]: r["time"] for r in arrived()}
    lat = [1000 * (got[to] - commits[to]) for to in commits if to in got]
    claims = dict(pg.query("SELECT to_number, extract(epoch FROM claimed_at) FROM twilio_outbox "
                           f"WHERE to_number LIKE '+1415{idx}%'"))
    to_claim = [1000 * (float(claims[to]) - commits[to]) for to in got if claims.get(to)]
    claim_to_arrival = [1000 * (got[to] - float(claims[to])) for to in got if claims.get(to)]
    rate = count / (count * interval)
    print(f"{name:7} {len(lat):3d}/{count} msgs, {rate:4.2f} msgs/s: commit -> arrival  "
          f"p50 {percentile(lat, 50):6.2f} ms   p95 {percentile(lat, 95):6.2f} ms   "
          f"max {max(lat):6.2f} ms   (min {min(lat):5.2f})")
    if to_claim:
        print(f"{'':7}   of which commit -> claim transaction start  p50 {percentile(to_claim, 50):6.2f}"
              f"  p95 {percentile(to_claim, 95):6.2f}  max {max(to_claim):6.2f} ms;"
              f"  claim start -> arrival  p50 {percentile(claim_to_arrival, 50):6.2f}"
              f"  p95 {percentile(claim_to_arrival, 95):6.2f}  max {max(claim_to_arrival):6.2f} ms")
    print(f"{'':7}   the client's COMMIT round trip (WAL flush included) "
          f"p50 {1000 * percentile(bounds, 50):.2f} ms  max {1000 * max(bounds):.2f} ms")
    return lat


print("goal: p50 <= 5 ms and p95 <= 20 ms")
curves = []
for idx, spec in enumerate(sys.argv[1:], start=1):
    name, _, shape = spec.partition("=")
    count, _, interval = shape.partition("x")
    lat = sorted(run(idx, name, int(count), float(interval)))
    if lat:
        curves.append({"title": f"{name}: {count} messages {interval} s apart",
                       "points": [(x, (i + 1) / len(lat)) for i, x in enumerate(lat)],
                       "style": "steps"})
load = open("/proc/loadavg").read().split()[0]
top = max((c["points"][-1][0] for c in curves), default=20)
# a request can arrive a little before the client has read COMMIT's answer (see above)
low = min(0, min((c["points"][0][0] for c in curves), default=0)) - 0.5
plot("latency", f"Commit to arrival at the test double, CDF (2 cores, load {load})",
     "milliseconds from COMMIT (the client's clock when its answer was read) to the request's arrival",
     "share of messages",
     curves + [{"title": "goal p50 <= 5 ms", "points": [(low, 0.5), (5, 0.5), (5, 0)],
                "color": "#2ca02c", "dash": 2, "width": 1},
               {"title": "goal p95 <= 20 ms", "points": [(low, 0.95), (20, 0.95), (20, 0)],
                "color": "#d62728", "dash": 2, "width": 1}],
     key="bottom right",
     settings=["set yrange [0:1.02]", f"set xrange [{low}:{max(22, top * 1.1)}]", "set ytics 0.1"])
