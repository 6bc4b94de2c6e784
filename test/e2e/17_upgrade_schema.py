#!/usr/bin/env python3
"""End-to-end: an upgraded install has exactly the objects of a fresh one.

For every released version V (each twilio_outbox--V.sql other than the
default version's): CREATE EXTENSION twilio_outbox VERSION 'V', then ALTER
EXTENSION twilio_outbox UPDATE, and compare `pg_dump --schema-only
--binary-upgrade` (the mode that dumps an extension's member objects one by
one) with the dump of a fresh CREATE EXTENSION of the default version.  The
only lines left out are those carrying object OIDs, which differ between any
two installs.  The update must reach the default version, and the objects
that hold users' data must be marked for pg_dump (pg_extension_config_dump).
"""

import difflib
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PGBIN, ROOT, Cluster, Tap  # noqa: E402

CONTROL = (ROOT / "twilio_outbox.control").read_text()
DEFAULT = re.search(r"^default_version\s*=\s*'([^']+)'", CONTROL, re.M).group(1)
RELEASED = sorted({m.group(1) for p in ROOT.glob("twilio_outbox--*.sql")
                   if (m := re.fullmatch(r"twilio_outbox--([0-9.]+)\.sql", p.name))} - {DEFAULT})
USER_DATA = ["twilio_pools", "twilio_outbox", "twilio_outbox_id_seq", "twilio_inbox",
             "twilio_inbox_id_seq", "twilio_opt_outs",
             # every opt-out keyword applied (replays of one are recognised after a restore too)
             "_twilio_opt_out_keywords"]

t = Tap()
pg = Cluster(settings={"twilio_outbox.enabled": False}, create_extension=False)
FRESH = []


def schema_dump():
    res = subprocess.run([str(PGBIN / "pg_dump"), "--schema-only", "--binary-upgrade",
                          "-h", str(pg.dir), "-p", str(pg.port), "-U", "postgres", pg.db],
                         capture_output=True, text=True, env=pg.env(), timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {res.stderr}")
    lines = []
    for line in res.stdout.splitlines():
        # OIDs, and the stored default of a column added to a table with rows
        # (attmissingval: how the rows are stored, not the schema)
        if (re.match(r"\\(un)?restrict ", line) or "binary_upgrade_set_next_" in line
                or "binary_upgrade_set_missing_value" in line or line == "-- set missing value."):
            continue
        # transaction ids and the OIDs of toast tables and config tables
        line = re.sub(r"^SET relfrozenxid = '\d+', relminmxid = '\d+'$", "SET relfrozenxid = ...", line)
        line = re.sub(r"^WHERE oid = '\d+';$", "WHERE oid = ...;", line)
        line = re.sub(r"(binary_upgrade_create_empty_extension\('twilio_outbox', '[^']*', "
                      r"\w+, '[^']*', )'\{[0-9,]*\}'", r"\1'{oids}'", line)
        if line == "" and lines and lines[-1] == "":
            continue            # what the left-out lines leave behind
        lines.append(line)
    return lines


def extension():
    rows = pg.sql_dicts("SELECT extversion, extconfig::regclass[]::text[] AS config "
                        "FROM pg_extension WHERE extname = 'twilio_outbox'")
    return rows[0] if rows else None


@t.case(f"a fresh install of {DEFAULT}")
def fresh():
    pg.sql("CREATE EXTENSION twilio_outbox")
    ext = extension()
    t.eq(ext["extversion"], DEFAULT, f"CREATE EXTENSION installs the default version {DEFAULT}")
    t.eq(sorted(ext["config"]), sorted(USER_DATA),
         "the user-data tables and their sequences are marked for pg_dump")
    FRESH.extend(schema_dump())
    t.ok(len(FRESH) > 500, f"the fresh schema dump has the extension's objects ({len(FRESH)} lines)")
    pg.sql("DROP EXTENSION twilio_outbox")


t.ok(RELEASED, f"released versions to upgrade from: {RELEASED}")
for version in RELEASED:
    @t.case(f"{version} updated to {DEFAULT}")
    def upgraded():
        pg.sql(f"CREATE EXTENSION twilio_outbox VERSION '{version}'")
        t.eq(extension()["extversion"], version, f"CREATE EXTENSION ... VERSION '{version}'")
        pg.sql("ALTER EXTENSION twilio_outbox UPDATE")
        t.eq(extension()["extversion"], DEFAULT, f"ALTER EXTENSION ... UPDATE reaches {DEFAULT}")
        got = schema_dump()
        diff = list(difflib.unified_diff(FRESH, got, "fresh", "upgraded", lineterm="", n=2))
        t.ok(FRESH and not diff, f"pg_dump --schema-only of {version} + UPDATE equals a fresh "
             f"{DEFAULT} install", lambda: "\n".join(diff[:200]))
        pg.sql("DROP EXTENSION twilio_outbox")

t.done()
