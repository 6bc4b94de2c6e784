#!/usr/bin/env bash
# Build the Debian package postgresql-<v>-twilio-outbox from a clean copy of
# the source tree (the files git tracks, as they are in the working tree):
#
#   bash scripts/build-deb.sh [OUTDIR]      (default OUTDIR: ../twilio-outbox-deb)
#
# Makes OUTDIR/twilio-outbox_<version>.orig.tar.gz and unpacks it with
# debian/ into OUTDIR/twilio-outbox-<version>, then runs
# `dpkg-buildpackage -us -uc` there, which builds for every PostgreSQL major
# version in debian/pgversions and runs the pg_regress suite through
# `pg_buildext installcheck` on the packaged files.  The .deb, .dsc and
# .changes files end up in OUTDIR.  Needs the build dependencies of
# debian/control (scripts/lib.sh "install_deps tests" installs them) and, for the
# test cluster, a postgres OS user; run it as root or as any user who can
# write OUTDIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/../twilio-outbox-deb}" && cd "${1:-$ROOT/../twilio-outbox-deb}" && pwd)

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

deb_version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
upstream=${deb_version%-*}
control=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$ROOT/twilio_outbox.control")
[ "$upstream" = "$control" ] ||
	die "debian/changelog is at $upstream but twilio_outbox.control at $control: add a debian/changelog entry"

src="$OUT/twilio-outbox-$upstream"
rm -rf "$src" "$OUT"/twilio-outbox_"$upstream"*
mkdir -p "$src"
# the tracked files only: no build output, clusters or logs of a developer's tree
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$src"
tar -C "$OUT" --exclude="twilio-outbox-$upstream/debian" --owner=0 --group=0 --sort=name \
	-czf "$OUT/twilio-outbox_$upstream.orig.tar.gz" "twilio-outbox-$upstream"
# pg_virtualenv's test cluster runs as postgres and reads the packaged files
chmod -R a+rX "$OUT"

cd "$src"
DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=$(nproc)} dpkg-buildpackage -us -uc
ls "$OUT"/postgresql-*-twilio-outbox_"$deb_version"_*.deb
