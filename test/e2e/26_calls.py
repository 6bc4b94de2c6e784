#!/usr/bin/env python3
"""End-to-end: voice calls through the same outbox.

(a) Pacing: calls are placed at twilio_outbox.calls_per_second over the
    whole account (two call pools share one bucket), 5 and then 1 per
    second, while messages of another pool flow beside them at their own
    rate; achieved CPS / configured is printed, and no 1-s window holds more
    than ceil(cps) + 1 calls.
(b) Faults: calls answered 500, 502 or 504 after Twilio created them, or
    whose connection dropped, with or without a call created, or 503: all
    are placed, each number is called exactly once (the ambiguous ones are
    looked up in the Calls list), none before its next_attempt_at.
(c) kill -9 of the worker while calls are in flight: every call is placed
    exactly once.
(d) Call status callbacks, signed, through twilio_ingest_callback, out of
    order: applied in a call's order (queued < initiated < ringing <
    in-progress < final), a final one never overwritten, CallDuration and
    AnsweredBy kept.
(e) twilio_cancel of a call Twilio holds cancels it at Twilio (POST
    Calls/{sid}.json Status=canceled); one that was answered meanwhile is
    not, and last_error says so.
(f) Opt-outs are SMS STOPs: a number in twilio_opt_outs still gets its call.
"""

import collections
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH_TOKEN, Signer, Tap, form, wait_until  # noqa: E402
import chaos  # noqa: E402

PUBLIC = "https://hooks.example.com"
t = Tap()
pg, double = chaos.start_chaos(max_concurrency=20)
pg.reload(**{"twilio_outbox.lookup_settle_ms": 300,
             "twilio_outbox.webhook_public_url": PUBLIC})
pg.add_pool("calls_a", "+15005552601", mps=100, burst=10)
pg.add_pool("calls_b", "+15005552602", mps=100, burst=10)
pg.add_pool("texts", "+15005552603", mps=50, burst=5)
TWIML = "<Response><Say>Your appointment is tomorrow at nine</Say></Response>"


def since_now():
    return max((r["seq"] for r in double.requests(create_only=False)), default=0)


def enqueue_calls(n, pool, prefix, extra=""):
    return [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue_call(:'p1' || lpad(i::text, 4, '0'), :'p2', pool => :'p3'"
        + extra + ") FROM generate_series(1, :'p4'::int) i", prefix, TWIML, pool, n)]


def set_cps(cps):
    pg.reload(**{"twilio_outbox.calls_per_second": cps})
    wait_until(lambda: float(pg.sql_value("SHOW twilio_outbox.calls_per_second")) == cps, 5)


def calls_by_to(reqs):
    out = collections.Counter()
    for r in reqs:
        if r["kind"] == "calls_create" and r["sid"]:
            out[form(r)["To"]] += 1
    return out


