--
-- twilio_cancel and twilio_retry: which statuses they move, and which they
-- leave alone.
--
\set VERBOSITY default
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);
CREATE TEMP TABLE msgs AS
	SELECT s AS start_status, twilio_enqueue('+14155550100', 'status ' || s) AS id
	  FROM unnest(ARRAY['queued', 'sending', 'sent', 'retrying', 'failed', 'expired', 'canceled']) s;
UPDATE twilio_outbox o SET status = m.start_status, attempts = 3,
       expires_at = CASE m.start_status WHEN 'expired' THEN now() - interval '1 minute' END,
       last_error_code = CASE m.start_status WHEN 'failed' THEN 21211 END
  FROM msgs m WHERE o.id = m.id;

-- cancel: only queued and retrying rows
SELECT start_status, twilio_cancel(id) AS canceled FROM msgs ORDER BY id;
SELECT m.start_status AS was, o.status, o.finished_at IS NOT NULL AS finished
  FROM msgs m JOIN twilio_outbox o USING (id) ORDER BY m.id;

-- retry: failed, expired and canceled rows (including the two just canceled)
-- go back to queued with attempts 0
SELECT start_status AS was, twilio_retry(id) AS retried FROM msgs ORDER BY id;
SELECT m.start_status AS was, o.status, o.attempts, o.next_attempt_at <= now() AS due,
       o.expires_at IS NULL AS expiry_cleared, o.finished_at IS NULL AS unfinished
  FROM msgs m JOIN twilio_outbox o USING (id) ORDER BY m.id;

-- missing and null ids
SELECT twilio_cancel(0) AS cancel_missing, twilio_retry(0) AS retry_missing;
SELECT twilio_cancel(NULL);
SELECT twilio_retry(NULL);

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
