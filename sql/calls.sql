--
-- Voice calls: twilio_enqueue_call and twilio_enqueue_call_trigger, bad
-- input (a clear error, nothing written), twilio_cancel of calls, and call
-- status callbacks applied in a call's order.
--
\set VERBOSITY default
DELETE FROM twilio_outbox;
DELETE FROM twilio_inbox;
ALTER TABLE twilio_outbox ALTER COLUMN id RESTART WITH 1000;
INSERT INTO twilio_pools (name, sender, mps) VALUES
	('default', '+15005550006', 1),
	('service', 'MG' || repeat('a', 32), 1),
	('short', '12345', 1),
	('whatsapp', 'whatsapp:+15005550006', 1);

SELECT twilio_enqueue_call('+14155550100', '<Response><Say>Your table is ready</Say></Response>') AS a \gset
SELECT twilio_enqueue_call('+14155550101', url => 'https://example.com/twiml.xml',
	params => '{"MachineDetection": "Enable", "Timeout": 20}') AS b \gset
SELECT kind, pool, to_number, twiml, call_url, num_segments, params, status
  FROM twilio_outbox WHERE id IN (:a, :b) ORDER BY id;
-- the same dedup_key gives the same call
SELECT twilio_enqueue_call('+14155550102', '<Response/>', dedup_key => 'call-1') =
       twilio_enqueue_call('+14155550102', '<Response/>', dedup_key => 'call-1') AS same_id;

-- bad input: a clear error, nothing written
SELECT count(*) AS before FROM twilio_outbox \gset
SELECT twilio_enqueue_call(NULL, '<Response/>');
SELECT twilio_enqueue_call('whatsapp:+14155550100', '<Response/>');
SELECT twilio_enqueue_call('4155550100', '<Response/>');
SELECT twilio_enqueue_call('+14155550100');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', url => 'https://example.com/t');
SELECT twilio_enqueue_call('+14155550100', '   ');
SELECT twilio_enqueue_call('+14155550100', repeat('x', 4001));
SELECT twilio_enqueue_call('+14155550100', url => 'http://example.com/twiml');
SELECT twilio_enqueue_call('+14155550100', url => 'not a url');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', params => '{"Twiml": "<Response/>"}');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', params => '{"from": "+15005550007"}');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', params => '{"ApplicationSid": "AP0"}');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', params => '["x"]');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', pool => 'nope');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', pool => 'service');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', pool => 'short');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', pool => 'whatsapp');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', priority => 101);
SELECT twilio_enqueue_call('+14155550100', '<Response/>', send_after => 'infinity');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', valid_for => '-1 minute');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', status_callback => 'ftp://x');
SELECT twilio_enqueue_call('+14155550100', '<Response/>', dedup_key => '');
SELECT count(*) - :before AS written FROM twilio_outbox;

-- a trigger enqueues calls; the row's values are escaped in the TwiML
CREATE TABLE reminders (id integer PRIMARY KEY, phone text, name text);
CREATE TRIGGER remind AFTER INSERT ON reminders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_call_trigger('default', 'phone',
		'<Response><Say>Hello {name}, appointment {id}</Say></Response>');
INSERT INTO reminders VALUES (1, '+14155550110', 'Ann & <Bob>'), (2, NULL, 'nobody');
SELECT kind, to_number, twiml FROM twilio_outbox WHERE to_number = '+14155550110';
-- its arguments are checked at CREATE TRIGGER
CREATE TRIGGER bad AFTER INSERT ON reminders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_call_trigger('default', 'telephone', '<Response/>');
CREATE TRIGGER bad AFTER INSERT ON reminders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_call_trigger('default', 'phone', '<Say>{nme}</Say>');
CREATE TRIGGER bad AFTER INSERT ON reminders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_call_trigger('default', 'phone');
-- a call the trigger cannot place makes the insert fail
INSERT INTO reminders VALUES (3, '441234', 'no plus');
CREATE TRIGGER from_service AFTER INSERT ON reminders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_call_trigger('service', 'phone', '<Response/>');
INSERT INTO reminders VALUES (4, '+14155550111', 'Cy');
SELECT count(*) AS reminders FROM reminders;
DROP TABLE reminders;

-- twilio_cancel: a queued call is canceled here; a call Twilio has and has
-- not connected is canceled there by the worker; an answered one is not
SELECT twilio_cancel(:a) AS canceled_here;
SELECT status FROM twilio_outbox WHERE id = :a;
UPDATE twilio_outbox SET status = 'sent', twilio_sid = 'CA' || repeat('b', 32),
	delivery_status = 'ringing', finished_at = now() WHERE id = :b;
SELECT twilio_cancel(:b) AS cancel_at_twilio;
SELECT status, cancel_requested_at IS NOT NULL AS requested FROM twilio_outbox WHERE id = :b;
UPDATE twilio_outbox SET delivery_status = 'in-progress', cancel_requested_at = NULL WHERE id = :b;
SELECT twilio_cancel(:b) AS cancel_answered;

-- call status callbacks: in a call's order, a final one never overwritten,
-- the duration and AnsweredBy kept
INSERT INTO twilio_inbox (kind, params) VALUES
	('status', jsonb_build_object('CallSid', 'CA' || repeat('b', 32), 'CallStatus', 'completed',
	                              'CallDuration', '42')),
	('status', jsonb_build_object('CallSid', 'CA' || repeat('b', 32), 'CallStatus', 'ringing')),
	('status', jsonb_build_object('CallSid', 'CA' || repeat('b', 32), 'CallStatus', 'in-progress',
	                              'AnsweredBy', 'human'));
SELECT _twilio_apply_inbox();
SELECT delivery_status, call_duration, answered_by FROM twilio_outbox WHERE id = :b;
SELECT call_status, outcome FROM twilio_inbox ORDER BY id;
INSERT INTO twilio_inbox (kind, params) VALUES
	('status', jsonb_build_object('CallSid', 'CA' || repeat('b', 32), 'CallStatus', 'busy'));
SELECT _twilio_apply_inbox();
SELECT delivery_status FROM twilio_outbox WHERE id = :b;
-- a redelivered callback is stored once
INSERT INTO twilio_inbox (kind, params) VALUES
	('status', jsonb_build_object('CallSid', 'CA' || repeat('b', 32), 'CallStatus', 'busy'));

DELETE FROM twilio_inbox;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
