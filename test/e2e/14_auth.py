#!/usr/bin/env python3
"""Chaos: Twilio refuses the credentials for 10 s, then accepts them again.

While the double answers 401/20003 (a rule with duration_s 10) the worker
enters state 'auth_failed', logs exactly one WARNING about the refused
credentials, and sends only a handful of probes with backoff (not one
request per queued row); the refused rows are queued again without spending
an attempt.  Once the credentials work again everything is sent, without a
restart: nothing failed, every row has attempts = 1, none lost, none twice,
no attempt before its next_attempt_at.
"""

import collections
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap  # noqa: E402
import chaos  # noqa: E402

N = 50
MAX_CONCURRENCY = 8
OUTAGE_S = 10

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=MAX_CONCURRENCY)
pg.add_pool("auth", "+15005551401", mps=100, burst=10)


@t.case("401/20003 for 10 s, then fixed")
def outage():
    pid = chaos.worker_pid(pg)
    log_offset = len(pg.log_text())
    states = chaos.Sampler(lambda: pg.sql_value("SELECT state FROM twilio_worker_status",
                                                timeout=10), 0.1)
    pids = chaos.Sampler(lambda: chaos.worker_pid(pg), 0.5)
    double.config(rules=[{"duration_s": OUTAGE_S, "status": 401, "code": 20003,
                          "message": "Authenticate"}])
    rule_end = time.time() + OUTAGE_S
    ids = chaos.enqueue_series(pg, N, "auth", "+1415140", "auth outage ")
    done = chaos.wait_terminal(pg, ids, OUTAGE_S + 60)
    states.stop()
    pids.stop()
    t.ok(done, f"all {N} rows finished within {OUTAGE_S + 60} s", pg.diagnose)
    reqs = double.requests(create_only=False)
    chaos.check_final(t, pg, double, ids, {"sent": N}, "auth", requests=reqs)

    rowmap = chaos.rows(pg, ids)
    t.eq(collections.Counter(r["attempts"] for r in rowmap.values()), {1: N},
         "attempts were not burned: every row ends with attempts = 1")
    refused = [r for r in reqs if r["status"] == 401]
    during = [r for r in reqs if r["time"] < rule_end]
    t.diag(f"requests during the {OUTAGE_S} s outage: {len(during)} "
           f"({len(refused)} answered 401); total requests {len(reqs)}")
    t.ok(refused, "the double refused some requests with 401")
    bound = MAX_CONCURRENCY + 6
    t.ok(len(during) <= bound, f"only a handful of requests during the outage "
         f"({len(during)} <= max_concurrency + 6 = {bound}): probes, not a flood")
    probes = sorted(r["time"] for r in refused)
    if probes:
        gaps = [round(b - a, 2) for a, b in zip(probes, probes[1:]) if b - a > 0.2]
        t.diag(f"gaps between refused requests (> 0.2 s): {gaps}")
    firsts = [r["time"] for r in reqs if r["status"] == 201]
    if firsts:
        t.diag(f"first 201 came {min(firsts) - rule_end:.1f} s after the credentials "
               f"worked again")
    t.ok(firsts and min(firsts) - rule_end < 20,
         "sending resumed by itself within 20 s of the credentials working again")

    seen_states = collections.Counter(s for _, s in states.samples)
    t.diag(f"worker states seen: {dict(seen_states)}")
    t.ok(seen_states.get("auth_failed", 0) > 0,
         "twilio_worker_status.state was 'auth_failed' during the outage")
    t.ok(all(s != "auth_failed" for when, s in states.samples if when > max(firsts or [0]) + 1),
         "... and not any more once sending resumed")
    seen_pids = {p for _, p in pids.samples}
    t.eq(seen_pids | {chaos.worker_pid(pg)}, {pid}, "no worker restart (the same pid throughout)")

    log = pg.log_text()[log_offset:]
    warnings = [line for line in log.splitlines()
                if "WARNING" in line and re.search(r"credential", line, re.I)]
    t.eq(len(warnings), 1, "exactly one WARNING about the refused credentials in the log",
         "\n".join(warnings))
    t.ok("test-token" not in log, "the auth token is not logged")
    failed = [r for r in rowmap.values() if r["status"] == "failed"]
    t.eq(failed, [], "nothing ended failed")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


t.done()
