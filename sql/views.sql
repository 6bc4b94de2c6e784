--
-- The monitoring views: their columns, and twilio_queue_stats' counts for a
-- known set of rows.  (Values that depend on the running worker are covered
-- by the end-to-end tests.)
--
INSERT INTO twilio_pools (name, sender, mps, paused) VALUES
	('fast', '+15005550006', 10, false),
	('slow', '+15005550007', 0.5, true),
	('empty', '+15005550008', 1, false);
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, next_attempt_at, sent_at, finished_at)
SELECT 'fast', '+14155550100', 'x', 2, s, now() - interval '10 seconds',
       CASE WHEN s = 'sent' THEN now() - interval '5 seconds' END,
       CASE WHEN s IN ('sent', 'failed') THEN now() - interval '5 seconds' END
  FROM unnest(ARRAY['queued', 'queued', 'queued', 'retrying', 'sending', 'sent', 'sent', 'failed']) s;
-- an old sent row and a failure two hours ago do not count as recent
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, sent_at, finished_at)
VALUES ('fast', '+14155550100', 'x', 1, 'sent', now() - interval '2 minutes', now() - interval '2 minutes'),
       ('fast', '+14155550100', 'x', 1, 'failed', NULL, now() - interval '2 hours');
-- a retry after a 429 and one after a 503
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, last_http_status)
VALUES ('empty', '+14155550100', 'x', 1, 'retrying', 429),
       ('empty', '+14155550100', 'x', 1, 'retrying', 503),
       ('empty', '+14155550100', 'x', 1, 'retrying', 503);
-- a scheduled row is queued but not yet waiting
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, next_attempt_at)
VALUES ('slow', '+14155550100', 'x', 3, 'queued', now() + interval '1 day');

SELECT pool, mps, paused, queued, retrying, sending, sent_last_minute, failed_last_hour,
       date_trunc('second', oldest_queued_age) AS oldest_queued_age, est_drain_time,
       sent_last_hour, retrying_by_reason, observed_mps, paused_until
  FROM twilio_queue_stats ORDER BY pool;

SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'twilio_worker_status'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'twilio_pool_status'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'twilio_queue_stats'::regclass AND attnum > 0 ORDER BY attnum;


-- Exact counts: rows of every status and kind in several pools, moved about
-- (updates, a pool renamed, deletes, a rolled-back savepoint); every count
-- the views show equals a direct count (no rows = no difference).
INSERT INTO twilio_pools (name, sender, mps, paused)
SELECT 'x' || g, '+1500555' || lpad((100 + g)::text, 4, '0'), 1, true FROM generate_series(1, 12) g;
INSERT INTO twilio_outbox (pool, kind, to_number, body, num_segments, status, next_attempt_at,
                           finished_at, delivery_status, answered_by, last_http_status)
SELECT 'x' || (1 + i % 12), CASE WHEN i % 5 = 0 THEN 'call' ELSE 'message' END, '+14155550100', 'x',
       1 + i % 3, (ARRAY['queued','retrying','sending','sent','failed','expired','canceled'])[1 + i % 7],
       now() - (i % 50) * interval '1 second',
       CASE WHEN i % 7 >= 3 THEN now() - (i % 90) * interval '1 minute' END,
       (ARRAY[NULL,'delivered','undelivered','failed','read','sent','completed','busy','no-answer','canceled'])[1 + i % 10],
       CASE WHEN i % 4 = 0 THEN 'machine_start' END,
       CASE WHEN i % 7 = 1 THEN (ARRAY[429, 503, NULL])[1 + i % 3] END
  FROM generate_series(1, 3000) i;
UPDATE twilio_outbox SET status = 'sending' WHERE status = 'queued' AND id % 3 = 0;
UPDATE twilio_outbox SET status = 'sent', finished_at = now() WHERE status = 'sending' AND id % 4 = 0;
UPDATE twilio_outbox SET num_segments = 4 WHERE status = 'retrying' AND id % 5 = 0;
UPDATE twilio_pools SET name = 'x13' WHERE name = 'x12';
DELETE FROM twilio_outbox WHERE status IN ('queued', 'sent') AND id % 11 = 0;
BEGIN;
SAVEPOINT s;
UPDATE twilio_outbox SET status = 'queued' WHERE status = 'failed';
INSERT INTO twilio_outbox (pool, to_number, body, num_segments) VALUES ('x1', '+14155550100', 'x', 1);
ROLLBACK TO s;
COMMIT;
INSERT INTO _twilio_attempt_errors (at, pool, message_id, http_status, error_code, outcome, error, kind)
SELECT now() - (i % 80) * interval '1 minute', 'x' || (1 + i % 12), i, (ARRAY[429, 400, NULL])[1 + i % 3],
       CASE WHEN i % 3 = 1 THEN 21211 END, CASE WHEN i % 2 = 0 THEN 'failed' ELSE 'retrying' END,
       'e' || i, CASE WHEN i % 5 = 0 THEN 'call' ELSE 'message' END
  FROM generate_series(1, 500) i;
