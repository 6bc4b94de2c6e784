--
-- Operators' controls: twilio_pool_pause, twilio_pool_resume,
-- twilio_retry_failed; and twilio_error_stats' shape.
--
\set VERBOSITY default
INSERT INTO twilio_pools (name, sender, mps) VALUES
	('campaign', '+15005550006', 1), ('alerts', '+15005550007', 10);

-- pause until resumed
SELECT twilio_pool_pause('campaign');
SELECT name, paused, paused_until FROM twilio_pools ORDER BY name;
SELECT pool, paused FROM twilio_queue_stats ORDER BY pool;
SELECT twilio_pool_resume('campaign');
SELECT name, paused, paused_until FROM twilio_pools ORDER BY name;

-- a timed pause shows as paused until its time, and not after
SELECT twilio_pool_pause('campaign', now() + interval '1 hour');
SELECT pool, paused FROM twilio_queue_stats ORDER BY pool;
UPDATE twilio_pools SET paused_until = now() - interval '1 second' WHERE name = 'campaign';
SELECT pool, paused FROM twilio_queue_stats ORDER BY pool;
SELECT twilio_pool_resume('campaign');

-- mistakes
SELECT twilio_pool_pause('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_pool_pause(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_pool_pause('campaign', now() - interval '1 minute');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_pool_resume('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_retry_failed('nope');
\echo :LAST_ERROR_SQLSTATE

-- bulk retry after an incident: failed rows only, by pool and since
CREATE TEMP TABLE msgs AS
	SELECT i, twilio_enqueue('+14155550100', 'm' || i, CASE WHEN i <= 4 THEN 'campaign' ELSE 'alerts' END) AS id
	  FROM generate_series(1, 6) i;
UPDATE twilio_outbox o SET status = 'failed', attempts = 10, last_http_status = 503,
       finished_at = CASE WHEN m.i % 2 = 0 THEN now() - interval '2 hours' ELSE now() END
  FROM msgs m WHERE o.id = m.id AND m.i <> 3;
UPDATE twilio_outbox o SET status = 'sent', finished_at = now() FROM msgs m WHERE o.id = m.id AND m.i = 3;
SELECT twilio_retry_failed('campaign', now() - interval '1 hour') AS recent_campaign;
SELECT twilio_retry_failed('campaign') AS rest_of_campaign;
SELECT twilio_retry_failed() AS everything_else;
SELECT twilio_retry_failed() AS nothing_left;
SELECT m.i, o.pool, o.status, o.attempts, o.finished_at IS NULL AS unfinished
  FROM msgs m JOIN twilio_outbox o USING (id) ORDER BY m.i;

SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'twilio_error_stats'::regclass AND attnum > 0 ORDER BY attnum;

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
