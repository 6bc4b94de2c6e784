--
-- twilio_enqueue: what a valid call writes, idempotent enqueue, and the
-- commit-time wake-up.
--
INSERT INTO twilio_pools (name, sender, mps) VALUES
	('default', '+15005550006', 1),
	('bulk', 'MG0123456789abcdef0123456789abcdef', 10);

-- the simplest call: pool 'default', due now, no expiry
SELECT twilio_enqueue('+14155550100', 'Your code is 1234') AS id \gset
SELECT pool, to_number, body, media_urls, num_segments, params, status, priority,
       attempts, next_attempt_at = created_at AS due_now, expires_at, dedup_key,
       twilio_sid, delivery_status, sent_at
  FROM twilio_outbox WHERE id = :id;

-- every argument
SELECT twilio_enqueue(to_number => 'whatsapp:+447700900123', body => 'Hello & welcome + 100%',
                      pool => 'bulk',
                      media_urls => ARRAY['https://example.com/a.jpg', 'http://example.com/b.png'],
                      send_after => '2030-01-01 10:00+00', valid_for => '2 hours',
                      priority => 100, dedup_key => 'order-42',
                      status_callback => 'https://example.com/twilio/status',
                      params => '{"ValidityPeriod": 600, "SmartEncoded": true, "ContentVariables": "{\"1\":\"x\"}"}') AS id2 \gset
SELECT pool, to_number, body, media_urls, num_segments, params, priority,
       next_attempt_at, expires_at, dedup_key, status_callback
  FROM twilio_outbox WHERE id = :id2;

-- media or a ContentSid stand in for a body; loopback http callbacks are fine
SELECT twilio_enqueue('+14155550100', NULL, media_urls => ARRAY['https://example.com/a.jpg']) > 0 AS media_only;
SELECT twilio_enqueue('+14155550100', '', params => '{"ContentSid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"}') > 0 AS content_only;
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://localhost:8089/twilio/status') > 0 AS localhost;
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://127.0.0.1/cb') > 0 AS ipv4_loopback;
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://[::1]:8080/cb') > 0 AS ipv6_loopback;
SELECT twilio_enqueue('+14155550100', 'hi', priority => -100) > 0 AS lowest_priority;
SELECT twilio_enqueue('+999999999999999', 'hi') > 0 AS fifteen_digits;
SELECT twilio_enqueue('+1', 'hi') > 0 AS one_digit;

-- a send_after in the past is simply due now; valid_for counts from send_after
BEGIN;
SELECT twilio_enqueue('+14155550100', 'late', send_after => now() - interval '1 hour',
                      valid_for => '30 minutes') AS id3 \gset
SELECT next_attempt_at = now() - interval '1 hour' AS due_since_an_hour,
       expires_at = now() - interval '30 minutes' AS already_expired
  FROM twilio_outbox WHERE id = :id3;
COMMIT;

-- far in the future is fine as long as the expiry fits in a timestamp
SELECT twilio_enqueue('+14155550100', 'far', send_after => '294276-12-01 00:00+00', valid_for => '1 day') AS id4 \gset
SELECT next_attempt_at, expires_at FROM twilio_outbox WHERE id = :id4;
DELETE FROM twilio_outbox WHERE id = :id4;

-- idempotent enqueue: the same dedup_key returns the first id and writes nothing
SELECT twilio_enqueue('+14155550100', 'different text', dedup_key => 'order-42') = :id2 AS same_id;
SELECT count(*) FROM twilio_outbox WHERE dedup_key = 'order-42';
-- ... even when the first one was already sent
UPDATE twilio_outbox SET status = 'sent', sent_at = now() WHERE id = :id2;
SELECT twilio_enqueue('+14155550100', 'again', dedup_key => 'order-42') = :id2 AS same_id_after_send;

-- the enqueue is part of the caller's transaction
BEGIN;
SELECT twilio_enqueue('+14155550111', 'rolled back') > 0 AS enqueued;
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM twilio_outbox WHERE to_number = '+14155550111';

-- commit-time wake-up: a commit that enqueued wakes the worker once, a
-- rollback wakes nobody, a dedup hit enqueued nothing
SELECT commit_wakeups AS w0 FROM twilio_worker_status \gset
BEGIN;
SELECT twilio_enqueue('+14155550112', 'never') > 0 AS enqueued;
ROLLBACK;
SELECT commit_wakeups - :w0 AS wakeups_after_rollback FROM twilio_worker_status;
BEGIN;
SELECT twilio_enqueue('+14155550112', 'one') > 0 AS enqueued;
SELECT twilio_enqueue('+14155550112', 'two') > 0 AS enqueued;
COMMIT;
SELECT commit_wakeups - :w0 AS wakeups_after_commit FROM twilio_worker_status;
SELECT twilio_enqueue('+14155550100', 'dup', dedup_key => 'order-42') = :id2 AS dedup_hit;
SELECT commit_wakeups - :w0 AS wakeups_after_dedup_hit FROM twilio_worker_status;
-- the transaction callback was registered once for this whole session
SELECT _twilio_session_xact_callbacks() AS callbacks_registered;

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
