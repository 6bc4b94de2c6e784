#!/usr/bin/env python3
"""Chaos: server errors and lost connections.

Part 1 (the list endpoint works), one drain of 150 messages while the
double answers, in this order: 15 x 503; 10 x connection dropped after the
message was accepted (process=true); 10 x 500 after it was accepted; 10 x
connection dropped before anything was stored (process=false).  Everything
ends sent, nothing lost, nothing twice: the accepted-then-failed ones are
found by the lookup (GET Messages.json) and reconciled, not resent
(twilio_worker_status.reconciled counts them); the dropped-unprocessed ones
are looked up, not found and sent again; the 503s are retried without a
lookup.

Part 3: request_timeout_ms = 1000 while the double takes 1.5 s for the
first request of 5 numbers and stores the message at the end: the attempts
time out (ambiguous), the messages exist half a second later; the list
endpoint works, so the README promises no duplicates.

Part 2: the list endpoint fails (500 on path messages_list) while 10 create
requests are answered 500 after being accepted: the worker falls back to
blind resends (resent_blind > 0) and the duplicates it causes are at most
the number of those ambiguous answers (printed).
"""

import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Tap, form, wait_until  # noqa: E402
import chaos  # noqa: E402

t = Tap()
pg, double = chaos.start_chaos(max_concurrency=8)
pg.add_pool("srv", "+15005551201", mps=100, burst=10)
pg.add_pool("srv2", "+15005551202", mps=100, burst=10)
pg.add_pool("srv3", "+15005551203", mps=100, burst=10)


def faults_by_to(reqs):
    """{to: [fault kind, ...]} for create requests the double faulted."""
    out = collections.defaultdict(list)
    for r in reqs:
        f = r["fault"]
        if r["kind"] != "messages_create" or not f:
            continue
        kind = ("drop" if f.get("drop") else str(f.get("status"))) + \
            ("+process" if f.get("process") else "")
        out[form(r)["To"]].append(kind)
    return out


def pool_sampler(pool):
    def fn():
        got = pg.sql("SELECT extract(epoch FROM paused_until - now()) FROM twilio_pool_status "
                     "WHERE pool = :'p1'", pool, timeout=10)
        return float(got[0][0]) if got and got[0][0] is not None else 0.0
    return chaos.Sampler(fn, 0.2)


@t.case("part 1: 503s, drops and 500s with the list endpoint working")
def part1():
    before = chaos.worker_status(pg)
    double.config(rules=[
        {"count": 15, "status": 503, "code": 20503},
        {"count": 10, "drop": True, "process": True},
        {"count": 10, "status": 500, "code": 20500, "process": True},
        {"count": 10, "drop": True},
    ])
    pauses = pool_sampler("srv")
    began = time.time()
    ids = chaos.enqueue_series(pg, 150, "srv", "+1415120", "server errors ")
    done = chaos.wait_terminal(pg, ids, 150)
    drain = time.time() - began
    held = pauses.stop()
    t.ok(done, "all 150 rows finished within 150 s", pg.diagnose)
    t.diag(f"part 1 drain time: {drain:.1f} s; longest pool pause seen ahead: "
           f"{max((v for _, v in held), default=0):.1f} s")
    reqs = double.requests(create_only=False)
    faults = faults_by_to(reqs)
    applied = collections.Counter(k for ks in faults.values() for k in ks)
    t.diag(f"faults applied: {dict(applied)}")
    t.eq(dict(applied), {"503": 15, "drop+process": 10, "500+process": 10, "drop": 10},
         "the double applied every fault")

    chaos.check_final(t, pg, double, ids, {"sent": 150}, "part 1", requests=reqs)

    rowmap = chaos.rows(pg, ids)
    by_to = {r["to_number"]: r for r in rowmap.values()}
    per_to = collections.defaultdict(list)
    for r in reqs:
        to = chaos.request_to(r)
        if to in by_to:
            per_to[to].append(r)
    processed = {form(r)["To"]: r["sid"] for r in reqs
                 if r["kind"] == "messages_create" and r["fault"] and r["fault"].get("process")}
    t.eq(len(processed), 20, "20 messages were accepted although the answer was lost or a 500")
    not_reconciled = [(to, by_to[to]["twilio_sid"], sid) for to, sid in processed.items()
                      if by_to[to]["twilio_sid"] != sid]
    t.eq(not_reconciled, [], "each of them is sent with the sid of the message accepted "
         "first (reconciled, not resent)")
    posted_again = [to for to in processed
                    if sum(1 for r in per_to[to] if r["kind"] == "messages_create") != 1]
    t.eq(posted_again, [], "... and was never POSTed a second time")
    not_looked_up = [to for to in processed
                     if not any(r["kind"] == "messages_list" for r in per_to[to])]
    t.eq(not_looked_up, [], "... after a lookup (GET Messages.json?To=...)")

    unprocessed = [to for to, ks in faults.items() if "drop" in ks]
    resent_blindly = []
    for to in unprocessed:
        seq = sorted(per_to[to], key=lambda r: r["seq"])
        kinds = [r["kind"] for r in seq]
        i = next(k for k, r in enumerate(seq) if r["fault"] and r["fault"].get("drop"))
        if "messages_list" not in kinds[i + 1:]:
            resent_blindly.append((to, kinds))
    t.eq(resent_blindly, [], "a message whose connection dropped before Twilio stored it is "
         "looked up before it is sent again")
    t.eq(sorted(to for to in unprocessed
                if not any(r["status"] == 201 for r in per_to[to])), [],
         "... and then sent again (201)")
    only_503 = [to for to, ks in faults.items() if set(ks) == {"503"}]
    looked_up_503 = [to for to in only_503
                     if any(r["kind"] == "messages_list" for r in per_to[to])]
    t.eq(looked_up_503, [], "rows that only saw 503s were retried without a lookup "
         "(a 503 is not ambiguous)")

    after = chaos.worker_status(pg)
    reconciled = after["reconciled"] - before["reconciled"]
    blind = after["resent_blind"] - before["resent_blind"]
    t.diag(f"reconciled {reconciled}, resent_blind {blind}, http_5xx "
           f"{after['http_5xx'] - before['http_5xx']}, transport_errors "
           f"{after['transport_errors'] - before['transport_errors']}")
    t.ok(reconciled > 0, "twilio_worker_status.reconciled > 0")
    t.eq(reconciled, 20, "reconciled counts exactly the 20 accepted-but-unanswered messages")
    t.eq(blind, 0, "resent_blind stays 0 while the list endpoint works")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


