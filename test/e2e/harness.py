"""End-to-end test harness for twilio_outbox (python3 standard library only).

Used by every suite in test/e2e/ (and by benchmarks):

    from harness import Cluster, Double, Tap, wait_until

    t = Tap()
    double = Double()
    pg = Cluster(double=double, settings={"twilio_outbox.max_concurrency": 4})
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) VALUES (:'p1', :'p2', 10, 1)",
           "default", "+15005550001")
    ...
    t.done()

Cluster -- a throwaway PostgreSQL 15 cluster in a temporary directory owned by
    the postgres OS user (initdb/pg_ctl run through `runuser -u postgres --`
    when we are root), listening on 127.0.0.1 at a free port with its unix
    socket in the temporary directory, twilio_outbox preloaded and configured
    for the test double, the database created and the extension installed.
    sql(query, *params) runs psql; parameters are psql variables p1, p2, ...
    written :'p1' (a quoted literal) or :"p1" (a quoted identifier) in the
    query, so values never need quoting by hand.
    reload(**gucs) does ALTER SYSTEM SET + pg_reload_conf(); GUC names have a
    dot, so pass them as **{"twilio_outbox.max_concurrency": 2} or write
    twilio_outbox__max_concurrency=2.  Also restart(), stop(), log_text(),
    enqueue()/enqueue_batch(), install_history() (a trigger recording every
    status change) and diagnose() (text for a failed test point).
Double -- test/twilio_double.py on a free port, with its control API:
    url, control(path, body=None), requests() (message creations only unless
    create_only=False), stats(), reset(), config(**kw).
wait_until(fn, timeout, interval) -- bounded polling; returns fn's value.
Tap -- TAP output: ok/eq/case/diag; done() prints the plan "1..N" and a
    summary and exits 1 on any failure; an uncaught exception is reported as
    a failed test point before the plan.

Clusters and doubles are stopped and their directories removed at exit,
also on an exception, SIGINT, SIGTERM or SIGHUP.  KEEP_E2E_DIR=1 keeps the
directories (for post-mortems).  PGBIN selects another PostgreSQL 15
installation's bin directory (default /usr/lib/postgresql/15/bin).
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOUBLE_SCRIPT = ROOT / "test" / "twilio_double.py"
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-token"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
SID_RE = re.compile(r"^SM[0-9a-f]{32}$")
TERMINAL = ("sent", "failed", "expired", "canceled")

FS, NULL = "\x1f", "\x02"  # psql field separator and NULL marker (records end with NUL)
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "ALL_PROXY", "no_proxy", "NO_PROXY")

# -- cleanup ------------------------------------------------------------------

_CLEANUPS = []  # callables, run last-in first-out at exit


def _run_cleanups():
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as exc:  # never let one cleanup prevent the others
            print(f"# cleanup failed: {exc!r}", flush=True)


def _on_signal(signum, frame):
    # SystemExit unwinds the test (finally blocks run) and then atexit cleans up.
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)


atexit.register(_run_cleanups)
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and not k.startswith("PG")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


_WORKDIR = None


def workdir():
    """The process' scratch directory (created on first use, removed at exit)."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="twilio_e2e."))
        os.chmod(_WORKDIR, 0o755)
        if os.geteuid() == 0:
            shutil.chown(_WORKDIR, "postgres", "postgres")
        keep = os.environ.get("KEEP_E2E_DIR") == "1"
        path = _WORKDIR
        _CLEANUPS.insert(0, (lambda: print(f"# kept {path}", flush=True)) if keep
                         else (lambda: shutil.rmtree(path, ignore_errors=True)))
    return _WORKDIR


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(args):
    """Prefix a command so that it runs as the postgres OS user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + [str(a) for a in args]
    return [str(a) for a in args]


# -- polling ------------------------------------------------------------------

def wait_until(fn, timeout, interval=0.05, ignore_errors=False):
    """Call fn until it returns something truthy, at most timeout seconds.

    Returns that value, or the last (falsy) value on timeout.  With
    ignore_errors, exceptions count as a falsy result (the last one is
    re-raised on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        error = None
        try:
            value = fn()
        except Exception as exc:
            if not ignore_errors:
                raise
            value, error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            if error is not None:
                raise error
            return value
        time.sleep(interval)


# -- TAP ----------------------------------------------------------------------

class Tap:
    """Minimal TAP producer: the plan is printed at the end by done()."""

    def __init__(self):
        self.n = 0
        self.failed = []
        self.started = time.monotonic()
        sys.excepthook = self._uncaught

    def _uncaught(self, kind, value, tb):
        self.ok(False, f"uncaught {kind.__name__}",
                "".join(traceback.format_exception(kind, value, tb)))
        print(f"1..{self.n}", flush=True)
        self.diag(f"{len(self.failed)} of {self.n} failed (stopped by an uncaught exception)")

    @staticmethod
    def diag(text):
        for line in str(text).rstrip("\n").splitlines() or [""]:
            print(f"# {line}", flush=True)

    def ok(self, cond, name, diag=""):
        """One test point.  diag may be a callable: evaluated only on failure."""
        self.n += 1
        name = name.replace("\n", " ").replace("#", "\\#")
        print(f"{'ok' if cond else 'not ok'} {self.n} - {name}", flush=True)
        if not cond:
            self.failed.append(f"{self.n} - {name}")
            if callable(diag):
                try:
                    diag = diag()
                except Exception as exc:
                    diag = f"(diagnostics failed: {exc!r})"
            if diag:
                self.diag(diag)
        return bool(cond)

    def eq(self, got, want, name, diag=""):
        def more():
            extra = diag() if callable(diag) else diag
            return f"got:  {got!r}\nwant: {want!r}" + (f"\n{extra}" if extra else "")
        return self.ok(got == want, name, more)

    def case(self, name):
        """Decorator running a test function at once; a crash is one "not ok"."""
        def run(fn):
            self.diag(f"--- {name}")
            began = time.monotonic()
            try:
                fn()
            except SystemExit:
                raise
            except BaseException:  # noqa: B902 - report anything and go on
                self.ok(False, f"{name}: crashed", traceback.format_exc())
            self.diag(f"    ({time.monotonic() - began:.1f} s)")
            return fn
        return run

    def done(self):
        print(f"1..{self.n}", flush=True)
        secs = time.monotonic() - self.started
        if self.failed:
            self.diag(f"{len(self.failed)} of {self.n} failed ({secs:.1f} s): "
                      + "; ".join(self.failed))
        else:
            self.diag(f"all {self.n} passed ({secs:.1f} s)")
        sys.stdout.flush()
        sys.exit(1 if self.failed or self.n == 0 else 0)


# -- the Twilio test double ---------------------------------------------------

class Double:
    """test/twilio_double.py on a free 127.0.0.1 port."""

    def __init__(self, name="double", args=()):
        self.name = name
        self.dir = workdir()
        self.port_file = self.dir / f"{name}.port"
        self.log_file = self.dir / f"{name}.log"
        self.port_file.unlink(missing_ok=True)
        self._log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(DOUBLE_SCRIPT), "--port", "0", "--port-file",
             str(self.port_file), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=_clean_env(),
            start_new_session=True)
        _CLEANUPS.append(self.stop)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        port = wait_until(self._read_port, 10, 0.02)
        if not port:
            self.stop()
            raise RuntimeError(f"{name} did not start: {self.log_text()[-2000:]}")
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        if not wait_until(lambda: self.control("health").get("ok"), 10, ignore_errors=True):
            raise RuntimeError(f"{name} does not answer on {self.url}")

    def _read_port(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                               f"{self.log_text()[-2000:]}")
        try:
            text = self.port_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def log_text(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def control(self, path, body=None):
        """GET /_control/<path>, or POST the JSON body when one is given."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_control/{path.lstrip('/')}", data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"control {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None

    def requests(self, since=0, create_only=True):
        """Request records (see the double's docstring); by default only message creations."""
        reqs = self.control(f"requests?since={int(since)}")["requests"]
        return [r for r in reqs if r["kind"] == "messages_create"] if create_only else reqs

    def stats(self):
        return self.control("stats")

    def reset(self):
        return self.control("reset", {})

    def config(self, **kw):
        return self.control("config", kw)

    def seed(self, to, sender, body, count):
        """Store `count` messages to `to` as if sent from elsewhere; their sids."""
        return self.control("seed", {"to": to, "from": sender, "body": body,
                                     "count": count})["sids"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()


def form(record):
    """A request record's form as {name: value}, repeated names as lists."""
    out = {}
    for name, value in record["form"]:
        if name in out:
            out[name] = (out[name] if isinstance(out[name], list) else [out[name]]) + [value]
        else:
            out[name] = value
    return out


def form_list(record, name):
    return [v for k, v in record["form"] if k == name]


# -- the PostgreSQL cluster ---------------------------------------------------

class SqlError(RuntimeError):
    pass


def _conf_value(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _param(value):
    if value is None:
        raise ValueError("NULL parameters are not supported; write NULL in the query")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    value = str(value)
    if "\0" in value:
        raise ValueError("a parameter cannot contain NUL")
    return value


class Cluster:
    """A throwaway PostgreSQL cluster with twilio_outbox preloaded."""

    def __init__(self, double=None, settings=None, db="twilio_e2e", name="pg",
                 create_extension=True, api_base_url=None):
        self.db = db
        self.name = name
        self.dir = workdir() / name
        self.data = self.dir / "data"
        self.log_file = self.dir / "server.log"
        self.running = False
        subprocess.run(as_postgres(["mkdir", "-p", self.dir]), check=True)
        _CLEANUPS.append(self.stop)
        self._run(as_postgres([PGBIN / "initdb", "-D", self.data, "-A", "trust", "-U",
                               "postgres", "-N", "-E", "UTF8", "--locale=C"]))
        url = api_base_url or (double.url if double else "http://127.0.0.1:9")
        base = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "fsync": False,
            "log_line_prefix": "%m [%p] %b ",
            "max_connections": 30,
        }
        conf = {
            "shared_preload_libraries": "twilio_outbox",
            "twilio_outbox.database": db,
            "twilio_outbox.account_sid": ACCOUNT_SID,
            "twilio_outbox.auth_token": AUTH_TOKEN,
            "twilio_outbox.api_base_url": url,
        }
        conf.update(settings or {})
        # The database must exist before the worker starts (it cannot connect
        # to a missing one): create it on a first start without the extension.
        self._append_conf(base, "e2e harness")
        self.start()
        self.sql(f'CREATE DATABASE "{db}"', db="postgres")
        self.stop()
        self._append_conf(conf, "twilio_outbox e2e")
        self.start()
        if create_extension:
            self.sql("CREATE EXTENSION twilio_outbox")

    def _append_conf(self, settings, title):
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\n# {title}\n")
            for key, value in settings.items():
                f.write(f"{key} = {_conf_value(value)}\n")

    def _run(self, args, timeout=120, check=True):
        res = subprocess.run(args, capture_output=True, text=True, env=_clean_env(),
                             timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} failed ({res.returncode}):\n"
                               f"{res.stdout}{res.stderr}\n{self.log_tail(30)}")
        return res

    def _pg_ctl(self, *args, timeout=120, check=True):
        return self._run(as_postgres([PGBIN / "pg_ctl", "-D", self.data, *args]),
                         timeout=timeout, check=check)

    def start(self):
        """Start on a fresh free port (retried if another process took it)."""
        for attempt in range(5):
            self.port = free_port()
            res = self._pg_ctl("-l", self.log_file, "-o", f"-p {self.port}", "-w", "-t", "60",
                               "start", check=False)
            if res.returncode == 0:
                self.running = True
                return
            if "could not bind" not in self.log_tail(20) or attempt == 4:
                raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}{res.stderr}\n"
                                   f"{self.log_tail(30)}")

    def stop(self, mode="fast"):
        if not (self.data / "postmaster.pid").exists():
            self.running = False
            return
        res = self._pg_ctl("-m", mode, "-w", "-t", "30", "stop", check=False)
        if res.returncode != 0 and mode != "immediate":
            self._pg_ctl("-m", "immediate", "-w", "-t", "30", "stop", check=False)
        self.running = False

    def restart(self):
        """Stop and start again (on the same port when it is still free)."""
        self.stop()
        port = self.port
        res = self._pg_ctl("-l", self.log_file, "-o", f"-p {port}", "-w", "-t", "60",
                           "start", check=False)
        if res.returncode != 0:
            self.start()
        self.running = True

    def env(self):
        return _clean_env(PGHOST=self.dir, PGPORT=self.port, PGUSER="postgres",
                          PGDATABASE=self.db, PGCONNECT_TIMEOUT=10)

    def sql(self, query, *params, db=None, timeout=60):
        """Run query (one or more statements) through psql; return the rows of
        every result as tuples of str, None for NULL.  Parameters: :'p1',
        :'p2', ... (quoted literals) or :"p1" (quoted identifiers)."""
        args = [str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-F", FS, "-0", "-P", f"null={NULL}", "-h", str(self.dir),
                "-p", str(self.port), "-U", "postgres", "-d", db or self.db, "-f", "-"]
        for i, value in enumerate(params, 1):
            args += ["-v", f"p{i}={_param(value)}"]
        res = subprocess.run(args, input=query.encode(), capture_output=True,
                             env=self.env(), timeout=timeout)
        if res.returncode != 0:
            raise SqlError(f"psql failed ({res.returncode}) for: {query.strip()[:300]}\n"
                           f"{res.stderr.decode(errors='replace').strip()}")
        return self._parse(res.stdout.decode())

    @staticmethod
    def _parse(out):
        # -0: every record (also the last of each result set) ends with a
        # zero byte, which no PostgreSQL text value can contain.
        records = out.split("\0")
        if records[-1] != "":
            raise SqlError(f"unexpected psql output: {out[-200:]!r}")
        return [tuple(None if v == NULL else v for v in rec.split(FS))
                for rec in records[:-1]]

    def sql_value(self, query, *params, **kw):
        """The single value of a one-row one-column result (None when no row)."""
        rows = self.sql(query, *params, **kw)
        if not rows:
            return None
        if len(rows) != 1 or len(rows[0]) != 1:
            raise SqlError(f"expected one value, got {rows!r} for: {query.strip()[:300]}")
        return rows[0][0]

    def sql_dicts(self, query, *params, **kw):
        """Rows as dicts: the query must be a single SELECT; uses row_to_json."""
        rows = self.sql(f"SELECT row_to_json(q)::text FROM ({query}) q", *params, **kw)
        return [json.loads(r[0]) for r in rows]

    def reload(self, **gucs):
        """ALTER SYSTEM SET each name=value (None = RESET) and pg_reload_conf()."""
        stmts = []
        for key, value in gucs.items():
            key = key.replace("__", ".")
            if value is None:
                stmts.append(f"ALTER SYSTEM RESET {key};")
            else:
                stmts.append(f"ALTER SYSTEM SET {key} = {_conf_value(value)};")
        stmts.append("SELECT pg_reload_conf();")
        self.sql("\n".join(stmts))

    def log_text(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def worker_pid(self):
        v = self.sql_value("SELECT pid FROM pg_stat_activity "
                           "WHERE backend_type = 'twilio_outbox worker' LIMIT 1")
        return int(v) if v else None

    # -- convenience for the suites --

    def add_pool(self, name, sender, mps=1000, burst=100, paused=False):
        self.sql("INSERT INTO twilio_pools (name, sender, mps, burst, paused) "
                 "VALUES (:'p1', :'p2', :'p3'::numeric, :'p4'::int, :'p5'::boolean)",
                 name, sender, mps, burst, paused)

    def enqueue(self, to, body, **kw):
        """twilio_enqueue(to, body, name => value...) in its own transaction; the id.
        Values are passed as literals (dict -> JSON, list -> array literal)."""
        return self.enqueue_batch([dict(kw, to=to, body=body)])[0]

    def enqueue_batch(self, messages, rollback=False):
        """Enqueue dicts(to=, body=, other twilio_enqueue arguments) in ONE
        transaction, committed (or rolled back); returns the ids in order."""
        params, stmts = [], ["BEGIN;"]
        for msg in messages:
            args = []
            for key, value in msg.items():
                name = {"to": "to_number"}.get(key, key)
                if value is None:
                    args.append(f"{name} => NULL")
                    continue
                if isinstance(value, (list, tuple)):
                    value = pg_array(value)
                params.append(value)
                args.append(f"{name} => :'p{len(params)}'")
            stmts.append(f"SELECT twilio_enqueue({', '.join(args)});")
        stmts.append("ROLLBACK;" if rollback else "COMMIT;")
        return [int(r[0]) for r in self.sql("\n".join(stmts), *params)]

    def install_history(self):
        """Record every INSERT/UPDATE of twilio_outbox rows in public.e2e_history
        (id, old_status, new_status, attempts, last_http_status, last_error_code, at)."""
        self.sql(HISTORY_SQL)

    def history(self, ids=None):
        q = ("SELECT seq, id, old_status, new_status, attempts, last_http_status, "
             "last_error_code, extract(epoch FROM at) FROM public.e2e_history")
        rows = (self.sql(q + " ORDER BY seq") if ids is None else
                self.sql(q + " WHERE id = ANY(:'p1'::bigint[]) ORDER BY seq", pg_array(ids)))
        return [dict(seq=int(r[0]), id=int(r[1]), old=r[2], new=r[3], attempts=int(r[4]),
                     http=None if r[5] is None else int(r[5]),
                     code=None if r[6] is None else int(r[6]), at=float(r[7]))
                for r in rows]

    def bad_transitions(self, ids=None):
        """History entries whose status change the contract does not allow."""
        return [h for h in self.history(ids)
                if h["old"] != h["new"] and (h["old"], h["new"]) not in TRANSITIONS]

    def statuses(self, ids=None):
        """{status: count} over all rows (or the given ids)."""
        if ids is None:
            rows = self.sql("SELECT status, count(*) FROM twilio_outbox GROUP BY 1")
        else:
            rows = self.sql("SELECT status, count(*) FROM twilio_outbox "
                            "WHERE id = ANY(:'p1'::bigint[]) GROUP BY 1", pg_array(ids))
        return {s: int(n) for s, n in rows}

    def wait_terminal(self, ids, timeout):
        """Wait until every given row is sent/failed/expired/canceled; True if so."""
        arr = pg_array(ids)
        return wait_until(lambda: self.sql_value(
            "SELECT count(*) FROM twilio_outbox WHERE id = ANY(:'p1'::bigint[]) "
            "AND status NOT IN ('sent', 'failed', 'expired', 'canceled')", arr) == "0",
            timeout, 0.1)

    def diagnose(self, query=None, limit=12, log_lines=15):
        """Text for a failed test point: status counts, some rows (unfinished
        first), the worker status and the tail of the server log."""
        query = query or ("SELECT id, pool, to_number, status, attempts, last_http_status, "
                          "last_error_code, last_error FROM twilio_outbox "
                          "ORDER BY status = 'sent', id")
        out = []
        try:
            out.append(f"statuses: {self.statuses()}")
            rows = self.sql(query)
            out.append(f"rows ({len(rows)}, first {min(limit, len(rows))}):")
            out += ["  " + " | ".join("NULL" if v is None else v for v in r)
                    for r in rows[:limit]]
            out.append("worker: " + repr(self.sql(
                "SELECT pid, state, in_flight FROM twilio_worker_status")))
        except Exception as exc:
            out.append(f"(query failed: {exc})")
        out.append(f"server log tail ({self.log_file}):")
        out += ["  " + line for line in self.log_tail(log_lines).splitlines()]
        return "\n".join(out)


TRANSITIONS = {
    (None, "queued"), ("queued", "sending"), ("sending", "sent"), ("sending", "retrying"),
    ("retrying", "sending"), ("sending", "failed"), ("queued", "canceled"),
    ("retrying", "canceled"), ("queued", "expired"), ("retrying", "expired"),
    ("failed", "queued"), ("expired", "queued"), ("canceled", "queued"),
}

HISTORY_SQL = """
CREATE TABLE IF NOT EXISTS public.e2e_history (
    seq bigserial PRIMARY KEY, id bigint, old_status text, new_status text, attempts int,
    last_http_status int, last_error_code int, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION public.e2e_history_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.e2e_history (id, old_status, new_status, attempts,
                                    last_http_status, last_error_code)
    VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
            NEW.attempts, NEW.last_http_status, NEW.last_error_code);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS e2e_history ON twilio_outbox;
CREATE TRIGGER e2e_history AFTER INSERT OR UPDATE ON twilio_outbox
    FOR EACH ROW EXECUTE FUNCTION public.e2e_history_fn();
"""


def pg_array(values):
    """A PostgreSQL array literal of numbers or plain strings."""
    def elem(v):
        if isinstance(v, (int, float)):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(elem(v) for v in values) + "}"


def start(settings=None, **kw):
    """A double and a cluster configured for it: (cluster, double)."""
    double = Double()
    return Cluster(double=double, settings=settings, **kw), double


# -- Twilio's webhook signatures, computed by Twilio's own helper library ------

WEBHOOKS_DIR = ROOT / "test" / "webhooks"


def ensure_twilio_node():
    """npm install the twilio helper library into test/webhooks (once)."""
    if (WEBHOOKS_DIR / "node_modules" / "twilio").is_dir():
        return
    res = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                         cwd=WEBHOOKS_DIR, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"npm install twilio failed:\n{res.stdout}{res.stderr}")


class Signer:
    """X-Twilio-Signature from twilio-node's getExpectedTwilioSignature (an
    implementation independent of the extension's), via test/webhooks/sign.js."""

    def __init__(self):
        ensure_twilio_node()
        self.proc = subprocess.Popen(["node", str(WEBHOOKS_DIR / "sign.js")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        _CLEANUPS.append(self.stop)

    def sign(self, token, url, params):
        self.proc.stdin.write(json.dumps({"token": token, "url": url, "params": params}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if not answer["valid"]:
            raise RuntimeError("twilio.validateRequest refused its own signature")
        return answer["signature"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(5)
