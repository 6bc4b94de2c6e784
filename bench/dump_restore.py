#!/usr/bin/env python3
"""bench/dump_restore's driver: the time and size of a pg_dump -Fc of an
outbox of ROWS rows (90 % sent, 5 % failed, 5 % queued in a paused pool, plus
opt-outs), and of restoring it into a fresh cluster, with a plain
pg_restore and with the README's parallel procedure (see bench/dump_restore)."""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "e2e"))
from harness import PGBIN, Cluster, workdir  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
JOBS = int(os.environ.get("JOBS", "2"))
DUMP = workdir() / "bench.dump"
OFF = {"twilio_outbox.enabled": False}


def run(args, pg):
    began = time.monotonic()
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=pg.env())
    if res.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{res.stdout}{res.stderr}")
    return time.monotonic() - began, res.stdout


src = Cluster(name="src", settings=OFF)
src.sql("INSERT INTO twilio_pools (name, sender, mps, paused) VALUES "
        "('bulk', '+15005550050', 100, true), ('otp', '+15005550051', 10, false)")
src.sql("""
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, twilio_sid,
                           finished_at, sent_at, attempts)
SELECT CASE WHEN i % 2 = 0 THEN 'bulk' ELSE 'otp' END, '+1415' || lpad((i % 10000000)::text, 7, '0'),
       'your code is ' || i, 1,
       CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'sent' END,
       CASE WHEN i % 20 = 0 THEN NULL ELSE 'SM' || md5(i::text) END,
       now() - (i % 86400) * interval '1 second',
       CASE WHEN i % 20 = 0 THEN NULL ELSE now() - (i % 86400) * interval '1 second' END, 1
  FROM generate_series(1, :'p1'::int * 95 / 100) i""", ROWS)
src.sql("INSERT INTO twilio_outbox (pool, to_number, body, num_segments) "
        "SELECT 'bulk', '+1628' || lpad(i::text, 7, '0'), 'queued ' || i, 1 "
        "FROM generate_series(1, :'p1'::int * 5 / 100) i", ROWS)
src.sql("INSERT INTO twilio_opt_outs (phone_number, source) "
        "SELECT '+1650' || lpad(i::text, 7, '0'), 'inbound STOP' FROM generate_series(1, 1000) i")
src.sql("VACUUM ANALYZE twilio_outbox")
rows = int(src.sql_value("SELECT count(*) FROM twilio_outbox"))
heap = src.sql_value("SELECT pg_size_pretty(pg_total_relation_size('twilio_outbox'))")

took_dump, _ = run([PGBIN / "pg_dump", "-Fc", "-f", DUMP, src.db], src)
size = DUMP.stat().st_size
print(f"outbox: {rows} rows, {heap} with indexes", flush=True)
print(f"pg_dump -Fc: {took_dump:.2f} s, {size / 1e6:.1f} MB ({rows / took_dump:,.0f} rows/s)",
      flush=True)

results = []
for label in ("plain", "parallel"):
    dst = Cluster(name=f"dst_{label}", settings=OFF, create_extension=False)
    if label == "plain":
        took, _ = run([PGBIN / "pg_restore", "--exit-on-error", "-d", dst.db, DUMP], dst)
    else:
        # the README's procedure: our data with one job, the rest with JOBS
        _, toc = run([PGBIN / "pg_restore", "-l", DUMP], dst)
        ours = [ln for ln in toc.splitlines()
                if (" TABLE DATA " in ln or " SEQUENCE SET " in ln) and " twilio_" in ln]
        rest = [ln for ln in toc.splitlines() if ln not in ours]
        (workdir() / "ours.list").write_text("\n".join(ours) + "\n")
        (workdir() / "rest.list").write_text("\n".join(rest) + "\n")
        took = 0.0
        for args in (["--section=pre-data"], ["-L", workdir() / "ours.list"],
                     ["-j", str(JOBS), "--section=data", "--section=post-data",
                      "-L", workdir() / "rest.list"]):
            t, _ = run([PGBIN / "pg_restore", "--exit-on-error", "-d", dst.db, *args, DUMP], dst)
            took += t
    back = int(dst.sql_value("SELECT count(*) FROM twilio_outbox"))
    same = dst.sql_value("SELECT max(id) FROM twilio_outbox") == src.sql_value(
        "SELECT max(id) FROM twilio_outbox")
    print(f"pg_restore ({label}{', -j ' + str(JOBS) if label == 'parallel' else ''}): "
          f"{took:.2f} s ({back / took:,.0f} rows/s), {back} of {rows} rows back, "
          f"max(id) {'the same' if same else 'DIFFERS'}", flush=True)
    results.append((label, took, back == rows and same))
    dst.stop()

print()
print(f"rows {rows}: dump {took_dump:.2f} s / {size / 1e6:.1f} MB; " + "; ".join(
    f"restore {label} {took:.2f} s ({'all back' if ok else 'ROWS MISSING'})"
    for label, took, ok in results))
sys.exit(0 if all(ok for _, _, ok in results) else 1)
