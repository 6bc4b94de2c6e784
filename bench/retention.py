#!/usr/bin/env python3
"""Does retention keep pace with a steady send rate, without getting in the
way of the drain?  Used by bench/retention; prints figures, writes a plot.

1. Steady run: RATE messages/s enqueued (a statement every 0.1 s) for
   DURATION s into one pool sending to nginx, with twilio_outbox.retention =
   RETENTION s.  Every SAMPLE s: the outbox's rows, pg_relation_size and
   pg_total_relation_size, dead tuples, rows deleted and sent per second,
   the backlog, commit-to-sent latency (p50/p95), the worker's CPU.  Once
   rows start passing retention they must be deleted as fast as they are
   sent, so rows and sizes stop growing: the figure is the growth over the
   last third of the run (goal: flat, within 10%), and the send rate and
   latency before and after deletions started.
2. Catching up, ROUNDS times: a drain of DRAIN messages with retention off
   (rate A); then BACKLOG finished rows an hour old are put in, retention
   is switched on and the same drain runs while the worker deletes them
   (rate B).  The median of B / A is the share of the drain left while
   retention catches up (goal >= 0.90).

    retention.py --rate R --duration S --retention S --sample S --backlog N --drain N --rounds N
"""

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Pg, cpu_seconds, drain, enqueue_sql, ensure_pool, plot, wait_for, worker_pid  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--rate", type=int, default=3000)
parser.add_argument("--duration", type=int, default=600)
parser.add_argument("--retention", type=int, default=60)
parser.add_argument("--sample", type=int, default=10)
parser.add_argument("--mps", type=float, default=10000)
parser.add_argument("--burst", type=int, default=100)
parser.add_argument("--backlog", type=int, default=300000)
parser.add_argument("--drain", type=int, default=30000)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--pool", default="steady")
args = parser.parse_args()

BODY = "'Your order ' || i || ' has shipped and will arrive on Tuesday.'"
pg = Pg()
ensure_pool(pg, args.pool, "+15005550006", args.mps, args.burst)
pid = worker_pid(pg)


def set_retention(seconds):
    pg.query(f"ALTER SYSTEM SET twilio_outbox.retention = {seconds}")
    pg.query("SELECT pg_reload_conf()")
    wait_for(lambda: pg.value("SELECT setting FROM pg_settings WHERE name = 'twilio_outbox.retention'")
             == str(seconds), 5)
    time.sleep(1.2)  # the worker reads the file when its SIGHUP is handled, within a turn


def load_avg():
    return open("/proc/loadavg").read().split()[0]


# ---- 1. steady run ---------------------------------------------------------

class Enqueuer(threading.Thread):
    """RATE messages/s: every 0.1 s one statement with what is due by then."""

    def __init__(self, rate, duration):
        super().__init__(daemon=True)
        self.rate, self.duration, self.done, self.behind = rate, duration, 0, 0.0
        self.conn = Pg()

    def run(self):
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= self.duration:
                break
            due = int(self.rate * elapsed) - self.done
            if due > 0:
                self.conn.query(enqueue_sql(due, args.pool, BODY, first=self.done % 9000000))
                self.done += due
            self.behind = max(self.behind, int(self.rate * (time.monotonic() - start)) - self.done)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - start - elapsed)))


def snapshot():
    rows, rel, total, dead, deleted, vacuums, backlog = pg.query(
        "SELECT (SELECT count(*) FROM twilio_outbox), pg_relation_size('twilio_outbox'), "
        "pg_total_relation_size('twilio_outbox'), pg_stat_get_dead_tuples('twilio_outbox'::regclass), "
        "pg_stat_get_tuples_deleted('twilio_outbox'::regclass), "
        "pg_stat_get_vacuum_count('twilio_outbox'::regclass) "
        "  + pg_stat_get_autovacuum_count('twilio_outbox'::regclass), "
        "(SELECT count(*) FROM twilio_outbox WHERE status IN ('queued', 'retrying', 'sending'))")[0]
    return dict(rows=int(rows), rel=int(rel), total=int(total), dead=int(dead),
                deleted=int(deleted), vacuums=int(vacuums), backlog=int(backlog),
                sent=int(pg.value("SELECT sent FROM twilio_worker_status")),
                cpu=cpu_seconds(pid), t=time.monotonic(), wall=time.time())


