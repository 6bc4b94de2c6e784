#!/usr/bin/env bash
# Build the libFuzzer harnesses fuzz_form and fuzz_response, without a
# running PostgreSQL:  bash test/fuzz/build.sh [OUTDIR]   (default test/fuzz/out)
#
# src/form.c and src/response.c are compiled with clang against the server
# headers (pg_config --includedir-server), with -fsanitize=fuzzer,address,undefined.
# The backend services they use come from pg_stubs.c; the JSON parser
# (pg_parse_json) and the encoding helpers come from PostgreSQL:
#
#   - libpgcommon_srv.a (the backend build of src/common) if pg_config's
#     --pkglibdir or --libdir has it: used as is;
#   - else libpgcommon.a, the frontend build, which is what Debian's
#     postgresql-server-dev-15 ships: its jsonapi.o differs from the
#     backend's only in two places (check_stack_depth() calls, and \uXXXX
#     escapes going through unicode_to_utf8() instead of
#     pg_unicode_to_server()), so its call to unicode_to_utf8 is renamed
#     to tob_fuzz_json_unicode_to_utf8 (pg_stubs.c), which does what the
#     backend does there for the database encoding;
#   - or, with PG_SRC=/path/to/postgresql-15.x source tree, jsonapi.c,
#     wchar.c, stringinfo.c and psprintf.c compiled from it as the backend
#     compiles them, with the same sanitizers and coverage as the harness
#     (libpgcommon.a and libpgport.a carry no instrumentation: libFuzzer sees
#     no coverage inside them, AddressSanitizer only their libc calls).
#
# Environment: CC (clang), PG_CONFIG (pg_config), PG_SRC (optional), EXTRA_CFLAGS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/out}
cc=${CC:-clang}
pg_config=${PG_CONFIG:-pg_config}

command -v "$cc" >/dev/null || { echo "build.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
command -v "$pg_config" >/dev/null || { echo "build.sh: $pg_config not found (apt-get install postgresql-server-dev-15)" >&2; exit 1; }

inc_server=$("$pg_config" --includedir-server)
libdirs=("$("$pg_config" --pkglibdir)" "$("$pg_config" --libdir)")

find_lib() {
	local d
	for d in "${libdirs[@]}"; do
		if [ -f "$d/$1" ]; then echo "$d/$1"; return 0; fi
	done
	return 1
}

objcopy_tool=""
for t in objcopy llvm-objcopy llvm-objcopy-14; do
	if command -v "$t" >/dev/null; then objcopy_tool=$t; break; fi
done

mkdir -p "$out/obj"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -fno-omit-frame-pointer -std=gnu99 -Wall -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers -Wno-ignored-attributes ${EXTRA_CFLAGS:-}"
cppflags="-I$inc_server -I$root/src -I$here"
stub_defs=""
pg_objs=()

if [ -n "${PG_SRC:-}" ]; then
	mode="backend jsonapi.c compiled from $PG_SRC (instrumented)"
	for f in jsonapi wchar stringinfo psprintf; do
		"$cc" $cflags $san -fsanitize=fuzzer-no-link $cppflags -c "$PG_SRC/src/common/$f.c" -o "$out/obj/pg_$f.o"
		pg_objs+=("$out/obj/pg_$f.o")
	done
	libcommon=$(find_lib libpgcommon_srv.a || find_lib libpgcommon.a || true)
	libport=$(find_lib libpgport_srv.a || find_lib libpgport.a)
	# only for what the sources above leave out (snprintf & co come from libpgport)
	[ -n "$libcommon" ] && pg_objs+=("$libcommon")
	pg_objs+=("$libport")
elif libcommon=$(find_lib libpgcommon_srv.a); then
	mode="backend build (libpgcommon_srv.a)"
	libport=$(find_lib libpgport_srv.a || find_lib libpgport.a)
	pg_objs+=("$libcommon" "$libport")
elif libcommon=$(find_lib libpgcommon.a); then
	mode="frontend libpgcommon.a, jsonapi.o with the backend's \\u path"
	[ -n "$objcopy_tool" ] || { echo "build.sh: objcopy not found (apt-get install binutils)" >&2; exit 1; }
	libport=$(find_lib libpgport.a) || { echo "build.sh: libpgport.a not found" >&2; exit 1; }
	rm -rf "$out/obj/pgcommon" && mkdir -p "$out/obj/pgcommon"
	(cd "$out/obj/pgcommon" && ar x "$libcommon" jsonapi.o)
	"$objcopy_tool" --redefine-sym unicode_to_utf8=tob_fuzz_json_unicode_to_utf8 \
		"$out/obj/pgcommon/jsonapi.o" "$out/obj/jsonapi_hooked.o"
	stub_defs="-DTOB_FUZZ_FRONTEND_JSONAPI"
	pg_objs+=("$out/obj/jsonapi_hooked.o" "$libcommon" "$libport")
else
	echo "build.sh: neither libpgcommon_srv.a nor libpgcommon.a in ${libdirs[*]} (apt-get install postgresql-server-dev-15)" >&2
	exit 1
fi

compile() {		# compile SRC OBJ [extra flags]
	"$cc" $cflags $san -fsanitize=fuzzer-no-link $cppflags "${@:3}" -c "$1" -o "$2"
}

compile "$root/src/form.c" "$out/obj/form.o"
compile "$root/src/response.c" "$out/obj/response.o"
compile "$here/pg_stubs.c" "$out/obj/pg_stubs.o" $stub_defs
compile "$here/json_model.c" "$out/obj/json_model.o"
compile "$here/fuzz_form.c" "$out/obj/fuzz_form.o"
compile "$here/fuzz_response.c" "$out/obj/fuzz_response.o"

link() {		# link NAME OBJS...
	"$cc" -fsanitize=fuzzer $san -o "$out/$1" "${@:2}" "$out/obj/pg_stubs.o" "${pg_objs[@]}" -lm
}

link fuzz_form "$out/obj/fuzz_form.o" "$out/obj/form.o"
link fuzz_response "$out/obj/fuzz_response.o" "$out/obj/json_model.o" "$out/obj/response.o"

echo "$mode" > "$out/MODE"
echo "build.sh: built $out/fuzz_form and $out/fuzz_response ($mode)"
