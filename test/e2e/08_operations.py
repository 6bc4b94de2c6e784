#!/usr/bin/env python3
"""End-to-end: what on-call engineers see and do.

After a known sequence of events against the test double, the columns of
twilio_queue_stats, twilio_worker_status, twilio_pool_status and
twilio_error_stats say what happened; twilio_pool_pause with a time ends by
itself; twilio_retry_failed sends failed rows again; the worker deletes
finished rows and applied callbacks past twilio_outbox.retention faster than
1,000 a second (the worker applies stored callbacks first), and
rows that finished long ago but showed up late after a VACUUM;
pg_monitor reads the views and no view shows a secret.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH_TOKEN, Tap, form, start, wait_until  # noqa: E402

t = Tap()
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 200,
                             "twilio_outbox.backoff_max_ms": 400,
                             "twilio_outbox.max_attempts": 3})
pg.add_pool("ops", "+15005550801", mps=1000, burst=100)
pg.add_pool("quiet", "+15005550802", mps=2, burst=1)


def stats(pool):
    return pg.sql_dicts("SELECT * FROM twilio_queue_stats WHERE pool = :'p1'", pool)[0]


def worker():
    return pg.sql_dicts("SELECT * FROM twilio_worker_status")[0]


def terminal(ids, timeout=20):
    return pg.wait_terminal(ids, timeout)


@t.case("a known sequence: 10 sent, 2 permanent failures, 2 retried after 503s")
def known_sequence():
    bad = ["+14158010001", "+14158010002"]
    double.config(rules=[{"match": {"to": bad}, "action": {"status": 400, "code": 21211,
                                                           "message": "Invalid To"}},
                         {"match": {"to": "+14158010099"}, "count": 2,
                          "action": {"status": 503, "code": 20503}}])
    before = worker()
    msgs = [dict(to=f"+1415801{i:04d}", body=f"ops {i}", pool="ops") for i in range(10, 20)]
    msgs += [dict(to=n, body="bad", pool="ops") for n in bad]
    msgs += [dict(to="+14158010099", body="flaky", pool="ops")]
    ids = pg.enqueue_batch(msgs)
    terminal(ids)
    st = dict(pg.sql("SELECT status, count(*) FROM twilio_outbox WHERE id = ANY(:'p1'::bigint[]) "
                     "GROUP BY 1", "{" + ",".join(map(str, ids)) + "}"))
    t.eq(st, {"sent": "11", "failed": "2"}, "11 sent (one after two 503s), 2 failed")

    s = stats("ops")
    t.eq((s["queued"], s["retrying"], s["sending"]), (0, 0, 0), "queue_stats: nothing left")
    t.eq(s["sent_last_minute"], 11, "queue_stats.sent_last_minute counts the 11 sent")
    t.eq(s["sent_last_hour"], 11, "queue_stats.sent_last_hour counts them too")
    t.eq(s["failed_last_hour"], 2, "queue_stats.failed_last_hour counts the 2 failures")
    t.ok(abs(float(s["observed_mps"]) - 11 / 60) < 0.002,
         "queue_stats.observed_mps is segments in the last minute / 60", repr(s["observed_mps"]))
    t.eq(float(s["effective_mps"]), 1000.0, "queue_stats.effective_mps is mps without 429s")
    t.eq(s["oldest_queued_age"], None, "queue_stats.oldest_queued_age is empty with nothing queued")

    w = worker()
    delta = {k: int(w[k]) - int(before[k]) for k in
             ("requests", "sent", "retried", "failed", "http_5xx", "http_429", "transport_errors")}
    t.eq(delta, {"requests": 15, "sent": 11, "retried": 2, "failed": 2, "http_5xx": 2,
                 "http_429": 0, "transport_errors": 0},
         "worker_status totals follow the sequence (15 requests)")
    t.ok(w["state"] in ("idle", "sending", "throttled"), "worker_status.state", w["state"])
    t.ok(w["pid"] and int(w["pid"]) == pg.worker_pid(), "worker_status.pid is the worker's")

    errs = pg.sql_dicts("SELECT * FROM twilio_error_stats WHERE pool = 'ops' ORDER BY http_status")
    by = {(e["http_status"], e["error_code"]): e for e in errs}
    t.eq(sorted(by), [(400, 21211), (503, 20503)], "error_stats: one row per status and code")
    t.eq((by[(400, 21211)]["count"], by[(400, 21211)]["failed"]), (2, 2),
         "error_stats: the two 21211 failures")
    t.eq((by[(503, 20503)]["count"], by[(503, 20503)]["retried"]), (2, 2),
         "error_stats: the two 503s, both retried")
    t.ok(by[(400, 21211)]["last_seen"] is not None, "error_stats.last_seen is set")
    example = by[(400, 21211)]["example_id"]
    t.ok(example is not None and int(example) in ids and
         pg.sql_value("SELECT to_number FROM twilio_outbox WHERE id = :'p1'", example) in bad,
         "error_stats.example_id is one of the failed messages")
    t.ok("Invalid To" in (by[(400, 21211)]["last_error"] or ""),
         "error_stats.last_error keeps Twilio's message")
    double.config(rules=[])


@t.case("retrying_by_reason and oldest_queued_age while messages wait")
def waiting():
    double.config(rules=[{"match": {"to": "+14158020001"}, "action": {"status": 503}}])
    pg.reload(**{"twilio_outbox.backoff_base_ms": 5000, "twilio_outbox.backoff_max_ms": 5000})
    pg.sql("SELECT twilio_pool_pause('quiet')")
    pg.enqueue_batch([dict(to="+14158020001", body="w", pool="ops")] +
                     [dict(to=f"+1415802{i:04d}", body="q", pool="quiet") for i in range(10, 13)])
    got = wait_until(lambda: stats("ops")["retrying_by_reason"] == {"503": 1}, 10)
    t.ok(got, "queue_stats.retrying_by_reason counts the 503 retry", lambda: repr(stats("ops")))
    time.sleep(1.2)
    q = stats("quiet")
    t.eq((q["queued"], q["paused"]), (3, True), "a paused pool's rows stay queued")
    t.ok(q["oldest_queued_age"] is not None and q["oldest_queued_age"] >= "00:00:01",
         "queue_stats.oldest_queued_age grows while they wait", repr(q["oldest_queued_age"]))
    t.eq(q["est_drain_time"], "00:00:01.5", "est_drain_time: 3 segments at 2 mps")
    double.config(rules=[])
    pg.sql("SELECT twilio_cancel(id) FROM twilio_outbox WHERE status = 'retrying'")
    pg.reload(**{"twilio_outbox.backoff_base_ms": 200, "twilio_outbox.backoff_max_ms": 400})


@t.case("a timed pause ends by itself")
def timed_pause():
    pg.sql("SELECT twilio_pool_pause('quiet', now() + interval '2 seconds')")
    t.eq(stats("quiet")["paused"], True, "paused until the given time")
    before = len(double.requests())
    time.sleep(1)
    t.eq(len(double.requests()), before, "nothing is sent during the pause")
    ok = wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox "
                                         "WHERE pool = 'quiet' AND status = 'sent'") == "3", 8)
    t.ok(ok, "after it, the queued rows are sent")
    t.eq(pg.sql("SELECT paused, paused_until FROM twilio_pools WHERE name = 'quiet'"),
         [("f", None)], "the worker clears the ended pause in twilio_pools")


@t.case("twilio_retry_failed sends failed rows again")
def retry_failed():
    failed = pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE pool = 'ops' AND status = 'failed'")
    n = pg.sql_value("SELECT twilio_retry_failed('ops')")
    t.ok(int(failed) >= 2, "the two 21211 rows (at least) are failed", repr(failed))
    t.eq(n, failed, "it returns how many rows were queued again")
    ok = wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox "
                                         "WHERE pool = 'ops' AND status = 'failed'") == "0", 10)
    t.ok(ok, "the two rows are sent now that the number is fine")


def watch_deletions(count, timeout=15):
    """Sample count() every 0.2 s until it is 0 or timeout s have passed; the
    samples (time, count) and the most deleted within about a second (the
    old limit of retention was 1,000 a second)."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append((time.monotonic(), count()))
        if samples[-1][1] == 0:
            break
        time.sleep(0.2)
    best = max((a[1] - b[1] for i, a in enumerate(samples) for b in samples[i:]
                if b[0] - a[0] <= 1.2), default=0)
    return samples, best


