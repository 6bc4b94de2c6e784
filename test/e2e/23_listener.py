#!/usr/bin/env python3
"""End-to-end: the webhook listener under slow clients, its timeouts, its
restart after pg_terminate_backend, and signatures with the default port.

- Five slow clients (source addresses 127.0.0.2-6) open 220 connections
  each, more than the listener's 1,000 in all, and keep them alive by
  sending a header line every 2 s.  The listener keeps at most 50 per
  address and closes the rest at once; meanwhile signed STOP callbacks from
  127.0.0.1 (the "Twilio" here) are all stored and answered well within
  Twilio's 15 s.
- A connection that sends nothing is closed after about 10 s.
- After pg_terminate_backend the listener comes back (a new pid) and
  accepts callbacks again.
- With webhook_public_url written with ":443", a callback signed by
  twilio-node over the URL without the port is accepted, and the other
  way round.
"""

import http.client
import resource
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH_TOKEN, Signer, Tap, free_port, start, wait_until  # noqa: E402

PUBLIC = "https://hooks.example.com/sms"
SLOW_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 7)]
SLOW_PER_ADDRESS = 220
PER_CLIENT_LIMIT = 50

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

t = Tap()
signer = Signer()
PORT = free_port()
pg, double = start(settings={"twilio_outbox.webhook_listen": f"127.0.0.1:{PORT}",
                             "twilio_outbox.webhook_public_url": PUBLIC})


def post(path, params, sign_url=None, timeout=20):
    """POST a callback signed by twilio-node; (status or None, seconds)."""
    signature = signer.sign(AUTH_TOKEN, sign_url or PUBLIC + path, params)
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        conn.request("POST", path, body=urllib.parse.urlencode(params), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        return conn.getresponse().status, time.monotonic() - began
    except OSError:
        return None, time.monotonic() - began
    finally:
        conn.close()


def listener_pid():
    v = pg.sql_value("SELECT listener_pid FROM twilio_webhook_stats")
    return int(v) if v else None


def stored(sid):
    return pg.sql_value("SELECT count(*) FROM twilio_inbox WHERE params->>'MessageSid' = :'p1'", sid)


def is_open(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


t.ok(wait_until(lambda: post("/twilio/status", {"MessageSid": "SM" + "0" * 32,
                                                  "MessageStatus": "sent"})[0] == 200, 20, 0.2),
     "the listener answers", pg.log_tail)


@t.case("slow clients cannot keep signed callbacks out")
def slow_clients():
    socks = {a: [] for a in SLOW_ADDRESSES}
    for address in SLOW_ADDRESSES:
        for _ in range(SLOW_PER_ADDRESS):
            s = socket.socket()
            s.settimeout(5)
            s.bind((address, 0))
            try:
                s.connect(("127.0.0.1", PORT))
                s.sendall(b"POST /twilio/inbound HTTP/1.1\r\nHost: slow\r\n")
            except OSError:
                pass
            socks[address].append(s)
    stop = threading.Event()

    def trickle():
        while not stop.wait(2):
            for group in socks.values():
                for s in group:
                    try:
                        s.send(b"X-Slow: 1\r\n", socket.MSG_DONTWAIT)
                    except OSError:
                        pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(1)  # let the listener accept and refuse (nothing below depends on it)
        results = []
        for i in range(20):
            sid = f"SM{i + 1:032d}"
            results.append((sid, post("/twilio/inbound", {"MessageSid": sid, "From": f"+1415555{i:04d}",
                                                           "To": "+15005550100", "Body": "STOP"})))
        codes = [r[1][0] for r in results]
        slowest = max(r[1][1] for r in results)
        t.eq(codes, [200] * 20, "20 signed STOP callbacks are answered 200 while the slow clients wait")
        t.ok(slowest < 5, f"each within {slowest:.2f} s (Twilio gives up after 15 s)")
        t.ok(all(stored(sid) == "1" for sid, _ in results), "and each is stored")
        held = {a: sum(is_open(s) for s in group) for a, group in socks.items()}
        t.diag(f"slow connections still open per address: {held}; slowest callback {slowest:.3f} s")
        t.ok(all(n <= PER_CLIENT_LIMIT for n in held.values()),
             f"at most {PER_CLIENT_LIMIT} connections are kept per client address", repr(held))
        t.ok(all(n > 0 for n in held.values()), "but each slow client keeps some", repr(held))
    finally:
        stop.set()
        thread.join(5)
        for group in socks.values():
            for s in group:
                s.close()


@t.case("an idle connection is closed after about 10 s")
def idle():
    s = socket.socket()
    s.bind(("127.0.0.7", 0))
    s.connect(("127.0.0.1", PORT))
    s.settimeout(25)
    began = time.monotonic()
    try:
        data = s.recv(1)
    except socket.timeout:
        data = None
    except OSError:
        data = b""
    waited = time.monotonic() - began
    s.close()
    t.ok(data == b"" and 8 <= waited <= 14, f"closed after {waited:.1f} s", repr(data))


@t.case("the listener comes back after pg_terminate_backend")
def restart():
    pid = listener_pid()
    t.ok(pid, "the listener runs", repr(pid))
    t.eq(pg.sql_value("SELECT pg_terminate_backend(:'p1')", pid), "t", "pg_terminate_backend")
    back = wait_until(lambda: (listener_pid() or pid) != pid, 40, 0.2)
    t.ok(back, "a new listener starts (bgw_restart_time is 10 s)", pg.log_tail)
    got = wait_until(lambda: post("/twilio/status", {"MessageSid": "SM" + "9" * 32,
                                                       "MessageStatus": "delivered"})[0] == 200, 20, 0.2)
    t.ok(got, "and accepts callbacks", pg.log_tail)


@t.case("a public URL with :443 accepts signatures made without it, and the other way round")
def default_port():
    params = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "sent"}
    pg.reload(**{"twilio_outbox.webhook_public_url": "https://hooks.example.com:443/sms"})
    ok = wait_until(lambda: post("/twilio/status", params,
                                 sign_url="https://hooks.example.com/sms/twilio/status")[0] == 200, 10, 0.2)
    t.ok(ok, "configured with :443, signed without")
    pg.reload(**{"twilio_outbox.webhook_public_url": "https://hooks.example.com/sms"})
    params = dict(params, MessageStatus="delivered")
    ok = wait_until(lambda: post("/twilio/status", params,
                                 sign_url="https://hooks.example.com:443/sms/twilio/status")[0] == 200, 10, 0.2)
    t.ok(ok, "configured without, signed with :443")
    params = dict(params, MessageStatus="read")
    t.eq(post("/twilio/status", params, sign_url="https://hooks.example.com:8443/sms/twilio/status")[0],
         403, "signed with another port: 403")


t.done()
