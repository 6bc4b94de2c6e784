/*
 * test/03_behaviour.sql
 *		pgTAP: what twilio_enqueue, twilio_cancel, twilio_retry, the pool
 *		table's checks and twilio_enqueue_trigger do, inside one transaction.
 *
 * Covers: an enqueue writes one queued row (attempts 0, next_attempt_at and
 * expires_at from send_after / valid_for, pool 'default' when not named);
 * num_segments for GSM-7 (160/153, extension characters count double and
 * are never split), UCS-2 (70/67, an emoji is two UTF-16 units and is never
 * split), MMS, WhatsApp and ContentSid messages; dedup_key; twilio_cancel and
 * twilio_retry from every status; bad input raising the documented SQLSTATE
 * and message, with a hint, and writing nothing; twilio_pools validation and
 * the delete guard; twilio_enqueue_trigger (rendering, a null to_column,
 * UPDATE, and the CREATE TRIGGER-time checks); twilio_queue_stats counts.
 * Not covered here: the commit-time wake-up of the worker (it needs a
 * commit; see test/worker/).
 *
 * Needs: a server with shared_preload_libraries = 'twilio_outbox', run in
 * the UTF8 database named by twilio_outbox.database, where the extensions
 * pgtap and twilio_outbox already exist (the runner creates them); the
 * worker must have twilio_outbox.enabled = off so rows stay queued.  Run as
 * a superuser (it sets statuses directly).  It empties both tables and
 * creates its pools and a business table inside the transaction; everything
 * is rolled back.
 */
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SELECT plan(149);

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps) VALUES
	('default', '+15005550006', 1),
	('other',   '+15005550006', 1);

-- Rows in the outbox right now.
CREATE FUNCTION pg_temp.n() RETURNS integer
LANGUAGE sql AS $$SELECT count(*)::integer FROM twilio_outbox$$;

