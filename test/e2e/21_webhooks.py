#!/usr/bin/env python3
"""End-to-end: the webhook listener (twilio_outbox.webhook_listen) with
signatures made by Twilio's own helper library for node (twilio-node's
getExpectedTwilioSignature, npm-installed into test/webhooks).

Signed status callbacks and inbound messages are acknowledged (inbound with
an empty TwiML <Response/>) and stored; a changed parameter, URL or token, or
no signature, gets 403 and stores nothing; redeliveries (same
I-Twilio-Idempotency-Token, or same MessageSid and MessageStatus) are stored
once, and an inbound message once per MessageSid whether it comes through the
listener or twilio_ingest_callback; out-of-order status callbacks never move
a message backwards; an inbound STOP makes the next message to that number
fail with 21610 without a request at the test double, START undoes it (when it comes more than 15 s
later; right after STOP the opt-out stands); a 21610 answer from the double
puts the number on twilio_opt_outs.
"""

import http.client
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH_TOKEN, Signer, Tap, form, free_port, start, wait_until  # noqa: E402

PUBLIC = "https://hooks.example.com/sms"
t = Tap()
signer = Signer()
PORT = free_port()
pg, double = start(settings={"twilio_outbox.webhook_listen": f"127.0.0.1:{PORT}",
                             "twilio_outbox.webhook_public_url": PUBLIC})
pg.add_pool("hooks", "+15005550100", mps=1000, burst=100)


def post(path, params, signature=None, sign_url=None, token=AUTH_TOKEN, headers=None,
         method="POST"):
    """POST params form-encoded to the listener, signed by twilio-node for
    sign_url (default: the public URL + path) unless a signature is given.
    Returns (status, content type, body)."""
    if signature is None:
        signature = signer.sign(token, sign_url or PUBLIC + path, params)
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not False:
        hdrs["X-Twilio-Signature"] = signature
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request(method, path, body=urllib.parse.urlencode(params), headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def raw_post(path, body, signature):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        return conn.getresponse().status
    finally:
        conn.close()


def inbox_count():
    return int(pg.sql_value("SELECT count(*) FROM twilio_inbox"))


def stats():
    return pg.sql_dicts("SELECT * FROM twilio_webhook_stats")[0]


def listening():
    try:
        return post("/twilio/nothing", {}, signature=False)[0] == 404
    except OSError:
        return False


t.ok(wait_until(listening, 20, 0.1), "the listener answers on its port", pg.log_tail)


@t.case("signatures made by twilio-node are accepted")
def accepted():
    before = inbox_count()
    status = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "sent", "AccountSid": "AC" + "a" * 32,
              "From": "+15005550100", "To": "+14155551212", "ApiVersion": "2010-04-01"}
    got = post("/twilio/status", status)
    t.eq(got[0], 200, "a status callback gets 200")
    inbound = {"MessageSid": "SM" + "1" * 32, "From": "+14155550001", "To": "+15005550100",
               "Body": "hello + goodbye & more = 100% ✓", "NumMedia": "0", "Empty": ""}
    got = post("/twilio/inbound", inbound)
    t.eq(got[0], 200, "an inbound message gets 200")
    t.ok(got[1] and got[1].startswith("text/xml"), "with Content-Type text/xml", repr(got))
    t.eq(got[2], '<?xml version="1.0" encoding="UTF-8"?><Response/>', "and an empty TwiML Response")
    t.eq(inbox_count(), before + 2, "both are stored")
    row = pg.sql_dicts("SELECT kind, params FROM twilio_inbox ORDER BY id DESC LIMIT 1")[0]
    t.eq(row, {"kind": "inbound", "params": inbound}, "the inbound parameters are stored as sent")


