#!/usr/bin/env python3
"""End-to-end: high availability with pg_auto_failover.

A monitor and two data nodes on 127.0.0.1, run as users run them
(`pg_autoctl create monitor|postgres ... --run` as the postgres OS user, in
the harness's work directory, --no-ssl on loopback), synchronous replication
(pg_auto_failover's default for two nodes), and on both data nodes the same
postgresql.conf: shared_preload_libraries = 'twilio_outbox' and the same
twilio_outbox settings pointing at one Twilio test double.  (The primary's
data directory is prepared with those settings before `pg_autoctl create
postgres` adopts it; the standby gets them with pg_basebackup.)

- No standby ever sends: the standby has no twilio_outbox worker in
  pg_stat_activity, and the double's request count does not move while only
  a standby runs (between the primary's death and the promotion, and while
  the old primary comes back as a standby).
- An unplanned failover (SIGKILL of the primary's pg_autoctl and postmaster;
  the postmaster's children, each in a session of its own, are left to
  notice its death), then the old primary rejoining, then a
  planned switchover (`pg_autoctl perform switchover`), each in the middle
  of a drain of a few hundred messages: every row committed before the
  switch is sent from the new primary, 0 lost (each row sent, its sid one the
  double accepted), 0 duplicates (the double accepted each message once;
  rows left in `sending` are looked up at Twilio by the new primary's worker,
  and the double keeps what it accepted).  The figures printed:
  promotion-to-first-send, from the first moment the new primary answers
  pg_is_in_recovery() = false (both nodes polled every ~0.1 s) to the first
  request the double receives after it, and how much of that the new primary
  spent read-only (pg_auto_failover keeps default_transaction_read_only on
  until the monitor confirms the promotion, primary_demote_timeout).

The monitor runs from the system PostgreSQL (it needs the pgautofailover
extension of the postgresql-15-auto-failover package); the data nodes from
PGBIN, where twilio_outbox is installed.  Timing goals are not asserted
here; the failure-detection settings of the monitor are shortened so that
the suite stays short.
"""

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ACCOUNT_SID, AUTH_TOKEN, FS, NULL, PGBIN, Double, Tap, as_postgres,  # noqa: E402
                     form, free_port, pg_array, wait_until, workdir)

SYSTEM_BIN = Path("/usr/lib/postgresql/15/bin")
PG_AUTOCTL = "/usr/bin/pg_autoctl"
DB = "twilio_e2e"
DRAIN = 300
SENDER = "+15005550001"

t = Tap()
W = workdir()
double = Double()
PROCS = {}


def env():
    e = harness._clean_env()
    e.update(XDG_CONFIG_HOME=str(W / "xdg/config"), XDG_DATA_HOME=str(W / "xdg/data"),
             XDG_RUNTIME_DIR=str(W / "xdg/run"), PGCONNECT_TIMEOUT="5", HOME=str(W))
    return e


def run(args, timeout=120, check=True):
    res = subprocess.run(as_postgres(args), capture_output=True, text=True, env=env(),
                         timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({res.returncode}):\n"
                           f"{res.stdout}{res.stderr}")
    return res


