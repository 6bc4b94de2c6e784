"""The worker's CPU while nothing may be sent (python3 standard library only).

Used by test/e2e/20_idle.py (short windows, a loose bound) and bench/idle
(longer windows, the figures).  Each state is set up on one cluster and
double, the worker's CPU time (utime + stime from /proc) is measured over
`seconds`, and the state is undone:

  tokens_short  3-segment messages wait for a pool at 1 mps, burst 10
  auth_outage   Twilio refuses the credentials (401) with a backlog
  all_paused    every pool paused, with a backlog
  future_only   only rows scheduled an hour ahead
  breaker_open  every request fails (503) with a backlog: the breaker holds

measure(pg, double, seconds) returns {state: share of one core}.
"""

import os
import time

from harness import wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")
GSM_3_SEGMENTS = "x" * 400     # 160 / 153 per part: 3 segments


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def share(pg, seconds):
    pid = pg.worker_pid()
    before, began = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - began)


def enqueue(pg, pool, n, body, extra=""):
    pg.sql("SELECT twilio_enqueue('+1415199' || lpad(i::text, 4, '0'), :'p1', pool => :'p2'"
           + extra + ") FROM generate_series(1, :'p3'::int) i", body, pool, n)


def clear(pg):
    pg.sql("UPDATE twilio_outbox SET status = 'canceled', finished_at = now() "
           "WHERE status IN ('queued', 'retrying')")
    wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_outbox "
                                    "WHERE status = 'sending'") == "0", 20)


def measure(pg, double, seconds):
    out = {}
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) VALUES "
           "('idle_slow', '+15005552001', 1, 10), ('idle_a', '+15005552002', 100, 10), "
           "('idle_b', '+15005552003', 100, 10)")

    # tokens short for the next message: burst 10 lets three 3-segment messages
    # go, then one every 3 s
    enqueue(pg, "idle_slow", 50, GSM_3_SEGMENTS)
    time.sleep(1.5)
    out["tokens_short"] = share(pg, seconds)
    clear(pg)

    double.config(auth_token="not-the-workers-token")
    enqueue(pg, "idle_a", 200, "auth outage")
    wait_until(lambda: pg.sql_value("SELECT state FROM twilio_worker_status") == "auth_failed", 10)
    out["auth_outage"] = share(pg, seconds)
    double.config(auth_token="test-token")
    wait_until(lambda: pg.sql_value("SELECT state FROM twilio_worker_status") != "auth_failed", 90)
    clear(pg)

    pg.sql("UPDATE twilio_pools SET paused = true")
    enqueue(pg, "idle_a", 200, "paused")
    enqueue(pg, "idle_b", 200, "paused")
    time.sleep(1.5)
    out["all_paused"] = share(pg, seconds)
    clear(pg)
    pg.sql("UPDATE twilio_pools SET paused = false")

    enqueue(pg, "idle_a", 500, "later", ", send_after => now() + interval '1 hour'")
    time.sleep(1.5)
    out["future_only"] = share(pg, seconds)
    clear(pg)

    double.config(rules=[{"status": 503, "code": 20503}])
    enqueue(pg, "idle_a", 300, "outage")
    wait_until(lambda: pg.sql_value("SELECT held FROM twilio_worker_status") == "circuit_open", 20)
    out["breaker_open"] = share(pg, seconds)
    double.config(rules=[])
    clear(pg)
    return out
