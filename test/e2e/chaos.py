"""Helpers for the chaos suites (test/e2e/1N_*.py); python3 standard library only.

Builds on harness.py (Cluster, Double, Tap) and adds what the failure-semantics
suites need:

install_history(pg) -- an AFTER INSERT OR UPDATE trigger on twilio_outbox that
    writes every row version to public.chaos_history, with the old and new
    status and next_attempt_at (as epoch seconds, clock_timestamp() of the
    change), attempts, last_http_status/last_error_code and unconfirmed.
enqueue_series(pg, n, pool, to_prefix, body_prefix) -- n rows in one
    transaction, To = to_prefix + zero-padded index (unique per row), Body =
    body_prefix + index; returns the ids.
Sampler -- polls a callable in a background thread (errors ignored), keeps
    every sample with its time.
check_final(...) -- the four assertions every chaos suite makes:
    (1) every row ends in its expected terminal status;
    (2) zero lost: every row that must be sent was accepted by the double
        (by To+Body) and its twilio_sid is one of the accepted sids;
    (3) no request for a row (POST or list lookup) arrived before the
        next_attempt_at the worker had recorded for the claim it belongs to;
    (4) duplicates (the same To+Body accepted more than once) <= max_dups,
        the count printed as a TAP comment.
Crash helpers: kill_worker, wait_worker, sql_retry (psql that rides out a
    crash restart).
"""

import collections
import json
import os
import signal
import threading
import time
import urllib.parse

from harness import TRANSITIONS, SqlError, form, pg_array, start, wait_until

def start_chaos(max_concurrency):
    """A cluster and double with the chaos suites' short backoffs and the
    status history installed: (cluster, double)."""
    pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                                 "twilio_outbox.backoff_max_ms": 2000,
                                 "twilio_outbox.max_concurrency": max_concurrency})
    install_history(pg)
    return pg, double


HISTORY_SQL = """
CREATE TABLE IF NOT EXISTS public.chaos_history (
    seq bigserial PRIMARY KEY,
    id bigint NOT NULL,
    old_status text,
    new_status text NOT NULL,
    attempts int,
    old_next_at float8,
    next_at float8,
    last_http_status int,
    last_error_code int,
    unconfirmed boolean,
    at float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()));
CREATE INDEX IF NOT EXISTS chaos_history_id ON public.chaos_history (id, seq);
CREATE OR REPLACE FUNCTION public.chaos_history_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status
       AND OLD.next_attempt_at = NEW.next_attempt_at AND OLD.attempts = NEW.attempts THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.chaos_history (id, old_status, new_status, attempts, old_next_at,
                                      next_at, last_http_status, last_error_code, unconfirmed)
    VALUES (NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.attempts,
            CASE WHEN TG_OP = 'UPDATE' THEN extract(epoch FROM OLD.next_attempt_at) END,
            extract(epoch FROM NEW.next_attempt_at), NEW.last_http_status,
            NEW.last_error_code, NEW.unconfirmed);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS chaos_history ON twilio_outbox;
CREATE TRIGGER chaos_history AFTER INSERT OR UPDATE ON twilio_outbox
    FOR EACH ROW EXECUTE FUNCTION public.chaos_history_fn();
"""

# Every row version of the outbox may be late by this much against the
# double's clock (same host: only rounding of timestamps).
CLOCK_SLACK_S = 0.005


def install_history(pg):
    pg.sql(HISTORY_SQL)


def history(pg, ids=None):
    """{id: [entry, ...]} in change order."""
    q = ("SELECT seq, id, old_status, new_status, attempts, old_next_at, next_at, "
         "last_http_status, last_error_code, unconfirmed, at FROM public.chaos_history")
    rows = (pg.sql(q + " ORDER BY seq") if ids is None else
            pg.sql(q + " WHERE id = ANY(:'p1'::bigint[]) ORDER BY seq", pg_array(ids)))
    out = collections.defaultdict(list)
    for r in rows:
        out[int(r[1])].append(dict(
            seq=int(r[0]), id=int(r[1]), old=r[2], new=r[3], attempts=int(r[4] or 0),
            old_next_at=None if r[5] is None else float(r[5]),
            next_at=None if r[6] is None else float(r[6]),
            http=None if r[7] is None else int(r[7]),
            code=None if r[8] is None else int(r[8]), unconfirmed=r[9] == "t",
            at=float(r[10])))
    return out


# Issue 4 adds one: a 401/403 returns the row to queued without spending the attempt.
AUTH_TRANSITION = ("sending", "queued")


def bad_transitions(hist):
    return [h for entries in hist.values() for h in entries
            if h["old"] != h["new"] and (h["old"], h["new"]) not in TRANSITIONS
            and not ((h["old"], h["new"]) == AUTH_TRANSITION and h["http"] in (401, 403))]


