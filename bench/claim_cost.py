#!/usr/bin/env python3
"""bench/claim_cost's driver: what does the worker's claim statement cost as
a big backlog drains, and with many rows scheduled for later?

The cluster preloads pg_stat_statements with track = all (the worker's
statements run through SPI, so they are nested) and track_planning = on.
The claim is the statement ending in FOR UPDATE SKIP LOCKED, with the time of
the probes for the next priority added to it; also shown are
the UPDATE that marks claimed rows `sending` (claimed_at = now()) and the
UPDATE ... FROM unnest(...) that records outcomes.

drain:  ROWS queued rows inserted directly (INSERT ... SELECT) while the
        worker is disabled (twilio_outbox.enabled = off), next_attempt_at 1 ms
        apart in the past as if enqueued one by one; VACUUM ANALYZE; then the
        worker enabled and woken by a committed twilio_enqueue; pg_stat_statements is
        read every BUCKET seconds until all are sent: per bucket the msgs/s,
        the claim's calls, ms per call, us per claimed row, planning ms per
        call, and the two UPDATEs' ms per call; then last/first (goal <= 1.5).
future: DUE rows drained with and without FUTURE rows in the same pool in
        status `retrying` with next_attempt_at an hour ahead and later (10 ms
        apart: distinct keys, as real backoff with jitter gives); the claim's
        mean cost per call during the drain, then its time per second (claims
        and probes) while idle (the once-a-second claim) and under a trickle
        of single-message transactions, and under the trickle again after a
        VACUUM (the drained rows' dead index entries, which a claim that
        starts over reads until autovacuum removes them, gone).

    claim_cost.py [--rows N] [--future N] [--due N] [--bucket S] [--timeout S]
"""

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Pg, ensure_pool, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=1000000)
parser.add_argument("--future", type=int, default=200000)
parser.add_argument("--due", type=int, default=50000)
parser.add_argument("--bucket", type=float, default=5)
parser.add_argument("--timeout", type=float, default=420)
parser.add_argument("--idle", type=float, default=10)
parser.add_argument("--trickle", type=float, default=10)
parser.add_argument("--table-options", default="",
                    help="storage parameters to try on twilio_outbox, e.g. autovacuum_vacuum_scale_factor = 0")
args = parser.parse_args()

pg = Pg()
pg.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
schema = pg.value("SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'twilio_outbox'")
POOL = "claim"
KINDS = {"claim": "%SKIP LOCKED%", "probe": "%ORDER BY o.priority DESC, o.next_attempt_at, o.id LIMIT%",
         "mark": "%claimed_at = now()%", "record": "%FROM unnest(%"}


def claim_sql(limit):
    """The worker's claim statement from the start of the due rows of
    priority 0 (the first of src/queue.c's claim forms, from the key
    (-infinity, 0)), with literal arguments."""
    src = (ROOT / "src" / "queue.c").read_text()
    m = re.search(r"static const char \*claim_select =(.*?);", src, re.S)
    tail = re.search(r"\{PLAN_CLAIM_FROM, \"((?:[^\"]|\"\s*\")*)\"", src)
    if not m or not tail:
        return None
    text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).replace('\\"', '"')
    text = text.replace("%s", schema, 3).replace("%s", re.sub(r'"\s*"', "", tail.group(1)))
    return (text.replace("$1", f"'{POOL}'").replace("$2", str(limit)).replace("$3", "'message'")
            .replace("$4", "0").replace("$5", "'-infinity'").replace("$6", "0"))


