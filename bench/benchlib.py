"""Helpers shared by the sender worker's benchmarks (python3 stdlib only).

- Pg: a minimal PostgreSQL client (protocol 3, simple query, trust
  authentication) on the cluster's Unix socket, so that a benchmark can run
  many small statements without starting psql each time and can take
  client-side timestamps right when a COMMIT returns.
- Double: the test double's control API (test/twilio_double.py).
- Small figures: percentiles, the most segments in a sliding window, CPU
  time and memory of a process from /proc.
- plot(): PNG plots with gnuplot into bench/out/ (or $BENCH_OUT).

The connection settings come from PGHOST, PGPORT, PGUSER and PGDATABASE as
scripts/lib.sh's start_cluster exports them.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-token"


class PgError(Exception):
    pass


class Pg:
    """One session; query() returns the rows of the last result as lists of str/None."""

    def __init__(self, host=None, port=None, user=None, database=None):
        host = host or os.environ["PGHOST"]
        port = int(port or os.environ["PGPORT"])
        user = user or os.environ.get("PGUSER", "postgres")
        database = database or os.environ.get("PGDATABASE", user)
        if host.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            self.sock = socket.create_connection((host, port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                          (("user", user), ("database", database),
                           ("application_name", "twilio_outbox bench")))
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self.buf = b""
        while True:
            kind, payload = self._read()
            if kind == b"R":
                if struct.unpack("!i", payload[:4])[0] != 0:
                    raise PgError("only trust authentication is supported")
            elif kind == b"E":
                raise PgError(self._error(payload))
            elif kind == b"Z":
                break

    def _recv(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PgError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read(self):
        header = self._recv(5)
        length = struct.unpack("!i", header[1:])[0]
        return header[:1], self._recv(length - 4)

    @staticmethod
    def _error(payload):
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[part[:1]] = part[1:].decode(errors="replace")
        return f"{fields.get(b'S', 'ERROR')}: {fields.get(b'M', '?')}"

    def query(self, sql):
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)
        rows, error = [], None
        while True:
            kind, payload = self._read()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                n = struct.unpack("!h", payload[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    size = struct.unpack("!i", payload[pos:pos + 4])[0]
                    pos += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + size].decode())
                        pos += size
                rows.append(row)
            elif kind == b"E":
                error = self._error(payload)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return rows

    def value(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        finally:
            self.sock.close()


class Double:
    """The test double's control API."""

    def __init__(self, url=None):
        self.url = (url or os.environ["DOUBLE_URL"]).rstrip("/")

    def _call(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def requests(self, since=0):
        return self._call("GET", f"/_control/requests?since={since}")["requests"]

    def stats(self):
        return self._call("GET", "/_control/stats")

    def reset(self):
        return self._call("POST", "/_control/reset", {})

    def config(self, **settings):
        return self._call("POST", "/_control/config", settings)


def form(record):
    """The first value of each form field of a request record."""
    out = {}
    for name, value in record.get("form") or []:
        out.setdefault(name, value)
    return out


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def max_in_window(events, window=1.0):
    """events: sorted (time, weight); the largest total weight in any [x, x + window)."""
    best = total = 0
    j = 0
    for i, (start, _) in enumerate(events):
        while j < len(events) and events[j][0] < start + window:
            total += events[j][1]
            j += 1
        best = max(best, total)
        total -= events[i][1]
    return best


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def memory_kb(pid):
    """VmRSS, RssAnon, RssFile, RssShmem, VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def worker_pid(pg):
    pid = pg.value("SELECT pid FROM twilio_worker_status")
    if not pid or pid == "0":
        raise SystemExit("the twilio_outbox worker is not running")
    return int(pid)


def wait_for(predicate, timeout, interval=0.05):
    """Call predicate() every interval seconds until it is true or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def enqueue_sql(n, pool, body, to_prefix="+1415", first=0):
    """One statement that enqueues n messages with distinct 'to' numbers."""
    return (f"SELECT count(twilio_enqueue('{to_prefix}' || lpad(i::text, 7, '0'), "
            f"{body}, '{pool}')) FROM generate_series({first}, {first + n - 1}) i")


def ensure_pool(pg, name, sender, mps, burst=1, paused=False, timeout=5):
    """Create (or update) a pool and wait until the worker serves it."""
    pg.query(f"INSERT INTO twilio_pools (name, sender, mps, burst, paused) "
             f"VALUES ('{name}', '{sender}', {mps}, {burst}, {paused}) "
             f"ON CONFLICT (name) DO UPDATE SET sender = excluded.sender, mps = excluded.mps, "
             f"burst = excluded.burst, paused = excluded.paused")
    ok = wait_for(lambda: pg.value(
        f"SELECT count(*) FROM twilio_pool_status WHERE pool = '{name}' AND mps = {mps} "
        f"AND burst = {burst} AND paused = {paused}") == "1", timeout)
    if not ok:
        raise SystemExit(f"the worker did not pick up pool {name} within {timeout} s")


def drain(pg, n, pool, body="'Your order ' || i || ' has shipped and will arrive on Tuesday.'",
          timeout=120, poll=0.05, first=0):
    """Enqueue n messages in one transaction and wait until they are all sent.

    Returns a dict: commit (client time right after COMMIT returned), first_sent,
    last_sent (max sent_at), elapsed (last_sent - commit), rate (n / elapsed),
    cpu (worker CPU seconds from commit to the poll that saw the last row),
    machine_busy (share of all CPUs busy meanwhile),
    statuses (count per status of these rows), done (all sent in time).
    """
    pid = worker_pid(pg)
    before = int(pg.value("SELECT coalesce(max(id), 0) FROM twilio_outbox"))
    pg.query("BEGIN")
    pg.query(enqueue_sql(n, pool, body, first=first))
    cpu0, machine0 = cpu_seconds(pid), machine_cpu()
    pg.query("COMMIT")
    commit = time.time()
    where = f"id > {before} AND pool = '{pool}'"
    done = wait_for(lambda: int(pg.value(
        f"SELECT count(*) FROM twilio_outbox WHERE {where} AND status = 'sent'")) >= n,
        timeout, poll)
    cpu1, machine1 = cpu_seconds(pid), machine_cpu()
    first_sent, last_sent = pg.query(
        f"SELECT extract(epoch FROM min(sent_at)), extract(epoch FROM max(sent_at)) "
        f"FROM twilio_outbox WHERE {where}")[0]
    statuses = dict(pg.query(f"SELECT status, count(*) FROM twilio_outbox WHERE {where} "
                             f"GROUP BY 1 ORDER BY 1"))
    out = {"n": n, "commit": commit, "done": done, "statuses": statuses,
           "cpu": cpu1 - cpu0, "ncpu": os.cpu_count(),
           "machine_busy": (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
           "first_sent": None, "last_sent": None,
           "elapsed": None, "rate": None}
    if last_sent is not None:
        sent = int(statuses.get("sent", 0))
        out.update(first_sent=float(first_sent), last_sent=float(last_sent),
                   elapsed=float(last_sent) - commit)
        out["rate"] = sent / out["elapsed"] if out["elapsed"] > 0 else None
    return out


# -- plots ---------------------------------------------------------------------

def out_dir():
    """Where the benchmarks write their plots: $BENCH_OUT, or bench/out/ (git-ignored)."""
    d = Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent / "out")
    d.mkdir(parents=True, exist_ok=True)
    return d


def plot(name, title, xlabel, ylabel, series, y2label=None, settings=(), size=(900, 480),
         logx=False, key="top left"):
    """Draw series with gnuplot into out_dir()/NAME.png; prints and returns its path.

    series: dicts with title, points [(x, y), ...] and optionally style
    ('lines', 'linespoints', 'points', 'steps', 'impulses'), axis ('x1y1' or
    'x1y2'), width, dash (gnuplot dashtype), color ('#rrggbb'); key is where
    the legend goes; settings are more gnuplot commands.  The data and
    the gnuplot script are kept beside the PNG (NAME.dat, NAME.gp), so a plot
    can be redrawn by hand.  Without gnuplot (Debian package gnuplot-nox) it
    says so and returns None.
    """
    if shutil.which("gnuplot") is None:
        print(f"plot {name}: gnuplot is not installed (apt-get install gnuplot-nox); no plot")
        return None
    d = out_dir()
    png, dat, gp = d / f"{name}.png", d / f"{name}.dat", d / f"{name}.gp"
    with open(dat, "w") as f:
        for s in series:
            f.write(f"# {s['title']}\n")
            for x, y in s["points"]:
                f.write(f"{x} {y}\n")
            f.write("\n\n")
    q = lambda text: '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    lines = [f"set terminal pngcairo noenhanced size {size[0]},{size[1]} font ',10'",
             f"set output {q(png)}", f"set title {q(title)}", f"set xlabel {q(xlabel)}",
             f"set ylabel {q(ylabel)}", "set grid", f"set key {key} box opaque",
             "set datafile separator ' '"]
    if logx:
        lines.append("set logscale x")
    if y2label:
        lines += [f"set y2label {q(y2label)}", "set y2tics", "set ytics nomirror"]
    lines += list(settings)
    parts = []
    for i, s in enumerate(series):
        style = s.get("style", "lines")
        spec = f"{q(dat)} index {i} using 1:2 axes {s.get('axis', 'x1y1')} with {style}"
        spec += f" lw {s.get('width', 2)}"
        if s.get("dash"):
            spec += f" dt {s['dash']}"
        if s.get("color"):
            spec += f" lc rgb {q(s['color'])}"
        if style in ("points", "linespoints"):
            spec += f" pt {s.get('pt', 7)} ps {s.get('ps', 0.5)}"
        parts.append(spec + f" title {q(s['title'])}")
    lines.append("plot " + ", \\\n     ".join(parts))
    gp.write_text("\n".join(lines) + "\n")
    r = subprocess.run(["gnuplot", str(gp)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"plot {name}: gnuplot failed: {r.stderr.strip()[:500]}")
        return None
    print(f"plot: {png}")
    return png