-- num_segments of a freshly enqueued SMS with this body (and these media).
CREATE FUNCTION pg_temp.segs(body text, to_number text DEFAULT '+14155550100',
							 media_urls text[] DEFAULT NULL, params jsonb DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	new_id bigint := twilio_enqueue(to_number, body, media_urls => media_urls, params => params);
BEGIN
	RETURN (SELECT o.num_segments FROM twilio_outbox o WHERE o.id = new_id);
END
$$;

-- The hint of the error a statement raises, or '(no error)'.
CREATE FUNCTION pg_temp.hint_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	hint text;
BEGIN
	EXECUTE query;
	RETURN '(no error)';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
	RETURN hint;
END
$$;

------------------------------------------------------------------------
-- An enqueue writes one queued row
------------------------------------------------------------------------
SELECT twilio_enqueue('+14155550100', 'hello') AS basic \gset

SELECT is(pg_temp.n(), 1, 'twilio_enqueue inserts one row');
SELECT is((SELECT id FROM twilio_outbox), :basic::bigint, 'twilio_enqueue returns the id of its row');
SELECT is((SELECT status FROM twilio_outbox WHERE id = :basic), 'queued', 'a new row is queued');
SELECT is((SELECT attempts FROM twilio_outbox WHERE id = :basic), 0, 'a new row has attempts 0');
SELECT is((SELECT pool FROM twilio_outbox WHERE id = :basic), 'default', 'pool defaults to ''default''');
SELECT is((SELECT (to_number, body)::text FROM twilio_outbox WHERE id = :basic), '(+14155550100,hello)',
		  'to_number and body are stored as given');
SELECT is((SELECT priority FROM twilio_outbox WHERE id = :basic), 0, 'priority defaults to 0');
SELECT is((SELECT params FROM twilio_outbox WHERE id = :basic), '{}'::jsonb, 'params defaults to {}');
SELECT is((SELECT next_attempt_at FROM twilio_outbox WHERE id = :basic), now(),
		  'next_attempt_at is now() without send_after');
SELECT is((SELECT expires_at FROM twilio_outbox WHERE id = :basic), NULL,
		  'expires_at is null without valid_for');
SELECT is((SELECT created_at FROM twilio_outbox WHERE id = :basic), now(), 'created_at is now()');
SELECT is((SELECT (media_urls, dedup_key, twilio_sid, delivery_status, last_http_status,
				   last_error_code, last_error, sent_at)::text FROM twilio_outbox WHERE id = :basic),
		  '(,,,,,,,)', 'a new row has no media, dedup_key, sid, delivery status, error or sent_at');

SELECT twilio_enqueue('+14155550100', 'later', send_after => now() + interval '1 hour') AS later \gset
SELECT is((SELECT next_attempt_at FROM twilio_outbox WHERE id = :later), now() + interval '1 hour',
		  'next_attempt_at is send_after when given');
SELECT is((SELECT expires_at FROM twilio_outbox WHERE id = :later), NULL,
		  'send_after alone sets no expiry');

SELECT twilio_enqueue('+14155550100', 'soon gone', valid_for => interval '15 minutes') AS soon \gset
SELECT is((SELECT expires_at FROM twilio_outbox WHERE id = :soon), now() + interval '15 minutes',
		  'expires_at is now() + valid_for without send_after');

SELECT twilio_enqueue('+14155550100', 'later and gone', send_after => now() + interval '1 hour',
					  valid_for => interval '30 minutes') AS both \gset
SELECT is((SELECT (next_attempt_at, expires_at) FROM twilio_outbox WHERE id = :both),
		  (now() + interval '1 hour', now() + interval '90 minutes'),
		  'expires_at is send_after + valid_for when both are given');

SELECT twilio_enqueue(to_number => '+14155550100', body => 'named', pool => 'other', priority => 7,
					  params => '{"ValidityPeriod": 600}') AS named \gset
SELECT is((SELECT (pool, priority, params)::text FROM twilio_outbox WHERE id = :named),
		  '(other,7,"{""ValidityPeriod"": 600}")',
		  'named arguments pool, priority and params are stored');
SELECT is(pg_temp.n(), 5, 'five enqueues, five rows');

------------------------------------------------------------------------
-- num_segments
------------------------------------------------------------------------
-- GSM-7: 160 septets in one segment, 153 per part.
SELECT is(pg_temp.segs(repeat('a', 160)), 1, 'GSM-7: 160 characters are 1 segment');
SELECT is(pg_temp.segs(repeat('a', 161)), 2, 'GSM-7: 161 characters are 2 segments');
SELECT is(pg_temp.segs(repeat('a', 306)), 2, 'GSM-7: 306 characters are 2 segments');
SELECT is(pg_temp.segs(repeat('a', 307)), 3, 'GSM-7: 307 characters are 3 segments');
SELECT is(pg_temp.segs('x'), 1, 'GSM-7: one character is 1 segment');
SELECT is(pg_temp.segs(repeat(chr(233), 160)), 1,
		  'GSM-7: e-acute is in the GSM alphabet: 160 of them are 1 segment');
SELECT is(pg_temp.segs(repeat('@$_', 53) || 'a'), 1,
		  'GSM-7: @ $ _ are single septets: 160 characters are 1 segment');
-- Extension characters (escape + character) count double.
SELECT is(pg_temp.segs(repeat(chr(8364), 80)), 1, 'GSM-7: 80 euro signs are 1 segment');
SELECT is(pg_temp.segs(repeat(chr(8364), 81)), 2, 'GSM-7: 81 euro signs are 2 segments');
SELECT is(pg_temp.segs(repeat('{', 80)), 1, 'GSM-7: 80 ''{'' are 1 segment');
SELECT is(pg_temp.segs(repeat('{', 81)), 2, 'GSM-7: 81 ''{'' are 2 segments');
SELECT is(pg_temp.segs(repeat('a', 159) || '~'), 2, 'GSM-7: 159 characters and a ''~'' are 161 septets: 2 segments');
SELECT is(pg_temp.segs(repeat('a', 152) || chr(8364) || repeat('a', 152)), 3,
		  'GSM-7: an escape sequence is never split across parts (306 septets, 3 segments)');
-- UCS-2: 70 UTF-16 units in one segment, 67 per part.
SELECT is(pg_temp.segs(repeat(chr(1078), 70)), 1, 'UCS-2: 70 characters are 1 segment');
SELECT is(pg_temp.segs(repeat(chr(1078), 71)), 2, 'UCS-2: 71 characters are 2 segments');
SELECT is(pg_temp.segs(repeat(chr(1078), 134)), 2, 'UCS-2: 134 characters are 2 segments');
SELECT is(pg_temp.segs(repeat(chr(1078), 135)), 3, 'UCS-2: 135 characters are 3 segments');
SELECT is(pg_temp.segs(repeat('a', 69) || chr(1078)), 1,
		  'UCS-2: one non-GSM character makes the body UCS-2: 70 characters, 1 segment');
SELECT is(pg_temp.segs(repeat('a', 70) || chr(1078)), 2,
		  'UCS-2: one non-GSM character makes the body UCS-2: 71 characters, 2 segments');
SELECT is(pg_temp.segs(repeat('a', 100) || '`'), 2,
		  'UCS-2: a backtick is not in GSM-7: 101 characters are 2 segments');
SELECT is(pg_temp.segs(repeat(chr(128512), 35)), 1, 'UCS-2: 35 emoji (70 UTF-16 units) are 1 segment');
SELECT is(pg_temp.segs(repeat(chr(128512), 36)), 2, 'UCS-2: 36 emoji (72 UTF-16 units) are 2 segments');
SELECT is(pg_temp.segs(repeat(chr(128512), 66)), 2, 'UCS-2: 66 emoji (132 UTF-16 units) are 2 segments');
SELECT is(pg_temp.segs(repeat(chr(128512), 67)), 3,
		  'UCS-2: a surrogate pair is never split: 67 emoji (134 units) are 3 segments');
-- MMS, WhatsApp and templates are one message each.
SELECT is(pg_temp.segs(repeat('a', 400), media_urls => ARRAY['https://example.com/a.jpg']), 1,
		  'MMS: a 400-character body with media_urls is 1');
SELECT is(pg_temp.segs(NULL, media_urls => ARRAY['https://example.com/a.jpg', 'https://example.com/b.png']), 1,
		  'MMS: media without a body is 1');
SELECT is(pg_temp.segs(repeat('a', 400), to_number => 'whatsapp:+14155550100'), 1,
		  'WhatsApp: a 400-character body to whatsapp:+1... is 1');
SELECT is(pg_temp.segs(NULL, params => '{"ContentSid": "HX0123456789abcdef0123456789abcdef"}'), 1,
		  'a ContentSid message without a body is 1');

------------------------------------------------------------------------
-- dedup_key
------------------------------------------------------------------------
DELETE FROM twilio_outbox;
SELECT twilio_enqueue('+14155550100', 'first', dedup_key => 'order-42-shipped') AS dedup1 \gset
SELECT twilio_enqueue('+14155550100', 'second', dedup_key => 'order-42-shipped') AS dedup2 \gset
SELECT is(:dedup2::bigint, :dedup1::bigint, 'a repeated dedup_key returns the existing id');
SELECT is(pg_temp.n(), 1, 'a repeated dedup_key inserts nothing');
SELECT is((SELECT body FROM twilio_outbox WHERE id = :dedup1), 'first',
		  'a repeated dedup_key leaves the first message as it was');
SELECT isnt(twilio_enqueue('+14155550100', 'third', dedup_key => 'order-43-shipped'), :dedup1::bigint,
			'another dedup_key gets its own row');
SELECT is(pg_temp.n(), 2, 'another dedup_key inserts a row');

------------------------------------------------------------------------
-- twilio_cancel
------------------------------------------------------------------------
DELETE FROM twilio_outbox;
CREATE TEMP TABLE by_status (status text PRIMARY KEY, id bigint NOT NULL);
INSERT INTO by_status
SELECT s, twilio_enqueue('+14155550100', 'cancel probe ' || s)
  FROM unnest(ARRAY['queued', 'retrying', 'sending', 'sent', 'failed', 'expired', 'canceled']) s;
UPDATE twilio_outbox o SET status = b.status, attempts = 3 FROM by_status b WHERE o.id = b.id;

SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'queued')), true,
		  'twilio_cancel cancels a queued row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'retrying')), true,
		  'twilio_cancel cancels a retrying row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'sending')), false,
		  'twilio_cancel refuses a sending row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'sent')), false,
		  'twilio_cancel refuses a sent row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'failed')), false,
		  'twilio_cancel refuses a failed row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'expired')), false,
		  'twilio_cancel refuses an expired row');