print(f"1. steady run: {args.rate} msgs/s for {args.duration} s, retention {args.retention} s, "
      f"one pool at mps {args.mps:g}, sampled every {args.sample} s (load average {load_avg()})")
set_retention(args.retention)
enq = Enqueuer(args.rate, args.duration)
first = prev = snapshot()
enq.start()
samples = []
print(f"{'t s':>5} {'enq/s':>7} {'sent/s':>7} {'del/s':>7} {'backlog':>7} {'p50 ms':>7} {'p95 ms':>7} "
      f"{'rows':>9} {'heap MB':>8} {'total MB':>8} {'dead':>9} {'vac':>4} {'worker%':>7}")
enq_prev = 0
while enq.is_alive() or not samples:
    time.sleep(max(0.0, prev["t"] + args.sample - time.monotonic()))
    cur = snapshot()
    dt = cur["t"] - prev["t"]
    lat = pg.query(
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY d), percentile_disc(0.95) WITHIN GROUP (ORDER BY d) "
        "FROM (SELECT extract(epoch FROM sent_at - created_at) * 1000 AS d FROM twilio_outbox "
        f"WHERE sent_at >= to_timestamp({prev['wall']}) AND sent_at < to_timestamp({cur['wall']})) s")[0]
    s = dict(t=cur["t"] - first["t"], enq=(enq.done - enq_prev) / dt, sent=(cur["sent"] - prev["sent"]) / dt,
             deleted=(cur["deleted"] - prev["deleted"]) / dt, backlog=cur["backlog"],
             p50=float(lat[0] or 0), p95=float(lat[1] or 0), rows=cur["rows"],
             rel=cur["rel"] / 2**20, total=cur["total"] / 2**20, dead=cur["dead"],
             vacuums=cur["vacuums"] - first["vacuums"], cpu=100 * (cur["cpu"] - prev["cpu"]) / dt)
    samples.append(s)
    enq_prev = enq.done
    print(f"{s['t']:5.0f} {s['enq']:7.0f} {s['sent']:7.0f} {s['deleted']:7.0f} {s['backlog']:7d} "
          f"{s['p50']:7.1f} {s['p95']:7.1f} {s['rows']:9d} {s['rel']:8.1f} {s['total']:8.1f} "
          f"{s['dead']:9d} {s['vacuums']:4d} {s['cpu']:7.0f}", flush=True)
    prev = cur
enq.join()

before = [s for s in samples if s["t"] <= args.retention]            # nothing past retention yet
after = [s for s in samples if s["t"] > args.retention + args.sample]  # deleting all along
tail = [s for s in samples if args.duration * 2 / 3 <= s["t"] <= args.duration]  # not the partial last one


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


print(f"steady run, load average {load_avg()}:")
if tail:
    for key, label in (("rows", "rows"), ("rel", "pg_relation_size MB"), ("total", "pg_total_relation_size MB")):
        lo, hi, last = min(s[key] for s in tail), max(s[key] for s in tail), tail[-1][key]
        growth = (tail[-1][key] - tail[0][key]) / tail[0][key] if tail[0][key] else 0
        print(f"  {label:27} over the last third ({tail[0]['t']:.0f}-{tail[-1]['t']:.0f} s): "
              f"{lo:,.0f} .. {hi:,.0f}, first to last {100 * growth:+.1f}% (goal: flat, within +-10%)")
if after:
    print(f"  deleted {mean(s['deleted'] for s in after):,.0f} rows/s, sent {mean(s['sent'] for s in after):,.0f} "
          f"msgs/s once rows pass retention (enqueued {args.rate}/s; deleted/sent "
          f"{mean(s['deleted'] for s in after) / max(1, mean(s['sent'] for s in after)):.2f}, goal 1.00)")
