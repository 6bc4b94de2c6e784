#!/usr/bin/env python3
"""The Debian package: build, install, upgrade in place, reinstall, remove.

Run as root by scripts/test.sh (a suite of its own, TAP output):

1. The versions agree: twilio_outbox.control's default_version, META.json
   (PGXN: the distribution and the extension it provides) and the newest
   debian/changelog entry.
2. scripts/build-deb.sh builds postgresql-15-twilio-outbox from a clean copy
   with `dpkg-buildpackage -us -uc`; its pg_regress suite runs on the
   packaged files through `pg_buildext installcheck` (one test point per
   pg_regress test).  The package holds the library and every SQL script.
3. Upgrade in place: a package of release 0.1.0 (the tree of the commit
   before default_version left 0.1.0, with today's debian/) is installed, a
   cluster runs it and sends messages, more wait in a paused pool; the new
   package is installed over it while the server runs; after a restart
   ALTER EXTENSION UPDATE reaches the new version, the waiting messages are
   sent and none of the sent ones again.  Installing the same package again
   changes nothing; removing it removes its files.

Where the package goes: with the system PostgreSQL (PGBIN unset or
/usr/lib/postgresql/15/bin, as in CI) through dpkg -i / dpkg -r.  With an
isolated installation elsewhere (PGBIN=/somewhere/usr/lib/postgresql/15/bin,
a developer's run beside others on one machine) the same .deb files are
unpacked into that tree with dpkg-deb -x instead, so that parallel runs never
fight over the dpkg database or the system's directories; everything else is
the same.  At the end `make install` puts the working tree's build back.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import PGBIN, ROOT, Cluster, Double, Tap, form, wait_until, workdir  # noqa: E402

PACKAGE = "postgresql-15-twilio-outbox"
SYSTEM = PGBIN.resolve() == Path("/usr/lib/postgresql/15/bin")
PREFIX = Path("/") if SYSTEM else PGBIN.parents[4]   # PREFIX/usr/lib/postgresql/15/bin
LIBDIR = PREFIX / "usr/lib/postgresql/15/lib"
EXTDIR = PREFIX / "usr/share/postgresql/15/extension"

t = Tap()
t.diag(f"installing with {'dpkg -i (system PostgreSQL)' if SYSTEM else f'dpkg-deb -x into {PREFIX}'}")
OUT = workdir() / "deb"
DEBS = {}


def run(args, timeout=600, check=True, **kw):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                         timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({res.returncode}):\n"
                           f"{res.stdout[-4000:]}{res.stderr[-4000:]}")
    return res


def install(deb):
    if SYSTEM:
        return run(["dpkg", "-i", deb]).returncode == 0
    return run(["dpkg-deb", "-x", deb, PREFIX]).returncode == 0


def deb_field(deb, field):
    return run(["dpkg-deb", "-f", deb, field]).stdout.strip()


def installed_version():
    """The package's version as dpkg knows it (system) or as its files say."""
    if SYSTEM:
        res = run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", PACKAGE],
                  check=False)
        return res.stdout.strip() if res.returncode == 0 else None
    control = (EXTDIR / "twilio_outbox.control").read_text()
    return re.search(r"^default_version = '([^']+)'", control, re.M).group(1)


CONTROL = re.search(r"^default_version\s*=\s*'([^']+)'",
                    (ROOT / "twilio_outbox.control").read_text(), re.M).group(1)
DEB_VERSION = run(["dpkg-parsechangelog", "-l", ROOT / "debian/changelog", "-S", "Version"]
                  ).stdout.strip()


@t.case("the versions agree")
def versions():
    meta = json.loads((ROOT / "META.json").read_text())
    t.eq(meta["version"], CONTROL, "META.json's version is the control file's default_version")
    t.eq(meta["provides"]["twilio_outbox"]["version"], CONTROL,
         "and so is the version of the extension it provides")
    t.eq(meta["provides"]["twilio_outbox"]["file"], f"twilio_outbox--{CONTROL}.sql",
         "whose file is the fresh install script of that version")
    t.ok((ROOT / meta["provides"]["twilio_outbox"]["file"]).is_file(), "which exists")
    t.eq(DEB_VERSION.rsplit("-", 1)[0], CONTROL,
         "the newest debian/changelog entry packages that version")


