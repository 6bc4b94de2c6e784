#!/usr/bin/env python3
"""End-to-end: transport security, hostile answers, and the secret.

- TLS peer and host verification are always on: against a local HTTPS
  server with a self-signed certificate, the worker refuses to send without
  twilio_outbox.ca_file and sends with it.
- Hostile answers (10 MB, not JSON, truncated JSON, NUL bytes, a 201
  without a sid, deeply nested JSON) are recorded as errors: no crash (the
  worker keeps its pid), bounded memory, nothing stored that is not UTF-8.
- The auth token, written to postgresql.conf and reloaded, or read from
  twilio_outbox.auth_token_file, appears neither in the server log, nor in
  pg_stat_activity, nor in any process title.  (ALTER SYSTEM cannot set
  it: test/e2e/22_secrets.py.)
"""

import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ACCOUNT_SID, Tap, start, wait_until, workdir  # noqa: E402

SID = "SM" + "0123456789abcdef" * 2
t = Tap()


class Hostile(http.server.BaseHTTPRequestHandler):
    """Answers each To number with a different kind of bad body."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = dict(p.split("=", 1) for p in self.rfile.read(length).decode().split("&"))
        to = form.get("To", "").replace("%2B", "+")
        kind = to[-2:]
        status, body = 201, json.dumps({"sid": SID, "status": "queued"}).encode()
        if kind == "01":
            body = b'{"sid": "' + SID.encode() + b'", "padding": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        elif kind == "02":
            status, body = 500, b"<html><body>Internal error</body></html>"
        elif kind == "03":
            body = b'{"sid": "' + SID.encode()[:20]
        elif kind == "04":
            body = b'{"sid": "SM\x00' + b"0" * 32 + b'", "status": "queued"}'
        elif kind == "05":
            body = b'{"status": "queued", "message": "no sid here"}'
        elif kind == "06":
            body = b"[" * 100000 + b"]" * 100000
        elif kind == "07":
            status, body = 400, b'{"code": 21211, "message": "bad \xff\xfe utf8"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    # The worker opens up to max_concurrency (50) connections at once.  With
    # socketserver's default listen backlog of 5 the kernel drops the rest of
    # the burst (ListenOverflows; SYN cookies), and some of those requests
    # end in "Connection reset by peer" about a second later, transport
    # errors on rows meant to be good.  Enough of them at once open the
    # circuit breaker, which then lets one probe through per cooldown (0.5 s
    # doubling to 10 s): the rows stayed retrying past the wait.
    # test/twilio_double.py listens with the same backlog.
    daemon_threads = True
    request_queue_size = 1024


def serve(handler, tls_context=None):
    server = Server(("127.0.0.1", 0), handler)
    if tls_context:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def unfinished():
    """Diagnostics for rows not yet terminal: when each is due, and the breakers."""
    return "\n".join([pg.diagnose(
        "SELECT id, to_number, status, attempts, unconfirmed, next_attempt_at - now() AS due_in, "
        "last_http_status, last_error FROM twilio_outbox WHERE status NOT IN ('sent', 'failed') "
        "ORDER BY id", limit=30, log_lines=20),
        "pools (pool, in_flight, breaker, paused for): " + repr(pg.sql(
            "SELECT pool, in_flight, breaker, paused_until - now() FROM twilio_pool_status")),
        "account (held, for, requests, lookups, lookup_failures, resent_blind): " + repr(pg.sql(
            "SELECT held, held_until - now(), requests, lookups, lookup_failures, resent_blind "
            "FROM twilio_worker_status"))])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# the hostile server has no Messages list: its ambiguous answers are resent
# without knowing once reconcile_timeout_ms has passed
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                             "twilio_outbox.backoff_max_ms": 200,
                             "twilio_outbox.max_attempts": 2,
                             "twilio_outbox.lookup_settle_ms": 100,
                             "twilio_outbox.reconcile_timeout_ms": 1000})
pg.add_pool("sec", "+15005550901", mps=1000, burst=100)


@t.case("TLS: a self-signed server is refused without ca_file, accepted with it")
def tls():
    d = workdir() / "tls"
    d.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", d / "key.pem", "-out", d / "cert.pem"],
                   check=True, capture_output=True)
    shutil.chown(d / "cert.pem", "postgres")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server = serve(Hostile, ctx)
    url = f"https://localhost:{server.server_address[1]}"
    pg.reload(**{"twilio_outbox.api_base_url": url})

    first = pg.enqueue("+14159010000", "over TLS", pool="sec")
    ok = wait_until(lambda: pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", first)
                    in ("failed",), 15)
    row = pg.sql_dicts("SELECT status, last_http_status, last_error FROM twilio_outbox WHERE id = :'p1'",
                       first)[0]
    t.ok(ok and row["last_http_status"] is None, "without ca_file the request never gets an answer", repr(row))
    t.ok("certificate" in (row["last_error"] or "").lower() or "SSL" in (row["last_error"] or ""),
         "the error names the certificate problem", repr(row["last_error"]))

    pg.reload(**{"twilio_outbox.ca_file": str(d / "cert.pem")})
    second = pg.enqueue("+14159010000", "over TLS, trusted", pool="sec")
    ok = wait_until(lambda: pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", second)
                    == "sent", 15)
    t.ok(ok, "with ca_file naming the certificate, it is sent")
    server.shutdown()
    pg.reload(**{"twilio_outbox.ca_file": None})


@t.case("hostile answers are recorded as errors; the worker survives with bounded memory")
def hostile():
    server = serve(Hostile)
    pg.reload(**{"twilio_outbox.api_base_url": f"http://127.0.0.1:{server.server_address[1]}"})
    pid = pg.worker_pid()
    warm = pg.enqueue_batch([dict(to=f"+141590200{i:02d}", body="warm", pool="sec") for i in range(50, 60)])
    pg.wait_terminal(warm, 20)
    before = rss_kb(pid)
    kinds = {"01": "10 MB answer", "02": "HTML 500", "03": "truncated JSON", "04": "NUL byte in the sid",
             "05": "201 without a sid", "06": "100,000 nested arrays", "07": "invalid UTF-8 message"}
    ids = {}
    for round_ in range(3):
        # between good answers, as a degraded server would give them: all-bad
        # answers would (rightly) open the circuit breaker and slow this test
        # down.  The second attempts (resent blind once the lookups have
        # failed for reconcile_timeout_ms) are all hostile, so the breaker
        # may still open on the last of them, with at most a few rows left.
        batch, keys = [], []
        for k in kinds:
            batch.append(dict(to=f"+1415902{round_}0{k}", body=f"hostile {k}", pool="sec"))
            keys.append(k)
            for j in range(2):
                batch.append(dict(to=f"+1415902{round_}{5 + j}{k[1]}", body="good", pool="sec"))
                keys.append("good")
        for k, i in zip(keys, pg.enqueue_batch(batch)):
            ids.setdefault(k, []).append(i)
    every = [i for v in ids.values() for i in v]
    done = pg.wait_terminal(every, 40)
    t.ok(done, "every hostile answer leads to a terminal status", unfinished)
    t.eq(pg.worker_pid(), pid, "the worker did not crash (same pid)")
    rows = {r["id"]: r for r in pg.sql_dicts(
        "SELECT id, status, twilio_sid, last_http_status, last_error_code, last_error "
        "FROM twilio_outbox WHERE id = ANY(:'p1'::bigint[])", "{" + ",".join(map(str, every)) + "}")}
    big = [rows[i] for i in ids["01"]]
    t.ok(all(r["status"] == "failed" and r["twilio_sid"] is None for r in big),
         "a 10 MB answer: no sid recorded (only the first 64 KiB is read)", repr(big[0]))
    for k in ("02", "03", "04", "05", "06"):
        rs = [rows[i] for i in ids[k]]
        t.ok(all(r["status"] == "failed" and r["twilio_sid"] is None and r["last_error"] for r in rs),
             f"{kinds[k]}: recorded as an error, no sid", repr(rs[0]))
    rs = [rows[i] for i in ids["07"]]
    t.ok(all(r["status"] == "failed" and r["last_error_code"] == 21211 for r in rs),
         "invalid UTF-8 in Twilio's message: the code is kept, the text dropped", repr(rs[0]))
    after = rss_kb(pid)
    t.ok(after - before < 20 * 1024, f"worker RSS grew by {after - before} kB (< 20 MB)")
    server.shutdown()
    pg.reload(**{"twilio_outbox.api_base_url": double.url})


@t.case("the auth token is in no log, activity or process title")
def secret():
    token = "tok-" + os.urandom(8).hex()
    double.config(auth_token=token)
    pg._append_conf({"twilio_outbox.auth_token": token}, "a new token")
    pg.sql("SELECT pg_reload_conf()")
    i = pg.enqueue("+14159030000", "secret check", pool="sec")
    t.ok(wait_until(lambda: pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", i)
                    == "sent", 15), "a message goes out with the reloaded token")
    token_file = workdir() / "token"
    file_token = "file-" + os.urandom(8).hex()
    token_file.write_text(file_token + "\n")
    shutil.chown(token_file, "postgres")
    token_file.chmod(0o600)
    double.config(auth_token=file_token)
    pg.reload(**{"twilio_outbox.auth_token_file": str(token_file)})
    j = pg.enqueue("+14159030001", "secret from a file", pool="sec")
    t.ok(wait_until(lambda: pg.sql_value("SELECT status FROM twilio_outbox WHERE id = :'p1'", j)
                    == "sent", 15), "a message goes out with the token read from auth_token_file")
    log = pg.log_text()
    t.ok(token not in log and file_token not in log, "neither token is in the server log")
    t.ok('parameter "twilio_outbox.auth_token" changed' in log,
         "the reload is still logged, without the value")
    acts = pg.sql("SELECT coalesce(query, '') FROM pg_stat_activity")
    t.ok(all(token not in a[0] and file_token not in a[0] for a in acts),
         "pg_stat_activity shows neither")
    titles = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    t.ok(token not in titles and file_token not in titles, "no process title shows either")
    t.ok(ACCOUNT_SID, "account sid is configured")


t.done()