SELECT is(twilio_cancel((SELECT id FROM by_status WHERE status = 'canceled')), false,
		  'twilio_cancel refuses an already canceled row');
SELECT is(twilio_cancel(-42), false, 'twilio_cancel returns false for a missing id');
SELECT results_eq(
	$$SELECT b.status, o.status FROM by_status b JOIN twilio_outbox o USING (id) ORDER BY b.status$$,
	$$VALUES ('canceled', 'canceled'), ('expired', 'expired'), ('failed', 'failed'),
	         ('queued', 'canceled'), ('retrying', 'canceled'), ('sending', 'sending'), ('sent', 'sent')$$,
	'only the queued and retrying rows became canceled');
SELECT throws_ok($$SELECT twilio_cancel(NULL)$$, '22004', 'id must not be null',
				 'twilio_cancel(NULL) raises 22004');

------------------------------------------------------------------------
-- twilio_retry
------------------------------------------------------------------------
UPDATE twilio_outbox o SET status = b.status, attempts = 3,
	   next_attempt_at = now() - interval '1 day', expires_at = now() - interval '1 hour'
  FROM by_status b WHERE o.id = b.id;

SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'failed')), true,
		  'twilio_retry queues a failed row again');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'expired')), true,
		  'twilio_retry queues an expired row again');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'canceled')), true,
		  'twilio_retry queues a canceled row again');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'queued')), false,
		  'twilio_retry refuses a queued row');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'retrying')), false,
		  'twilio_retry refuses a retrying row');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'sending')), false,
		  'twilio_retry refuses a sending row');