CREATE TEMP VIEW queue_stats_direct (pool, queued, retrying, sending, sent_last_minute, failed_last_hour,
        sent_last_hour, calls_pending, calls_sent_last_hour, est_drain_time, observed_mps, retrying_by_reason) AS
SELECT p.name,
       count(o.id) FILTER (WHERE o.status = 'queued'), count(o.id) FILTER (WHERE o.status = 'retrying'),
       count(o.id) FILTER (WHERE o.status = 'sending'),
       count(o.id) FILTER (WHERE o.status = 'sent' AND o.finished_at > now() - interval '1 minute'),
       count(o.id) FILTER (WHERE o.status = 'failed' AND o.finished_at > now() - interval '1 hour'),
       count(o.id) FILTER (WHERE o.status = 'sent' AND o.finished_at > now() - interval '1 hour'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.status IN ('queued', 'retrying', 'sending')),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.status = 'sent' AND o.finished_at > now() - interval '1 hour'),
       make_interval(secs => COALESCE(sum(o.num_segments) FILTER (WHERE o.status IN ('queued', 'retrying', 'sending')), 0) / p.mps),
       round(COALESCE(sum(o.num_segments) FILTER (WHERE o.status = 'sent' AND o.finished_at > now() - interval '1 minute'), 0)::numeric / 60, 3),
       COALESCE((SELECT jsonb_object_agg(r.reason, r.n) FROM (
           SELECT COALESCE(o2.last_http_status::text, 'transport') AS reason, count(*) AS n
             FROM twilio_outbox o2 WHERE o2.pool = p.name AND o2.status = 'retrying' GROUP BY 1) r), '{}')
  FROM twilio_pools p LEFT JOIN twilio_outbox o ON o.pool = p.name
 WHERE p.name LIKE 'x%' GROUP BY p.name, p.mps;
CREATE TEMP VIEW queue_stats_wrong AS
(SELECT pool, queued, retrying, sending, sent_last_minute, failed_last_hour, sent_last_hour,
        calls_pending, calls_sent_last_hour, est_drain_time, observed_mps, retrying_by_reason
   FROM twilio_queue_stats WHERE pool LIKE 'x%'
 EXCEPT
 SELECT * FROM queue_stats_direct)
UNION ALL SELECT 'a pool is missing', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
 WHERE (SELECT count(*) FROM twilio_queue_stats WHERE pool LIKE 'x%') <> 12;
SELECT * FROM queue_stats_wrong;
SELECT q.pool, q.oldest_queued_age = now() - min(o.next_attempt_at) AS oldest_queued_age_exact
  FROM twilio_queue_stats q JOIN twilio_outbox o ON o.pool = q.pool
 WHERE q.pool LIKE 'x%' AND o.status = 'queued' AND o.next_attempt_at <= now()
 GROUP BY q.pool, q.oldest_queued_age HAVING q.oldest_queued_age IS DISTINCT FROM now() - min(o.next_attempt_at);
CREATE TEMP VIEW delivery_stats_wrong AS
SELECT * FROM twilio_delivery_stats WHERE pool LIKE 'x%'
EXCEPT
SELECT p.name,
       count(o.id) FILTER (WHERE o.kind = 'message'),
       count(o.id) FILTER (WHERE o.kind = 'message' AND o.delivery_status IN ('delivered', 'read')),
       count(o.id) FILTER (WHERE o.kind = 'message' AND o.delivery_status = 'undelivered'),
       count(o.id) FILTER (WHERE o.kind = 'message' AND o.delivery_status = 'failed'),
       count(o.id) FILTER (WHERE o.kind = 'message' AND _twilio_delivery_rank(o.delivery_status) < 4),
       round(count(o.id) FILTER (WHERE o.kind = 'message' AND o.delivery_status IN ('delivered', 'read'))::numeric
             / NULLIF(count(o.id) FILTER (WHERE o.kind = 'message' AND o.delivery_status IN ('delivered', 'read', 'undelivered', 'failed')), 0), 4),
       count(o.id) FILTER (WHERE o.kind = 'call'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.delivery_status = 'completed'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.delivery_status = 'busy'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.delivery_status = 'no-answer'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.delivery_status IN ('failed', 'canceled')),
       count(o.id) FILTER (WHERE o.kind = 'call' AND o.answered_by LIKE 'machine%'),
       count(o.id) FILTER (WHERE o.kind = 'call' AND _twilio_call_status_rank(o.delivery_status) < 5),
       round(count(o.id) FILTER (WHERE o.kind = 'call' AND o.delivery_status = 'completed')::numeric
             / NULLIF(count(o.id) FILTER (WHERE o.kind = 'call' AND _twilio_call_status_rank(o.delivery_status) = 5), 0), 4)
  FROM twilio_pools p
  LEFT JOIN twilio_outbox o ON o.pool = p.name AND o.status = 'sent' AND o.finished_at > now() - interval '1 hour'
 WHERE p.name LIKE 'x%' GROUP BY p.name;