@t.case("a changed parameter, URL or token gets 403 and nothing is stored")
def rejected():
    params = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "To": "+14155551212"}
    good = signer.sign(AUTH_TOKEN, PUBLIC + "/twilio/status", params)
    before, rejected_before = inbox_count(), int(stats()["rejected"])
    t.eq(post("/twilio/status", dict(params, To="+14155551213"), signature=good)[0], 403,
         "a changed parameter: 403")
    t.eq(post("/twilio/status", dict(params, Extra="1"), signature=good)[0], 403,
         "an added parameter: 403")
    t.eq(post("/twilio/status", params, sign_url="https://hooks.example.com/other/twilio/status")[0],
         403, "signed for another URL: 403")
    t.eq(post("/twilio/status", params, token="another-token")[0], 403,
         "signed with another token: 403")
    t.eq(post("/twilio/status", params, signature=False)[0], 403, "no signature: 403")
    t.eq(post("/twilio/inbound", params, signature=good)[0], 403,
         "the signature of another path: 403")
    t.eq(inbox_count(), before, "nothing was stored")
    t.eq(int(stats()["rejected"]), rejected_before + 6, "twilio_webhook_stats counts 6 rejected")
    t.eq(post("/twilio/status", params, signature=good)[0], 200, "the unchanged request: 200")
    t.eq(post("/twilio/status", {}, method="GET", signature=False)[0], 405, "GET: 405")
    t.eq(post("/elsewhere", params)[0], 404, "another path: 404")
    t.eq(post("/twilio/status", params, headers={"Content-Type": "application/json"})[0], 415,
         "not form-encoded: 415")
    t.eq(post("/twilio/status", dict(params, Body="x" * 70000))[0], 413, "a 70 kB body: 413")
    t.eq(raw_post("/twilio/status", "MessageSid=%ZZ&MessageStatus=sent", good), 400,
         "a malformed %-escape: 400")
    t.eq(inbox_count(), before + 1, "none of these was stored")


def wait_sent(row_id):
    pg.wait_terminal([row_id], 20)
    return pg.sql_dicts("SELECT status, twilio_sid, delivery_status FROM twilio_outbox "
                        "WHERE id = :'p1'", row_id)[0]


@t.case("redelivered and out-of-order status callbacks")
def delivery():
    row_id = pg.enqueue("+14155550201", "receipt please", pool="hooks")
    row = wait_sent(row_id)
    t.eq(row["status"], "sent", "the message was sent", pg.diagnose)
    sid = row["twilio_sid"]
    base = {"MessageSid": sid, "AccountSid": "AC" + "a" * 32, "To": "+14155550201"}
    before = inbox_count()
    tok = {"I-Twilio-Idempotency-Token": "tok-delivered-1"}
    t.eq(post("/twilio/status", dict(base, MessageStatus="delivered"), headers=tok)[0], 200,
         "delivered: 200")
    t.eq(post("/twilio/status", dict(base, MessageStatus="delivered"), headers=tok)[0], 200,
         "the same delivery again (same idempotency token): 200")
    t.eq(post("/twilio/status", dict(base, MessageStatus="delivered"),
              headers={"I-Twilio-Idempotency-Token": "tok-delivered-2"})[0], 200,
         "delivered again with another token: 200")
    t.eq(post("/twilio/status", dict(base, MessageStatus="sent"))[0], 200,
         "a late 'sent': 200")
    t.eq(inbox_count(), before + 2, "stored once each: delivered and sent")
    dup = pg.sql_dicts("SELECT count(*) AS n FROM twilio_inbox WHERE idempotency_token = 'tok-delivered-1'")
    t.eq(dup[0]["n"], 1, "one row for the idempotency token")
    applied = wait_until(lambda: pg.sql_value(
        "SELECT count(*) FROM twilio_inbox WHERE message_sid = :'p1' AND applied_at IS NULL",
        sid) == "0", 10, 0.1)
    t.ok(applied, "the worker applied them", pg.diagnose)
    got = pg.sql_dicts("SELECT delivery_status, delivered_at IS NOT NULL AS at FROM twilio_outbox "
                       "WHERE id = :'p1'", row_id)[0]
    t.eq(got, {"delivery_status": "delivered", "at": True},
         "delivered, with delivered_at; the late 'sent' did not move it back")
    rates = pg.sql_dicts("SELECT delivered FROM twilio_delivery_stats WHERE pool = 'hooks'")
    t.ok(rates and rates[0]["delivered"] >= 1, "twilio_delivery_stats counts it", repr(rates))
    # a token seen for one callback makes a different callback with it a duplicate too
    t.eq(post("/twilio/status", dict(base, MessageStatus="read"), headers=tok)[0], 200,
         "a callback reusing a stored idempotency token: 200 (duplicate)")
    t.eq(inbox_count(), before + 2, "and not stored")


def opted_out(number):
    return pg.sql_value("SELECT source FROM twilio_opt_outs WHERE phone_number = :'p1'", number)


def requests_to(number):
    return [r for r in double.requests() if form(r).get("To") == number]


