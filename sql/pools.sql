--
-- twilio_pools: every sender form accepted, every mistake refused with a
-- message naming the column and a hint.
--
\set VERBOSITY default
INSERT INTO twilio_pools (name, sender, mps, burst) VALUES
	('long_code', '+14155550100', 1, 1),
	('toll_free', '+18005550100', 3, 3),
	('short_code', '12345', 100, 10),
	('alpha', 'ACME Shop', 10, 1),
	('whatsapp', 'whatsapp:+14155550100', 80, 5),
	('service', 'MG0123456789abcdef0123456789ABCDEF', 10, 10),
	('fractional', '+14155550101', 0.5, 1);
SELECT name, sender, mps, burst, paused FROM twilio_pools ORDER BY name;

-- the sender must be one of the forms above
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '4155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+0155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+1234567890123456', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', 'MG123', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', 'Twelve Chars', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', 'whatsapp:14155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', NULL, 1);
-- mps in (0, 10000]
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 0);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', -1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 10000.5);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 'NaN');
INSERT INTO twilio_pools (name, sender, mps) VALUES ('max', '+14155550100', 10000);
-- burst >= 1
INSERT INTO twilio_pools (name, sender, mps, burst) VALUES ('bad', '+14155550100', 1, 0);
UPDATE twilio_pools SET burst = -5 WHERE name = 'alpha';
-- names are 1 to 63 characters
INSERT INTO twilio_pools (name, sender, mps) VALUES ('', '+14155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('p', 64), '+14155550100', 1);
SELECT count(*) AS pools FROM twilio_pools;

-- a pool that messages reference cannot be deleted; renaming carries them along
SELECT twilio_enqueue('+14155550199', 'hello', pool => 'long_code') > 0 AS enqueued;
DELETE FROM twilio_pools WHERE name = 'long_code';
UPDATE twilio_pools SET name = 'us_long_code' WHERE name = 'long_code';
SELECT pool, to_number FROM twilio_outbox;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools WHERE name = 'us_long_code';
DELETE FROM twilio_pools;
