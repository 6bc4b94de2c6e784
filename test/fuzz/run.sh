#!/usr/bin/env bash
# Fuzz src/form.c and src/response.c with libFuzzer and print TAP:
#
#   bash test/fuzz/run.sh [SECONDS]        (default 60 seconds per fuzzer)
#
# Builds both harnesses (build.sh) into a temporary directory, runs each for
# SECONDS seconds (both at once: FUZZ_JOBS=1 runs one after the other) on a
# copy of its seed corpus in that directory, so the checkout is not touched,
# and prints one TAP line per fuzzer.  libFuzzer's output goes to a log whose
# tail is printed on failure, with the crashing input in hex; the exit status
# is non-zero if a fuzzer crashed, found a property violated, leaked or did
# not build.
#
# Installs nothing.  Debian 12 packages it needs:
#   clang                       the clang command (clang-14)
#   libclang-rt-14-dev          libFuzzer and the ASan/UBSan runtimes
#   binutils                    objcopy (llvm-objcopy from llvm-14 also works)
#   postgresql-server-dev-15    server headers, libpgcommon.a, libpgport.a
#
# Environment: FUZZ_JOBS (default 2), FUZZ_KEEP=1 to keep the temporary
# directory, TOB_FUZZ_SERVER_ENCODING (UTF8, SQL_ASCII; see pg_stubs.c),
# and build.sh's CC, PG_CONFIG, PG_SRC.
set -uo pipefail

secs=${1:-60}
case "$secs" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")" && pwd)
jobs=${FUZZ_JOBS:-2}
work=$(mktemp -d "${TMPDIR:-/tmp}/twilio_outbox_fuzz.XXXXXX")
cleanup() { if [ -n "${FUZZ_KEEP:-}" ]; then echo "# work directory kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

fuzzers=(fuzz_form fuzz_response)
corpora=(form response)
dicts=(form.dict response.dict)

echo "1..${#fuzzers[@]}"
if ! bash "$here/build.sh" "$work/build" >"$work/build.log" 2>&1; then
	for i in "${!fuzzers[@]}"; do echo "not ok $((i + 1)) - ${fuzzers[$i]}: build failed"; done
	tail -n 20 "$work/build.log" | sed 's/^/# /'
	exit 1
fi
echo "# $(tail -n 1 "$work/build.log" | sed 's/^build.sh: //')"

run_one() {		# run_one INDEX
	local name=${fuzzers[$1]} dir=$work/${fuzzers[$1]} start
	mkdir -p "$dir/corpus" "$dir/artifacts"
	cp -R "$here/corpus/${corpora[$1]}/." "$dir/corpus/"
	start=$(date +%s)
	timeout -k 10 $((secs * 2 + 300)) "$work/build/$name" \
		-max_total_time="$secs" -max_len=70000 -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -dict="$here/${dicts[$1]}" \
		-artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1
	echo $? >"$dir/rc"
	echo $(($(date +%s) - start)) >"$dir/elapsed"
}

pids=()
for i in "${!fuzzers[@]}"; do
	run_one "$i" &
	pids+=($!)
	if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[@]}"; pids=(); fi
done
[ "${#pids[@]}" -gt 0 ] && wait "${pids[@]}"

failed=0
for i in "${!fuzzers[@]}"; do
	name=${fuzzers[$i]}
	dir=$work/$name
	rc=$(cat "$dir/rc" 2>/dev/null || echo 1)
	elapsed=$(cat "$dir/elapsed" 2>/dev/null || echo 0)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
	last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1)
	[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
	cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\)\/.*/cov \1, ft \2, corpus \3/p' <<<"$last")
	artifacts=$(find "$dir/artifacts" -type f | sort)
	if [ "$rc" = 0 ] && [ -z "$artifacts" ]; then
		echo "ok $((i + 1)) - $name: ${execs:-0} execs in $elapsed s, no crash${cov:+ ($cov)}"
	else
		failed=1
		echo "not ok $((i + 1)) - $name: exit $rc after ${execs:-?} execs in $elapsed s"
		grep -E 'property violated|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$dir/log" |
			head -n 5 | sed 's/^/#   /'
		for a in $artifacts; do
			echo "#   input $(basename "$a") ($(wc -c <"$a") bytes), hex:"
			od -An -v -tx1 "$a" | head -n 8 | sed 's/^ */#     /'
		done
		echo "#   where (frames outside libFuzzer and libc):"
		grep -E '^ +#[0-9]+ 0x[0-9a-f]+ in ' "$dir/log" | grep -v -E ' in (fuzzer::|__sanitizer|__libc|__pthread|raise|abort|_start|main )' |
			head -n 8 | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in /#     /'
		echo "#   libFuzzer's log: $dir/log (FUZZ_KEEP=1 keeps it)"
	fi
done
exit $failed