def sql_retry(pg, query, *params, timeout=60, **kw):
    """pg.sql that rides out a crash restart (connection refused, in recovery...)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return pg.sql(query, *params, **kw)
        except SqlError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def enqueue_series(pg, n, pool, to_prefix, body_prefix, width=None, extra=""):
    """n messages in one transaction: To = to_prefix + index (zero padded to
    `width` digits, by default so that the number has 11 digits after '+'),
    Body = body_prefix + index.  extra: more named arguments (SQL text)."""
    if width is None:
        width = 12 - len(to_prefix)
    rows = pg.sql("BEGIN;"
                  "SELECT twilio_enqueue(to_number => :'p1' || lpad(i::text, :'p4'::int, '0'),"
                  " body => :'p2' || i, pool => :'p3'" + (", " + extra if extra else "") + ")"
                  " FROM generate_series(0, :'p5'::int - 1) i ORDER BY i;"
                  "COMMIT;", to_prefix, body_prefix, pool, width, n, timeout=120)
    return [int(r[0]) for r in rows]


def rows(pg, ids, timeout=60):
    q = ("SELECT id, to_number, body, status, attempts, twilio_sid, last_http_status, "
         "last_error_code, last_error, extract(epoch FROM sent_at) AS sent_at, "
         "extract(epoch FROM created_at) AS created_at FROM twilio_outbox "
         "WHERE id = ANY(:'p1'::bigint[])")
    got = sql_retry(pg, f"SELECT row_to_json(q)::text FROM ({q}) q", pg_array(ids),
                    timeout=timeout)
    return {d["id"]: d for d in (json.loads(r[0]) for r in got)}


def wait_terminal(pg, ids, timeout):
    arr = pg_array(ids)

    def done():
        return sql_retry(pg, "SELECT count(*) FROM twilio_outbox WHERE id = ANY(:'p1'::bigint[]) "
                         "AND status NOT IN ('sent', 'failed', 'expired', 'canceled')",
                         arr)[0][0] == "0"
    return wait_until(done, timeout, 0.2, ignore_errors=True)


def counts(pg, ids):
    got = sql_retry(pg, "SELECT status, count(*) FROM twilio_outbox "
                    "WHERE id = ANY(:'p1'::bigint[]) GROUP BY 1", pg_array(ids))
    return {s: int(n) for s, n in got}


def worker_status(pg):
    got = pg.sql_dicts("SELECT * FROM twilio_worker_status")
    return got[0] if got else None


def pool_status(pg, pool):
    got = pg.sql_dicts("SELECT * FROM twilio_pool_status WHERE pool = :'p1'", pool)
    return got[0] if got else None


# -- the double's view ----------------------------------------------------------

def request_to(record):
    """The To of a create (form) or list (query) request, of messages or calls."""
    if record["kind"] in ("messages_create", "calls_create"):
        return form(record).get("To")
    if record["kind"] in ("messages_list", "calls_list"):
        return dict(urllib.parse.parse_qsl(record["query"])).get("To")
    return None


def accepted_by_key(double):
    """{(to, body): [message, ...]} of every message the double accepted."""
    out = collections.defaultdict(list)
    for m in double.control("messages")["messages"]:
        out[(m["to"], m["body"])].append(m)
    return out


def duplicates(accepted, keys=None):
    """Extra acceptances: sum over (to, body) of (count - 1), only for keys if given."""
    return sum(len(v) - 1 for k, v in accepted.items()
               if len(v) > 1 and (keys is None or k in keys))


# -- (3) attempts not before next_attempt_at -----------------------------------

def early_requests(hist, requests, to_ids, slack=CLOCK_SLACK_S):
    """Requests that arrived before the next_attempt_at in force for their claim.

    A request at time T for row R belongs to R's latest claim (transition to
    'sending') recorded before T; the bound is the next_attempt_at the row
    had just before that claim (the one the worker recorded last).  Returns
    (violations, checked)."""
    bad, checked = [], 0
    for r in requests:
        if r["kind"] not in ("messages_create", "messages_list", "calls_create", "calls_list"):
            continue
        row_id = to_ids.get(request_to(r))
        if row_id is None:
            continue
        claims = [h for h in hist.get(row_id, [])
                  if h["new"] == "sending" and h["old"] != "sending" and h["at"] <= r["time"]]
        if not claims:
            bad.append(dict(id=row_id, kind=r["kind"], at=r["time"], claim=None,
                            why="no claim recorded before the request"))
            continue
        claim = claims[-1]
        checked += 1
        bound = claim["old_next_at"]
        if bound is not None and r["time"] < bound - slack:
            bad.append(dict(id=row_id, kind=r["kind"], at=r["time"], bound=bound,
                            early_ms=round((bound - r["time"]) * 1000, 1),
                            attempt=form(r).get("Attempt") if r["kind"] == "messages_create"
                            else None))
    return bad, checked


# -- the four assertions ----------------------------------------------------------

def check_final(t, pg, double, ids, expect, label, max_dups=0, must_send=None,
                never_send=(), requests=None, timeout=60, dup_note=""):
    """(1)-(4) over the rows `ids`.

    expect: {status: count} or a callable(row) -> expected status.
    must_send: ids that must have been accepted at least once (default: the
    rows expected to end sent).  never_send: ids that must never be accepted.
    Returns a dict of figures (duplicates, ...)."""
    figures = {}
    rowmap = rows(pg, ids, timeout=timeout)
    got = collections.Counter(r["status"] for r in rowmap.values())
    if callable(expect):
        wrong = [(i, r["status"], expect(r)) for i, r in rowmap.items()
                 if r["status"] != expect(r)]
        t.eq(wrong[:10], [], f"{label}: (1) every row ends in its expected status",
             lambda: f"statuses: {dict(got)}\n{pg.diagnose()}")
    else:
        t.eq(dict(got), dict(expect), f"{label}: (1) rows end as {dict(expect)}", pg.diagnose)
    if must_send is None:
        if callable(expect):
            must_send = [i for i, r in rowmap.items() if expect(r) == "sent"]
        elif set(expect) == {"sent"}:
            must_send = list(ids)
        else:
            must_send = [i for i, r in rowmap.items() if r["status"] == "sent"]

    accepted = accepted_by_key(double)
    lost, foreign_sid = [], []
    for i in must_send:
        r = rowmap.get(i)
        msgs = accepted.get((r["to_number"], r["body"]), []) if r else []
        if not msgs:
            lost.append(i)
        elif r["status"] == "sent" and r["twilio_sid"] not in {m["sid"] for m in msgs}:
            foreign_sid.append((i, r["twilio_sid"]))
    t.eq(lost[:20], [], f"{label}: (2) zero lost: all {len(must_send)} rows that must be "
         f"sent were accepted by the double", lambda: f"{len(lost)} lost")
    t.eq(foreign_sid[:10], [], f"{label}: (2) every sent row's twilio_sid is a sid the "
         "double accepted for its To+Body")
    if never_send:
        sent_anyway = [i for i in never_send
                       if accepted.get((rowmap[i]["to_number"], rowmap[i]["body"]))]
        t.eq(sent_anyway, [], f"{label}: rows that must never be sent were not accepted")

    hist = history(pg, ids)
    reqs = requests if requests is not None else double.requests(create_only=False)
    to_ids = {r["to_number"]: i for i, r in rowmap.items()}
    early, checked = early_requests(hist, reqs, to_ids)
    t.eq(early[:10], [], f"{label}: (3) no attempt before its recorded next_attempt_at "
         f"({checked} requests checked)", lambda: f"{len(early)} early")
    figures["early"] = len(early)
    figures["requests_checked"] = checked

    keys = {(r["to_number"], r["body"]) for r in rowmap.values()}
    dups = duplicates(accepted, keys)
    figures["duplicates"] = dups
    t.diag(f"{label}: duplicates observed: {dups}{dup_note}")
    if max_dups == 0:
        t.eq(dups, 0, f"{label}: (4) zero duplicates (same To+Body accepted twice)")
    else:
        t.ok(dups <= max_dups, f"{label}: (4) duplicates {dups} <= {max_dups}")
    bad = bad_transitions(hist)
    t.eq([(h["id"], h["old"], h["new"]) for h in bad[:10]], [],
         f"{label}: every status change follows the contract's graph",
         lambda: f"{len(bad)} bad transitions")
    return figures


# -- sampling -------------------------------------------------------------------

class Sampler:
    """Call fn every `interval` seconds in a thread; keep (time, value) samples."""

    def __init__(self, fn, interval=0.1):
        self.fn, self.interval = fn, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                value = self.fn()
            except Exception:  # noqa: BLE001 - sampling through a crash restart
                value = None
            if value is not None:
                self.samples.append((time.time(), value))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self.samples


# -- the worker process ---------------------------------------------------------

def worker_pid(pg):
    try:
        v = pg.sql_value("SELECT pid FROM pg_stat_activity "
                         "WHERE backend_type = 'twilio_outbox worker' LIMIT 1", timeout=10)
    except SqlError:
        return None
    return int(v) if v else None


def wait_worker(pg, timeout, not_pid=None):
    """The pid of a running worker (other than not_pid), or None on timeout."""
    return wait_until(lambda: (lambda p: p if p and p != not_pid else None)(worker_pid(pg)),
                      timeout, 0.2, ignore_errors=True)


def kill_worker(pg, sig=signal.SIGKILL):
    pid = worker_pid(pg)
    if pid:
        os.kill(pid, sig)
    return pid