@t.case("retention keeps pace: 20,000 finished rows past retention go within seconds, the rest stays")
def retention():
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at) "
           "SELECT 'ops', '+14155550100', 'old', 1, "
           "(ARRAY['sent','failed','expired','canceled'])[1 + i % 4], "
           "now() - interval '2 days' + i * interval '1 ms' "
           "FROM generate_series(1, 20000) i")
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, next_attempt_at) "
           "VALUES ('ops', '+14155550100', 'waiting', 1, 'queued', now() + interval '1 day')")
    # not finished, whatever its finished_at says
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, next_attempt_at, "
           "finished_at) VALUES ('ops', '+14155550100', 'waiting', 1, 'retrying', "
           "now() + interval '1 day', now() - interval '3 days')")

    def old_rows():
        return int(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE body = 'old'"))

    pg.reload(**{"twilio_outbox.retention": "1d"})
    samples, best = watch_deletions(old_rows)
    t.eq(samples[-1][1], 0, "all 20,000 rows older than retention are deleted within 15 s")
    t.ok(best > 1000, "more than 1,000 rows are deleted in about a second",
         repr([(round(ts - samples[0][0], 1), n) for ts, n in samples]))
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE body = 'waiting'"), "2",
         "unfinished rows are kept, a retrying row with an old finished_at too")
    t.ok(int(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE status = 'sent'")) >= 13,
         "recently finished rows are kept")

    # rows that show up finished long ago after retention has passed their time
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at) "
           "SELECT 'ops', '+14155550100', 'late', 1, 'sent', now() - interval '3 days' "
           "FROM generate_series(1, 50) i")
    pg.sql("VACUUM twilio_outbox")
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE body = 'late'")
                    == "0", 10),
         "rows finished before the oldest deleted one are deleted after the next VACUUM")
    pg.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at) "
           "SELECT 'ops', '+14155550100', 'late', 1, 'canceled', now() - interval '4 days' "
           "FROM generate_series(1, 50) i")
    pg.reload(**{"twilio_outbox.retention": "2d"})
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE body = 'late'")
                    == "0", 10),
         "and when retention changes")
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE body = 'waiting'"), "2",
         "unfinished rows are still kept")


