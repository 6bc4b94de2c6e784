#!/usr/bin/env python3
"""End-to-end: a pg_dump / pg_restore round trip keeps the users' data.

A first cluster gets pools (one of them paused), sent messages (some with a
delivery status from an applied status callback), failed ones (a permanent
400 from Twilio), an opt-out from an inbound STOP and one set by hand, a
message that failed because its number opted out, a canceled one, and then
-- with its worker stopped, as when a backup is taken of a busy outbox --
queued messages, some scheduled for later and some in the paused pool.
It is dumped with `pg_dump -Fc` and restored into two fresh clusters whose
workers are disabled during the restore (the procedure the README gives):
with a plain `pg_restore`, and with the README's parallel procedure (our
data with one job, the rest with `-j 2`) into the one with its own Twilio
double.  Then:

- every row of twilio_pools, twilio_outbox, twilio_inbox, twilio_opt_outs
  and the opt-out keyword log (_twilio_opt_out_keywords, which outlives the
  inbox's retention) is back, column by column (same ids, statuses, sids,
  attempts, times);
- the private attempt log (_twilio_attempt_errors) is not in the dump;
- new ids continue after the restored ones in the outbox and the inbox, and
  a dedup_key seen before the dump still returns the restored row;
- once enabled, the restored worker sends each due queued message once, the
  paused pool's once it is resumed, and none of the sent, failed, opted-out or
  canceled ones; the scheduled ones stay queued.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PGBIN, Cluster, Double, Tap, form, pg_array, wait_until, workdir  # noqa: E402

SENDER, MG = "+15005550001", "MG" + "b" * 32
OPT_OUT_STOP, OPT_OUT_HAND, BAD = "+14155550901", "+14155550902", "+14155550903"
QUEUED_DUE, QUEUED_PAUSED, QUEUED_LATER = 12, 3, 2

t = Tap()
double_a = Double("double_a")
a = Cluster(double=double_a, name="a")
a.add_pool("default", SENDER)
a.add_pool("bulk", MG, mps=5, burst=1)
IDS = {}

# the columns a restore must bring back (everything but generated ones, which
# are recomputed; they are compared too, through the row's JSON)
SNAPSHOTS = {
    "twilio_pools": "SELECT * FROM twilio_pools ORDER BY name",
    "twilio_outbox": "SELECT * FROM twilio_outbox ORDER BY id",
    "twilio_inbox": "SELECT * FROM twilio_inbox ORDER BY id",
    "twilio_opt_outs": "SELECT * FROM twilio_opt_outs ORDER BY phone_number",
    "_twilio_opt_out_keywords": "SELECT * FROM _twilio_opt_out_keywords ORDER BY message_sid",
}


def snapshot(pg):
    return {name: pg.sql_dicts(q) for name, q in SNAPSHOTS.items()}


def sequences(pg):
    return {r["s"]: (r["last_value"], r["is_called"]) for r in pg.sql_dicts(
        "SELECT 'outbox' AS s, last_value, is_called FROM twilio_outbox_id_seq "
        "UNION ALL SELECT 'inbox', last_value, is_called FROM twilio_inbox_id_seq")}


def run(args, pg, timeout=120):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                         env=pg.env(), timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({res.returncode}):\n"
                           f"{res.stdout}{res.stderr}")
    return res.stdout + res.stderr


@t.case("the first cluster: sent, failed, opted-out, canceled and queued rows")
def populate():
    double_a.config(rules=[{"match": {"to": BAD}, "action": {"status": 400, "code": 21211}}])
    IDS["sent"] = a.enqueue_batch([dict(to=f"+1415555{i:04d}", body=f"sent {i}",
                                        dedup_key=f"order-{i}") for i in range(1, 9)]
                                  + [dict(to=f"+1415556{i:04d}", body=f"bulk {i}", pool="bulk")
                                     for i in range(1, 3)])
    IDS["failed"] = [a.enqueue(BAD, "a number Twilio refuses")]
    t.ok(a.wait_terminal(IDS["sent"] + IDS["failed"], 30), "the first messages finished",
         a.diagnose)
    sids = [r[0] for r in a.sql("SELECT twilio_sid FROM twilio_outbox WHERE id = ANY(:'p1') "
                                "ORDER BY id", pg_array(IDS["sent"][:3]))]
    # callbacks stored the way twilio_ingest_callback stores them, applied by the worker
    a.sql("INSERT INTO twilio_inbox (kind, params, idempotency_token) "
          "SELECT 'status', jsonb_build_object('MessageSid', s, 'MessageStatus', 'delivered'), "
          "       'tok-' || s FROM unnest(:'p1'::text[]) s", pg_array(sids))
    a.sql("INSERT INTO twilio_inbox (kind, params) VALUES ('inbound', jsonb_build_object("
          "'MessageSid', 'SM' || repeat('9', 32), 'From', :'p1', 'To', :'p2', 'Body', 'STOP'))",
          OPT_OUT_STOP, SENDER)
    a.sql("INSERT INTO twilio_opt_outs (phone_number, source) VALUES (:'p1', 'by hand')",
          OPT_OUT_HAND)
    t.ok(wait_until(lambda: a.sql_value("SELECT count(*) FROM twilio_inbox "
                                        "WHERE applied_at IS NULL") == "0"
                    and a.sql_value("SELECT count(*) FROM twilio_opt_outs") == "2", 20, 0.1),
         "the worker applied the callbacks", a.diagnose)
    IDS["opted_out"] = [a.enqueue(OPT_OUT_STOP, "after STOP"), a.enqueue(OPT_OUT_HAND, "listed")]
    t.ok(a.wait_terminal(IDS["opted_out"], 20), "the opted-out messages finished", a.diagnose)
    IDS["canceled"] = [a.enqueue("+14155550904", "canceled later",
                                 send_after="2100-01-01 00:00+00")]
    t.eq(a.sql_value("SELECT twilio_cancel(:'p1')", IDS["canceled"][0]), "t", "one canceled")
    # no request remains for anything above: the double has answered all of them
    t.eq(len(double_a.requests()), len(IDS["sent"]) + 1, "the first double saw the sends")
    t.eq(a.statuses(), {"sent": 10, "failed": 3, "canceled": 1}, "the finished rows",
         a.diagnose)
    t.eq(a.sql_value("SELECT count(*) FROM twilio_outbox WHERE delivery_status = 'delivered'"),
         "3", "three have a delivery status from their callbacks")
    t.ok(int(a.sql_value("SELECT count(*) FROM _twilio_attempt_errors")) >= 1,
         "the private attempt log has the 400")

    # the backup is taken while messages wait: stop the worker first so that
    # they stay queued here (and this cluster never sends them)
    a.reload(**{"twilio_outbox.enabled": False})
    a.restart()
    a.sql("UPDATE twilio_pools SET paused = true WHERE name = 'bulk'")
    IDS["due"] = a.enqueue_batch([dict(to=f"+1415557{i:04d}", body=f"queued {i}",
                                       dedup_key=f"queued-{i}", priority=i % 3)
                                  for i in range(QUEUED_DUE)])
    IDS["paused"] = a.enqueue_batch([dict(to=f"+1415558{i:04d}", body=f"paused {i}",
                                          pool="bulk") for i in range(QUEUED_PAUSED)])
    IDS["later"] = a.enqueue_batch([dict(to=f"+1415559{i:04d}", body=f"later {i}",
                                         send_after="2100-01-01 00:00+00")
                                    for i in range(QUEUED_LATER)])
    # an id taken and rolled back: the sequence is ahead of the largest id
    a.enqueue_batch([dict(to="+14155550999", body="rolled back")], rollback=True)
    t.eq(a.statuses(), {"sent": 10, "failed": 3, "canceled": 1,
                        "queued": QUEUED_DUE + QUEUED_PAUSED + QUEUED_LATER},
         "and the queued rows", a.diagnose)


DUMP = workdir() / "twilio.dump"
BEFORE = {}


@t.case("pg_dump -Fc")
def dump():
    BEFORE.update(snapshot(a))
    BEFORE["sequences"] = sequences(a)
    run([PGBIN / "pg_dump", "-Fc", "-f", DUMP, a.db], a)
    toc = run([PGBIN / "pg_restore", "-l", DUMP], a)
    data = sorted(line.split()[-2] for line in toc.splitlines()
                  if " TABLE DATA " in line or " SEQUENCE SET " in line)
    t.eq(data, sorted(["twilio_pools", "twilio_outbox", "twilio_inbox", "twilio_opt_outs",
                       "_twilio_opt_out_keywords", "twilio_outbox_id_seq", "twilio_inbox_id_seq"]),
         "the dump has the data of the five tables and the two id sequences, "
         "and not the private attempt log", toc)


def restore_into(pg, steps):
    began = time.monotonic()
    for args in steps:
        run([PGBIN / "pg_restore", "--exit-on-error", "-d", pg.db, *args], pg)
    took = time.monotonic() - began
    t.eq(pg.sql_value("SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox'"),
         a.sql_value("SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox'"),
         "the extension is back at the same version")
    after = snapshot(pg)
    for name in SNAPSHOTS:
        t.eq(after[name], BEFORE[name], f"{name}: every row is back, column by column "
             f"({len(BEFORE[name])} rows)")
    t.eq(sequences(pg), BEFORE["sequences"], "both id sequences are where they were")
    t.eq(pg.sql_value("SELECT count(*) FROM _twilio_attempt_errors"), "0",
         "the private attempt log starts empty")
    return took


# pg_restore -j runs the TABLE DATA items in parallel without regard to the
# foreign key between two configuration tables (twilio_outbox.pool ->
# twilio_pools); the README's procedure restores our data with one job.
OURS = re.compile(r" (TABLE DATA|SEQUENCE SET) \S+ twilio_")


@t.case("pg_restore with one job into a fresh cluster (worker disabled)")
def restore_serial():
    c = Cluster(name="c", create_extension=False, settings={"twilio_outbox.enabled": False})
    took = restore_into(c, [[DUMP]])
    t.diag(f"    pg_restore took {took:.2f} s for {len(BEFORE['twilio_outbox'])} outbox rows")
    c.stop()


double_b = Double("double_b")
b = Cluster(double=double_b, name="b", create_extension=False,
            settings={"twilio_outbox.enabled": False})


@t.case("the README's parallel restore into a fresh cluster (worker disabled)")
def restore_parallel():
    toc = run([PGBIN / "pg_restore", "-l", DUMP], a).splitlines(keepends=True)
    ours, rest = workdir() / "twilio.list", workdir() / "rest.list"
    ours.write_text("".join(line for line in toc if OURS.search(line)))
    rest.write_text("".join(line for line in toc if not OURS.search(line)))
    t.eq(len(ours.read_text().splitlines()), 6, "six items of ours in the list", ours.read_text)
    took = restore_into(b, [["--section=pre-data", DUMP], ["-L", ours, DUMP],
                            ["-j", "2", "--section=data", "--section=post-data", "-L", rest,
                             DUMP]])
    t.diag(f"    the three pg_restore runs took {took:.2f} s")
    t.eq(double_b.requests(), [], "nothing was sent while the worker was disabled")


@t.case("new ids continue after the restored ones")
def new_ids():
    last_outbox = BEFORE["sequences"]["outbox"][0]
    last_inbox = BEFORE["sequences"]["inbox"][0]
    t.ok(last_outbox > max(r["id"] for r in BEFORE["twilio_outbox"]),
         "the source's outbox sequence was ahead of its largest id (a rolled-back enqueue)")
    IDS["new"] = b.enqueue("+14155550800", "the first message after the restore")
    t.eq(IDS["new"], last_outbox + 1, "twilio_enqueue takes the next outbox id")
    new_inbox = int(b.sql_value(
        "INSERT INTO twilio_inbox (kind, params) VALUES ('inbound', jsonb_build_object("
        "'MessageSid', 'SM' || repeat('8', 32), 'From', '+14155550801', 'To', :'p1', "
        "'Body', 'hello')) RETURNING id", SENDER))
    t.eq(new_inbox, last_inbox + 1, "a new callback takes the next inbox id")
    t.eq(b.sql_value("SELECT twilio_enqueue('+14155570003', 'again', dedup_key => 'queued-3')"),
         str(IDS["due"][3]), "a dedup_key from before the dump returns the restored row")
    t.eq(b.sql_value("SELECT twilio_enqueue('+14155550001', 'again', dedup_key => 'order-1')"),
         str(IDS["sent"][0]), "also for a row sent before the dump")


@t.case("the restored worker sends the queued rows, and nothing else")
def send():
    b.reload(**{"twilio_outbox.enabled": True})
    due = IDS["due"] + [IDS["new"]]
    t.ok(b.wait_terminal(due, 30), "the due queued rows are sent", b.diagnose)
    t.eq(b.statuses(due), {"sent": len(due)}, "all of them sent", b.diagnose)
    b.sql("UPDATE twilio_pools SET paused = false WHERE name = 'bulk'")
    t.ok(b.wait_terminal(IDS["paused"], 30), "the paused pool's rows once it is resumed",
         b.diagnose)
    t.eq(b.statuses(IDS["paused"]), {"sent": QUEUED_PAUSED}, "sent", b.diagnose)
    reqs = double_b.requests()
    want = sorted([r["to_number"] for r in BEFORE["twilio_outbox"]
                   if r["id"] in IDS["due"] + IDS["paused"]] + ["+14155550800"])
    t.eq(sorted(form(r)["To"] for r in reqs), want,
         "the new double saw one request per queued row and none for anything finished "
         "before the dump")
    sids = {r["sid"] for r in reqs}
    got = {int(r[0]): r[1] for r in b.sql("SELECT id, twilio_sid FROM twilio_outbox "
                                          "WHERE id = ANY(:'p1')", pg_array(due + IDS["paused"]))}
    t.eq(set(got.values()), sids, "each of them has the sid the new double returned")
    old = {r["id"]: (r["status"], r["twilio_sid"], r["attempts"]) for r in BEFORE["twilio_outbox"]
           if r["status"] != "queued"}
    now = {int(r[0]): (r[1], r[2], int(r[3])) for r in b.sql(
        "SELECT id, status, twilio_sid, attempts FROM twilio_outbox WHERE id = ANY(:'p1')",
        pg_array(list(old)))}
    t.eq(now, old, "rows finished before the dump are untouched (status, sid, attempts)")
    t.eq(b.statuses(IDS["later"]), {"queued": QUEUED_LATER}, "scheduled rows wait for their time")
    t.eq(b.sql_value("SELECT source FROM twilio_opt_outs WHERE phone_number = :'p1'",
                     OPT_OUT_STOP), "inbound STOP", "the opt-out list is back")
    stop_id = b.enqueue(OPT_OUT_STOP, "still opted out")
    t.ok(b.wait_terminal([stop_id], 20), "a new message to an opted-out number finishes")
    t.eq(b.sql_value("SELECT status || ' ' || last_error_code FROM twilio_outbox WHERE id = :'p1'",
                     stop_id), "failed 21610", "and fails with 21610, without a request")
    t.eq(len(double_b.requests()), len(reqs), "no further request")
    t.eq(len(double_a.requests()), len(IDS["sent"]) + 1,
         "the first cluster sent nothing after its worker was stopped")


t.done()