SELECT * FROM delivery_stats_wrong;
SELECT pool, http_status, error_code, count, last_seen, failed, retried, calls FROM twilio_error_stats
EXCEPT
SELECT pool, http_status, error_code, count(*), max(at), count(*) FILTER (WHERE outcome = 'failed'),
       count(*) FILTER (WHERE outcome <> 'failed'), count(*) FILTER (WHERE kind = 'call')
  FROM _twilio_attempt_errors WHERE at > now() - interval '1 hour' GROUP BY 1, 2, 3;
-- example_id and last_error belong to one of the group's latest attempts
SELECT s.pool, s.http_status, s.error_code
  FROM twilio_error_stats s
 WHERE NOT EXISTS (SELECT 1 FROM _twilio_attempt_errors e
                    WHERE e.message_id = s.example_id AND e.error = s.last_error AND e.at = s.last_seen
                      AND e.pool = s.pool AND e.http_status IS NOT DISTINCT FROM s.http_status
                      AND e.error_code IS NOT DISTINCT FROM s.error_code);
-- the pending counts add up to the pending rows (however folded)
SELECT c.pool, c.status, c.kind FROM _twilio_pending_counts c
 GROUP BY 1, 2, 3 HAVING sum(c.n) <> (SELECT count(*) FROM twilio_outbox o
                                      WHERE o.pool = c.pool AND o.status = c.status AND o.kind = c.kind);
-- the recent counts add up to the rows finished in the last two hours, by
-- minute, and to the sent rows of the last minute, by second
CREATE TEMP VIEW recent_counts_wrong AS
SELECT 'minute' AS level, c.minute AS at, c.pool, c.status, c.kind FROM _twilio_recent_counts c
 WHERE c.raw OR c.second IS NULL
 GROUP BY c.pool, c.minute, c.status, c.kind, c.delivery_status, c.machine
HAVING ROW(sum(c.n)::bigint, sum(c.segments)::bigint) IS DISTINCT FROM
       (SELECT ROW(count(*), COALESCE(sum(o.num_segments), 0)::bigint) FROM twilio_outbox o
         WHERE o.pool = c.pool AND o.status = c.status AND o.kind = c.kind
           AND date_bin('1 minute', o.finished_at, 'epoch') = c.minute
           AND (o.status = 'failed' OR o.delivery_status IS NOT DISTINCT FROM c.delivery_status)
           AND (o.kind = 'call' AND COALESCE(o.answered_by LIKE 'machine%', false)) = c.machine)
UNION ALL
SELECT 'second', c.second, c.pool, c.status, c.kind FROM _twilio_recent_counts c
 WHERE c.second IS NOT NULL AND c.status = 'sent' AND c.second >= now() - interval '1 minute'
 GROUP BY c.pool, c.second, c.status, c.kind, c.delivery_status, c.machine
HAVING ROW(sum(c.n)::bigint, sum(c.segments)::bigint) IS DISTINCT FROM
       (SELECT ROW(count(*), COALESCE(sum(o.num_segments), 0)::bigint) FROM twilio_outbox o
         WHERE o.pool = c.pool AND o.status = c.status AND o.kind = c.kind
           AND date_bin('1 second', o.finished_at, 'epoch') = c.second
           AND o.delivery_status IS NOT DISTINCT FROM c.delivery_status
           AND (o.kind = 'call' AND COALESCE(o.answered_by LIKE 'machine%', false)) = c.machine);
SELECT * FROM recent_counts_wrong;

-- The last hour to the microsecond, in one transaction (one now()): rows
-- finished on both sides of its start, through its first part-minute and
-- at the next whole minute; then status callbacks change delivery
-- statuses, machines answer, failed rows are retried, short retention
-- deletes old rows, and a retrying row gets another reason.
BEGIN;
INSERT INTO twilio_outbox (pool, kind, to_number, body, num_segments, status, finished_at,
                           delivery_status, answered_by)