@t.case("(a) calls paced at calls_per_second, 5 then 1, with messages beside")
def pacing():
    for cps, n in ((5, 30), (1, 8)):
        set_cps(cps)
        time.sleep(1.2)             # the bucket picks the rate up at the next maintenance
        seq0 = since_now()
        ids = enqueue_calls(n // 2, "calls_a", f"+1415260{cps}") + \
            enqueue_calls(n - n // 2, "calls_b", f"+1415261{cps}")
        texts = chaos.enqueue_series(pg, 50, "texts", f"+1415262{cps}", "beside the calls ")
        t.ok(pg.wait_terminal(ids + texts, n / cps + 20), f"cps {cps}: all finished", pg.diagnose)
        reqs = double.requests(since=seq0, create_only=False)
        calls = sorted(r["time"] for r in reqs if r["kind"] == "calls_create" and r["status"] == 201)
        msgs = sorted(r["time"] for r in reqs if r["kind"] == "messages_create"
                      and r["status"] == 201)
        t.eq(len(calls), n, f"cps {cps}: {n} calls placed")
        achieved = (len(calls) - 1) / (calls[-1] - calls[0]) if len(calls) > 1 else 0
        worst = max(sum(1 for x in calls if s <= x < s + 1.0) for s in calls)
        t.diag(f"cps {cps}: achieved {achieved:.3f} calls/s = {achieved / cps:.3f} of "
               f"calls_per_second; busiest 1-s window {worst}; messages beside: {len(msgs)} in "
               f"{msgs[-1] - msgs[0]:.1f} s")
        t.ok(0.9 <= achieved / cps <= 1.05, f"cps {cps}: calls go at calls_per_second over both "
             f"pools ({achieved:.3f}/s)")
        t.ok(worst <= math.ceil(cps) + 1, f"cps {cps}: at most ceil(cps) + 1 calls in any 1 s "
             f"({worst})")
        t.ok(len(msgs) == 50 and msgs[-1] - msgs[0] < 50 / 50 + 1.5,
             f"cps {cps}: messages are not held up by the calls' rate")
    set_cps(20)


@t.case("(b) ambiguous and failed call attempts: each number called once")
def faults():
    seq0 = since_now()
    double.config(seed=26, rules=[
        {"match": {"path": "calls_create"}, "count": 3, "probability": 0.2, "status": 500,
         "code": 20500, "process": True},
        {"match": {"path": "calls_create"}, "count": 3, "probability": 0.2, "status": 504,
         "code": 20500, "process": True},
        {"match": {"path": "calls_create"}, "count": 3, "probability": 0.2, "drop": True,
         "process": True},
        {"match": {"path": "calls_create"}, "count": 3, "probability": 0.2, "drop": True},
        {"match": {"path": "calls_create"}, "count": 3, "probability": 0.2, "status": 503,
         "code": 20503},
    ])
    ids = enqueue_calls(40, "calls_a", "+1415263")
    t.ok(pg.wait_terminal(ids, 60), "all 40 calls finished", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    faulted = collections.Counter((r["fault"] or {}).get("status", "drop") for r in reqs
                                  if r["kind"] == "calls_create" and r["fault"])
    t.diag(f"faults: {dict(faulted)}; lookups: "
           f"{sum(1 for r in reqs if r['kind'] == 'calls_list')}")
    t.eq(pg.statuses(ids), {"sent": 40}, "all are sent")
    per_to = calls_by_to(reqs)
    t.eq(sorted(to for to, n in per_to.items() if n != 1), [], "every number was called once")
    t.eq(len(per_to), 40, "... all 40 of them")
    rows = chaos.rows(pg, ids)
    created = {form(r)["To"]: r["sid"] for r in reqs if r["kind"] == "calls_create" and r["sid"]}
    t.eq(sorted(i for i, r in rows.items() if r["twilio_sid"] != created.get(r["to_number"])), [],
         "each row holds the sid of its call")
    early, checked = chaos.early_requests(chaos.history(pg, ids), reqs,
                                          {r["to_number"]: i for i, r in rows.items()})
    t.eq(early[:5], [], f"no request before its next_attempt_at ({checked} checked)")
    double.config(rules=[])


@t.case("(c) kill -9 of the worker with calls in flight")
def crash():
    seq0 = since_now()
    double.config(delay_ms=300)
    ids = enqueue_calls(60, "calls_b", "+1415264")
    wait_until(lambda: len([r for r in double.requests(since=seq0, create_only=False)
                            if r["kind"] == "calls_create"]) >= 10, 20)
    killed = chaos.kill_worker(pg)
    t.ok(killed, "the worker was killed mid-drain")
    t.ok(chaos.wait_worker(pg, 40, not_pid=killed), "a new worker came back")
    double.config(delay_ms=0)
    t.ok(chaos.wait_terminal(pg, ids, 90), "all 60 calls finished", pg.diagnose)
    reqs = double.requests(since=seq0, create_only=False)
    per_to = calls_by_to(reqs)
    t.eq(sorted(to for to, n in per_to.items() if n != 1), [], "every number was called once")
    t.eq(len(per_to), 60, "... all 60 of them")
    t.eq(chaos.counts(pg, ids), {"sent": 60}, "all are sent")


@t.case("(d) call status callbacks, signed, out of order")
def callbacks():
    signer = Signer()
    i = enqueue_calls(1, "calls_a", "+1415265")[0]
    t.ok(pg.wait_terminal([i], 15), "the call is placed")
    sid = pg.sql_value("SELECT twilio_sid FROM twilio_outbox WHERE id = :'p1'", i)
    url = PUBLIC + "/twilio/status"
    base = {"CallSid": sid, "AccountSid": "AC" + "a" * 32, "From": "+15005552601",
            "To": "+14152650001", "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
    events = [dict(base, CallStatus="ringing"),
              dict(base, CallStatus="completed", CallDuration="37", Duration="1"),
              dict(base, CallStatus="initiated"),
              dict(base, CallStatus="in-progress", AnsweredBy="machine_end_beep")]
    for ev in events:
        ok = pg.sql_value("SELECT twilio_ingest_callback('/twilio/status', :'p1'::jsonb, :'p2', :'p3')",
                          ev, signer.sign(AUTH_TOKEN, url, ev), url)
        t.eq(ok, "t", f"the signed {ev['CallStatus']} callback is accepted")
    got = wait_until(lambda: pg.sql_dicts(
        "SELECT delivery_status, call_duration, answered_by FROM twilio_outbox "
        "WHERE id = :'p1' AND call_duration IS NOT NULL", i), 10)
    t.eq(got and got[0], {"delivery_status": "completed", "call_duration": 37,
                          "answered_by": "machine_end_beep"},
         "the final status stays, with the duration and AnsweredBy")
    stats = pg.sql_dicts("SELECT calls_last_hour, calls_completed, calls_answered_by_machine "
                         "FROM twilio_delivery_stats WHERE pool = 'calls_a'")[0]
    t.ok(stats["calls_completed"] >= 1 and stats["calls_answered_by_machine"] >= 1,
         "twilio_delivery_stats counts the call completed and answered by a machine", repr(stats))


@t.case("(e) twilio_cancel of a call Twilio holds")
def cancel():
    seq0 = since_now()
    a, b = enqueue_calls(2, "calls_a", "+1415266")
    t.ok(pg.wait_terminal([a, b], 15), "both calls are placed (queued at Twilio)")
    sid_b = pg.sql_value("SELECT twilio_sid FROM twilio_outbox WHERE id = :'p1'", b)
    double.control("call_status", {"sid": sid_b, "status": "in-progress"})
    pg.sql("UPDATE twilio_outbox SET delivery_status = 'ringing' WHERE id = :'p1'", b)
    t.eq(pg.sql_value("SELECT twilio_cancel(:'p1')", a), "t", "twilio_cancel says it cancels")
    t.eq(pg.sql_value("SELECT twilio_cancel(:'p1')", b), "t", "... also for the answered one, "
         "whose answer the outbox has not heard of")
    got = wait_until(lambda: pg.sql_dicts(
        "SELECT id, delivery_status, last_error FROM twilio_outbox WHERE id IN (:'p1', :'p2') "
        "AND cancel_requested_at IS NULL ORDER BY id", a, b) if True else None, 10)
    got = {r["id"]: r for r in (got or [])}
    updates = [r for r in double.requests(since=seq0, create_only=False) if r["kind"] == "calls_update"]
    t.eq(len(updates), 2, "the worker asked Twilio to cancel both")
    t.ok(all(form(r).get("Status") == "canceled" for r in updates), "... with Status=canceled")
    t.eq(got.get(a, {}).get("delivery_status"), "canceled", "the queued call is canceled")
    calls = {c["sid"]: c for c in double.control("calls")["calls"]}
    sid_a = pg.sql_value("SELECT twilio_sid FROM twilio_outbox WHERE id = :'p1'", a)
    t.eq(calls[sid_a]["status"], "canceled", "... at Twilio")
    t.ok("did not cancel" in (got.get(b, {}).get("last_error") or ""),
         "the answered call was not, and last_error says so", repr(got.get(b)))
    t.ok(chaos.worker_status(pg)["calls_canceled"] >= 1, "twilio_worker_status.calls_canceled")


@t.case("(f) opt-outs are SMS STOPs: calls still go")
def opt_outs():
    pg.sql("INSERT INTO twilio_opt_outs (phone_number, source) VALUES ('+14152670001', 'test')")
    c = enqueue_calls(1, "calls_a", "+1415267")[0]
    m = pg.enqueue("+14152670001", "a text to someone who sent STOP", pool="texts")
    t.ok(pg.wait_terminal([c, m], 15), "both finished", pg.diagnose)
    got = {r["id"]: r for r in pg.sql_dicts(
        "SELECT id, status, last_error_code FROM twilio_outbox WHERE id IN (:'p1', :'p2')", c, m)}
    t.eq(got[c]["status"], "sent", "the call was placed")
    t.eq((got[m]["status"], got[m]["last_error_code"]), ("failed", 21610), "the text was not sent")


t.done()