@t.case(f"dpkg-buildpackage -us -uc builds {PACKAGE} and runs pg_buildext installcheck")
def build():
    res = run(["bash", ROOT / "scripts/build-deb.sh", OUT], check=False, timeout=900)
    log = res.stdout + res.stderr
    (workdir() / "build.log").write_text(log)
    t.eq(res.returncode, 0, "scripts/build-deb.sh succeeds", lambda: log[-6000:])
    regress = re.findall(r"^(?:ok|not ok|test) +\d* *-? *(\S+) +\.\.\. (ok|FAILED)", log, re.M)
    t.ok(len(regress) >= 10, f"pg_buildext installcheck ran the pg_regress suite "
         f"({len(regress)} tests)", lambda: log[-3000:])
    for name, result in regress:
        t.ok(result == "ok", f"pg_regress {name} (packaged files, preloaded library)")
    summary = re.search(r"All (\d+) tests passed", log)
    t.ok(summary and int(summary.group(1)) == len(regress), "pg_regress: all tests passed",
         lambda: log[-3000:])
    deb = OUT / f"{PACKAGE}_{DEB_VERSION}_amd64.deb"
    t.ok(deb.is_file(), f"{deb.name} was built", lambda: "\n".join(map(str, OUT.iterdir())))
    DEBS["new"] = deb
    files = run(["dpkg-deb", "-c", deb]).stdout
    want = ["./usr/lib/postgresql/15/lib/twilio_outbox.so",
            "./usr/share/postgresql/15/extension/twilio_outbox.control"] + \
           [f"./usr/share/postgresql/15/extension/{p.name}"
            for p in sorted(ROOT.glob("twilio_outbox--*.sql"))]
    t.eq([f for f in want if f not in files], [], "it holds the library, the control file and "
         "every install and upgrade script", files)
    depends = deb_field(deb, "Depends")
    t.ok(re.search(r"\bpostgresql-15\b", depends) and "libcurl4" in depends
         and "libmicrohttpd12" in depends,
         "it depends on postgresql-15, libcurl and libmicrohttpd", depends)


def build_old():
    """A package of the last tree with default_version 0.1.0 and today's debian/."""
    # the newest commit that changed how often the string occurs: the one that
    # moved default_version away from 0.1.0
    found = run(["git", "-C", ROOT, "log", "--format=%H", "-S", "default_version = '0.1.0'",
                 "--", "twilio_outbox.control"], check=False).stdout.split()
    old_src = OUT / "twilio-outbox-0.1.0"
    shutil.rmtree(old_src, ignore_errors=True)
    old_src.mkdir(parents=True)
    if found and run(["git", "-C", ROOT, "cat-file", "-e", f"{found[0]}^"],
                     check=False).returncode == 0:
        subprocess.run(f"git -C '{ROOT}' archive '{found[0]}^' | tar -x -C '{old_src}'",
                       shell=True, check=True)
        t.ok("default_version = '0.1.0'" in (old_src / "twilio_outbox.control").read_text(),
             f"the tree before {found[0][:7]} is release 0.1.0")
    else:
        # a clone without that history (shallow): today's library with only
        # the frozen 0.1.0 script, which is what an install of 0.1.0 has in SQL
        t.diag("    no git history of release 0.1.0 here: today's tree with only "
               "twilio_outbox--0.1.0.sql and default_version 0.1.0")
        subprocess.run(f"git -C '{ROOT}' ls-files -z | (cd '{ROOT}' && xargs -0 tar -cf - "
                       f"--no-recursion) | tar -xf - -C '{old_src}'", shell=True, check=True)
        for script in old_src.glob("twilio_outbox--*.sql"):
            if script.name != "twilio_outbox--0.1.0.sql":
                script.unlink()
        control = old_src / "twilio_outbox.control"
        control.write_text(re.sub(r"^default_version = '[^']*'", "default_version = '0.1.0'",
                                  control.read_text(), flags=re.M))
        shutil.rmtree(old_src / "debian")
        t.ok(True, "a 0.1.0 tree without git history")
    shutil.copytree(ROOT / "debian", old_src / "debian")
    changelog = old_src / "debian/changelog"
    changelog.write_text(
        "twilio-outbox (0.1.0-1) unstable; urgency=medium\n\n  * Release 0.1.0 (for the "
        "upgrade test).\n\n -- twilio_outbox developers <test@localhost>  "
        "Sat, 28 Nov 2026 00:00:00 +0000\n")
    subprocess.run(["chmod", "-R", "a+rX", OUT], check=True)
    env = dict(os.environ, DEB_BUILD_OPTIONS=f"nocheck parallel={os.cpu_count() or 2}")
    res = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=old_src, env=env, check=False,
              timeout=900)
    t.eq(res.returncode, 0, "dpkg-buildpackage -b of 0.1.0",
         lambda: (res.stdout + res.stderr)[-4000:])
    deb = OUT / f"{PACKAGE}_0.1.0-1_amd64.deb"
    t.ok(deb.is_file(), f"{deb.name} was built")
    return deb


