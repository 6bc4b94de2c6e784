#!/usr/bin/env bash
# Run every test suite of twilio_outbox on throwaway clusters:
#   pg_regress + isolation (sql/, specs/, expected/), pgTAP (test/*.sql via
#   pg_prove), the Twilio test double's self-test, short libFuzzer runs
#   (test/fuzz/), the Debian package (test/package/deb.py: dpkg-buildpackage,
#   pg_buildext installcheck, install and upgrade in place), and the
#   end-to-end tests (test/e2e/*.py: the worker against the double, also on
#   a pg_auto_failover formation).
# Installs what it needs with apt-get, builds with -Werror, installs, starts
# and stops its own servers on 127.0.0.1, and ends with "N passed, N failed".
#
#   bash scripts/test.sh          as root (SKIP_APT=1 skips apt-get on a prepared machine;
#                                 another user: sudo bash scripts/test.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"
require_root "$@"

PASSED=0
FAILED=0
SUITES_FAILED=()

count() {	# count SUITE PASSED FAILED
	PASSED=$((PASSED + $2))
	FAILED=$((FAILED + $3))
	printf '%s: %d passed, %d failed\n' "$1" "$2" "$3"
	[ "$3" -eq 0 ] || SUITES_FAILED+=("$1")
}

# run_tap SUITE COMMAND...: run a command printing TAP ("ok N", "not ok N"),
# count its results, and count one more failure if it exited non-zero
# without reporting a failed test (it crashed or bailed out).
run_tap() {
	local suite=$1 out="$TOB_WORK/tap.out" rc ok notok
	shift
	set +e
	"$@" > "$out" 2>&1
	rc=$?
	set -e
	ok=$(grep -cE '^ *ok [0-9]+' "$out" || true)
	notok=$(grep -cE '^ *not ok [0-9]+' "$out" || true)
	if [ "$rc" -ne 0 ] || [ "$notok" -ne 0 ]; then
		grep -vE '^ *ok [0-9]+' "$out" | tail -60
		[ "$notok" -ne 0 ] || notok=1
	fi
	count "$suite" "$ok" "$notok"
}

install_deps tests
build_and_install
make_workdir

log "pg_regress and isolation suites"
as_postgres cp -r "$ROOT" "$TOB_WORK/src"
as_postgres rm -rf "$TOB_WORK/src/.git" "$TOB_WORK/src/results" "$TOB_WORK/src/tmp_check"
set +e
as_postgres make -C "$TOB_WORK/src" installcheck PG_CONFIG="$PGBIN/pg_config" 2>&1 | tee "$TOB_WORK/regress.log"
set -e
ok=$(grep -cE '^(ok|test) .*\.\.\. ok' "$TOB_WORK/regress.log" || true)
bad=$(grep -cE '\.\.\. FAILED' "$TOB_WORK/regress.log" || true)
if ! grep -q 'isolation install-check' "$TOB_WORK/regress.log"; then
	bad=$((bad + 1))	# pg_regress failed, so isolation did not run
fi
[ "$bad" -eq 0 ] || cat "$TOB_WORK"/src/regression.diffs "$TOB_WORK"/src/output_iso/regression.diffs 2>/dev/null || true
count "pg_regress" "$ok" "$bad"

log "pgTAP suites"
start_cluster tap twilio_test "twilio_outbox.enabled = off"
as_postgres psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION twilio_outbox'
run_tap "pgTAP" as_postgres pg_prove -v --pset tuples_only=1 "$TOB_WORK"/src/test/*.sql
stop_cluster "$TOB_WORK/tap/data"

log "Twilio test double self-test"
run_tap "double" python3 "$ROOT/test/double_selftest.py"

log "fuzzing the form encoder and the response parser (libFuzzer, 20 s each)"
run_tap "fuzz" bash "$ROOT/test/fuzz/run.sh" 20

log "Debian package: build, pg_buildext installcheck, install, upgrade in place"
run_tap "package" python3 "$ROOT/test/package/deb.py"

for t in "$ROOT"/test/e2e/[0-9]*.py; do
	[ -e "$t" ] || continue
	log "end-to-end: $(basename "$t")"
	run_tap "e2e $(basename "$t" .py)" python3 "$t"
done

echo
[ ${#SUITES_FAILED[@]} -eq 0 ] || echo "failing suites: ${SUITES_FAILED[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