SELECT is(twilio_retry((SELECT id FROM by_status WHERE status = 'sent')), false,
		  'twilio_retry refuses a sent row');
SELECT is(twilio_retry(-42), false, 'twilio_retry returns false for a missing id');
SELECT results_eq(
	$$SELECT b.status, o.status, o.attempts FROM by_status b JOIN twilio_outbox o USING (id) ORDER BY b.status$$,
	$$VALUES ('canceled', 'queued', 0), ('expired', 'queued', 0), ('failed', 'queued', 0),
	         ('queued', 'queued', 3), ('retrying', 'retrying', 3), ('sending', 'sending', 3), ('sent', 'sent', 3)$$,
	'retried rows are queued with attempts 0; the others are untouched');
SELECT is_empty(
	$$SELECT id FROM twilio_outbox JOIN by_status b USING (id)
	   WHERE b.status IN ('failed', 'expired', 'canceled')
	     AND (next_attempt_at > now() OR expires_at <= now())$$,
	'retried rows are due now and not already past their expiry');
SELECT throws_ok($$SELECT twilio_retry(NULL)$$, '22004', 'id must not be null',
				 'twilio_retry(NULL) raises 22004');

------------------------------------------------------------------------
-- Bad input: the right SQLSTATE and message, and nothing written
------------------------------------------------------------------------
DELETE FROM twilio_outbox;