if before and after:
    print(f"  send rate {mean(s['sent'] for s in before):,.0f} msgs/s before deletions started, "
          f"{mean(s['sent'] for s in after):,.0f} after; latency p50 {mean(s['p50'] for s in before):.1f} ms "
          f"/ {mean(s['p50'] for s in after):.1f} ms, p95 {mean(s['p95'] for s in before):.1f} ms / "
          f"{mean(s['p95'] for s in after):.1f} ms; worker CPU {mean(s['cpu'] for s in before):.0f}% / "
          f"{mean(s['cpu'] for s in after):.0f}%; backlog at most {max(s['backlog'] for s in samples):,}")
print(f"  the enqueuer fell behind by at most {enq.behind:,} messages")
plot("retention", f"Outbox size over a steady run: {args.rate} msgs/s, retention {args.retention} s "
     f"(2 cores, load {load_avg()})", "seconds", "rows (thousands)",
     [{"title": "rows", "points": [(s["t"], s["rows"] / 1000) for s in samples], "color": "#1f77b4"},
      {"title": "dead tuples", "points": [(s["t"], s["dead"] / 1000) for s in samples], "color": "#aec7e8",
       "width": 1},
      {"title": "pg_relation_size (MB)", "points": [(s["t"], s["rel"]) for s in samples], "axis": "x1y2",
       "color": "#d62728"},
      {"title": "pg_total_relation_size (MB)", "points": [(s["t"], s["total"]) for s in samples],
       "axis": "x1y2", "color": "#ff9896", "dash": 2}],
     y2label="MB", key="bottom right", settings=["set yrange [0:*]", "set y2range [0:*]",
                             f"set arrow from {args.retention},graph 0 to {args.retention},graph 1 nohead dt 3",
                             f"set label 'rows pass retention' at {args.retention},graph 0.96 offset 0.5,0"])

# ---- 2. a drain while retention catches up ----------------------------------

if args.backlog <= 0 or args.drain <= 0 or args.rounds <= 0:
    sys.exit(0)
wait_for(lambda: int(pg.value("SELECT count(*) FROM twilio_outbox WHERE status IN "
                              "('queued', 'retrying', 'sending')")) == 0, 60, 0.2)
print(f"2. {args.rounds} rounds: a drain of {args.drain} messages without retention work (A), then the same "
      f"while retention deletes a backlog of {args.backlog:,} rows an hour old (B) (load average {load_avg()})")
ratios = []
for rnd in range(args.rounds):
    set_retention(0)
    a = drain(pg, args.drain, args.pool, timeout=120)
    pg.query("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, attempts, "
             "sent_at, finished_at, twilio_sid) "
             f"SELECT '{args.pool}', '+1415' || lpad(i::text, 7, '0'), 'old', 1, 'sent', 1, "
             "now() - interval '1 hour', now() - interval '1 hour' + i * interval '1 us', "
             f"'SM' || md5(i::text) FROM generate_series(1, {args.backlog}) i")
    pg.query("VACUUM ANALYZE twilio_outbox")
    set_retention(args.retention)
    old_before = int(pg.value("SELECT count(*) FROM twilio_outbox WHERE body = 'old'"))
    b = drain(pg, args.drain, args.pool, timeout=120)
    old_after = int(pg.value("SELECT count(*) FROM twilio_outbox WHERE body = 'old'"))
    ratios.append(b["rate"] / a["rate"])
    print(f"  round {rnd + 1}: A {a['rate']:6,.0f} msgs/s   B {b['rate']:6,.0f} msgs/s, meanwhile "
          f"{old_before - old_after:,} old rows deleted ({(old_before - old_after) / b['elapsed']:,.0f}/s, "
          f"{old_after:,} left)   B/A {ratios[-1]:.2f}   load {load_avg()}", flush=True)
    wait_for(lambda: pg.value("SELECT count(*) FROM twilio_outbox WHERE body = 'old'") == "0", 120, 0.5)
ratios.sort()
print(f"  drain while retention catches up / without: median {ratios[len(ratios) // 2]:.2f} "
      f"[{ratios[0]:.2f}-{ratios[-1]:.2f}] (goal >= 0.90; load average {load_avg()})")
