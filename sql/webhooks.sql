-- Webhooks without the listener: twilio_ingest_callback checks
-- X-Twilio-Signature (test/regress.conf sets auth_token = '12345', the token
-- of Twilio's documented test vector), signed with or without the default
-- port, stores accepted callbacks once (inbound ones once per MessageSid,
-- with or without an I-Twilio-Idempotency-Token), and _twilio_apply_inbox
-- applies them: status never moves backwards, inbound STOP/START maintain
-- twilio_opt_outs in the order they arrived, an opt-out winning among
-- keywords less than 15 s apart, each keyword message once ever.  Bad
-- arguments raise class-22 errors.  twilio_outbox_webhook may ingest and
-- nothing else.
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
CREATE FUNCTION cb(path text, params jsonb, token text DEFAULT NULL) RETURNS boolean
LANGUAGE sql AS $$
	SELECT twilio_ingest_callback(path, params, sign('https://hooks.example.com' || path, params),
	                              'https://hooks.example.com' || path, token)
$$;

-- Twilio's validators accept a URL signed with or without the scheme's
-- default port (:443 for https, :80 for http); another port must match
\set port_params '{"MessageSid": "SM00000000000000000000000000000001", "MessageStatus": "sent"}'
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '0/KCTR6DLpKmkAf8muzZqo1nDgQ=',
                              'https://mycompany.com:443/myapp.php?foo=1&bar=2') AS signed_without_given_with;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://hooks.example.com:443/twilio/status', :'port_params'),
                              'https://hooks.example.com/twilio/status') AS signed_with_given_without;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('http://hooks.example.com:80/twilio/status', :'port_params'),
                              'http://hooks.example.com/twilio/status') AS http_80;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://[2001:db8::1]/twilio/status', :'port_params'),
                              'https://[2001:db8::1]:443/twilio/status') AS ipv6_literal;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://hooks.example.com/twilio/status', :'port_params'),
                              'https://hooks.example.com:8443/twilio/status') AS other_port;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://hooks.example.com:8443/twilio/status', :'port_params'),
                              'https://hooks.example.com/twilio/status') AS other_port_signed;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://hooks.example.com:80/twilio/status', :'port_params'),
                              'https://hooks.example.com/twilio/status') AS http_port_on_https;
SELECT twilio_ingest_callback('/twilio/status', :'port_params',
                              sign('https://hooks.example.com/twilio/status', :'port_params'),
                              'https://hooks.example.com:0443/twilio/status') AS not_the_default_spelling;
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

-- inbound: STOP (any case, padded) opts out, START opts in again.  Keywords
-- less than 15 s apart may have reached Twilio in either order (a webhook
-- Twilio could not deliver at once comes up to 15 s late), so an opt-out
-- among them wins; earlier() moves what is stored so far into the past, as if
-- the next messages came that much later.
CREATE FUNCTION earlier(by interval) RETURNS void
LANGUAGE sql AS $$
	UPDATE twilio_inbox SET received_at = received_at - by;
	UPDATE _twilio_opt_out_keywords SET received_at = received_at - by;
$$;
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "  stop\n", "MessageSid": "SMin1"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550102", "To": "+14155550000", "Body": "Unsubscribe", "MessageSid": "SMin2"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550103", "To": "+14155550000", "Body": "stop sending me offers", "MessageSid": "SMin3"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "QUIT", "MessageSid": "SMin4"}');
-- START right after QUIT: the order at Twilio is not known, QUIT wins
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "start", "MessageSid": "SMin5"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;
-- a minute later: UNSTOP and START opt in; END opts out
SELECT earlier('1 minute');
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "UNSTOP", "MessageSid": "SMin6"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "Yes", "MessageSid": "SMin7"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550105", "To": "+14155550000", "Body": "End", "MessageSid": "SMin8"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;
-- a STOP that arrives within 15 s after a START, in a later batch, wins;
-- so does one that arrives within 15 s before it
SELECT earlier('1 minute');
SELECT cb('/twilio/inbound', '{"From": "+14155550106", "To": "+14155550000", "Body": "START", "MessageSid": "SMin9"}');
SELECT _twilio_apply_inbox();
SELECT earlier('10 seconds');
SELECT cb('/twilio/inbound', '{"From": "+14155550106", "To": "+14155550000", "Body": "STOP", "MessageSid": "SMin10"}');
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "STOP", "MessageSid": "SMin11"}');
SELECT _twilio_apply_inbox();
SELECT earlier('10 seconds');
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "START", "MessageSid": "SMin12"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;
-- 20 s after that STOP, START is after it at Twilio too
SELECT earlier('10 seconds');
SELECT cb('/twilio/inbound', '{"From": "+14155550101", "To": "+14155550000", "Body": "START", "MessageSid": "SMin13"}');
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;

