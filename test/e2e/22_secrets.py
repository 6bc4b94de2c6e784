#!/usr/bin/env python3
"""End-to-end: secrets never reach the server log or pg_stat_statements, and
a rotated secret file is used at once.

- With lc_messages = 'de_DE.UTF-8', reloading a changed auth_token in
  postgresql.conf logs PostgreSQL's German "parameter changed" line with
  the value masked (the filter goes by the message id, not the English
  text); a changed non-secret setting is still logged with its value.
  The server runs from a copy of the installation that has the German
  catalog, with the locale compiled by localedef (install_mirror.py).
- With log_statement = ddl and pg_stat_statements loaded (after and
  before twilio_outbox in shared_preload_libraries), ALTER SYSTEM SET,
  SET and ALTER ROLE ... SET of a secret are refused with a hint at the
  *_file settings, and the secret is in neither the server log, nor
  pg_stat_statements, nor postgresql.auto.conf, nor (for the session that
  tried) pg_stat_activity; other DDL is still logged in full, and so is
  naming a *_file.
- A long-lived connection and the webhook listener follow a rotation of
  auth_token_file (by rename, and rewritten in place with the same size)
  without a reload.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Cluster, Signer, Tap, free_port, wait_until, workdir  # noqa: E402
from install_mirror import locale_path, mirror  # noqa: E402

t = Tap()
REAL_PGBIN = harness.PGBIN


class Session:
    """One psql process, so one backend, kept open across queries."""

    END = "__end_of_query__"

    def __init__(self, pg):
        self.proc = subprocess.Popen(
            [str(harness.PGBIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0",
             "-h", str(pg.dir), "-p", str(pg.port), "-U", "postgres", "-d", pg.db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, env=pg.env())
        harness._CLEANUPS.append(self.close)
        self.pid_now = self.pid()

    def query(self, sql, *params):
        for i, value in enumerate(params, 1):
            self.proc.stdin.write(f"\\set p{i} '{value}'\n")
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.END + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if line == "":
                raise RuntimeError(f"psql ended: {lines}")
            if line.rstrip("\n") == self.END:
                return "\n".join(lines)
            lines.append(line.rstrip("\n"))

    def pid(self):
        return int(self.query("SELECT pg_backend_pid()"))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)


def write_secret(path, value, rename=True):
    """Write value as the file's first line, atomically by rename or in place."""
    if rename:
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(value + "\n")
        shutil.chown(tmp, "postgres")
        tmp.chmod(0o600)
        os.replace(tmp, path)
    else:
        with open(path, "r+") as f:
            f.write(value + "\n")
            f.truncate()


@t.case("the reload line masks the secret in another language")
def reload_line_translated():
    os.environ["LOCPATH"] = str(locale_path("de_DE", "UTF-8"))
    harness.PGBIN = mirror(translations=["de"], name="mirror_de")
    try:
        pg = Cluster(settings={"lc_messages": "de_DE.UTF-8", "twilio_outbox.enabled": False},
                     name="pg_de")
        secret = "de-" + os.urandom(8).hex()
        pg._append_conf({"twilio_outbox.auth_token": secret,
                         "twilio_outbox.max_concurrency": 7}, "changed")
        pg.sql("SELECT pg_reload_conf()")
        changed = wait_until(lambda: "»twilio_outbox.max_concurrency« auf »7«" in pg.log_text(), 20)
        t.ok(changed, "the server logs in German (the non-secret change, with its value)",
             lambda: pg.log_tail(15))
        log = pg.log_text()
        t.ok(secret not in log, "the new auth_token is not in the log", lambda: pg.log_tail(15))
        t.ok("Parameter »twilio_outbox.auth_token« auf »********« gesetzt" in log,
             "the change is logged in German with the value masked", lambda: pg.log_tail(15))
        t.eq(pg.sql_value("SHOW twilio_outbox.auth_token"), "********", "SHOW masks it")
        pg.stop()
    finally:
        harness.PGBIN = REAL_PGBIN
        del os.environ["LOCPATH"]


def refused(pg, statement):
    try:
        pg.sql(statement)
    except harness.SqlError as exc:
        return str(exc)
    return None


