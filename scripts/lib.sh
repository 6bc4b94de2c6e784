# Shared by scripts/test.sh, scripts/demo.sh and bench/*: install the build
# and test dependencies, build and install the extension, and run throwaway
# PostgreSQL clusters and the Twilio test double on 127.0.0.1.
#
# Source it after setting ROOT to the repository's top directory.

PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}	# another installation for isolated runs
TOB_WORK=""
TOB_CLUSTERS=()
TOB_PIDS=()

log() { printf '\n=== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Re-run the calling script as root (apt-get, make install and the postgres
# OS user need it): through sudo when there is one, else say how.
require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null ||
			die "$(basename "$0") must run as root (it installs packages with apt-get, installs the extension and runs PostgreSQL as the postgres OS user), and there is no sudo here: run it as root, e.g. su -c 'bash $0'"
		exec sudo -E bash "$0" "$@"
	fi
}

# Debian packages the build, the tests and the demo need; with "tests" also
# those of the package and high-availability suites (debhelper and
# postgresql-server-dev-all build the Debian package, pg_auto_failover runs
# test/e2e/19_failover.py).  A cluster that the postgresql package would
# create and start by itself is not wanted.
install_deps() {
	[ "${SKIP_APT:-0}" = 1 ] && return 0
	log "installing packages"
	if ! dpkg -s "postgresql-$PG_MAJOR" >/dev/null 2>&1; then
		mkdir -p /etc/postgresql-common
		echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends \
		build-essential pkg-config ca-certificates \
		"postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" "postgresql-$PG_MAJOR-pgtap" \
		libtap-parser-sourcehandler-pgtap-perl libcurl4-openssl-dev libmicrohttpd-dev \
		python3 curl openssl procps clang libclang-rt-14-dev binutils \
		locales >/dev/null	# locales: localedef for test/e2e/22_secrets.py
	if [ "${1:-}" = tests ]; then
		apt-get install -y -qq --no-install-recommends \
			git debhelper dpkg-dev fakeroot postgresql-server-dev-all \
			"postgresql-$PG_MAJOR-auto-failover" >/dev/null
	fi
	# node + npm: the webhook tests sign with Twilio's helper library for node
	# (Debian's nodejs is enough; a node from elsewhere is kept)
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	fi
}

# Build with the project's warnings as errors and install into the server.
build_and_install() {
	log "building"
	make -C "$ROOT" clean >/dev/null
	make -C "$ROOT" WERROR=1 PG_CONFIG="$PGBIN/pg_config" -s
	make -C "$ROOT" install PG_CONFIG="$PGBIN/pg_config" -s >/dev/null
}

# A scratch directory owned by the postgres OS user, removed on exit.
make_workdir() {
	TOB_WORK=$(mktemp -d /tmp/twilio_outbox.XXXXXX)
	chown postgres: "$TOB_WORK"
	trap cleanup EXIT
}

as_postgres() { runuser -u postgres -- "$@"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster NAME DBNAME [extra postgresql.conf lines...]
# Creates and starts a cluster in $TOB_WORK/NAME listening on 127.0.0.1 at a
# free port; sets PGHOST, PGPORT, PGUSER and PGDATABASE for what follows.
start_cluster() {
	local name=$1 db=$2 dir="$TOB_WORK/$1" port
	shift 2
	port=$(free_port)
	as_postgres mkdir -p "$dir"
	as_postgres "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'twilio_outbox'"
		echo "twilio_outbox.database = '$db'"
		printf '%s\n' "$@"
	} >> "$dir/data/postgresql.conf"
	# the database exists before the server starts, so the worker finds it at once
	echo "CREATE DATABASE $db" | as_postgres "$PGBIN/postgres" --single -D "$dir/data" postgres >/dev/null 2>&1
	as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	TOB_CLUSTERS+=("$dir/data")
	export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=$db
}

stop_cluster() {
	as_postgres "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

# start_double: run test/twilio_double.py on a free port; sets DOUBLE_URL.
start_double() {
	local portfile="$TOB_WORK/double.port" i
	python3 "$ROOT/test/twilio_double.py" --port 0 --port-file "$portfile" \
		2>"$TOB_WORK/double.log" &
	TOB_PIDS+=($!)
	for i in $(seq 100); do
		[ -s "$portfile" ] && break
		sleep 0.1
	done
	[ -s "$portfile" ] || die "the Twilio test double did not start (see $TOB_WORK/double.log)"
	DOUBLE_URL="http://127.0.0.1:$(cat "$portfile")"
	export DOUBLE_URL
}

cleanup() {
	local d p
	for p in "${TOB_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for d in "${TOB_CLUSTERS[@]}"; do stop_cluster "$d"; done
	if [ -n "$TOB_WORK" ] && [ "${KEEP_WORKDIR:-0}" != 1 ]; then
		rm -rf "$TOB_WORK"
	fi
}