-- an inbound message is stored once per MessageSid, whichever way it comes:
-- a redelivery with or without an idempotency token, or a replay
SELECT earlier('1 hour');
SELECT count(*) AS stored FROM twilio_inbox WHERE kind = 'inbound';
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "start", "MessageSid": "SMin5"}') AS replayed_start;
SELECT cb('/twilio/inbound', '{"From": "+14155550106", "To": "+14155550000", "Body": "START", "MessageSid": "SMin9"}', 'token-9') AS replayed_with_a_token;
SELECT count(*) AS stored FROM twilio_inbox WHERE kind = 'inbound';
-- ... and a keyword message counts once, ever: replayed after retention
-- removed the stored copy, it is stored again but changes nothing
DELETE FROM twilio_inbox WHERE params->>'MessageSid' IN ('SMin5', 'SMin9');
SELECT cb('/twilio/inbound', '{"From": "+14155550104", "To": "+14155550000", "Body": "start", "MessageSid": "SMin5"}') AS replayed_start;
SELECT cb('/twilio/inbound', '{"From": "+14155550106", "To": "+14155550000", "Body": "START", "MessageSid": "SMin9"}') AS replayed_start;
SELECT _twilio_apply_inbox();
SELECT phone_number, source FROM twilio_opt_outs ORDER BY 1;
SELECT message_sid, phone_number, keyword, opt_out FROM _twilio_opt_out_keywords ORDER BY inbox_id;

-- the idempotency token: a callback with a token already stored is a
-- duplicate, whatever it carries; an empty token is no token
SELECT cb('/twilio/inbound', '{"From": "+14155550107", "To": "+14155550000", "Body": "hi", "MessageSid": "SMin20"}', 'token-20') AS first;
SELECT cb('/twilio/inbound', '{"From": "+14155550107", "To": "+14155550000", "Body": "hi again", "MessageSid": "SMin21"}', 'token-20') AS same_token;
SELECT cb('/twilio/inbound', '{"From": "+14155550107", "To": "+14155550000", "Body": "hello", "MessageSid": "SMin22"}', '') AS empty_token;
SELECT params->>'MessageSid' AS sid, idempotency_token FROM twilio_inbox
 WHERE params->>'From' = '+14155550107' ORDER BY id;
SELECT twilio_ingest_callback('/twilio/inbound', '{}', 'x', 'https://hooks.example.com/twilio/inbound', repeat('t', 1001));
-- 4 arguments still work (the token defaults to NULL); the token may be named
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', 'bad', :'vector_url');
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', 'bad', :'vector_url', idempotency_token => 'tok');
SELECT requests, accepted, duplicates, rejected FROM twilio_webhook_stats;

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

-- privileges: the web tier (twilio_outbox_webhook, or twilio_outbox_writer,
-- which is a member of it) may ingest, PUBLIC may not
CREATE ROLE hooks_web IN ROLE twilio_outbox_writer;
CREATE ROLE hooks_tier IN ROLE twilio_outbox_webhook;
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
-- twilio_outbox_webhook: twilio_ingest_callback and nothing else
SET ROLE hooks_tier;
SELECT twilio_ingest_callback('/twilio/inbound', :'vector_params', '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', :'vector_url') AS accepted;
SELECT twilio_enqueue('+14155550100', 'pumping');
SELECT twilio_cancel(1);
SELECT body FROM twilio_outbox;
SELECT count(*) FROM twilio_opt_outs;
SELECT count(*) FROM twilio_inbox;
SELECT count(*) FROM twilio_pools;
SELECT count(*) FROM twilio_webhook_stats;
RESET ROLE;
SELECT pg_describe_object(d.classid, d.objid, 0) AS object, a.privilege_type
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'twilio_outbox'
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
  CROSS JOIN LATERAL aclexplode(COALESCE(c.relacl, p.proacl)) a
 WHERE d.deptype = 'e' AND a.grantee = 'twilio_outbox_webhook'::regrole
 ORDER BY 1, 2;
SELECT roleid::regrole AS role, member::regrole FROM pg_auth_members
 WHERE 'twilio_outbox_webhook'::regrole IN (roleid, member) ORDER BY 1, 2;
DROP ROLE hooks_web, hooks_tier, hooks_nobody;
