-- Webhooks without the listener: twilio_ingest_callback checks
-- X-Twilio-Signature (test/regress.conf sets auth_token = '12345', the token
-- of Twilio's documented test vector), stores accepted callbacks once, and
-- _twilio_apply_inbox applies them: status never moves backwards, inbound
-- STOP/START maintain twilio_opt_outs.  Bad arguments raise class-22 errors.
\set vector_url 'https://mycompany.com/myapp.php?foo=1&bar=2'
\set vector_params '{"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030", "To": "+18005551212"}'

-- Twilio's documented test vector is accepted and stored
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', :'vector_url');
-- a changed parameter, URL, token or no signature: false, nothing stored
SELECT twilio_ingest_callback('/twilio/inbound', jsonb_set(:'vector_params', '{Digits}', '"1235"'),
                              '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', :'vector_url');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '0/KCTR6DLpKmkAf8muzZqo1nDgQ=',
                              'https://mycompany.com/myapp.php?foo=1&bar=3');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '0/KCTR6DLpKmkAf8muzZqo1nDgQ=',
                              'http://mycompany.com/myapp.php?foo=1&bar=2');
-- signed with token 54321 (by Twilio's helper library for node)
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', 'oUaFiQ42FBvRs15aJJnPFzSc0MY=', :'vector_url');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', NULL, :'vector_url');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '', :'vector_url');
-- a parameter added or left out
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params'::jsonb || '{"Extra": ""}',
                              '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', :'vector_url');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params'::jsonb - 'Caller',
                              '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', :'vector_url');
SELECT kind, params->>'CallSid' AS call_sid, params->>'Digits' AS digits, applied_at IS NULL AS unapplied
  FROM twilio_inbox ORDER BY id;
SELECT requests, accepted, duplicates, rejected FROM twilio_webhook_stats;

-- an independent signer in SQL (pgcrypto), checked against the vector
CREATE EXTENSION pgcrypto;
CREATE FUNCTION sign(url text, params jsonb, token text DEFAULT '12345') RETURNS text
LANGUAGE sql AS $$
	SELECT encode(hmac(url || COALESCE(string_agg(key || value, '' ORDER BY key COLLATE "C"), ''),
	                   token, 'sha1'), 'base64')
	  FROM jsonb_each_text(params)
$$;
SELECT sign(:'vector_url', :'vector_params') = '0/KCTR6DLpKmkAf8muzZqo1nDgQ=' AS signer_agrees;
CREATE FUNCTION cb(path text, params jsonb) RETURNS boolean
LANGUAGE sql AS $$
	SELECT twilio_ingest_callback(path, params, sign('https://hooks.example.com' || path, params),
	                              'https://hooks.example.com' || path)
$$;
TRUNCATE twilio_inbox;

-- messages Twilio accepted (as the worker records them)
INSERT INTO twilio_pools (name, sender, mps) VALUES ('hooks', '+14155550000', 10);
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, twilio_sid, delivery_status,
                           sent_at, finished_at)
SELECT 'hooks', '+1415555010' || i, 'hello', 1, 'sent', 'SM' || repeat(i::text, 32), 'queued', now(), now()
  FROM generate_series(1, 4) i;

-- out of order: delivered arrives before sent; a redelivery is a duplicate
SELECT cb('/twilio/status', '{"MessageSid": "SM11111111111111111111111111111111", "MessageStatus": "delivered", "AccountSid": "ACx"}');
SELECT cb('/twilio/status', '{"MessageSid": "SM11111111111111111111111111111111", "MessageStatus": "sent", "AccountSid": "ACx"}');
SELECT cb('/twilio/status', '{"MessageSid": "SM11111111111111111111111111111111", "MessageStatus": "delivered", "AccountSid": "ACx"}');
-- in order, two in one batch: the furthest wins
SELECT cb('/twilio/status', '{"MessageSid": "SM22222222222222222222222222222222", "MessageStatus": "sent"}');
SELECT cb('/twilio/status', '{"MessageSid": "SM22222222222222222222222222222222", "MessageStatus": "undelivered", "ErrorCode": "30003"}');
-- a final status is not overwritten by another final one
SELECT cb('/twilio/status', '{"MessageSid": "SM33333333333333333333333333333333", "MessageStatus": "failed", "ErrorCode": "30007"}');
-- a sid no row has yet (the worker may not have recorded it): tried again later
SELECT cb('/twilio/status', '{"MessageSid": "SM99999999999999999999999999999999", "MessageStatus": "delivered"}');
-- an unknown status is ignored
SELECT cb('/twilio/status', '{"MessageSid": "SM44444444444444444444444444444444", "MessageStatus": "teleported"}');
SELECT count(*) AS stored FROM twilio_inbox;
SELECT _twilio_apply_inbox();
SELECT cb('/twilio/status', '{"MessageSid": "SM33333333333333333333333333333333", "MessageStatus": "delivered"}');
SELECT cb('/twilio/status', '{"MessageSid": "SM11111111111111111111111111111111", "MessageStatus": "sent"}');
SELECT _twilio_apply_inbox();
SELECT twilio_sid, delivery_status, delivered_at IS NOT NULL AS delivered_at_set, last_error_code, last_error
  FROM twilio_outbox WHERE pool = 'hooks' ORDER BY id;
SELECT message_sid, message_status, outcome, applied_at IS NOT NULL AS applied, retry_at IS NOT NULL AS retry
  FROM twilio_inbox ORDER BY id;
SELECT pool, sent_last_hour, delivered, undelivered, failed, awaiting, delivery_rate
  FROM twilio_delivery_stats WHERE pool = 'hooks';
SELECT received_last_hour, status_last_hour, inbound_last_hour, applied_last_hour, unapplied, lag > interval '0' AS lagging
  FROM twilio_webhook_stats;

-- inbound: STOP (any case, padded) opts out, START opts in again
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "  stop\n", "MessageSid": "SMin1"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550102", "To": "+14155550000", "Body": "Unsubscribe", "MessageSid": "SMin2"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550103", "To": "+14155550000", "Body": "stop sending me offers", "MessageSid": "SMin3"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "QUIT", "MessageSid": "SMin4"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "start", "MessageSid": "SMin5"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "UNSTOP", "MessageSid": "SMin6"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "End", "MessageSid": "SMin7"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;

-- bad arguments
SELECT twilio_ingest_callback('/twilio/other', '{}', 'x', 'https://hooks.example.com/twilio/other');
SELECT twilio_ingest_callback(NULL, '{}', 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', NULL, 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', '["MessageSid"]', 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', '"MessageSid"', 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', '{"ErrorCode": 30003}', 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', '{"To": null}', 'x', 'https://hooks.example.com/twilio/status');
SELECT twilio_ingest_callback('/twilio/status', '{}', 'x', NULL);
SELECT twilio_ingest_callback('/twilio/status', '{}', 'x', 'hooks.example.com/twilio/status');

-- privileges: the web tier (twilio_outbox_writer) may ingest, PUBLIC may not
CREATE ROLE hooks_web IN ROLE twilio_outbox_writer;
CREATE ROLE hooks_nobody;
SET ROLE hooks_web;
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', 'bad', :'vector_url');
SELECT count(*) FROM twilio_inbox;
RESET ROLE;
SET ROLE hooks_nobody;
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', 'bad', :'vector_url');
SELECT count(*) FROM twilio_opt_outs;
SELECT count(*) FROM twilio_webhook_stats;
RESET ROLE;
DROP ROLE hooks_web, hooks_nobody;
