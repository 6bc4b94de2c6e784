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

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
