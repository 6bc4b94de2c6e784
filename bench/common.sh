# Sourced by the sender worker's benchmarks in bench/ after setting ROOT:
# scripts/lib.sh plus the local targets they send to (the test double, or
# nginx answering every Messages request with a fixed 201) and wrk.
#
# Everything listens on 127.0.0.1 at a free port and lives under $TOB_WORK;
# scripts/lib.sh's cleanup (trap on EXIT) stops what was started.

. "$ROOT/scripts/lib.sh"

ACCOUNT_SID=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
AUTH_TOKEN=test-token
export PYTHONDONTWRITEBYTECODE=1

# bench_setup [nginx] [wrk]: packages, build and install, work dir.  Every
# benchmark also gets gnuplot (gnuplot-nox) for its plots; with SKIP_APT=1
# and no gnuplot it goes on without plots.
bench_setup() {
	local want=() p
	install_deps
	for p in "$@"; do
		case $p in
			nginx) command -v nginx >/dev/null || want+=(nginx-light) ;;
			wrk) command -v wrk >/dev/null || want+=(wrk) ;;
		esac
	done
	if ! command -v gnuplot >/dev/null; then
		if [ "${SKIP_APT:-0}" = 1 ]; then
			echo "note: gnuplot is not installed (apt-get install gnuplot-nox): no plots"
		else
			want+=(gnuplot-nox)
		fi
	fi
	if [ ${#want[@]} -gt 0 ]; then
		[ "${SKIP_APT:-0}" = 1 ] && die "SKIP_APT=1 but ${want[*]} missing: apt-get install ${want[*]}"
		log "installing ${want[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		# keep Debian's own nginx service from starting on port 80
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null ||
				{ rm -f /usr/sbin/policy-rc.d; die "apt-get install ${want[*]} failed"; }
			rm -f /usr/sbin/policy-rc.d
		else
			apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
		fi
	fi
	build_and_install
	make_workdir
}

# bench_cluster NAME TARGET_URL [postgresql.conf lines...]: a cluster whose
# worker sends to TARGET_URL; database "bench", with the extension created.
# EXTRA_CONF (postgresql.conf lines separated by ';') is appended, to try a
# setting: EXTRA_CONF='synchronous_commit = off; autovacuum_naptime = 5s'.
bench_cluster() {
	local name=$1 url=$2 i
	shift 2
	start_cluster "$name" bench \
		"twilio_outbox.account_sid = '$ACCOUNT_SID'" \
		"twilio_outbox.auth_token = '$AUTH_TOKEN'" \
		"twilio_outbox.api_base_url = '$url'" \
		"$@" \
		"$(printf '%s' "${EXTRA_CONF:-}" | tr ';' '\n')"
	[ -z "${EXTRA_CONF:-}" ] || echo "postgresql.conf also has: $EXTRA_CONF"
	psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION twilio_outbox" >/dev/null
	for i in $(seq 100); do
		[ "$(psql -X -qAt -c "SELECT state FROM twilio_worker_status")" = idle ] && return 0
		sleep 0.1
	done
	die "the twilio_outbox worker is not idle: $(psql -X -qAt -c "SELECT state FROM twilio_worker_status")"
}

# start_nginx: nginx from Debian on a free port, answering
# POST /2010-04-01/Accounts/<sid>/Messages.json with 201 and a fixed
# Message JSON on keep-alive connections; sets NGINX_URL and NGINX_PID.
start_nginx() {
	local dir="$TOB_WORK/nginx" port i
	port=$(free_port)
	mkdir -p "$dir/logs" "$dir/tmp"
	cat > "$dir/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-1};
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
user nobody nogroup;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 300s;
	default_type application/json;
	server {
		listen 127.0.0.1:$port backlog=4096;
		location ~ ^/2010-04-01/Accounts/[^/]+/Messages\.json\$ {
			return 201 '{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}';
		}
		location / { return 404; }
	}
}
EOF
	nginx -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/stderr.log" &
	NGINX_PID=$!
	TOB_PIDS+=("$NGINX_PID")
	NGINX_URL="http://127.0.0.1:$port"
	for i in $(seq 100); do
		curl -s -o /dev/null -X POST "$NGINX_URL/2010-04-01/Accounts/$ACCOUNT_SID/Messages.json" && break
		kill -0 "$NGINX_PID" 2>/dev/null || die "nginx did not start: $(cat "$dir/logs/stderr.log" "$dir/logs/error.log")"
		sleep 0.1
	done
	export NGINX_URL NGINX_PID
}

# run_wrk URL CONNECTIONS SECONDS [THREADS]: requests/s of wrk doing the
# worker's POST (same method, headers and form body) against URL.
run_wrk() {
	local url=$1 conns=$2 secs=$3 threads=${4:-${WRK_THREADS:-1}}
	local auth
	auth=$(printf '%s:%s' "$ACCOUNT_SID" "$AUTH_TOKEN" | base64 -w0)
	cat > "$TOB_WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic $auth"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
wrk.headers["User-Agent"] = "twilio_outbox/0.1.0 libcurl/7.88.1"
wrk.body = "To=%2B14155550100&From=%2B15005550006&Body=Your%20order%2012345%20has%20shipped%20and%20will%20arrive%20on%20Tuesday.&Attempt=1"
EOF
	wrk -t "$threads" -c "$conns" -d "${secs}s" -s "$TOB_WORK/post.lua" \
		"$url/2010-04-01/Accounts/$ACCOUNT_SID/Messages.json" > "$TOB_WORK/wrk.out" 2>&1 ||
		die "wrk failed: $(cat "$TOB_WORK/wrk.out")"
	sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$TOB_WORK/wrk.out"
}

bench_py() { python3 "$ROOT/bench/$1" "${@:2}"; }
