#!/usr/bin/env python3
"""bench/memory's driver: the worker's resident memory before and after
sending many messages.

After a warm-up drain, reads /proc/<worker pid>/status (VmRSS and its parts:
RssAnon = private heap, RssShmem = shared buffers and other shared memory the
process has touched so far, RssFile = mapped files) and asks the worker to log
its memory contexts (pg_log_backend_memory_contexts; palloc'ed memory only,
libcurl's malloc'ed memory is not in it).  Then drains --messages in batches
of --batch, one transaction each, sampling after every batch.

    memory.py --server-log FILE [--warmup 5000] [--messages 100000] [--batch 10000]
"""

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Pg, drain, ensure_pool, memory_kb, wait_for, worker_pid  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--server-log", required=True)
parser.add_argument("--warmup", type=int, default=5000)
parser.add_argument("--messages", type=int, default=100000)
parser.add_argument("--batch", type=int, default=10000)
args = parser.parse_args()

pg = Pg()
ensure_pool(pg, "mem", "+15005550006", 10000, 100)
pid = worker_pid(pg)
log = Path(args.server_log)


def contexts():
    """The worker's palloc'ed memory: 'Grand total' of its logged memory contexts, in kB."""
    offset = log.stat().st_size
    pg.query(f"SELECT pg_log_backend_memory_contexts({pid})")
    found = []

    def grand_total():
        with log.open(errors="replace") as f:
            f.seek(offset)
            found[:] = re.findall(r"Grand total: (\d+) bytes in \d+ blocks; (\d+) free.*?(\d+) used",
                                  f.read())
        return bool(found)

    if not wait_for(grand_total, 5, 0.1):
        return None, None
    total, _, used = found[-1]
    return int(total) / 1024, int(used) / 1024


def sample(label, sent):
    mem = memory_kb(pid)
    total, used = contexts()
    print(f"{label:>16} {sent:9d} {mem['VmRSS']:9d} {mem['RssAnon']:9d} {mem['RssShmem']:9d} "
          f"{mem['RssFile']:9d} {total or 0:12.0f} {used or 0:10.0f}", flush=True)
    return mem, total


first = 0
r = drain(pg, args.warmup, "mem", timeout=120, poll=0.2, first=first)
first += args.warmup
if not r["done"]:
    sys.exit(f"the warm-up did not drain: {r['statuses']}")
time.sleep(1)
print(f"worker pid {pid}; sizes in kB")
print(f"{'':>16} {'sent':>9} {'VmRSS':>9} {'RssAnon':>9} {'RssShmem':>9} {'RssFile':>9} "
      f"{'contexts':>12} {'used':>10}")
before, ctx_before = sample("after warm-up", args.warmup)
sent = 0
samples = [before]
while sent < args.messages:
    n = min(args.batch, args.messages - sent)
    r = drain(pg, n, "mem", timeout=120, poll=0.2, first=first)
    first += n
    sent += n
    if not r["done"]:
        print(f"batch not drained within 120 s: {r['statuses']}")
        break
    after, ctx_after = sample(f"+{sent}", args.warmup + sent)
    samples.append(after)
if worker_pid(pg) != pid:
    print("the worker restarted during the run: figures are not comparable")
growth = 100 * (after["VmRSS"] - before["VmRSS"]) / before["VmRSS"]
anon = 100 * (after["RssAnon"] - before["RssAnon"]) / before["RssAnon"]
print(f"VmRSS {before['VmRSS']} kB -> {after['VmRSS']} kB after {sent} more messages: "
      f"{growth:+.1f}% (goal <= 10%)")
print(f"  of which private (RssAnon) {before['RssAnon']} -> {after['RssAnon']} kB ({anon:+.1f}%), "
      f"shared memory touched (RssShmem) {before['RssShmem']} -> {after['RssShmem']} kB")
private = lambda m: m["VmRSS"] - m["RssShmem"]  # noqa: E731
mid = samples[len(samples) // 2]
print(f"  VmRSS less RssShmem (the process's own pages) {private(before)} -> {private(after)} kB "
      f"({100 * (private(after) - private(before)) / private(before):+.1f}%; goal <= 10%); over the "
      f"second half of the run {private(mid)} -> {private(after)} kB "
      f"({100 * (private(after) - private(mid)) / private(mid):+.1f}%)")
if ctx_before and ctx_after:
    print(f"  memory contexts (palloc) {ctx_before:.0f} -> {ctx_after:.0f} kB")