def explain(label, limit=50):
    """EXPLAIN (ANALYZE, BUFFERS) of one claim, rolled back: plan shape and pages read."""
    sql = claim_sql(limit)
    if sql is None:
        print(f"  ({label}: claim statement not found in src/queue.c, no EXPLAIN)")
        return
    pg.query("BEGIN")
    try:
        plan = [r[0] for r in pg.query(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {sql}")]
    finally:
        pg.query("ROLLBACK")
    keep = [line for line in plan if re.search(
        r"Scan|Buffers|Rows Removed|Execution Time|Planning Time|Limit|Sort", line)]
    print(f"  EXPLAIN ANALYZE of one claim (LIMIT {limit}), {label}:")
    for line in keep:
        print(f"    {line.rstrip()}")


def pgss():
    """{kind: (calls, exec ms, plan ms, rows)} for the worker's three statements."""
    out = {}
    for kind, pattern in KINDS.items():
        row = pg.query("SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0), "
                       "coalesce(sum(total_plan_time), 0), coalesce(sum(rows), 0) "
                       f"FROM pg_stat_statements WHERE query LIKE '{pattern}' "
                       "AND query LIKE '%twilio_outbox%'")[0]
        out[kind] = tuple(float(v) for v in row)
    # a claim reads one priority at a time, after a probe for the next one:
    # its cost is both statements' time over the claim statements' calls
    probe = out.pop("probe")
    claim = out["claim"]
    out["claim"] = (claim[0], claim[1] + probe[1], claim[2] + probe[2], claim[3])
    return out


def diff(a, b):
    return {k: tuple(y - x for x, y in zip(a[k], b[k])) for k in a}


def sent_total():
    return int(pg.value("SELECT sent FROM twilio_worker_status"))


def table_state():
    row = pg.query("SELECT n_dead_tup, autovacuum_count, "
                   "pg_relation_size(format('%s.twilio_outbox_due_idx', "
                   f"'{schema}')::regclass) / 8192 "
                   f"FROM pg_stat_user_tables WHERE relid = '{schema}.twilio_outbox'::regclass")[0]
    return int(row[0]), int(row[1]), int(row[2])


def set_enabled(on):
    """twilio_outbox.enabled on or off (reload); off: wait until nothing is in flight."""
    pg.query(f"ALTER SYSTEM SET twilio_outbox.enabled = {'on' if on else 'off'}")
    pg.query("SELECT pg_reload_conf()")
    ok = wait_for(lambda: pg.value("SELECT state <> 'disabled' FROM twilio_worker_status") == "t"
                  if on else
                  pg.value("SELECT state = 'disabled' AND in_flight = 0 FROM twilio_worker_status") == "t",
                  10)
    if not ok:
        raise SystemExit(f"the worker did not follow twilio_outbox.enabled = {on}")


def fill(due, future=0):
    """Empty the outbox, then insert `due` queued rows and `future` retrying rows an hour ahead."""
    set_enabled(False)
    pg.query("TRUNCATE twilio_outbox")
    t0 = time.monotonic()
    if future:
        pg.query("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, attempts, "
                 "next_attempt_at, last_http_status, last_error) "
                 f"SELECT '{POOL}', '+1416' || lpad(i::text, 7, '0'), 'Later ' || i, 1, 'retrying', 1, "
                 f"now() + interval '1 hour' + i * interval '10 ms', 503, 'bench' "
                 f"FROM generate_series(1, {future}) i")
    # distinct times, as rows enqueued one by one have (equal keys would be
    # deduplicated into a few btree posting lists)
    pg.query("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, created_at, "
             "next_attempt_at) "
             f"SELECT '{POOL}', '+1415' || lpad(i::text, 7, '0'), "
             f"'Your order ' || i || ' has shipped', 1, now() - ({due} - i) * interval '1 ms', "
             f"now() - ({due} - i) * interval '1 ms' FROM generate_series(1, {due}) i")
    pg.query("VACUUM ANALYZE twilio_outbox")
    pg.query("CHECKPOINT")
    return time.monotonic() - t0


def start():
    """Enable the worker, wake it with a committed enqueue; return the sent counter."""
    base = sent_total()
    pg.query("SELECT pg_stat_statements_reset()")
    set_enabled(True)
    pg.query(f"SELECT twilio_enqueue('+14170000000', 'wake up', '{POOL}')")
    return base


def per_call(d, kind):
    calls, ms, plan, rows = d[kind]
    return (ms / calls if calls else 0.0, plan / calls if calls else 0.0,
            1000 * ms / rows if rows else 0.0, calls, rows)


def drain_buckets(total):
    """Scenario 1: one line per bucket; returns the list of claim ms per call per full bucket."""
    print(f"{'t s':>5} {'msgs/s':>7} {'claims':>7} {'ms/claim':>9} {'us/row':>7} {'plan ms':>8} "
          f"{'mark ms':>8} {'record ms':>10} {'dead tuples':>12} {'autovac':>8} {'due_idx pages':>14}")
    base = start()
    t0 = time.monotonic()
    prev, prev_sent, prev_t = pgss(), 0, t0
    buckets = []
    while True:
        time.sleep(max(0, prev_t + args.bucket - time.monotonic()))
        now, cur = time.monotonic(), pgss()
        sent = sent_total() - base
        d = diff(prev, cur)
        claim_ms, plan_ms, us_row, calls, rows = per_call(d, "claim")
        dead, autovac, pages = table_state()
        print(f"{now - t0:5.0f} {(sent - prev_sent) / (now - prev_t):7.0f} {calls:7.0f} {claim_ms:9.3f} "
              f"{us_row:7.1f} {plan_ms:8.3f} {per_call(d, 'mark')[0]:8.3f} "
              f"{per_call(d, 'record')[0]:10.3f} {dead:12d} {autovac:8d} {pages:14d}", flush=True)
        if sent < total and calls:
            buckets.append((claim_ms, us_row))
        prev, prev_sent, prev_t = cur, sent, now
        if sent >= total + 1:
            break
        if now - t0 > args.timeout:
            print(f"stopped after {args.timeout:g} s with {total + 1 - sent} rows not sent yet")
            break
    return buckets, prev_t - t0


def phase(label, seconds, action=None):
    """The claim's mean cost over `seconds` while `action` (called every 0.2 s)
    runs, and its time (with the probes) per second of the phase: a probe that
    finds nothing to claim is no claim call, but it is work."""
    before = pgss()
    t0 = time.monotonic()
    end = t0 + seconds
    i = 0
    while time.monotonic() < end:
        if action:
            action(i)
        i += 1
        time.sleep(0.2)
    d = diff(before, pgss())
    return per_call(d, "claim"), d["claim"][1] / (time.monotonic() - t0)


def scenario_future(future):
    secs = fill(args.due, future)
    label = f"{args.due} due rows" + (f" + {future} retrying an hour ahead" if future else " alone")
    print(f"\n{label} (inserted and analyzed in {secs:.1f} s):")
    explain("before the drain")
    base = start()
    t0 = time.monotonic()
    before = pgss()
    wait_for(lambda: sent_total() - base >= args.due + 1, args.timeout, 0.2)
    elapsed = time.monotonic() - t0
    drained = per_call(diff(before, pgss()), "claim")
    idle, idle_ms_s = phase("idle", args.idle)
    trickle, trickle_ms_s = phase("trickle", args.trickle, lambda i: pg.query(
        f"SELECT twilio_enqueue('+1418' || lpad('{i}', 7, '0'), 'trickle', '{POOL}')"))
    explain("after the drain, nothing due")
    # the drained rows' dead index entries stay until a vacuum; without them:
    pg.query("VACUUM twilio_outbox")
    vacuumed, vacuumed_ms_s = phase("trickle", args.trickle, lambda i: pg.query(
        f"SELECT twilio_enqueue('+1419' || lpad('{i}', 7, '0'), 'trickle', '{POOL}')"))
    for name, (ms, plan, us, calls, rows) in (("drain", drained), ("idle", idle), ("trickle 5/s", trickle),
                                              ("vacuumed", vacuumed)):
        print(f"  {name:12} claims {calls:6.0f}  rows {rows:7.0f}  {ms:8.3f} ms/claim  "
              f"{plan:6.3f} ms planning" + (f"  {us:6.1f} us/row" if rows else ""))
    print(f"  claim work (claims and probes): idle {idle_ms_s:.3f} ms/s, trickle {trickle_ms_s:.3f} ms/s, "
          f"trickle after VACUUM {vacuumed_ms_s:.3f} ms/s")
    print(f"  drain took {elapsed:.1f} s ({args.due / elapsed:.0f} msgs/s)")
    return drained[0], idle_ms_s, trickle_ms_s, vacuumed_ms_s


ensure_pool(pg, POOL, "+15005550006", 10000, 100)
if args.table_options:
    pg.query(f"ALTER TABLE twilio_outbox SET ({args.table_options})")
    print(f"twilio_outbox storage parameters: {args.table_options}")

if args.rows:
    print(f"drain of {args.rows} queued rows; pg_stat_statements every {args.bucket:g} s")
    secs = fill(args.rows)
    print(f"(inserted, vacuumed, analyzed in {secs:.1f} s)")
    explain("before the drain")
    buckets, took = drain_buckets(args.rows)
    explain("after the drain")
    if len(buckets) >= 2:
        (f_ms, f_us), (l_ms, l_us) = buckets[0], buckets[-1]
        print(f"claim ms per call: first bucket {f_ms:.3f}, last full bucket {l_ms:.3f}: "
              f"last/first {l_ms / f_ms:.2f} (goal <= 1.5); per claimed row {f_us:.1f} -> {l_us:.1f} us "
              f"({l_us / f_us:.2f})")
        ms = sorted(b[0] for b in buckets)
        print(f"claim ms per call over the {len(ms)} full buckets: median {ms[len(ms) // 2]:.3f}, "
              f"max {ms[-1]:.3f} ({ms[-1] / f_ms:.1f}x the first)")
    print(f"{args.rows} rows in {took:.0f} s: {args.rows / took:.0f} msgs/s on average")

if args.future:
    without = scenario_future(0)
    with_ = scenario_future(args.future)
    print(f"\nthe claim with / without {args.future} rows scheduled an hour ahead:")
    for i, (name, unit) in enumerate((("during the drain", "ms per claim"),
                                      ("idle (once a second)", "ms per second"),
                                      ("trickle 5 msgs/s", "ms per second"),
                                      ("trickle after VACUUM", "ms per second"))):
        a, b = without[i], with_[i]
        print(f"  {name:22} {b:8.3f} / {a:8.3f} {unit:13} = {b / a if a else float('nan'):6.1f}x")
