--
-- Every way twilio_enqueue refuses bad input: the message names the argument,
-- the hint says what is accepted, the SQLSTATE is of class 22 or 23 (42704
-- for an unknown pool), and nothing is written.
--
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);
\set VERBOSITY default

-- to_number
SELECT twilio_enqueue(NULL, 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('14155550100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+04155550100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+1234567890123456', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+1 415 555 0100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+1415555O100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('whatsapp:14155550100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('sms:+14155550100', 'hi');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue(' +14155550100', 'hi');
\echo :LAST_ERROR_SQLSTATE

-- body
SELECT twilio_enqueue('+14155550100', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', '');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', E'  \n\t ');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', repeat('a', 1601));
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', repeat('é', 1601));
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', NULL, media_urls => '{}');
\echo :LAST_ERROR_SQLSTATE

-- pool
SELECT twilio_enqueue('+14155550100', 'hi', pool => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope');
\echo :LAST_ERROR_SQLSTATE

-- media_urls
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => array_fill('https://example.com/a.jpg'::text, ARRAY[11]));
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['ftp://example.com/a.jpg']);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['example.com/a.jpg']);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['https://']);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['https://example.com/a b.jpg']);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY['https://example.com/a.jpg', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', media_urls => ARRAY[['https://example.com/a.jpg']]);
\echo :LAST_ERROR_SQLSTATE

-- params
SELECT twilio_enqueue('+14155550100', 'hi', params => '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '"ValidityPeriod"');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"ContentVariables": {"1": "x"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"PersistentAction": ["a"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"SmartEncoded": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"To": "+14155550101"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"from": "+14155550101"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"MessagingServiceSid": "MG0123456789abcdef0123456789abcdef"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"Body": "other"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"MediaUrl": "https://example.com/a.jpg"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"StatusCallback": "https://example.com/cb"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"Attempt": 3}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', NULL, params => '{"ContentSid": "HX123"}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"ValidityPeriod": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"ValidityPeriod": 36001}');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', params => '{"ValidityPeriod": 1.5}');
\echo :LAST_ERROR_SQLSTATE

-- status_callback
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://example.com/cb');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'example.com/cb');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'https://user:pw@example.com/cb');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://127.0.0.2/cb');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', status_callback => 'http://localhost.example.com/cb');
\echo :LAST_ERROR_SQLSTATE

-- valid_for, priority, dedup_key
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '-5 minutes');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '1 month -31 days');
\echo :LAST_ERROR_SQLSTATE
-- compares as positive (a month counts 30 days) but ends before it starts in February
SELECT twilio_enqueue('+14155550100', 'hi', send_after => '2031-02-01 00:00+00', valid_for => '1 month -29 days');
\echo :LAST_ERROR_SQLSTATE
-- send_after and the expiry must be finite times the timestamp range can hold
SELECT twilio_enqueue('+14155550100', 'hi', send_after => 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', send_after => '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', send_after => '-infinity', valid_for => '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '178000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '2147483647 days');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', valid_for => '2562047788 hours');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', send_after => '294276-12-31 00:00+00', valid_for => '2 days');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', send_after => '4713-01-01 00:00+00 BC', valid_for => '1 month -29 days');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', priority => 101);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', priority => -101);
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', dedup_key => '');
\echo :LAST_ERROR_SQLSTATE
SELECT twilio_enqueue('+14155550100', 'hi', dedup_key => repeat('k', 1001));
\echo :LAST_ERROR_SQLSTATE

-- nothing was written by any of the 64 calls above
SELECT count(*) AS rows_written FROM twilio_outbox;
DELETE FROM twilio_pools;
