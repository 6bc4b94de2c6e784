#!/usr/bin/env python3
"""End-to-end: the monitoring views' counts stay exact while the worker
drains, records, folds and vacuums the counts the outbox's triggers keep
(src/counts.c, tob_fold_counts).

- Rows finished every 10 ms over the last 100 s and around an hour ago
  (so that the start of the last minute and of the last hour pass over
  rows at every poll), then 6,000 messages in 3 pools drain to the double, 1 in 15 failing with a
  permanent 400 (21211) and 1 in 10 answered with a 503 first (retried);
  meanwhile another session keeps changing sent rows' delivery status as
  status callbacks would.  Every 0.2 s one statement compares
  twilio_queue_stats and twilio_delivery_stats with direct counts of the
  outbox under the same snapshot: they never differ.
- Afterwards the counts are folded (no raw rows are left, the last
  minute is kept by second) and vacuumed by the worker, and still equal.
- With the extension in a schema whose name needs quoting, the worker
  vacuums the counts too, without a warning.
"""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, start, wait_until  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.max_concurrency": 20})

# One statement, one snapshot: the views beside direct counts; rows that differ.
COMPARE = """
WITH q AS (
  SELECT pool, queued, retrying, sending, sent_last_minute, failed_last_hour, sent_last_hour,
         calls_pending, calls_sent_last_hour, observed_mps, retrying_by_reason
    FROM twilio_queue_stats),
qd AS (
  SELECT p.name,
         count(o.id) FILTER (WHERE o.status = 'queued'), count(o.id) FILTER (WHERE o.status = 'retrying'),
         count(o.id) FILTER (WHERE o.status = 'sending'),
         count(o.id) FILTER (WHERE o.status = 'sent' AND o.finished_at > now() - interval '1 minute'),
         count(o.id) FILTER (WHERE o.status = 'failed' AND o.finished_at > now() - interval '1 hour'),
         count(o.id) FILTER (WHERE o.status = 'sent' AND o.finished_at > now() - interval '1 hour'),
         count(o.id) FILTER (WHERE o.kind = 'call' AND o.status IN ('queued', 'retrying', 'sending')),
         count(o.id) FILTER (WHERE o.kind = 'call' AND o.status = 'sent'
                               AND o.finished_at > now() - interval '1 hour'),
         round(COALESCE(sum(o.num_segments) FILTER (WHERE o.status = 'sent'
                 AND o.finished_at > now() - interval '1 minute'), 0)::numeric / 60, 3),
         COALESCE((SELECT jsonb_object_agg(r.reason, r.n) FROM (
             SELECT COALESCE(o2.last_http_status::text, 'transport') AS reason, count(*) AS n
               FROM twilio_outbox o2 WHERE o2.pool = p.name AND o2.status = 'retrying' GROUP BY 1) r), '{}')
    FROM twilio_pools p LEFT JOIN twilio_outbox o ON o.pool = p.name GROUP BY p.name),
d AS (
  SELECT pool, sent_last_hour, delivered, undelivered, failed, awaiting FROM twilio_delivery_stats),
dd AS (
  SELECT p.name, count(o.id),
         count(o.id) FILTER (WHERE o.delivery_status IN ('delivered', 'read')),
         count(o.id) FILTER (WHERE o.delivery_status = 'undelivered'),
         count(o.id) FILTER (WHERE o.delivery_status = 'failed'),
         count(o.id) FILTER (WHERE _twilio_delivery_rank(o.delivery_status) < 4)
    FROM twilio_pools p
    LEFT JOIN twilio_outbox o ON o.pool = p.name AND o.kind = 'message' AND o.status = 'sent'
                             AND o.finished_at > now() - interval '1 hour'
   GROUP BY p.name)
SELECT 'queue_stats ' || x::text FROM (SELECT * FROM q EXCEPT SELECT * FROM qd) x
UNION ALL
SELECT 'delivery_stats ' || y::text FROM (SELECT * FROM d EXCEPT SELECT * FROM dd) y
"""


def differences():
    return [r[0] for r in pg.sql(COMPARE)]