@t.case("inbound STOP, then a send to that number; START")
def stop_start():
    number = "+14155550301"
    inbound = {"MessageSid": "SM" + "3" * 32, "From": number, "To": "+15005550100", "Body": " Stop "}
    t.eq(post("/twilio/inbound", inbound)[0], 200, "STOP: 200")
    t.eq(wait_until(lambda: opted_out(number), 10, 0.1), "inbound STOP",
         "the number is on twilio_opt_outs")
    row_id = pg.enqueue(number, "you should not get this", pool="hooks")
    pg.wait_terminal([row_id], 20)
    row = pg.sql_dicts("SELECT status, last_error_code, last_http_status FROM twilio_outbox "
                       "WHERE id = :'p1'", row_id)[0]
    t.eq(row, {"status": "failed", "last_error_code": 21610, "last_http_status": None},
         "the message failed with 21610 and no HTTP status", pg.diagnose)
    t.eq(requests_to(number), [], "no request reached the double")
    # a START less than 15 s after a STOP may have reached Twilio first (the
    # opt-out wins: sql/webhooks.sql); this one is sent a minute later
    start_ = dict(inbound, MessageSid="SM" + "4" * 32, Body="START")
    t.eq(post("/twilio/inbound", start_)[0], 200, "START right after STOP: 200")
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM _twilio_opt_out_keywords "
                                         "WHERE phone_number = :'p1'", number) == "2", 10, 0.1),
         "applied")
    t.eq(opted_out(number), "inbound STOP", "the number stays on the list: the order is not known")
    pg.sql("UPDATE _twilio_opt_out_keywords SET received_at = received_at - interval '1 minute' "
           "WHERE phone_number = :'p1'", number)
    start_ = dict(inbound, MessageSid="SM" + "5" * 32, Body="START")
    t.eq(post("/twilio/inbound", start_)[0], 200, "START a minute after STOP: 200")
    t.ok(wait_until(lambda: opted_out(number) is None, 10, 0.1), "the number is off the list")
    row_id = pg.enqueue(number, "welcome back", pool="hooks")
    t.eq(wait_sent(row_id)["status"], "sent", "the next message is sent", pg.diagnose)
    t.eq(len(requests_to(number)), 1, "with one request")


@t.case("an inbound message is stored once, whichever way in")
def inbound_once():
    msg = {"MessageSid": "SM" + "6" * 32, "From": "+14155550501", "To": "+15005550100", "Body": "hello"}
    before = inbox_count()
    t.eq(post("/twilio/inbound", msg, headers={"I-Twilio-Idempotency-Token": "in-tok-1"})[0], 200,
         "through the listener: 200")
    t.eq(post("/twilio/inbound", msg, headers={"I-Twilio-Idempotency-Token": "in-tok-2"})[0], 200,
         "again with another token: 200")
    t.eq(post("/twilio/inbound", msg)[0], 200, "again without a token: 200")
    url = PUBLIC + "/twilio/inbound"
    got = pg.sql_value("SELECT twilio_ingest_callback('/twilio/inbound', :'p1', :'p2', :'p3', 'in-tok-3')",
                       msg, signer.sign(AUTH_TOKEN, url, msg), url)
    t.eq(got, "t", "through twilio_ingest_callback with a third token: accepted")
    t.eq(inbox_count(), before + 1, "stored once")
    t.ok(wait_until(lambda: pg.sql_value("SELECT count(*) FROM twilio_inbox WHERE applied_at IS NULL "
                                         "AND params->>'MessageSid' = :'p1'", msg["MessageSid"]) == "0",
                    10, 0.1), "and applied")


@t.case("a 21610 answer from Twilio adds the number")
def refused():
    number = "+14155550401"
    double.config(rules=[{"match": {"to": number}, "status": 400, "code": 21610,
                          "message": "Attempt to send to unsubscribed recipient"}])
    row_id = pg.enqueue(number, "refused", pool="hooks")
    pg.wait_terminal([row_id], 20)
    row = pg.sql_dicts("SELECT status, last_error_code FROM twilio_outbox WHERE id = :'p1'",
                       row_id)[0]
    t.eq(row, {"status": "failed", "last_error_code": 21610}, "the message failed with 21610")
    t.eq(opted_out(number), "error 21610", "the number is on twilio_opt_outs")
    double.config(rules=[])
    n = len(requests_to(number))
    row_id = pg.enqueue(number, "again", pool="hooks")
    pg.wait_terminal([row_id], 20)
    t.eq(len(requests_to(number)), n, "the next message to it makes no request")


@t.case("monitoring")
def monitoring():
    s = stats()
    t.eq(s["listen"], f"127.0.0.1:{PORT}", "twilio_webhook_stats shows the address")
    t.ok(s["listener_pid"], "and the listener's pid")
    t.ok(s["accepted"] >= 8 and s["duplicates"] >= 3, "accepted and duplicates are counted",
         repr(s))
    t.eq(s["unapplied"], 2, "only the 2 status callbacks for sids no message has wait",
         repr(s))
    t.ok("auth_token" not in pg.log_text() and AUTH_TOKEN not in pg.log_text(),
         "the server log shows no token")


t.done()
