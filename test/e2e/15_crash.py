#!/usr/bin/env python3
"""Chaos: the worker and the server die in the middle of a drain.

(a) kill -9 of the worker 3 times, 2 s apart, during a 3,000-message drain
    at 300 mps (burst 10, the double answering at once): PostgreSQL goes
    through crash recovery, the worker comes back, all 3,000 end sent, none
    lost, none twice (the rows left in `sending` are looked up before being
    sent again); the drain time is printed.
(b) pg_ctl stop -m immediate and start again during a 1,000-message drain
    at 200 mps: the same.
(c) (a) again with the list endpoint failing (500 on messages_list) and
    reconcile_timeout_ms = 2000, the double answering after 100 ms so that
    every kill leaves rows in `sending` that Twilio has: they are looked up
    (and the lookups fail) before the worker resends them blindly after that
    bound; duplicates <= max_concurrency x crashes (printed).
Every part also checks that no attempt went before its next_attempt_at.
"""

import os
import re
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap  # noqa: E402
import chaos  # noqa: E402

MAX_CONCURRENCY = 20
CRASHES = 3

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=MAX_CONCURRENCY)
pg.add_pool("crash_a", "+15005551501", mps=300, burst=10)
pg.add_pool("crash_b", "+15005551502", mps=200, burst=10)
pg.add_pool("crash_c", "+15005551503", mps=300, burst=10)


def last_seq():
    return max((r["seq"] for r in double.requests(create_only=False)), default=0)


def sent_count(ids):
    return chaos.counts(pg, ids).get("sent", 0)


def kill_loop(ids, label):
    """kill -9 the worker CRASHES times, 2 s apart, while `ids` drain."""
    log_offset = len(pg.log_text())
    killed = []
    for n in range(CRASHES):
        pid = chaos.wait_worker(pg, 30, not_pid=killed[-1] if killed else None)
        t.ok(pid, f"{label}: a worker is running before kill {n + 1}", pg.diagnose)
        if not pid:
            return killed
        status_pid = chaos.sql_retry(pg, "SELECT pid FROM twilio_worker_status")[0][0]
        if n == 0:
            t.eq(status_pid, str(pid), f"{label}: twilio_worker_status.pid is the worker's "
                 "pid in pg_stat_activity")
        # let it send for a while, but kill it while work is left
        time.sleep(1.0 if n == 0 else 2.0)
        progress = sent_count(ids)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        t.diag(f"{label}: kill -9 {pid} with {progress} of {len(ids)} sent")
    back = chaos.wait_worker(pg, 30, not_pid=killed[-1])
    t.ok(back, f"{label}: the worker came back after the last kill", pg.diagnose)
    log = pg.log_text()[log_offset:]
    signalled = [p for p in killed
                 if re.search(rf"\(PID {p}\) was terminated by signal 9", log)]
    t.eq(signalled, killed, f"{label}: the postmaster saw each worker die of signal 9")
    t.ok(log.count("all server processes terminated; reinitializing") >= CRASHES,
         f"{label}: PostgreSQL went through crash recovery {CRASHES} times")
    requeued = [int(n) for n in re.findall(r"twilio_outbox worker took back (\d+) messages left "
                                           r"in sending", log)]
    t.diag(f"{label}: rows a restarted worker found in sending: {requeued}")
    return killed, requeued


def drain(label, pool, n, prefix, mps):
    seq0 = last_seq()
    began = time.time()
    ids = chaos.enqueue_series(pg, n, pool, prefix, f"{label} ")
    return ids, seq0, began


def finish(label, ids, seq0, began, max_dups, timeout=180, dup_note=""):
    done = chaos.wait_terminal(pg, ids, timeout)
    elapsed = time.time() - began
    t.ok(done, f"{label}: all {len(ids)} rows finished within {timeout} s", pg.diagnose)
    t.diag(f"{label}: drain time {elapsed:.1f} s for {len(ids)} messages")
    reqs = double.requests(since=seq0, create_only=False)
    figures = chaos.check_final(t, pg, double, ids, {"sent": len(ids)}, label,
                                max_dups=max_dups, requests=reqs, dup_note=dup_note)
    figures["drain"] = elapsed
    return figures


@t.case("(a) kill -9 of the worker 3 times during a 3,000-message drain")
def kill9():
    ids, seq0, began = drain("kill9", "crash_a", 3000, "+1415150", 300)
    time.sleep(0.5)
    kill_loop(ids, "kill9")
    finish("kill9", ids, seq0, began, 0)
    st = chaos.worker_status(pg)
    t.diag(f"kill9: last worker's counters: reconciled {st['reconciled']}, resent_blind "
           f"{st['resent_blind']}")


@t.case("(b) pg_ctl stop -m immediate, then start, during a 1,000-message drain")
def immediate():
    ids, seq0, began = drain("immediate", "crash_b", 1000, "+1415151", 200)
    time.sleep(2.0)
    progress = sent_count(ids)
    pid = chaos.worker_pid(pg)
    pg.stop("immediate")
    t.diag(f"immediate: stopped with {progress} of {len(ids)} sent")
    t.ok(0 < progress < len(ids), "immediate: the stop came in the middle of the drain",
         f"{progress} sent")
    time.sleep(0.5)
    pg.start()
    back = chaos.wait_worker(pg, 30, not_pid=pid)
    t.ok(back, "immediate: the worker is back after the start", pg.diagnose)
    finish("immediate", ids, seq0, began, 0)


@t.case("(c) kill -9 3 times with the list endpoint failing")
def kill9_blind():
    # answers after 100 ms keep max_concurrency rows in flight, so each kill
    # strands some (an instant double may be killed between two turns)
    double.config(delay_ms=100,
                  rules=[{"match": {"path": "messages_list"}, "status": 500, "code": 20500}])
    chaos.sql_retry(pg, "ALTER SYSTEM SET twilio_outbox.reconcile_timeout_ms = 2000; "
                    "SELECT pg_reload_conf()")
    ids, seq0, began = drain("blind", "crash_c", 3000, "+1415152", 300)
    time.sleep(0.5)
    killed, requeued = kill_loop(ids, "blind")
    t.ok(sum(requeued) > 0, "blind: the restarted workers took back rows left in sending",
         f"{requeued}")
    bound = MAX_CONCURRENCY * len(killed)
    figures = finish("blind", ids, seq0, began, bound,
                     dup_note=f" (bound max_concurrency {MAX_CONCURRENCY} x crashes "
                     f"{len(killed)} = {bound})")
    reqs = double.requests(since=seq0, create_only=False)
    failed_lookups = sum(1 for r in reqs if r["kind"] == "messages_list" and r["status"] == 500)
    t.diag(f"blind: failed lookups {failed_lookups}, duplicates {figures['duplicates']}")
    t.ok(failed_lookups > 0, "blind: the worker tried the list endpoint before resending")
    double.config(delay_ms=0, rules=[])


t.done()