SELECT 'x' || (1 + i % 11), CASE WHEN i % 3 = 0 THEN 'call' ELSE 'message' END, '+14155550100', 'x',
       1 + i % 2, CASE WHEN i % 4 = 0 THEN 'failed' ELSE 'sent' END,
       now() - interval '1 hour' + (i - 100) * interval '1 second'
           + (ARRAY[interval '0', interval '1 microsecond', interval '-1 microsecond'])[1 + i % 3],
       (ARRAY[NULL, 'delivered', 'undelivered', 'sent', 'completed', 'busy'])[1 + i % 6],
       CASE WHEN i % 5 = 0 THEN 'machine_end_beep' END
  FROM generate_series(1, 300) i;
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at, delivery_status)
SELECT 'x1', '+14155550100', 'x', 1, 'sent',
       date_bin('1 minute', now() - interval '1 hour', 'epoch') + interval '1 minute' + d, 'delivered'
  FROM unnest(ARRAY[interval '-1 microsecond', interval '0', interval '1 microsecond']) d;
-- and the same around the last minute's start, by the microsecond and by the second
INSERT INTO twilio_outbox (pool, kind, to_number, body, num_segments, status, finished_at, delivery_status)
SELECT 'x' || (1 + i % 11), CASE WHEN i % 3 = 0 THEN 'call' ELSE 'message' END, '+14155550100', 'x',
       1 + i % 3, 'sent',
       now() - interval '1 minute' + (i - 20) * interval '100 milliseconds'
           + (ARRAY[interval '0', interval '1 microsecond', interval '-1 microsecond'])[1 + i % 3],
       (ARRAY[NULL, 'delivered', 'sent'])[1 + i % 3]
  FROM generate_series(1, 60) i;
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, finished_at)
SELECT 'x2', '+14155550100', 'x', 2, 'sent',
       date_bin('1 second', now() - interval '1 minute', 'epoch') + interval '1 second' + d
  FROM unnest(ARRAY[interval '-1 microsecond', interval '0', interval '1 microsecond']) d;
SELECT * FROM queue_stats_wrong;
SELECT * FROM delivery_stats_wrong;
UPDATE twilio_outbox SET delivery_status = 'delivered' WHERE status = 'sent' AND id % 3 = 0;
UPDATE twilio_outbox SET answered_by = 'machine_start' WHERE kind = 'call' AND id % 4 = 1;
UPDATE twilio_outbox SET status = 'retrying', finished_at = NULL, last_http_status = 503
 WHERE status = 'failed' AND id % 2 = 0;
UPDATE twilio_outbox SET last_http_status = 429 WHERE status = 'retrying' AND id % 3 = 0;
DELETE FROM twilio_outbox WHERE finished_at < now() - interval '59 minutes' AND id % 2 = 1;
SELECT * FROM queue_stats_wrong;
SELECT * FROM delivery_stats_wrong;
SELECT * FROM recent_counts_wrong;
COMMIT;
SELECT sum(sent_last_hour) > 0 AND sum(failed_last_hour) > 0 AND sum(calls_sent_last_hour) > 0
       AND bool_or(retrying_by_reason ? '429') AS counted_something
  FROM twilio_queue_stats WHERE pool LIKE 'x%';
-- the README's rebuild of the counts (after a load with triggers disabled)
-- gives the same views
BEGIN;
LOCK twilio_outbox IN SHARE MODE;
DELETE FROM _twilio_pending_counts;
DELETE FROM _twilio_recent_counts;
INSERT INTO _twilio_pending_counts (pool, status, kind, reason, n, segments)
SELECT pool, status, kind,
       CASE WHEN status = 'retrying' THEN COALESCE(last_http_status::text, 'transport') END,
       count(*), COALESCE(sum(num_segments), 0)
  FROM twilio_outbox WHERE status IN ('queued', 'retrying', 'sending') GROUP BY 1, 2, 3, 4;
INSERT INTO _twilio_recent_counts (pool, minute, second, status, kind, delivery_status, machine, raw,
                                   n, segments)
SELECT pool, date_bin('1 minute', finished_at, 'epoch'), date_bin('1 second', finished_at, 'epoch'),
       status, kind, CASE WHEN status = 'sent' THEN delivery_status END,
       kind = 'call' AND COALESCE(answered_by LIKE 'machine%', false), true,
       count(*), COALESCE(sum(num_segments), 0)
  FROM twilio_outbox
 WHERE status IN ('sent', 'failed') AND finished_at > now() - interval '2 hours'
 GROUP BY 1, 2, 3, 4, 5, 6, 7;
COMMIT;
SELECT * FROM queue_stats_wrong;
SELECT * FROM delivery_stats_wrong;
SELECT * FROM recent_counts_wrong;
TRUNCATE twilio_outbox;
SELECT count(*) AS pending_counts_after_truncate FROM _twilio_pending_counts;
SELECT count(*) AS recent_counts_after_truncate FROM _twilio_recent_counts;
DELETE FROM _twilio_attempt_errors;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