SELECT throws_ok($$SELECT twilio_enqueue('12345', 'hi')$$,
				 '22023', 'invalid to_number "12345"', 'to_number ''12345'' raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+04155550100', 'hi')$$,
				 '22023', 'invalid to_number "+04155550100"', 'a to_number starting +0 raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+1234567890123456', 'hi')$$,
				 '22023', 'invalid to_number "+1234567890123456"', 'a to_number of 16 digits raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue(NULL, 'hi')$$,
				 '22004', 'to_number must not be null', 'a null to_number raises 22004');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope')$$,
				 '42704', 'pool "nope" does not exist', 'an unknown pool raises 42704');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => NULL)$$,
				 '22004', 'pool must not be null', 'a null pool raises 22004');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', repeat('a', 1601))$$,
				 '22001', 'body has 1601 characters, more than the 1600 Twilio accepts',
				 'a body over 1600 characters raises 22001');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', NULL)$$,
				 '22023', 'body must not be empty when there are no media_urls and no ContentSid',
				 'a null body without media or ContentSid raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', '   ')$$,
				 '22023', 'body must not be empty when there are no media_urls and no ContentSid',
				 'a blank body raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', priority => 101)$$,
				 '22003', 'priority 101 is out of range', 'priority 101 raises 22003');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', priority => -101)$$,
				 '22003', 'priority -101 is out of range', 'priority -101 raises 22003');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', valid_for => interval '0 seconds')$$,
				 '22023', 'valid_for must be positive', 'valid_for 0 raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', dedup_key => '')$$,
				 '22023', 'dedup_key must be between 1 and 1000 bytes long', 'an empty dedup_key raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://example.com/cb')$$,
				 '22023', 'invalid status_callback "http://example.com/cb"',
				 'a plain-http status_callback to a public host raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['ftp://example.com/a.jpg'])$$,
				 '22023', 'media_urls element 1 is not an http(s) URL: "ftp://example.com/a.jpg"',
				 'a non-http media URL raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', params => '{"From": "+15005550006"}')$$,
				 '22023', 'params key "From" would override a field the outbox sets',
				 'params overriding From raises 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', params => '[1, 2]')$$,
				 '22023', 'params must be a JSON object', 'params that are not an object raise 22023');
SELECT is(pg_temp.n(), 0, '... and writes nothing');

SELECT is_empty(
	$$SELECT q FROM unnest(ARRAY[
		$q$SELECT twilio_enqueue('12345', 'hi')$q$,
		$q$SELECT twilio_enqueue(NULL, 'hi')$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope')$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', pool => NULL)$q$,
		$q$SELECT twilio_enqueue('+14155550100', repeat('a', 1601))$q$,
		$q$SELECT twilio_enqueue('+14155550100', NULL)$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', priority => 101)$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', valid_for => interval '-1 minute')$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', dedup_key => '')$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'ftp://x')$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['not a url'])$q$,
		$q$SELECT twilio_enqueue('+14155550100', 'hi', params => '{"To": "+1"}')$q$
	  ]) q
	  WHERE pg_temp.hint_of(q) IS NULL OR pg_temp.hint_of(q) = '(no error)'$$,
	'every enqueue error carries a hint');

-- The limits themselves are accepted.
SELECT lives_ok($$SELECT twilio_enqueue('+14155550100', repeat('a', 1600))$$, 'a body of 1600 characters is accepted');
SELECT lives_ok($$SELECT twilio_enqueue('+14155550100', 'hi', priority => 100)$$, 'priority 100 is accepted');
SELECT lives_ok($$SELECT twilio_enqueue('+14155550100', 'hi', priority => -100)$$, 'priority -100 is accepted');
SELECT lives_ok($$SELECT twilio_enqueue('+123456789012345', 'hi')$$, 'a to_number of 15 digits is accepted');
SELECT lives_ok($$SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://127.0.0.1:8080/cb')$$,
				'a plain-http status_callback to loopback is accepted');
SELECT is(pg_temp.n(), 5, 'the accepted calls wrote one row each');

------------------------------------------------------------------------
-- twilio_pools validation
------------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('x', '+15005550006', 0)$$,
				 '23514', 'mps 0 for pool "x" is out of range', 'mps 0 raises 23514');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('x', '+15005550006', 10001)$$,
				 '23514', 'mps 10001 for pool "x" is out of range', 'mps 10001 raises 23514');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps, burst) VALUES ('x', '+15005550006', 1, 0)$$,
				 '23514', 'burst 0 for pool "x" is out of range', 'burst 0 raises 23514');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('x', 'not a sender!', 1)$$,
				 '23514', 'invalid sender ''not a sender!'' for pool "x"', 'a bad sender raises 23514');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('x', '+0155550100', 1)$$,
				 '23514', 'invalid sender ''+0155550100'' for pool "x"', 'a sender starting +0 raises 23514');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('x', 'MGM', 1)$$,
				 '23514', 'invalid sender ''MGM'' for pool "x"',
				 'a sender starting MG that is no Messaging Service SID raises 23514 (MG... is sent as MessagingServiceSid)');
