"""A private copy of the PostgreSQL installation that PGBIN belongs to, for
end-to-end tests that need an installation other than the real one:
without the twilio_outbox library (a removed package, a half-done upgrade),
or with message translations that the real one may lack.

PostgreSQL finds its library, share and locale directories relative to its
own executable, so the copy holds real copies of `postgres` and `pg_ctl`
(everything else is a symbolic link into the real installation) under the
same relative layout:

    from install_mirror import mirror
    import harness
    harness.PGBIN = mirror(hide=["twilio_outbox.so"])   # then start a Cluster

Directories live in harness.workdir() and go away with it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import harness

COPIED = ("postgres", "pg_ctl")  # they locate the installation from their own path


def _pg_config(*args, pgbin=None):
    out = subprocess.run([str((pgbin or harness.PGBIN) / "pg_config"), *args],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()


def major_version(pgbin=None):
    """15 for "PostgreSQL 15.x"."""
    return _pg_config("--version", pgbin=pgbin)[0].split()[1].split(".")[0]


def mirror(hide=(), translations=(), name="mirror", pgbin=None):
    """Build the copy and return its bin directory.

    hide: file names left out of the library directory.
    translations: languages ("de") whose postgres message catalog is copied
    into the copy's locale directory (from the real one, or /usr/share/locale).
    """
    pgbin = Path(pgbin or harness.PGBIN)
    bindir, libdir, sharedir, localedir = _pg_config(
        "--bindir", "--pkglibdir", "--sharedir", "--localedir", pgbin=pgbin)
    dirs = {"bin": bindir, "lib": libdir, "share": sharedir, "locale": localedir}
    prefix = os.path.commonpath(list(dirs.values()))
    for a in dirs.values():
        for b in dirs.values():
            if a != b and b.startswith(a.rstrip("/") + "/"):
                raise RuntimeError(f"cannot mirror an installation with {b} inside {a}")
    root = harness.workdir() / name
    if root.exists():
        shutil.rmtree(root)

    def place(kind):
        target = root / os.path.relpath(dirs[kind], prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    binmirror = place("bin")
    binmirror.mkdir()
    for entry in Path(bindir).iterdir():
        if entry.name in COPIED:
            shutil.copy2(entry.resolve(), binmirror / entry.name)
        else:
            (binmirror / entry.name).symlink_to(entry)

    libmirror = place("lib")
    libmirror.mkdir()
    for entry in Path(libdir).iterdir():
        if entry.name not in hide:
            (libmirror / entry.name).symlink_to(entry)

    place("share").symlink_to(sharedir)

    localemirror = place("locale")
    localemirror.mkdir()
    catalog = f"postgres-{major_version(pgbin)}.mo"
    for lang in translations:
        sources = [Path(localedir) / lang / "LC_MESSAGES" / catalog,
                   Path("/usr/share/locale") / lang / "LC_MESSAGES" / catalog]
        source = next((s for s in sources if s.is_file()), None)
        if source is None:
            raise RuntimeError(f"no {lang} message catalog {catalog} in {sources}: "
                               f"install the server's translations (Debian: postgresql-15)")
        dest = localemirror / lang / "LC_MESSAGES"
        dest.mkdir(parents=True)
        shutil.copy2(source, dest / catalog)

    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, os.stat(path).st_mode | 0o755 if path.is_dir() else
                     os.stat(path).st_mode | 0o444)
    return binmirror


def locale_path(lang_locale="de_DE", charset="UTF-8"):
    """Compile lang_locale.charset with localedef into a directory to use as
    LOCPATH (glibc reads locales from there), and return that directory.
    Needs the locale sources (Debian: the locales package)."""
    path = harness.workdir() / "locales"
    path.mkdir(exist_ok=True)
    name = f"{lang_locale}.{charset}"
    if not (path / name).exists():
        res = subprocess.run(["localedef", "-i", lang_locale, "-f", charset, str(path / name)],
                             capture_output=True, text=True)
        if not (path / name).exists():
            raise RuntimeError(f"localedef {name} failed ({res.returncode}): "
                               f"{res.stdout}{res.stderr} (Debian: apt-get install locales)")
    os.chmod(path, 0o755)
    for p in path.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return path