@t.case("part 2: the list endpoint fails while 500s follow accepted messages")
def part2():
    before = chaos.worker_status(pg)
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    double.config(rules=[
        {"match": {"path": "messages_list"}, "status": 500, "code": 20500},
        {"count": 10, "status": 500, "code": 20500, "process": True},
    ])
    began = time.time()
    ids = chaos.enqueue_series(pg, 40, "srv2", "+1415121", "list failing ")
    done = chaos.wait_terminal(pg, ids, 90)
    drain = time.time() - began
    t.ok(done, "all 40 rows finished within 90 s", pg.diagnose)
    t.diag(f"part 2 drain time: {drain:.1f} s")
    reqs = double.requests(since=seq0, create_only=False)
    ambiguous = sum(1 for r in reqs if r["kind"] == "messages_create" and r["fault"]
                    and r["fault"].get("process"))
    failed_lookups = sum(1 for r in reqs if r["kind"] == "messages_list" and r["status"] == 500)
    t.diag(f"ambiguous answers (500 after acceptance): {ambiguous}; failed lookups: "
           f"{failed_lookups}")
    t.eq(ambiguous, 10, "the double answered 10 accepted messages with 500")
    t.ok(failed_lookups > 0, "the worker tried the (failing) list endpoint first")
    figures = chaos.check_final(t, pg, double, ids, {"sent": 40}, "part 2", max_dups=ambiguous,
                                requests=reqs,
                                dup_note=f" (bound: {ambiguous} ambiguous answers)")
    after = chaos.worker_status(pg)
    blind = after["resent_blind"] - before["resent_blind"]
    t.diag(f"resent_blind {blind}, reconciled {after['reconciled'] - before['reconciled']}, "
           f"duplicates {figures['duplicates']}")
    t.ok(blind > 0, "twilio_worker_status.resent_blind > 0 (blind resends after failed lookups)")
    t.eq(blind, ambiguous, "resent_blind counts one blind resend per ambiguous answer")
    t.eq(double.stats()["spec_violations"], [], "no spec violations")


@t.case("part 3: timeouts; Twilio creates the message after the worker gave up")
def part3():
    # request_timeout_ms 1000; the first request of 5 numbers takes 1.5 s at the double,
    # which stores the message at the end: the worker's attempt times out (ambiguous),
    # the message exists 0.5 s later.  The list endpoint works.
    pg.reload(**{"twilio_outbox.request_timeout_ms": 1000})
    wait_until(lambda: pg.sql_value("SHOW twilio_outbox.request_timeout_ms") == "1s", 5)
    before = chaos.worker_status(pg)
    seq0 = max((r["seq"] for r in double.requests(create_only=False)), default=0)
    slow = [f"+141512200{i:02d}" for i in range(5)]
    double.config(rules=[{"match": {"to": slow}, "count": 5, "delay_ms": 1500}])
    ids = chaos.enqueue_series(pg, 20, "srv3", "+141512200", "timeout ", width=2)
    done = chaos.wait_terminal(pg, ids, 60)
    t.ok(done, "all 20 rows finished within 60 s", pg.diagnose)
    time.sleep(1.0)  # let the late acceptances land before counting
    reqs = double.requests(since=seq0, create_only=False)
    after = chaos.worker_status(pg)
    timeouts = after["transport_errors"] - before["transport_errors"]
    t.diag(f"part 3: timeouts {timeouts}, reconciled "
           f"{after['reconciled'] - before['reconciled']}, resent_blind "
           f"{after['resent_blind'] - before['resent_blind']}")
    t.ok(timeouts >= 5, "the 5 slow attempts timed out in the worker")
    lookups = [(chaos.request_to(r), round(r["time"] - min(x["time"] for x in reqs
                                                              if chaos.request_to(x)
                                                              == chaos.request_to(r)), 2))
               for r in reqs if r["kind"] == "messages_list"]
    t.diag(f"part 3: lookups (To, s after the first attempt): {sorted(lookups)}")
    chaos.check_final(t, pg, double, ids, {"sent": 20}, "part 3 (timeouts)", requests=reqs)
    pg.reload(**{"twilio_outbox.request_timeout_ms": None})
    double.config(rules=[])


t.done()