SELECT throws_ok($$UPDATE twilio_pools SET mps = -1 WHERE name = 'other'$$,
				 '23514', 'mps -1 for pool "other" is out of range', 'an UPDATE to mps -1 raises 23514');
SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('s1', '+14155550100', 0.5)$$,
				'a +E164 sender and a fractional mps are accepted');
SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('s2', '12345', 100)$$,
				'a short code sender is accepted');
SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('s3', 'ACME', 10000)$$,
				'an alphanumeric sender and mps 10000 are accepted');
SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('s4', 'whatsapp:+14155550100', 80)$$,
				'a whatsapp:+E164 sender is accepted');
SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('s5', 'MG0123456789abcdef0123456789ABCDEF', 3)$$,
				'a Messaging Service SID sender is accepted');
SELECT is((SELECT (burst, paused)::text FROM twilio_pools WHERE name = 's1'), '(1,f)',
		  'a new pool has burst 1 and is not paused');
SELECT throws_ok($$DELETE FROM twilio_pools WHERE name = 'default'$$,
				 '23503', 'pool "default" cannot be deleted while messages reference it',
				 'deleting a pool that messages reference raises 23503');
SELECT is((SELECT count(*)::int FROM twilio_pools WHERE name = 'default'), 1, '... and the pool is still there');
SELECT lives_ok($$DELETE FROM twilio_pools WHERE name = 's5'$$, 'an unreferenced pool can be deleted');

------------------------------------------------------------------------
-- twilio_enqueue_trigger
------------------------------------------------------------------------
DELETE FROM twilio_outbox;
CREATE TABLE tap_orders (id integer PRIMARY KEY, phone text, name text, total numeric(8, 2));

SELECT lives_ok(
	$$CREATE TRIGGER tap_orders_sms AFTER INSERT OR UPDATE ON tap_orders FOR EACH ROW
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'phone', 'Hi {name}, order {id} costs {total} {{EUR}}')$$,
	'CREATE TRIGGER with twilio_enqueue_trigger(pool, to_column, body_template)');

INSERT INTO tap_orders VALUES (1, '+14155550111', 'Ann', 9.5);
SELECT results_eq(
	$$SELECT pool, to_number, body, status FROM twilio_outbox$$,
	$$VALUES ('other', '+14155550111', 'Hi Ann, order 1 costs 9.50 {EUR}', 'queued')$$,
	'an inserted row enqueues its rendered message');
INSERT INTO tap_orders VALUES (2, NULL, 'Bob', 1);
SELECT is(pg_temp.n(), 1, 'a row whose to_column is null enqueues nothing');
INSERT INTO tap_orders VALUES (3, '+14155550113', NULL, 2);
SELECT is((SELECT body FROM twilio_outbox WHERE to_number = '+14155550113'), 'Hi , order 3 costs 2.00 {EUR}',
		  'a null placeholder column renders as empty text');
UPDATE tap_orders SET name = 'Annie' WHERE id = 1;
SELECT is((SELECT count(*)::int FROM twilio_outbox WHERE body = 'Hi Annie, order 1 costs 9.50 {EUR}'), 1,
		  'an UPDATE enqueues a message rendered from the new row');
SELECT is(pg_temp.n(), 3, 'three messages from the trigger so far');
SELECT throws_ok($$INSERT INTO tap_orders VALUES (4, '555-0100', 'Eve', 3)$$,
				 '22023', 'invalid to_number "555-0100"',
				 'a row with an invalid phone number raises 22023');
SELECT is((SELECT count(*)::int FROM tap_orders WHERE id = 4), 0, '... and the business row is not inserted either');
SELECT is(pg_temp.n(), 3, '... and nothing is enqueued');