def check_statements(pg, order):
    secret = "stmt-" + os.urandom(8).hex()
    pg.sql("SELECT pg_stat_statements_reset()")
    statements = [
        f"ALTER SYSTEM SET twilio_outbox.auth_token = '{secret}'",
        f'ALTER SYSTEM SET "twilio_outbox"."api_key_secret" TO \'{secret}\'',
        f"ALTER SYSTEM SET TWILIO_OUTBOX . AUTH_TOKEN = {secret.replace('-', '_')}",
        f"SET twilio_outbox.auth_token = '{secret}'",
        f"ALTER ROLE postgres SET twilio_outbox.api_key_secret = '{secret}'",
    ]
    errors = [refused(pg, s) for s in statements]
    t.ok(all(e and "cannot be set with" in e for e in errors),
         f"{order}: every statement giving a secret a value is refused", repr(errors))
    t.ok(all("twilio_outbox.auth_token_file" in e or "twilio_outbox.api_key_secret_file" in e
             for e in errors if e), f"{order}: the hint names the *_file setting", repr(errors[:1]))
    session = Session(pg)
    session.query(statements[0])
    shown = pg.sql_value("SELECT query FROM pg_stat_activity WHERE pid = :'p1'", session.pid_now)
    t.ok(shown is not None and secret not in shown,
         f"{order}: pg_stat_activity does not show the refused statement afterwards", repr(shown))
    session.close()
    pg.sql("ALTER SYSTEM SET twilio_outbox.auth_token_file = '/nonexistent/token'")
    pg.sql("ALTER SYSTEM RESET twilio_outbox.auth_token_file")
    pg.sql("CREATE TABLE IF NOT EXISTS audit_me (id int)")
    # what pg_stat_statements keeps is written when a statement ends; read it now
    texts = [r[0] for r in pg.sql("SELECT query FROM pg_stat_statements")]
    plain = secret.replace("-", "_")
    t.ok(not any(secret in q or plain in q for q in texts),
         f"{order}: pg_stat_statements has no statement with the secret",
         lambda: "\n".join(q for q in texts if "twilio" in q.lower()))
    t.ok(any("auth_token_file" in q for q in texts),
         f"{order}: pg_stat_statements still tracks the allowed ALTER SYSTEM",
         lambda: "\n".join(texts))
    auto = (pg.data / "postgresql.auto.conf").read_text()
    t.ok(secret not in auto and plain not in auto, f"{order}: postgresql.auto.conf has no secret")
    log = wait_until(lambda: (lambda text: text if "CREATE TABLE IF NOT EXISTS audit_me" in text
                              else None)(pg.log_text()), 10)
    t.ok(log and secret not in log and plain not in log,
         f"{order}: the server log has no secret", lambda: pg.log_tail(30))
    ddl = [s for s in statements if not s.startswith("SET")]  # log_statement = ddl skips SET
    t.ok(log and log.count("statement: (statement not shown: it names a twilio_outbox secret setting)")
         >= len(ddl), f"{order}: the refused statements are logged, their text hidden",
         lambda: pg.log_tail(30))
    t.ok(log and "statement: ALTER SYSTEM SET twilio_outbox.auth_token_file = '/nonexistent/token'"
         in log, f"{order}: naming a *_file is logged in full", lambda: pg.log_tail(30))


@t.case("secrets set by statement: refused, and in no log or pg_stat_statements")
def statements():
    pg = Cluster(settings={"shared_preload_libraries": "twilio_outbox,pg_stat_statements",
                           "log_statement": "ddl", "twilio_outbox.enabled": False},
                 name="pg_stmt")
    pg.sql("CREATE EXTENSION pg_stat_statements")
    check_statements(pg, "twilio_outbox first")
    pg._append_conf({"shared_preload_libraries": "pg_stat_statements,twilio_outbox"}, "other order")
    pg.restart()
    t.eq(pg.sql_value("SHOW shared_preload_libraries"), "pg_stat_statements,twilio_outbox",
         "restarted with pg_stat_statements first")
    check_statements(pg, "pg_stat_statements first")
    pg.stop()


@t.case("a rotated auth_token_file is used at once by a long-lived connection and the listener")
def rotation():
    token_file = workdir() / "auth_token"
    write_secret(token_file, "first-token-0001")
    port = free_port()
    public = "https://hooks.example.com"
    pg = Cluster(settings={"twilio_outbox.auth_token_file": str(token_file),
                           "twilio_outbox.webhook_listen": f"127.0.0.1:{port}",
                           "twilio_outbox.webhook_public_url": public,
                           "twilio_outbox.enabled": False},
                 name="pg_rot")
    signer = Signer()
    session = Session(pg)
    pid = session.pid()
    n = [0]

    def ingest(token):
        n[0] += 1
        params = {"MessageSid": f"SM{n[0]:032d}", "MessageStatus": "sent"}
        url = public + "/twilio/status"
        sig = signer.sign(token, url, params)
        return session.query("SELECT twilio_ingest_callback('/twilio/status', :'p1', :'p2', :'p3')",
                             json.dumps(params), sig, url)

    def post(token):
        n[0] += 1
        params = {"MessageSid": f"SM{n[0]:032d}", "MessageStatus": "sent"}
        sig = signer.sign(token, public + "/twilio/status", params)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/twilio/status", body=urllib.parse.urlencode(params),
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  "X-Twilio-Signature": sig})
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    t.eq(ingest("first-token-0001"), "t", "the connection accepts a callback signed with the file's token")
    t.ok(wait_until(lambda: post("first-token-0001") == 200, 20, 0.2), "so does the listener",
         pg.log_tail)
    write_secret(token_file, "second-token-002", rename=True)
    t.eq(ingest("second-token-002"), "t", "after a rotation by rename: the new token is accepted")
    t.eq(ingest("first-token-0001"), "f", "and the old one refused")
    t.eq(post("second-token-002"), 200, "the listener accepts the new token without a reload")
    t.eq(post("first-token-0001"), 403, "and refuses the old one")
    time.sleep(0.01)  # a different modification time, whatever the file system's resolution
    write_secret(token_file, "third--token-003", rename=False)
    t.eq(ingest("third--token-003"), "t", "rewritten in place with the same size: the new token is accepted")
    t.eq(post("third--token-003"), 200, "by the listener too")
    t.eq(session.pid(), pid, "all in the same connection")
    token_file.unlink()
    t.ok("ERROR:  cannot check webhook signatures" in ingest("third--token-003"),
         "the file removed: no callback can be checked")
    write_secret(token_file, "fourth-token-004")
    t.eq(ingest("fourth-token-004"), "t", "the file back: its token is accepted")
    t.ok(pg.log_text().count("could not open file") <= 2, "an unreadable file is reported, not every time",
         lambda: pg.log_tail(20))
    session.close()
    pg.stop()


t.done()
