#!/usr/bin/env python3
"""End-to-end: unrelated DDL never fails because the twilio_outbox library
cannot be loaded.

The CREATE TRIGGER check is an event trigger on every CREATE TRIGGER in the
database.  Here the extension is installed, then the server is restarted
from a copy of the installation without twilio_outbox.so (as after removing
the package, or in a half-done upgrade) and without it in
shared_preload_libraries.  Creating an unrelated trigger, and pg_restore of
another database's dump full of triggers, must still work; only our own
trigger function fails.  Back on the real installation, the check refuses
a bad twilio_enqueue_trigger again.
"""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import Cluster, SqlError, Tap, workdir  # noqa: E402
from install_mirror import mirror  # noqa: E402

t = Tap()
REAL_PGBIN = harness.PGBIN
pg = Cluster(settings={"twilio_outbox.enabled": False})

OTHER = """
CREATE TABLE items (id int PRIMARY KEY, name text, touched timestamptz);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.touched := now(); RETURN NEW; END $$;
CREATE TRIGGER items_touch BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE item_log (id int, at timestamptz);
CREATE FUNCTION log_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO item_log VALUES (NEW.id, now()); RETURN NULL; END $$;
CREATE TRIGGER items_log AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_item();
CREATE CONSTRAINT TRIGGER items_check AFTER INSERT ON items DEFERRABLE
    FOR EACH ROW EXECUTE FUNCTION log_item();
INSERT INTO items VALUES (1, 'one'), (2, 'two');
"""


def fails(query):
    try:
        pg.sql(query)
    except SqlError as exc:
        return str(exc)
    return None


@t.case("with the library")
def with_library():
    pg.sql('CREATE DATABASE "other"', db="postgres")
    pg.sql(OTHER, db="other")
    res = subprocess.run([str(harness.PGBIN / "pg_dump"), "-Fc", "-f", str(workdir() / "other.dump"),
                          "-h", str(pg.dir), "-p", str(pg.port), "-U", "postgres", "other"],
                         capture_output=True, text=True, env=pg.env())
    t.eq(res.returncode, 0, "a dump of another database with three triggers", res.stderr)
    pg.sql("CREATE TABLE orders (id int, phone text)")
    err = fails("CREATE TRIGGER bad AFTER INSERT ON orders FOR EACH ROW "
                "EXECUTE FUNCTION twilio_enqueue_trigger('default', 'mobile', 'x')")
    t.ok(err and "to_column names column" in err, "the check refuses a bad twilio_enqueue_trigger", err)
    pg.stop()


@t.case("the library cannot be loaded")
def without_library():
    harness.PGBIN = mirror(hide=["twilio_outbox.so"], name="mirror_nolib")
    pg._append_conf({"shared_preload_libraries": ""}, "twilio_outbox removed")
    pg.start()
    err = fails("SELECT twilio_enqueue('+14155550100', 'x')")
    t.ok(err and "could not access file" in err, "the library is really gone", err)
    t.ok(pg.sql_value("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'twilio_outbox_check_trigger'"
                      " AND evtenabled <> 'D'") == "1", "and the event trigger is still there")
    err = fails("CREATE TABLE notes (id int, body text, at timestamptz);"
                "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN NEW.at := now(); RETURN NEW; END $$;"
                "CREATE TRIGGER notes_stamp BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION stamp();"
                "INSERT INTO notes (id, body) VALUES (1, 'x');")
    t.ok(err is None, "an unrelated CREATE TRIGGER works", err)
    t.eq(pg.sql_value("SELECT at IS NOT NULL FROM notes"), "t", "and its trigger fires")
    res = subprocess.run([str(harness.PGBIN / "pg_restore"), "--exit-on-error", "-d", pg.db,
                          "-h", str(pg.dir), "-p", str(pg.port), "-U", "postgres",
                          str(workdir() / "other.dump")],
                         capture_output=True, text=True, env=pg.env())
    t.eq(res.returncode, 0, "pg_restore of a dump with triggers into the database works", res.stderr)
    t.eq(pg.sql_value("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass"
                      " AND NOT tgisinternal"), "3", "with all three triggers")
    t.eq(pg.sql("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM item_log)"),
         pg.sql("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM item_log)", db="other"),
         "and the data as dumped")
    err = fails("CREATE TRIGGER ours AFTER INSERT ON notes FOR EACH ROW "
                "EXECUTE FUNCTION twilio_enqueue_trigger('default', 'body', 'x')")
    t.ok(err and "could not access file" in err, "only a trigger of ours needs the library", err)
    pg.stop()
    harness.PGBIN = REAL_PGBIN


@t.case("the library back")
def library_back():
    pg._append_conf({"shared_preload_libraries": "twilio_outbox"}, "twilio_outbox back")
    pg.start()
    err = fails("CREATE TRIGGER bad AFTER INSERT ON orders FOR EACH ROW "
                "EXECUTE FUNCTION twilio_enqueue_trigger('default', 'mobile', 'x')")
    t.ok(err and "to_column names column" in err, "the check refuses a bad twilio_enqueue_trigger again", err)
    t.ok(fails("CREATE TRIGGER good AFTER INSERT ON orders FOR EACH ROW "
               "EXECUTE FUNCTION twilio_enqueue_trigger('default', 'phone', 'Order {id}')") is None,
         "and accepts a good one")


t.done()