class Node:
    """A pg_autoctl-managed instance: its data directory, port and process group."""

    def __init__(self, name, pgbin):
        self.name, self.pgbin = name, pgbin
        self.data = W / name
        self.port = free_port()
        self.log = W / f"{name}.autoctl.log"
        self.proc = None
        self.killed = False

    def launch(self, args):
        """pg_autoctl create ... --run, in a process group of its own."""
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(as_postgres([PG_AUTOCTL, *args]), stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env(),
                                     start_new_session=True)

    def relaunch(self):
        self.launch(["run", "--pgdata", self.data])

    def kill(self):
        """SIGKILL the node's process group: pg_autoctl and the postmaster.  The
        postmaster's children are not in it (every postmaster child calls
        setsid()): they are left to notice the postmaster's death, as after
        a SIGKILL of the postmaster.  Returns (the children's pids, the time
        of the kill)."""
        self.killed = True
        children = self.children()
        at = time.time()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return children, at

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def children(self):
        pm = self.postmaster_pid()
        if pm is None:
            return []
        res = subprocess.run(["pgrep", "-P", str(pm)], capture_output=True, text=True)
        out = {}
        for pid in map(int, res.stdout.split()):
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(
                    errors="replace").replace("postgres: ", "")
            except FileNotFoundError:
                pass
        return out

    def pids(self):
        res = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return res.stdout.split()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if (self.data / "postmaster.pid").exists():
            subprocess.run(as_postgres([self.pgbin / "pg_ctl", "-D", self.data, "-m", "immediate",
                                        "-w", "stop"]), capture_output=True, env=env())

    def sql(self, query, *params, db=DB, timeout=20):
        args = [str(self.pgbin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-F", FS, "-0", "-P", f"null={NULL}", "-h", "127.0.0.1", "-p", str(self.port),
                "-U", "postgres", "-d", db, "-f", "-"]
        for i, value in enumerate(params, 1):
            args += ["-v", f"p{i}={harness._param(value)}"]
        res = subprocess.run(args, input=query.encode(), capture_output=True, env=env(),
                             timeout=timeout)
        if res.returncode != 0:
            raise harness.SqlError(f"psql on {self.name} failed: {query.strip()[:200]}\n"
                                   f"{res.stderr.decode(errors='replace').strip()}")
        return harness.Cluster._parse(res.stdout.decode())

    def value(self, query, *params, **kw):
        rows = self.sql(query, *params, **kw)
        return rows[0][0] if rows else None

    def in_recovery(self):
        try:
            return self.value("SELECT pg_is_in_recovery()", timeout=5)
        except Exception:
            return None

    def workers(self):
        return int(self.value("SELECT count(*) FROM pg_stat_activity "
                              "WHERE backend_type LIKE 'twilio_outbox%'"))

    def server_log(self, lines=30):
        """The tails of postgres' log (startup.log: logging_collector is off) and pg_autoctl's."""
        out = []
        for f, n in ((self.data / "startup.log", lines), (self.log, lines // 2)):
            if f.exists():
                text = subprocess.run(["tail", "-n", str(n), f], capture_output=True,
                                      text=True).stdout
                out += [f"[{f.name}]"] + [line for line in text.splitlines()
                                          if "the database system is shutting down" not in line]
        return "\n".join(out)


monitor = Node("monitor", SYSTEM_BIN)
n1, n2 = Node("node1", PGBIN), Node("node2", PGBIN)
NODES = {"node1": n1, "node2": n2}
for node in (monitor, n1, n2):
    harness._CLEANUPS.append(node.stop)


def monitor_states():
    rows = monitor.sql("SELECT nodename, reportedstate, goalstate FROM pgautofailover.node "
                       "ORDER BY nodeid", db="pg_auto_failover")
    return {name: (reported, goal) for name, reported, goal in rows}


def stable():
    """(primary, standby) once the formation is primary + secondary at rest, else None."""
    try:
        states = monitor_states()
    except Exception:
        return None
    prim = [n for n, (r, g) in states.items() if r == g == "primary"]
    sec = [n for n, (r, g) in states.items() if r == g == "secondary"]
    if len(prim) == 1 and len(sec) == 1:
        return NODES[prim[0]], NODES[sec[0]]
    return None


def running(pid):
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def alive():
    """True while every launched pg_autoctl runs (else fail at once, with its log)."""
    for node in (monitor, n1, n2):
        if node.proc is not None and node.proc.poll() is not None and not node.killed:
            raise RuntimeError(f"pg_autoctl of {node.name} exited with {node.proc.returncode}:\n"
                               + node.server_log(30))
    return True


def diag():
    try:
        out = [f"monitor: {monitor_states()!r}"]
    except Exception as exc:
        out = [f"monitor: {exc}"]
    for node in (n1, n2):
        out.append(f"--- {node.name} (in recovery: {node.in_recovery()})")
        out.append(node.server_log(25))
    return "\n".join(out)


@t.case("a pg_auto_failover formation: monitor, primary, synchronous standby")
def formation():
    (W / "xdg").mkdir()
    for sub in ("config", "data", "run"):
        (W / "xdg" / sub).mkdir()
    subprocess.run(["chown", "-R", "postgres:postgres", W / "xdg"], check=True)
    os.chmod(W / "xdg/run", 0o700)
    monitor.launch(["create", "monitor", "--pgdata", monitor.data, "--pgport", monitor.port,
                    "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust",
                    "--no-ssl", "--pgctl", SYSTEM_BIN / "pg_ctl", "--run"])
    t.ok(wait_until(lambda: monitor.value("SELECT 1", db="pg_auto_failover", timeout=5) == "1",
                    30, 0.2, ignore_errors=True), "the monitor runs", monitor.server_log)
    # failure detection in seconds rather than the defaults' half minute
    monitor.sql("ALTER SYSTEM SET pgautofailover.health_check_period = 1000;"
                "ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000;"
                "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1;"
                "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500;"
                "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 3000;"
                "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 5000;"
                "SELECT pg_reload_conf();", db="pg_auto_failover")
    uri = f"postgres://autoctl_node@127.0.0.1:{monitor.port}/pg_auto_failover?sslmode=disable"

    # the primary's data directory with the settings every node must have
    run([PGBIN / "initdb", "-D", n1.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
         "--locale=C"])
    with open(n1.data / "postgresql.conf", "a") as f:
        f.write(f"""
# twilio_outbox: the same on every node (pg_basebackup copies this file)
log_line_prefix = '%m [%p] %b '
logging_collector = off
# below pg_auto_failover's include lines, so this replaces its
# shared_preload_libraries = pg_stat_statements: keep that one in the list
shared_preload_libraries = 'pg_stat_statements,twilio_outbox'
# (test only: pg_auto_failover sizes shared_buffers for a machine of its own)
shared_buffers = '128MB'
wal_keep_size = '256MB'
twilio_outbox.database = '{DB}'
twilio_outbox.account_sid = '{ACCOUNT_SID}'
twilio_outbox.auth_token = '{AUTH_TOKEN}'
twilio_outbox.api_base_url = '{double.url}'
""")
    subprocess.run(["chown", "postgres:postgres", n1.data / "postgresql.conf"], check=True)
    run([PGBIN / "pg_ctl", "-D", n1.data, "-o", f"-p {n1.port} -c listen_addresses=127.0.0.1",
         "-l", W / "node1.init.log", "-w", "start"])
    n1.sql(f"CREATE DATABASE {DB}", db="postgres")
    run([PGBIN / "pg_ctl", "-D", n1.data, "-w", "stop"])
    for node in (n1, n2):
        node.launch(["create", "postgres", "--pgdata", node.data, "--pgport", node.port,
                     "--pgctl", PGBIN / "pg_ctl", "--hostname", "127.0.0.1", "--listen",
                     "127.0.0.1", "--name", node.name, "--dbname", DB, "--monitor", uri,
                     "--skip-pg-hba", "--no-ssl", "--run"])
        if node is n1:
            t.ok(wait_until(lambda: alive() and monitor_states().get("node1", (None,))[0]
                            == "single", 60, 0.2, ignore_errors=True),
                 "node1 registered as single", diag)
    pair = wait_until(lambda: alive() and stable(), 120, 0.2)
    t.ok(pair == (n1, n2), "node1 primary, node2 secondary", diag)
    t.eq(n1.value("SHOW synchronous_standby_names"), "ANY 1 (pgautofailover_standby_2)",
         "replication is synchronous")
    n1.sql("CREATE EXTENSION twilio_outbox;"
           "INSERT INTO twilio_pools (name, sender, mps, burst) VALUES ('default', :'p1', 60, 5)",
           SENDER)
    # every status change, replicated with it (for the evidence when a check fails)
    n1.sql(harness.HISTORY_SQL)
    t.ok(wait_until(lambda: n2.value("SELECT count(*) FROM twilio_pools") == "1", 20, 0.1,
                    ignore_errors=True), "the extension and the pool reached the standby")
    t.ok(wait_until(lambda: n1.workers() >= 1, 20, 0.1), "the primary runs the worker")
    t.eq(n2.workers(), 0, "the standby runs no twilio_outbox worker")
    t.eq(n2.value("SHOW shared_preload_libraries"), "pg_stat_statements,twilio_outbox",
         "although it preloads the library with the same settings")
    t.eq(n2.value("SHOW twilio_outbox.api_base_url"), double.url, "(the same double)")
    one = n1.value("SELECT twilio_enqueue('+14155550000', 'before the drains')")
    t.ok(wait_until(lambda: n1.value("SELECT status FROM twilio_outbox WHERE id = :'p1'", one)
                    == "sent", 20, 0.1), "a message is sent from the primary")


FIGURES = {}


def rel(at, base):
    return "?" if at is None else f"{at - base:.2f} s"


class Watch(threading.Thread):
    """Polls both nodes every 50 ms while a switch runs: when the old primary
    stops answering as a primary, when the standby answers as one, and when
    it accepts writes (pg_auto_failover keeps default_transaction_read_only
    on until the monitor confirms the promotion)."""

    def __init__(self, old, new):
        super().__init__(daemon=True)
        self.old, self.new = old, new
        self.old_down_at = self.promoted_at = self.writable_at = None
        self.old_sync_names = []
        self.start()

    def run(self):
        deadline = time.time() + 120
        while time.time() < deadline and self.writable_at is None:
            now = time.time()
            if self.old_down_at is None:
                try:
                    rec, names = self.old.sql("SELECT pg_is_in_recovery(), current_setting("
                                              "'synchronous_standby_names')", timeout=5)[0]
                    self.old_sync_names.append((now, names))
                except Exception:
                    rec = None
                if rec != "f":
                    self.old_down_at = now
            try:
                rec, ro = self.new.sql("SELECT pg_is_in_recovery(), "
                                       "current_setting('default_transaction_read_only')",
                                       timeout=5)[0]
            except Exception:
                rec = ro = None
            if rec == "f" and self.promoted_at is None:
                self.promoted_at = now
            if rec == "f" and ro == "off":
                self.writable_at = now
            time.sleep(0.05)


def drain(name, primary, standby, switch):
    """Enqueue DRAIN messages on the primary, switch when a third is sent, and
    check that the new primary finishes them: 0 lost, 0 duplicates."""
    double.config(delay_ms=40)
    since = double.requests()[-1]["seq"] if double.requests() else 0
    prefix = {"switchover": "+1415561", "failover": "+1415562"}[name]
    ids = [int(r[0]) for r in primary.sql(
        "SELECT twilio_enqueue(:'p1' || lpad(i::text, 4, '0'), 'drain ' || i) "
        "FROM generate_series(1, :'p2'::int) i", prefix, DRAIN)]
    t.eq(len(ids), DRAIN, f"{DRAIN} messages committed on the primary")
    arr = pg_array(ids)
    count_sent = "SELECT count(*) FROM twilio_outbox WHERE id = ANY(:'p1') AND status = 'sent'"
    t.ok(wait_until(lambda: int(primary.value(count_sent, arr)) >= DRAIN // 3, 60, 0.05),
         "a third of them sent", diag)
    before = primary.sql("SELECT status, count(*) FROM twilio_outbox WHERE id = ANY(:'p1') "
                         "GROUP BY 1 ORDER BY 1", arr)
    t.diag(f"    at the {name}: {dict(before)}")
    watch = Watch(primary, standby)
    switched_at = time.time()
    gone_at = switch()
    watch.join(120)
    promoted_at, writable_at = watch.promoted_at, watch.writable_at
    old_down_at = gone_at or watch.old_down_at
    changes = [(at, n) for i, (at, n) in enumerate(watch.old_sync_names)
               if i == 0 or n != watch.old_sync_names[i - 1][1]]
    t.diag("    old primary's synchronous_standby_names: "
           + ", ".join(f"{n!r} at {rel(at, switched_at)}" for at, n in changes))
    t.ok(promoted_at, f"{standby.name} is promoted", diag)
    promoted_at = promoted_at or time.time()
    t.diag(f"    switch at 0 s; old primary gone at {rel(old_down_at, switched_at)}, "
           f"{standby.name} promoted at {rel(promoted_at, switched_at)}, writable at "
           f"{rel(writable_at, switched_at)}")
    # only a standby ran between the old primary's end and the promotion
    reqs = double.requests(since)
    if old_down_at and old_down_at < promoted_at:
        # (a request written just before a SIGKILL still arrives: 0.3 s of grace)
        quiet = [r for r in reqs if old_down_at + 0.3 < r["time"] < promoted_at]
        t.eq(len(quiet), 0, f"no request reached the double while only the standby ran "
             f"({promoted_at - old_down_at:.1f} s)")
    t.ok(wait_until(lambda: standby.value(
             "SELECT count(*) FROM twilio_outbox WHERE id = ANY(:'p1') "
             "AND status NOT IN ('sent', 'failed', 'expired', 'canceled')", arr) == "0", 90, 0.1,
             ignore_errors=True), "the new primary finishes the drain", diag)
    rows = {int(i): (s, sid, to) for i, s, sid, to in standby.sql(
        "SELECT id, status, twilio_sid, to_number FROM twilio_outbox WHERE id = ANY(:'p1')", arr)}
    accepted = [m for m in double.control("messages")["messages"]
                if m.get("to", "").startswith(prefix)]
    per_to = collections.Counter(m["to"] for m in accepted)
    dups = {to: n for to, n in per_to.items() if n > 1}
    sids = {m["sid"] for m in accepted}
    lost = sorted(i for i, (s, sid, to) in rows.items() if s != "sent" or sid not in sids)
    t.eq(len(rows), DRAIN, "every committed row is on the new primary")
    t.eq(lost, [], "0 lost: every row sent, with a sid the double accepted",
         lambda: "\n".join(f"id {i}: {rows.get(i)}" for i in lost[:20]))
    t.eq(dups, {}, "0 duplicates: the double accepted each message once",
         lambda: dup_evidence(dups, rows, standby, switched_at))
    t.eq(len(per_to), DRAIN, f"the double accepted {DRAIN} messages for the drain")
    start = max(promoted_at, old_down_at or 0)
    first = min((r["time"] for r in double.requests(since) if r["time"] >= start), default=None)
    if first is not None:
        FIGURES[name] = (first - promoted_at, first - (writable_at or promoted_at))
        t.diag(f"    {name}: promotion-to-first-send {FIGURES[name][0] * 1000:.0f} ms, of which "
               f"{((writable_at or promoted_at) - promoted_at) * 1000:.0f} ms read-only "
               f"(pg_auto_failover's stop_replication fence); writable-to-first-send "
               f"{max(FIGURES[name][1], 0) * 1000:.0f} ms (polled every ~0.1 s)")
    t.ok(first is not None, "the new primary sent")
    lookups = [r for r in double.requests(since, create_only=False)
               if r["kind"] == "messages_list" and r["time"] >= promoted_at]
    t.diag(f"    rows reconciled through {len(lookups)} Messages list lookups by the new primary")
    double.config(delay_ms=0)


def dup_evidence(dups, rows, primary, base):
    """Each duplicate's requests at the double, the row's status history as
    replicated to the new primary, and the monitor's events (times relative
    to the switch)."""
    out = []
    by_to = {to: i for i, (s, sid, to) in rows.items()}
    for to in list(dups)[:5]:
        row_id = by_to.get(to)
        out.append(f"{to}: row {row_id} {rows.get(row_id)}")
        for r in double.requests(0):
            if form(r).get("To") == to:
                out.append(f"   request seq {r['seq']} at {rel(r['time'], base)} status "
                           f"{r['status']} sid {r.get('sid')} Attempt {form(r).get('Attempt')}")
        for h in primary.sql("SELECT old_status, new_status, attempts, "
                             "extract(epoch FROM at) FROM public.e2e_history WHERE id = :'p1' "
                             "ORDER BY seq", row_id):
            out.append(f"   history: {h[0]} -> {h[1]} attempts {h[2]} at {rel(float(h[3]), base)}")
    for e in monitor.sql("SELECT extract(epoch FROM eventtime), nodename, reportedstate, goalstate,"
                         " left(description, 120) FROM pgautofailover.event "
                         "WHERE eventtime > to_timestamp(:'p1') - interval '30 seconds' "
                         "ORDER BY eventid", base, db="pg_auto_failover"):
        out.append(f"   monitor event at {rel(float(e[0]), base)}: {e[1]} {e[2]}->{e[3]} {e[4]}")
    return "\n".join(out)


@t.case("unplanned failover (SIGKILL of the primary's pg_autoctl and postmaster) mid-drain")
def failover():
    pair = wait_until(stable, 30, 0.2)
    t.ok(pair == (n1, n2), "node1 is the primary", diag)

    def switch():
        children, at = n1.kill()
        exited = {}

        def alive():
            now = time.time()
            for pid, title in children.items():
                if pid not in exited and not running(pid):
                    exited[pid] = now
            return [title for pid, title in children.items() if pid not in exited]
        t.ok(wait_until(lambda: not alive(), 10, 0.02) or not alive(),
             f"the postmaster's {len(children)} children exit once it is dead", alive)
        t.diag("    after the kill they exited: " + ", ".join(
            f"{children[pid].strip()} {when - at:.2f} s" for pid, when in sorted(
                exited.items(), key=lambda kv: kv[1])))
        t.ok(wait_until(lambda: not n1.pids(), 10, 0.02), "node1's pg_autoctl and postmaster "
             "are gone", lambda: repr(n1.pids()))
        return at
    drain("failover", n1, n2, switch)
    t.ok(n2.workers() >= 1, "node2 runs the worker")


@t.case("the old primary comes back: as a standby, sending nothing")
def rejoin():
    before = len(double.requests())
    n1.killed = False
    n1.relaunch()
    pair = wait_until(lambda: alive() and stable(), 120, 0.2)
    t.ok(pair == (n2, n1), "node1 rejoined as the secondary of node2", diag)
    t.eq(n1.in_recovery(), "t", "node1 is in recovery")
    t.eq(n1.workers(), 0, "and runs no worker")
    t.eq(len(double.requests()), before, "the double saw no request while node1 came back")
    accepted = collections.Counter(m["to"] for m in double.control("messages")["messages"])
    t.eq({to: n for to, n in accepted.items() if n > 1}, {}, "still no message accepted twice")


@t.case("planned switchover in the middle of a drain")
def switchover():
    pair = wait_until(stable, 30, 0.2)
    t.ok(pair == (n2, n1), "node2 is the primary", diag)

    def switch():
        res = run([PG_AUTOCTL, "perform", "switchover", "--pgdata", monitor.data], timeout=150,
                  check=False)
        t.eq(res.returncode, 0, "pg_autoctl perform switchover succeeds",
             lambda: (res.stdout + res.stderr)[-3000:] + "\n" + diag())
    drain("switchover", n2, n1, switch)
    pair = wait_until(stable, 30, 0.2)
    t.ok(pair == (n1, n2), "node1 primary, node2 secondary after the switchover", diag)
    t.ok(n1.workers() >= 1, "node1 runs the worker")
    t.eq(n2.in_recovery() == "t" and n2.workers(), 0, "the demoted node2 runs none")


t.done()