@t.case("the views equal direct counts throughout a drain with failures, retries and callbacks")
def during_drain():
    for i in range(3):
        pg.add_pool(f"v{i}", f"+1500555000{i + 6}", mps=800, burst=20)
    # a permanent failure for some recipients, a 503 before success for others
    double.config(rules=[{"match": {"to": [f"+1415555{k:04d}" for k in range(0, 400, 15)]},
                          "status": 400, "code": 21211},
                         {"match": {"to": [f"+1415555{k:04d}" for k in range(1, 400, 10)]},
                          "status": 503, "count": 200}])
    # rows finished every 10 ms over the last 100 s and around an hour ago, so that
    # the last minute's and the last hour's starts cross rows at every poll
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at, "
           "sent_at, delivery_status) "
           "SELECT 'v' || (i % 3), '+14155559999', 'old', 1 + i % 2, "
           "CASE WHEN i % 9 = 0 THEN 'failed' ELSE 'sent' END, "
           "now() - b - i * interval '10 milliseconds', now() - b - i * interval '10 milliseconds', "
           "(ARRAY[NULL, 'delivered', 'undelivered', 'sent'])[1 + i % 4] "
           "FROM generate_series(1, 10000) i, unnest(ARRAY[interval '0', interval '59 minutes 30 seconds']) b")
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments) "
           "SELECT 'v' || (i % 3), '+1415555' || lpad((i % 400)::text, 4, '0'), 'm' || i, 1 + i % 3 "
           "FROM generate_series(1, 6000) i")

    stop = threading.Event()
    callbacks = [0]

    def deliver():
        """Status callbacks as the worker applies them: sent rows get delivered or undelivered."""
        while not stop.is_set():
            out = pg.sql("WITH c AS (UPDATE twilio_outbox SET delivery_status = "
                         "CASE WHEN id % 7 = 0 THEN 'undelivered' ELSE 'delivered' END "
                         "WHERE id IN (SELECT id FROM twilio_outbox WHERE status = 'sent' "
                         "AND delivery_status IS DISTINCT FROM 'delivered' "
                         "AND delivery_status IS DISTINCT FROM 'undelivered' LIMIT 200) RETURNING 1) "
                         "SELECT count(*) FROM c")
            callbacks[0] += int(out[0][0])
            stop.wait(0.1)

    cb = threading.Thread(target=deliver, daemon=True)
    cb.start()
    wrong, polls = [], 0
    deadline = time.time() + 90
    while time.time() < deadline or polls < 25:
        polls += 1
        wrong += differences()
        left = int(pg.sql_value("SELECT count(*) FROM twilio_outbox "
                                "WHERE status IN ('queued', 'retrying', 'sending')"))
        if left == 0:
            break
        time.sleep(0.2)
    stop.set()
    cb.join()
    t.eq(left, 0, "all 6,000 rows finished", pg.diagnose)
    t.ok(polls >= 5, f"compared {polls} times during the drain")
    t.eq(wrong[:5], [], "the views never differed from direct counts under the same snapshot")
    t.ok(callbacks[0] > 1000, f"delivery statuses changed meanwhile ({callbacks[0]})")
    counts = dict(pg.sql("SELECT status, count(*) FROM twilio_outbox GROUP BY 1"))
    t.ok(int(counts.get("failed", 0)) > 2222 and int(counts.get("sent", 0)) > 20000,
         "some rows failed, most were sent", repr(counts))


@t.case("afterwards the counts are folded and vacuumed by the worker, and still exact")
def folded():
    pg.sql("UPDATE twilio_outbox SET delivery_status = 'delivered' "
           "WHERE status = 'sent' AND delivery_status IS DISTINCT FROM 'delivered' AND id % 2 = 0")
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM _twilio_recent_counts WHERE raw") == "0",
                    10, 0.2), "the worker folded every raw row of the recent counts")
    t.ok(wait_until(lambda: pg.sql_value(
        "SELECT count(*) = count(DISTINCT (pool, status, kind, reason)) FROM _twilio_pending_counts") == "t",
        10, 0.2), "one row per group of the pending counts")
    t.ok(int(pg.sql_value("SELECT count(*) FROM _twilio_recent_counts WHERE second IS NOT NULL")) > 0,
         "the last two minutes are kept by second too")
    t.eq(differences(), [], "the views equal direct counts after the fold")
    vacuums = pg.sql_value("SELECT pg_stat_get_vacuum_count('_twilio_pending_counts'::regclass) + "
                           "pg_stat_get_vacuum_count('_twilio_recent_counts'::regclass)")
    t.ok(int(vacuums) > 0, f"the worker vacuumed the counts ({vacuums} vacuums)")
    size = int(pg.sql_value("SELECT pg_relation_size('_twilio_pending_counts') + "
                            "pg_relation_size('_twilio_recent_counts')"))
    t.ok(size < 4 * 1024 * 1024, f"the counts tables stay small ({size // 1024} kB after the drain; "
         f"each message appends 4-7 rows)")


@t.case("the worker vacuums the counts of an extension in a schema that needs quoting")
def quoted_schema():
    other, _ = start(create_extension=False, name="quoted")
    other.sql('CREATE SCHEMA "Odd Tob"')
    other.sql('CREATE EXTENSION twilio_outbox WITH SCHEMA "Odd Tob"')
    q = '"Odd Tob"'
    other.sql(f"INSERT INTO {q}.twilio_pools (name, sender, mps, burst) VALUES ('q', '+15005550006', 100, 10)")
    other.sql(f"INSERT INTO {q}.twilio_outbox (pool, to_number, body, num_segments, status, finished_at, sent_at) "
              "SELECT 'q', '+14155559999', 'old', 1, 'sent', now() - i * interval '10 ms', "
              "now() - i * interval '10 ms' FROM generate_series(1, 25000) i")
    t.ok(wait_until(lambda: int(other.sql_value(
        f"SELECT pg_stat_get_vacuum_count('{q}._twilio_pending_counts'::regclass) + "
        f"pg_stat_get_vacuum_count('{q}._twilio_recent_counts'::regclass)")) > 0, 20, 0.5),
        "the counts were vacuumed")
    bad = [line for line in other.log_text().splitlines()
           if "WARNING" in line or "ERROR" in line or "terminated by signal" in line]
    t.eq(bad[:5], [], "no warning or error in the server log")


t.done()