SENDER = "+15005550001"


@t.case("upgrade in place: the 0.1.0 package, then the new one over it while the server runs")
def upgrade():
    old = build_old()
    t.ok(install(old), f"install {old.name}")
    if SYSTEM:
        t.eq(installed_version(), "installed 0.1.0-1", "dpkg has 0.1.0-1 installed")
    double = Double()
    pg = Cluster(double=double, name="pkg")
    DEBS["pg"], DEBS["double"] = pg, double
    t.eq(pg.sql_value("SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox'"),
         "0.1.0", "CREATE EXTENSION installs 0.1.0 from the old package")
    pg.add_pool("default", SENDER)
    sent = pg.enqueue_batch([dict(to=f"+1415555{i:04d}", body=f"before {i}") for i in range(5)])
    t.ok(pg.wait_terminal(sent, 30), "the 0.1.0 worker sends", pg.diagnose)
    pg.sql("UPDATE twilio_pools SET paused = true")
    waiting = pg.enqueue_batch([dict(to=f"+1415556{i:04d}", body=f"waiting {i}")
                                for i in range(5)])

    t.ok(install(DEBS["new"]), f"install {DEBS['new'].name} over it")
    if SYSTEM:
        t.eq(installed_version(), f"installed {DEB_VERSION}", f"dpkg has {DEB_VERSION} installed")
    t.eq(pg.sql_value("SELECT count(*) FROM twilio_outbox WHERE status = 'queued'"), "5",
         "the running server still serves the old version's queue")
    pg.restart()
    t.ok(wait_until(pg.worker_pid, 20, 0.1), "after a restart the new library's worker runs")
    pg.sql("ALTER EXTENSION twilio_outbox UPDATE")
    t.eq(pg.sql_value("SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox'"),
         CONTROL, f"ALTER EXTENSION twilio_outbox UPDATE reaches {CONTROL}")
    t.eq(pg.sql_value("SELECT count(*) FROM pg_extension, unnest(extconfig) "
                      "WHERE extname = 'twilio_outbox'"), "7",
         "the user data is marked for pg_dump after the update")
    pg.sql("UPDATE twilio_pools SET paused = false")
    t.ok(pg.wait_terminal(waiting, 30), "the messages queued before the upgrade are sent",
         pg.diagnose)
    t.eq(pg.statuses(), {"sent": 10}, "all ten sent", pg.diagnose)
    reqs = [form(r)["To"] for r in double.requests()]
    t.eq(sorted(reqs), sorted(f"+1415555{i:04d}" for i in range(5))
         + sorted(f"+1415556{i:04d}" for i in range(5)),
         "one request per message: none sent twice across the upgrade")


@t.case("the same package again, then removal")
def reinstall():
    pg, double = DEBS["pg"], DEBS["double"]
    t.ok(install(DEBS["new"]), f"install {DEBS['new'].name} again (same version)")
    if SYSTEM:
        t.eq(installed_version(), f"installed {DEB_VERSION}", "still installed")
        res = run(["dpkg", "--verify", PACKAGE], check=False)
        t.eq((res.returncode, res.stdout.strip()), (0, ""), "dpkg --verify: every file as packaged")
    pg.restart()
    row = pg.enqueue("+14155557000", "after the reinstall")
    t.ok(pg.wait_terminal([row], 30), "the server works as before", pg.diagnose)
    t.eq(len(double.requests()), 11, "with one more request")
    pg.stop()
    if SYSTEM:
        run(["dpkg", "-r", PACKAGE])
        res = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", PACKAGE], check=False)
        t.ok(res.stdout.strip() in ("", "not-installed", "config-files"),
             "dpkg -r removes the package", res.stdout + res.stderr)
        t.ok(not (LIBDIR / "twilio_outbox.so").exists()
             and not list(EXTDIR.glob("twilio_outbox*")), "and its files")
    # put the working tree's build back for the suites that follow
    res = run(["make", "-C", ROOT, "install", f"PG_CONFIG={PGBIN / 'pg_config'}", "-s"],
              check=False)
    t.eq(res.returncode, 0, "make install restores the working tree's build",
         lambda: res.stdout + res.stderr)


t.done()
