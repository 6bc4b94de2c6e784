#!/usr/bin/env bash
# The main job, end to end on a throwaway cluster: build and install
# twilio_outbox, start PostgreSQL and the project's local Twilio test double
# on 127.0.0.1, create two pools (1 and 10 messages per second), enqueue 100
# messages, and watch the worker drain them.  Everything is removed at the end.
#
#   bash scripts/demo.sh          as root (SKIP_APT=1 skips apt-get on a prepared machine;
#                                 another user: sudo bash scripts/demo.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"
require_root "$@"

install_deps
build_and_install
make_workdir
start_double
start_cluster demo demo \
	"twilio_outbox.account_sid = 'ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'" \
	"twilio_outbox.auth_token = 'test-token'" \
	"twilio_outbox.api_base_url = '$DOUBLE_URL'"

log "enqueueing 100 messages into pools 'alerts' (10/s) and 'marketing' (1/s)"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION twilio_outbox;
INSERT INTO twilio_pools (name, sender, mps, burst) VALUES
	('alerts', '+15005550006', 10, 5),
	('marketing', 'MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, 1);
SELECT count(twilio_enqueue('+1415555' || lpad(i::text, 4, '0'), format('Alert %s: your order shipped', i), 'alerts'))
  FROM generate_series(1, 90) i;
SELECT count(twilio_enqueue('+1415556' || lpad(i::text, 4, '0'), format('Sale %s: 20%% off today 🎉', i), 'marketing'))
  FROM generate_series(1, 10) i;
SQL

log "twilio_queue_stats, refreshed every second until the queue drains"
for i in $(seq 1 30); do
	psql -X -q -c "SELECT pool, mps, queued, retrying, sending, sent_last_minute, failed_last_hour,
	                      oldest_queued_age, est_drain_time FROM twilio_queue_stats ORDER BY pool"
	left=$(psql -X -qAt -c "SELECT count(*) FROM twilio_outbox WHERE status IN ('queued','retrying','sending')")
	[ "$left" -eq 0 ] && break
	sleep 1
done

log "summary"
psql -X -q -c "SELECT pool, status, count(*), min(sent_at) AS first_sent, max(sent_at) AS last_sent
               FROM twilio_outbox GROUP BY 1, 2 ORDER BY 1, 2"
psql -X -q -c "SELECT pid, state, in_flight, requests, sent, retried, failed FROM twilio_worker_status"
echo "The test double received $(curl -s "$DOUBLE_URL/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["created"])') messages."
cat <<'TXT'

To send through a real Twilio account, put this in postgresql.conf (or use ALTER SYSTEM) and reload:
    twilio_outbox.account_sid = 'AC...'        # your Account SID
    twilio_outbox.api_key_sid = 'SK...'        # an API key (recommended), or auth_token instead
    twilio_outbox.api_key_secret = '...'
    # api_base_url keeps its default, https://api.twilio.com
TXT