CREATE TABLE tap_nopool (id integer, phone text);
CREATE TRIGGER tap_nopool_sms AFTER INSERT ON tap_nopool FOR EACH ROW
	EXECUTE FUNCTION twilio_enqueue_trigger('nope', 'phone', 'hi');
SELECT throws_ok($$INSERT INTO tap_nopool VALUES (1, '+14155550100')$$,
				 '42704', 'pool "nope" does not exist', 'a trigger naming an unknown pool raises 42704 on insert');

SELECT throws_ok(
	$$CREATE TRIGGER tap_bad_nargs AFTER INSERT ON tap_orders FOR EACH ROW
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'phone')$$,
	'22023', 'twilio_enqueue_trigger needs 3 arguments (pool, to_column, body_template), got 2',
	'CREATE TRIGGER with 2 arguments fails');
SELECT throws_ok(
	$$CREATE TRIGGER tap_bad_template AFTER INSERT ON tap_orders FOR EACH ROW
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'phone', 'Hi {nickname}')$$,
	'42703', 'body_template names column "nickname", which table "tap_orders" does not have',
	'CREATE TRIGGER with a template naming a missing column fails with 42703');
SELECT throws_ok(
	$$CREATE TRIGGER tap_bad_to AFTER INSERT ON tap_orders FOR EACH ROW
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'mobile', 'Hi {name}')$$,
	'42703', 'to_column names column "mobile", which table "tap_orders" does not have',
	'CREATE TRIGGER with a missing to_column fails with 42703');
SELECT throws_ok(
	$$CREATE TRIGGER tap_bad_brace AFTER INSERT ON tap_orders FOR EACH ROW
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'phone', 'Hi {name')$$,
	'22023', 'body_template has a "{" without a closing "}"',
	'CREATE TRIGGER with an unclosed brace in the template fails');
SELECT throws_ok(
	$$CREATE TRIGGER tap_bad_level AFTER INSERT ON tap_orders FOR EACH STATEMENT
	  EXECUTE FUNCTION twilio_enqueue_trigger('other', 'phone', 'Hi {name}')$$,
	'22023', 'twilio_enqueue_trigger must be a FOR EACH ROW trigger on INSERT or UPDATE',
	'CREATE TRIGGER ... FOR EACH STATEMENT fails');
SELECT set_eq($$SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'tap_orders'::regclass$$,
			  ARRAY['tap_orders_sms'],
			  'the refused triggers were not created');

------------------------------------------------------------------------
-- twilio_queue_stats
------------------------------------------------------------------------
DELETE FROM twilio_outbox;
INSERT INTO twilio_pools (name, sender, mps) VALUES ('stats', '+15005550006', 2);
SELECT twilio_enqueue('+14155550100', repeat('a', 161), pool => 'stats') AS st1 \gset
SELECT twilio_enqueue('+14155550100', 'one', pool => 'stats') AS st2 \gset
SELECT twilio_enqueue('+14155550100', 'two', pool => 'stats') AS st3 \gset
UPDATE twilio_outbox SET status = 'retrying' WHERE id = :st3;

SELECT set_eq($$SELECT pool FROM twilio_queue_stats$$, $$SELECT name FROM twilio_pools$$,
			  'twilio_queue_stats has one row per pool');
SELECT is((SELECT (mps, paused, queued, retrying, sending)::text FROM twilio_queue_stats WHERE pool = 'stats'),
		  '(2,f,2,1,0)', 'twilio_queue_stats counts queued, retrying and sending rows of a pool');
SELECT is((SELECT est_drain_time FROM twilio_queue_stats WHERE pool = 'stats'), interval '2 seconds',
		  'twilio_queue_stats estimates the drain time from pending segments / mps (4 / 2)');
SELECT is((SELECT (queued, retrying, sending)::text FROM twilio_queue_stats WHERE pool = 'default'),
		  '(0,0,0)', 'a pool without messages shows zero counts');

SELECT * FROM finish();
ROLLBACK;
