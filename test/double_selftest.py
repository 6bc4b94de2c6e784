#!/usr/bin/env python3
"""Self-test of test/twilio_double.py (python3 stdlib only).

Starts the double on a free 127.0.0.1 port, exercises every feature, prints
one "ok N - name" / "not ok N - name: reason" line per test and finally
"N passed, N failed". Exits non-zero when a test fails.
"""

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

DOUBLE = Path(__file__).with_name("twilio_double.py")
ACCOUNT, TOKEN = "AC" + "a" * 32, "test-token"
KEY, SECRET = "SK" + "b" * 32, "key-secret"
SERVICE = "MG" + "c" * 32
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
FORM = "application/x-www-form-urlencoded"
TO_A, TO_B, FROM_1, FROM_2 = "+15005550006", "+15005550007", "+15005550001", "+15005550002"
PORT = None
TESTS = []


# -- helpers ---------------------------------------------------------------

def test(violations_ok=False):
    def register(fn):
        TESTS.append((fn, violations_ok))
        return fn
    return register


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(method, path, body=None, headers=None, conn=None):
    """One HTTP exchange; returns (status, headers, parsed JSON body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, json.loads(data) if data else None
    finally:
        if own:
            conn.close()


def send(fields, auth=(ACCOUNT, TOKEN), ctype=FORM, path=MESSAGES, conn=None):
    pairs = list(fields.items()) if isinstance(fields, dict) else fields
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = basic(*auth)
    return request("POST", path, urllib.parse.urlencode(pairs), headers, conn)


def sms(to=TO_A, sender=FROM_1, body="hello", **extra):
    return send(dict({"To": to, "From": sender, "Body": body}, **extra))


def listing(auth=(ACCOUNT, TOKEN), **query):
    path = MESSAGES + ("?" + urllib.parse.urlencode(query) if query else "")
    return request("GET", path, headers={"Authorization": basic(*auth)})


def control(name, payload=None):
    method = "GET" if payload is None and name not in ("reset",) else "POST"
    body = json.dumps(payload).encode() if payload is not None else None
    return request(method, "/_control/" + name, body, {"Content-Type": "application/json"})


def configure(**cfg):
    status, _, body = control("config", cfg)
    assert status == 200, body
    return body


def stats():
    return control("stats")[2]


def records(since=0):
    return control(f"requests?since={since}")[2]["requests"]


def expect_error(result, status, code):
    got_status, _, body = result
    assert got_status == status, f"expected {status}, got {got_status} {body}"
    assert body["code"] == code, f"expected code {code}, got {body}"
    assert body["status"] == status and isinstance(body["message"], str), body
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}", body


def settled_stats():
    """Stats once no request is in flight (in_flight drops just after the answer)."""
    deadline = time.monotonic() + 2
    while (s := stats())["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return s


def parallel(fn, n):
    results = [None] * n

    def run(i):
        results[i] = fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- tests -----------------------------------------------------------------

@test()
def health():
    assert control("health")[:1] == (200,)
    assert control("health")[2] == {"ok": True}
    status, _, body = request("GET", "/_control/nope")
    assert status == 404 and "error" in body


@test()
def create_sms():
    status, headers, msg = sms(body="hi + there & more=1")
    assert status == 201, msg
    assert headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"SM[0-9a-f]{32}", msg["sid"]), msg["sid"]
    expected = {"account_sid": ACCOUNT, "to": TO_A, "from": FROM_1, "status": "queued",
                "body": "hi + there & more=1", "num_segments": "1", "num_media": "0",
                "direction": "outbound-api", "api_version": "2010-04-01", "price": None,
                "error_code": None, "error_message": None, "messaging_service_sid": None,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{msg['sid']}.json"}
    assert {k: msg[k] for k in expected} == expected, msg
    assert msg["subresource_uris"]["media"].endswith(f"/Messages/{msg['sid']}/Media.json")
    for key in ("date_created", "date_updated", "date_sent"):
        assert msg[key].endswith(" +0000"), msg[key]
        age = datetime.now(timezone.utc) - parsedate_to_datetime(msg[key])
        assert abs(age.total_seconds()) < 5, msg[key]
    rec = records()[-1]
    assert rec["form"] == [["To", TO_A], ["From", FROM_1], ["Body", "hi + there & more=1"]]
    assert (rec["status"], rec["sid"], rec["auth_user"]) == (201, msg["sid"], ACCOUNT), rec
    assert rec["kind"] == "messages_create" and rec["dropped"] is False


@test()
def create_mms_with_service():
    status, _, msg = send([("To", TO_A), ("MessagingServiceSid", SERVICE),
                           ("MediaUrl", "https://example.com/a.png"),
                           ("MediaUrl", "https://example.com/b.png")])
    assert status == 201, msg
    assert re.fullmatch(r"MM[0-9a-f]{32}", msg["sid"]), msg["sid"]
    got = (msg["num_media"], msg["status"], msg["from"], msg["body"])
    assert got == ("2", "accepted", None, ""), msg
    assert msg["messaging_service_sid"] == SERVICE
    assert [p[1] for p in records()[-1]["form"] if p[0] == "MediaUrl"] == [
        "https://example.com/a.png", "https://example.com/b.png"]


@test()
def segments_and_optional_params():
    cases = [("x" * 160, "1"), ("x" * 161, "2"), ("{" * 80, "1"), ("{" * 81, "2"),
             ("\U0001F600" * 35, "1"), ("\U0001F600" * 36, "2"), ("x" * 1600, "11")]
    for body, segments in cases:
        status, _, msg = sms(body=body)
        assert status == 201 and msg["num_segments"] == segments, (len(body), msg)
    status, _, msg = sms(ValidityPeriod="600", ProvideFeedback="true", RiskCheck="disable",
                         StatusCallback="https://cb.example.com/status?x=1", Attempt="2",
                         SmartEncoded="false", MaxPrice="0.5")
    assert status == 201, msg


@test()
def auth_and_routing():
    good = {"To": TO_A, "From": FROM_1, "Body": "x"}
    expect_error(send(good, auth=(ACCOUNT, "wrong")), 401, 20003)
    status, headers, _ = send(good, auth=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), status
    expect_error(send(good, auth=(KEY, "bad")), 401, 20003)
    status, _, msg = send(good, auth=(KEY, SECRET))
    assert status == 201 and records()[-1]["auth_user"] == KEY, msg
    other = MESSAGES.replace(ACCOUNT, "AC" + "d" * 32)
    expect_error(send(good, path=other), 404, 20404)
    expect_error(request("GET", "/2010-04-01/Accounts/nope.json"), 404, 20404)
    expect_error(request("DELETE", MESSAGES, headers={"Authorization": basic(ACCOUNT, TOKEN)}),
                 405, 20004)
    expect_error(listing(auth=(ACCOUNT, "wrong")), 401, 20003)
    assert [r["status"] for r in records()] == [401, 401, 401, 201, 404, 404, 405, 401]


@test(violations_ok=True)
def validation():
    good = {"To": TO_A, "From": FROM_1, "Body": "x"}
    violations = [
        (dict(good, Foo="1"), 21200), ({"From": FROM_1, "Body": "x"}, 21211),
        (dict(good, To=" 15005550006"), 21211), (dict(good, To=""), 21211),
        (dict(good, From="+1 500"), 21212), ({"To": TO_A, "Body": "x"}, 21603),
        ({"To": TO_A, "From": FROM_1}, 21602), (dict(good, Body=""), 21602),
        ({"To": TO_A, "MessagingServiceSid": SERVICE}, 21619),
        (dict(good, ProvideFeedback="yes"), 21200), (dict(good, ValidityPeriod="1.5"), 21200),
        (dict(good, RiskCheck="maybe"), 21200), (dict(good, MaxPrice="cheap"), 21200),
        (dict(good, MessagingServiceSid="MG123"), 21200),
        (dict(good, StatusCallback="not a url"), 21200),
        (dict(good, SendAt="tomorrow"), 21200),
        (list(good.items()) + [("Body", "again")], 21200),
    ]
    for fields, code in violations:
        expect_error(send(fields), 400, code)
    expect_error(send(good, ctype="application/json"), 400, 21200)
    expect_error(listing(Foo="1"), 400, 21200)
    expect_error(listing(PageSize="0"), 400, 21200)
    expect_error(listing(**{"DateSent>": "someday"}), 400, 21200)
    expected = len(violations) + 4
    found = stats()["spec_violations"]
    assert len(found) == expected, found
    assert {"seq", "code", "message", "path", "method"} <= found[0].keys(), found[0]
    expect_error(sms(body="x" * 1601), 400, 21617)
    expect_error(send([("To", TO_A), ("From", FROM_1)]
                      + [("MediaUrl", f"https://e.com/{i}.png") for i in range(11)]), 400, 21623)
    assert len(stats()["spec_violations"]) == expected
    assert control("messages")[2]["messages"] == []


@test()
def list_filters():
    today = datetime.now(timezone.utc).date()
    sids = [sms(TO_A, FROM_1, "one")[2]["sid"],
            send({"To": TO_B, "MessagingServiceSid": SERVICE, "Body": "two"})[2]["sid"],
            sms(TO_A, FROM_2, "three")[2]["sid"]]
    expect_error(send({"To": TO_A, "From": FROM_1, "Body": "x"}, auth=(ACCOUNT, "no")), 401, 20003)
    status, _, page = listing()
    assert status == 200, page
    assert [m["sid"] for m in page["messages"]] == sids[::-1]
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 50, 0, 2), page
    assert page["next_page_uri"] is None and page["previous_page_uri"] is None
    assert page["uri"].startswith(MESSAGES) and page["first_page_uri"].startswith(MESSAGES)
    first = page["messages"][0]
    assert first["body"] == "three" and first["date_sent"].endswith("+0000")
    assert first["date_created"] == first["date_sent"]

    def sids_for(**query):
        status, _, body = listing(**query)
        assert status == 200, body
        return [m["sid"] for m in body["messages"]]
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    assert sids_for(To=TO_A) == [sids[2], sids[0]]
    assert sids_for(From=FROM_1) == [sids[0]]
    assert sids_for(From=SERVICE) == [sids[1]]
    assert sids_for(To=TO_A, From=FROM_2) == [sids[2]]
    assert sids_for(DateSent=today.isoformat()) == sids[::-1]
    assert sids_for(DateSent=yesterday.isoformat()) == []
    assert sids_for(**{"DateSent>": today.isoformat()}) == sids[::-1]
    assert sids_for(**{"DateSent>": tomorrow.isoformat()}) == []
    assert sids_for(**{"DateSent<": today.isoformat()}) == sids[::-1]
    assert sids_for(**{"DateSent<": yesterday.isoformat()}) == []
    raw = request("GET", f"{MESSAGES}?DateSent%3E={today}&To=%2B15005550006",
                  headers={"Authorization": basic(ACCOUNT, TOKEN)})[2]
    assert [m["sid"] for m in raw["messages"]] == [sids[2], sids[0]], raw
    _, _, page = listing(PageSize=2)
    assert len(page["messages"]) == 2 and page["page_size"] == 2 and page["next_page_uri"]
    _, _, page = listing(PageSize=2, Page=1)
    assert [m["sid"] for m in page["messages"]] == [sids[0]] and page["start"] == 2
    assert page["previous_page_uri"] and page["next_page_uri"] is None
    assert records()[-1]["kind"] == "messages_list"


@test()
def records_stats_keepalive():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    for _ in range(3):
        assert send({"To": TO_A, "From": FROM_1, "Body": "k"}, conn=conn)[0] == 201
    conn.close()
    sms()
    recs = records()
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert len({r["conn"] for r in recs[:3]}) == 1 and recs[3]["conn"] != recs[0]["conn"]
    assert [r["seq"] for r in records(since=2)] == [3, 4]
    assert all(r["time"] > 0 and r["mono"] > 0 and r["duration_ms"] >= 0 for r in recs)
    assert "Authorization" not in recs[0]["headers"] and recs[0]["headers"]["Content-Type"] == FORM
    send({"To": TO_A, "From": FROM_1, "Body": "x"}, auth=(ACCOUNT, "bad"))
    s = settled_stats()
    assert (s["total"], s["created"], s["by_status"]) == (5, 4, {"201": 4, "401": 1}), s
    assert s["in_flight"] == 0 and s["max_in_flight"] >= 1, s
    assert len(control("messages")[2]["messages"]) == 4
    assert control("messages")[2]["messages"][0]["_seq"] == 1
    status, headers, _ = request("POST", MESSAGES, urllib.parse.urlencode(
        {"To": TO_A, "From": FROM_1, "Body": "c"}), {"Content-Type": FORM, "Connection": "close",
                                                    "Authorization": basic(ACCOUNT, TOKEN)})
    assert status == 201 and headers["Connection"] == "close"
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    chunks = iter([b"To=%2B15005550006&From=%2B1500", b"5550001&Body=chunked"])
    conn.request("POST", MESSAGES, body=chunks, encode_chunked=True,
                 headers={"Content-Type": FORM, "Authorization": basic(ACCOUNT, TOKEN)})
    resp = conn.getresponse()
    assert resp.status == 201 and json.loads(resp.read())["body"] == "chunked"
    conn.close()


@test()
def fault_count_match_retry_after():
    configure(rules=[{"match": {"to": TO_B}, "count": 2,
                      "action": {"status": 503, "code": 20503}},
                     {"match": {"from": [FROM_2]}, "count": 1, "status": 429,
                      "retry_after": "1"}])
    assert sms(to=TO_A)[0] == 201
    expect_error(sms(to=TO_B), 503, 20503)
    expect_error(sms(to=TO_B), 503, 20503)
    assert sms(to=TO_B)[0] == 201
    result = sms(sender=FROM_2)
    expect_error(result, 429, 20429)
    assert result[1]["Retry-After"] == "1"
    assert sms(sender=FROM_2)[0] == 201
    assert control("config")[2]["rules"] == []
    recs = records()
    assert recs[1]["fault"] == {"status": 503, "code": 20503} and recs[0]["fault"] is None
    assert [r["status"] for r in recs] == [201, 503, 503, 201, 429, 201]
    assert len(control("messages")[2]["messages"]) == 3


@test()
def fault_process_and_drop():
    configure(rules=[{"count": 1, "action": {"status": 500, "code": 20500, "process": True}}])
    expect_error(sms(body="lost answer"), 500, 20500)
    sid = records()[-1]["sid"]
    assert sid and [m["sid"] for m in listing()[2]["messages"]] == [sid]
    configure(add_rules=[{"count": 1, "action": {"drop": True}},
                         {"count": 1, "action": {"drop": True, "process": True}}])
    for expect_accepted in (False, True):
        try:
            sms(body="dropped")
            raise AssertionError("expected a dropped connection")
        except (http.client.RemoteDisconnected, ConnectionError):
            pass
        rec = records()[-1]
        assert rec["dropped"] is True and rec["status"] is None, rec
        assert bool(rec["sid"]) == expect_accepted, rec
    assert len(listing()[2]["messages"]) == 2
    assert sms()[0] == 201


@test()
def delays():
    configure(rules=[{"count": 1, "action": {"delay_ms": 400}}])
    start = time.monotonic()
    assert sms()[0] == 201 and time.monotonic() - start >= 0.4
    start = time.monotonic()
    assert sms()[0] == 201 and time.monotonic() - start < 0.3
    configure(rules=[{"count": 1, "action": {"delay_ms": 200, "status": 503}}])
    start = time.monotonic()
    expect_error(sms(), 503, 20503)
    assert time.monotonic() - start >= 0.2
    configure(delay_ms=400)
    start = time.monotonic()
    assert sms()[0] == 201 and time.monotonic() - start >= 0.4
    start = time.monotonic()
    assert listing()[0] == 200 and time.monotonic() - start < 0.3


@test()
def probability_seed_and_expiry():
    def pattern():
        control("reset")
        configure(seed=42, rules=[{"probability": 0.5, "action": {"status": 503}}])
        return [sms()[0] for _ in range(20)]
    first, second = pattern(), pattern()
    assert first == second and {201, 503} == set(first), first
    control("reset")
    configure(rules=[{"duration_s": 0.3, "action": {"status": 503}},
                     {"until": time.time() - 1, "action": {"status": 500}}])
    expect_error(sms(), 503, 20503)
    time.sleep(0.4)
    assert sms()[0] == 201 and control("config")[2]["rules"] == []


@test()
def list_faults():
    configure(rules=[{"match": {"path": "messages_list"}, "count": 1,
                      "action": {"status": 503, "code": 20503}}])
    assert sms()[0] == 201
    expect_error(listing(), 503, 20503)
    assert listing()[0] == 200


@test()
def config_errors():
    for bad in ({"nope": 1}, {"delay_ms": "x"}, {"rules": [{"action": {}}]},
                {"rules": [{"status": 503, "bogus": 1}]}, {"rules": [{"count": 0, "drop": True}]},
                {"add_rules": [{"match": {"body": "x"}, "drop": True}]}, {"rules": ["x"]},
                {"rules": [{"match": {"path": "create"}, "drop": True}]},
                {"rules": [{"probability": 2, "drop": True}]}):
        status, _, body = control("config", bad)
        assert status == 400 and "error" in body, (bad, body)
    status, _, body = request("POST", "/_control/config", b"{not json")
    assert status == 400, body
    assert control("config")[2] == {"settings": {
        "delay_ms": 0, "account_concurrency": None, "sender_mps": {}, "sender_burst": 1,
        "retry_after": None, "seed": 0, "queued_for_s": 0, "sender_queue_limit": None},
        "rules": []}


@test()
def sender_rate_limit():
    configure(sender_mps={FROM_1: 2}, retry_after="1")
    assert sms(sender=FROM_1)[0] == 201
    result = sms(sender=FROM_1)
    expect_error(result, 429, 20429)
    assert result[1]["Retry-After"] == "1"
    assert [sms(sender=FROM_2)[0] for _ in range(3)] == [201] * 3
    time.sleep(0.55)
    assert sms(sender=FROM_1)[0] == 201
    configure(sender_mps={"*": 1}, sender_burst=2)
    assert [sms(sender=FROM_2)[0] for _ in range(3)] == [201, 201, 429]
    fields = {"To": TO_A, "MessagingServiceSid": SERVICE, "Body": "x"}
    assert [send(fields)[0] for _ in range(3)] == [201, 201, 429]


@test()
def sender_queue_full():
    # Twilio queues a sender's messages over its rate; a full queue is 400/21611
    configure(sender_mps={FROM_1: 1}, sender_queue_limit=3)
    assert [sms(sender=FROM_1)[0] for _ in range(3)] == [201] * 3
    expect_error(sms(sender=FROM_1), 400, 21611)
    assert sms(sender=FROM_2)[0] == 201
    time.sleep(1.1)
    assert sms(sender=FROM_1)[0] == 201


@test()
def queued_messages_and_paging():
    configure(queued_for_s=1.5)
    created = sms(TO_B, FROM_1, "waits in the queue")[2]
    assert created["date_sent"] is None and created["status"] == "queued", created
    today = datetime.now(timezone.utc).date().isoformat()
    status, _, page = listing(To=TO_B)
    assert [m["sid"] for m in page["messages"]] == [created["sid"]]
    assert page["messages"][0]["date_sent"] is None
    # DateSent filters on date_sent, which a queued message does not have
    assert listing(To=TO_B, DateSent=today)[2]["messages"] == []
    time.sleep(1.6)
    listed = listing(To=TO_B, DateSent=today)[2]["messages"]
    assert [m["status"] for m in listed] == ["sent"] and listed[0]["date_sent"], listed
    # a busy recipient: seeded messages, paged with PageToken, stable under new ones
    seeded = control("seed", {"to": TO_B, "from": FROM_1, "body": "other", "count": 7})[2]["sids"]
    _, _, first = listing(To=TO_B, PageSize=3)
    assert [m["sid"] for m in first["messages"]] == seeded[::-1][:3]
    assert "PageToken=PA" in first["next_page_uri"], first
    sms(TO_B, FROM_1, "newest")
    nxt = request("GET", first["next_page_uri"], headers={"Authorization": basic(ACCOUNT, TOKEN)})[2]
    assert [m["sid"] for m in nxt["messages"]] == seeded[::-1][3:6], nxt
    pages, uri = 0, first["next_page_uri"]
    while uri:
        body = request("GET", uri, headers={"Authorization": basic(ACCOUNT, TOKEN)})[2]
        pages, uri = pages + 1, body["next_page_uri"]
    assert pages == 2 and body["messages"][-1]["sid"] == created["sid"], body
    # a template is listed with its rendered text; every answer says how many were in flight
    status, headers, tmpl = send({"To": TO_B, "From": FROM_1, "ContentSid": "HX" + "b" * 32})
    assert status == 201 and tmpl["body"].startswith("Rendered HX"), tmpl
    assert headers["Twilio-Concurrent-Requests"] == "1", headers


@test()
def account_concurrency():
    configure(account_concurrency=2, delay_ms=500)
    slow = [threading.Thread(target=sms) for _ in range(2)]
    for t in slow:
        t.start()
    deadline = time.monotonic() + 5
    while stats()["in_flight"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    expect_error(sms(), 429, 20429)
    assert time.monotonic() - start < 0.4
    for t in slow:
        t.join()
    assert sms()[0] == 201
    s = settled_stats()
    assert s["by_status"] == {"201": 3, "429": 1} and s["max_in_flight"] >= 3, s


@test()
def hundred_connections():
    configure(delay_ms=1000)
    ready = threading.Barrier(100)

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        conn.connect()
        ready.wait()
        fields = {"To": f"+1500555{i:04d}", "From": FROM_1, "Body": "x"}
        try:
            return send(fields, conn=conn)[0]
        finally:
            conn.close()
    start = time.monotonic()
    results = parallel(one, 100)
    elapsed = time.monotonic() - start
    assert results == [201] * 100, results
    s = settled_stats()
    assert s["created"] == 100 and s["max_in_flight"] >= 90, s
    assert elapsed < 5, elapsed
    assert len(listing(PageSize=1000)[2]["messages"]) == 100


@test()
def reset_keeps_credentials():
    configure(auth_token="new-token", delay_ms=10, rules=[{"drop": True, "match": {"to": TO_B}}])
    expect_error(sms(), 401, 20003)
    assert send({"To": TO_A, "From": FROM_1, "Body": "x"}, auth=(ACCOUNT, "new-token"))[0] == 201
    assert control("reset")[0] == 200
    assert records() == [] and control("messages")[2]["messages"] == []
    config = control("config")[2]
    assert config["rules"] == [] and config["settings"]["delay_ms"] == 0, config
    assert send({"To": TO_B, "From": FROM_1, "Body": "x"}, auth=(ACCOUNT, "new-token"))[0] == 201
    configure(auth_token=TOKEN)


# -- runner ----------------------------------------------------------------

def start_double(tmp):
    port_file = os.path.join(tmp, "port")
    proc = subprocess.Popen([sys.executable, str(DOUBLE), "--port", "0", "--port-file", port_file,
                             "--api-key-sid", KEY, "--api-key-secret", SECRET])
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("twilio_double.py did not start")
        time.sleep(0.02)
    with open(port_file) as f:
        return proc, int(f.read())


def run_test(fn, violations_ok):
    control("reset")
    fn()
    if not violations_ok:
        found = stats()["spec_violations"]
        assert found == [], f"unexpected spec violations: {found}"


def main():
    global PORT
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, PORT = start_double(tmp)
        try:
            for number, (fn, violations_ok) in enumerate(TESTS, 1):
                try:
                    run_test(fn, violations_ok)
                    print(f"ok {number} - {fn.__name__}", flush=True)
                    passed += 1
                except Exception as exc:  # report every failure, keep going
                    print(f"not ok {number} - {fn.__name__}: {type(exc).__name__}: {exc}",
                          flush=True)
                    failed += 1
            proc.send_signal(signal.SIGTERM)
            try:
                clean = proc.wait(timeout=5) == 0
            except subprocess.TimeoutExpired:
                clean = False
            number = len(TESTS) + 1
            print(f"{'ok' if clean else 'not ok'} {number} - sigterm_stops_cleanly", flush=True)
            passed, failed = passed + clean, failed + (not clean)
        finally:
            if proc.poll() is None:
                proc.kill()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