@t.case("retention keeps pace with callbacks too: 30,000 applied callbacks past retention go "
        "within seconds, recent ones stay")
def inbox_retention():
    def callbacks(label, n, age):
        pg.sql("INSERT INTO twilio_inbox (received_at, kind, params, applied_at) "
               "SELECT now() - :'p2'::interval + i * interval '1 ms', 'status', "
               "jsonb_build_object('MessageSid', 'SM' || md5(:'p1' || i), 'MessageStatus', 'delivered'), "
               "now() FROM generate_series(1, :'p3'::int) i", label, age, n)

    callbacks("old", 30000, "3 days")
    callbacks("recent", 20, "1 hour")

    def old_rows():
        return int(pg.sql_value("SELECT count(*) FROM twilio_inbox WHERE applied_at IS NOT NULL "
                                "AND received_at < now() - interval '2 days'"))

    samples, best = watch_deletions(old_rows)
    t.eq(samples[-1][1], 0, "all 30,000 applied callbacks older than retention are deleted "
         "within 15 s")
    t.ok(best > 1000, "more than 1,000 callbacks are deleted in about a second (the old limit)",
         repr([(round(ts - samples[0][0], 1), n) for ts, n in samples]))
    t.ok(int(pg.sql_value("SELECT count(*) FROM twilio_inbox "
                          "WHERE received_at > now() - interval '2 hours'")) >= 20,
         "recent callbacks are kept")


@t.case("pg_monitor reads the views; no view shows a secret")
def monitoring():
    pg.sql("CREATE ROLE e2e_monitor LOGIN IN ROLE pg_monitor")
    for view in ("twilio_queue_stats", "twilio_worker_status", "twilio_pool_status",
                 "twilio_error_stats"):
        rows = pg.sql(f"SET ROLE e2e_monitor; SELECT * FROM {view}")
        t.ok(all(AUTH_TOKEN not in "|".join(map(str, r)) for r in rows),
             f"pg_monitor reads {view}, without the auth token in it")
    try:
        pg.sql("SET ROLE e2e_monitor; SELECT count(*) FROM twilio_outbox")
        t.ok(False, "pg_monitor cannot read the messages themselves")
    except Exception as exc:  # noqa: BLE001
        t.ok("permission denied" in str(exc), "pg_monitor cannot read the messages themselves")
    t.ok(all(form(r).get("To") for r in double.requests()), "every request had a To")


@t.case("the postgres_exporter queries in docs/ run for pg_monitor")
def exporter_queries():
    import re
    text = (Path(__file__).resolve().parents[2] / "docs" / "postgres_exporter_queries.yaml").read_text()
    queries = re.findall(r"query: \|\n((?:    .*\n)+)", text)
    t.eq(len(queries), 3, "three query blocks (queue, worker, errors)")
    for q in queries:
        name = q.split("FROM")[-1].split()[0]
        rows = pg.sql("SET ROLE e2e_monitor; " + q)
        t.ok(len(rows) >= 1, f"the {name} query returns rows", repr(rows))


t.done()
