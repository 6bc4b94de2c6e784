--
-- Versions: the library serves the SQL of every released version.  0.1.0
-- is installed and used with today's library, then updated in place; the
-- data stays.  (test/e2e/17_upgrade_schema.py compares the updated objects
-- with a fresh install.)
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS twilio_outbox CASCADE;
RESET client_min_messages;
CREATE EXTENSION twilio_outbox VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox';

-- every C function the 0.1.0 script references still works
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);

SELECT twilio_enqueue('+14155550100', 'hello from 0.1.0') AS id \gset
SELECT status, num_segments, attempts FROM twilio_outbox WHERE id = :id;
SELECT twilio_cancel(:id) AS canceled, twilio_retry(:id) AS retried;
SELECT _twilio_session_xact_callbacks() >= 1 AS wakes_at_commit;
SELECT count(*) FROM twilio_worker_status;
SELECT pool, queued FROM twilio_queue_stats;
SELECT count(*) >= 0 AS pool_status_works FROM twilio_pool_status;
CREATE TABLE upgrade_orders (id int PRIMARY KEY, phone text);
CREATE TRIGGER upgrade_orders_notify AFTER INSERT ON upgrade_orders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('default', 'phone', 'Order {id} shipped');
INSERT INTO upgrade_orders VALUES (7, '+14155550107');
SELECT to_number, body FROM twilio_outbox WHERE to_number = '+14155550107';
SELECT twilio_ingest_callback('/twilio/status', '{"MessageSid": "SM00000000000000000000000000000000", "MessageStatus": "sent"}',
	'not-a-signature', 'https://example.com/twilio/status') AS accepted;
SELECT listen, requests >= 1 AS counted FROM twilio_webhook_stats;

-- what 0.1.0 allowed and 0.2.0 does not: a pool name over 63 bytes (32
-- characters), an mps below 0.001, an inbound message stored twice; a role
-- granted twilio_ingest_callback directly; a STOP already applied
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('é', 32), '+15005550006', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('trickle', '+15005550006', 1e-300);
INSERT INTO twilio_inbox (kind, params) VALUES
	('inbound', '{"MessageSid": "SMdup", "From": "+14155550109", "Body": "STOP"}'),
	('inbound', '{"MessageSid": "SMdup", "From": "+14155550109", "Body": "STOP"}'),
	('inbound', '{"MessageSid": "SMother", "From": "+14155550109", "Body": "hello"}');
SELECT _twilio_apply_inbox() AS applied;
CREATE ROLE upgrade_web;
GRANT EXECUTE ON FUNCTION twilio_ingest_callback(text, jsonb, text, text) TO upgrade_web;

-- the update stops at the long name and says which; renamed, it goes through
\set VERBOSITY default
ALTER EXTENSION twilio_outbox UPDATE;
\set VERBOSITY terse
SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox';
UPDATE twilio_pools SET name = repeat('é', 31) WHERE name = repeat('é', 32);

-- update in place: the rows are still there
ALTER EXTENSION twilio_outbox UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'twilio_outbox';
SELECT to_number, body, status FROM twilio_outbox ORDER BY id;
SELECT name, sender, mps FROM twilio_pools ORDER BY name;
SELECT twilio_enqueue('+14155550101', 'hello from 0.2.0') > :id AS new_id_follows;
SELECT params->>'MessageSid' AS sid, count(*) FROM twilio_inbox WHERE kind = 'inbound' GROUP BY 1 ORDER BY 1;
SELECT message_sid, phone_number, keyword, opt_out FROM _twilio_opt_out_keywords;
-- twilio_ingest_callback has 5 arguments now; calls with 4 still work, and
-- the role granted the old one may call the new one (as a member of
-- twilio_outbox_webhook)
SELECT pg_get_function_identity_arguments('twilio_ingest_callback'::regproc) AS ingest_arguments;
SELECT twilio_ingest_callback('/twilio/status', '{"MessageSid": "SM00000000000000000000000000000000", "MessageStatus": "sent"}',
	'not-a-signature', 'https://example.com/twilio/status') AS accepted;
SELECT has_function_privilege('upgrade_web', 'twilio_ingest_callback(text, jsonb, text, text, text)', 'EXECUTE') AS upgrade_web_may,
       pg_has_role('upgrade_web', 'twilio_outbox_webhook', 'MEMBER') AS upgrade_web_member,
       has_function_privilege('twilio_outbox_webhook', 'twilio_ingest_callback(text, jsonb, text, text, text)', 'EXECUTE') AS webhook_role_may;

DROP TABLE upgrade_orders;
DROP EXTENSION twilio_outbox;
DROP ROLE upgrade_web;
