#!/usr/bin/env python3
"""End-to-end: upgrading the extension under a running worker.

The library is new, the database still has 0.1.0's SQL (as after a package
upgrade and a restart, before anyone ran ALTER EXTENSION ... UPDATE):

- the worker notices, says so once (a LOG line with a hint naming ALTER
  EXTENSION twilio_outbox UPDATE), reports waiting_for_update, and sends
  nothing, because its statements need the new schema;
- rows are queued, in retry (due), and in sending (left by the old
  library's worker in the middle of a send: half of them had reached Twilio
  already); after ALTER EXTENSION twilio_outbox UPDATE the same worker,
  without a restart, sends every queued and retrying row once, looks up the
  ones in sending (those Twilio has are recorded with their sid, not sent
  again; the others are sent once): none lost, none twice.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Cluster, Double, Tap, wait_until  # noqa: E402
import chaos  # noqa: E402

SENDER = "+15005552301"
t = Tap()
double = Double()
pg = Cluster(double=double, create_extension=False,
             settings={"twilio_outbox.lookup_settle_ms": 300,
                       "twilio_outbox.backoff_base_ms": 100})
pg.sql("CREATE EXTENSION twilio_outbox VERSION '0.1.0'")
pid = chaos.wait_worker(pg, 20)


@t.case("a new library over 0.1.0's SQL waits, then takes the update without a restart")
def upgrade():
    log_from = len(pg.log_text())
    pg.sql("INSERT INTO twilio_pools (name, sender, mps, burst) VALUES ('default', :'p1', 100, 10)",
           SENDER)
    queued = [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue('+1415230' || lpad(i::text, 4, '0'), 'queued ' || i) "
        "FROM generate_series(1, 20) i")]
    retrying = [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue('+1415231' || lpad(i::text, 4, '0'), 'retrying ' || i) "
        "FROM generate_series(1, 10) i")]
    pg.sql("UPDATE twilio_outbox SET status = 'retrying', attempts = 1, last_http_status = 503, "
           "next_attempt_at = now() - interval '1 second' WHERE id = ANY(:'p1'::bigint[])",
           "{" + ",".join(map(str, retrying)) + "}")
    sending = [int(r[0]) for r in pg.sql(
        "SELECT twilio_enqueue('+1415232' || lpad(i::text, 4, '0'), 'in flight ' || i) "
        "FROM generate_series(1, 10) i")]
    pg.sql("UPDATE twilio_outbox SET status = 'sending', attempts = 1, claimed_at = now() "
           "WHERE id = ANY(:'p1'::bigint[])", "{" + ",".join(map(str, sending)) + "}")
    # the old worker's requests for the first five reached Twilio
    reached = {}
    for k in range(1, 6):
        to = f"+1415232{k:04d}"
        reached[to] = double.seed(to, SENDER, f"in flight {k}", 1)[0]

    state = wait_until(lambda: pg.sql_value("SELECT state FROM twilio_worker_status")
                       == "waiting_for_update", 10)
    t.ok(state, "the worker reports waiting_for_update", pg.diagnose)
    time.sleep(2.5)
    t.eq(len(double.requests(create_only=False)), 0, "it sends nothing while the schema is old")
    log = pg.log_text()[log_from:]
    t.eq(log.count("is version 0.1.0, this library needs version 0.2.0"), 1,
         "it says so once", lambda: log[-2000:])
    t.ok("ALTER EXTENSION twilio_outbox UPDATE" in log, "with a hint naming the command")

    pg.sql("ALTER EXTENSION twilio_outbox UPDATE")
    every = queued + retrying + sending
    t.ok(pg.wait_terminal(every, 30), "after the update every row finished", pg.diagnose)
    t.eq(pg.worker_pid(), pid, "the same worker, without a restart")
    t.eq(pg.statuses(every), {"sent": 40}, "all 40 are sent")
    rows = {r["to_number"]: r for r in chaos.rows(pg, sending).values()}
    t.eq({to: rows[to]["twilio_sid"] for to in reached}, reached,
         "the five that had reached Twilio hold the sids Twilio gave them")
    creates = double.requests()
    per_to = {}
    for r in creates:
        to = chaos.request_to(r)
        per_to[to] = per_to.get(to, 0) + 1
    t.eq(sorted(to for to in reached if per_to.get(to)), [],
         "... and were not sent again")
    twice = sorted(to for to, n in per_to.items() if n > 1)
    t.eq(twice, [], "no message was sent twice")
    t.eq(len(creates), 35, "35 messages went out: the 40 rows less the 5 Twilio had")
    t.ok("sending resumes" in pg.log_text()[log_from:], "the worker says it resumes")


t.done()
