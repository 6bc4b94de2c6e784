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
-- mps in [0.001, 10000]
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 0);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', -1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 10000.5);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 'NaN');
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 0.0009);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 1e-300);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 1e-400);
UPDATE twilio_pools SET mps = 1e-300 WHERE name = 'alpha';
INSERT INTO twilio_pools (name, sender, mps) VALUES ('max', '+14155550100', 10000);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('min', '+14155550100', 0.001);
-- the CHECK constraint holds the same limits without the trigger's messages
SET session_replication_role = replica;
\set VERBOSITY terse
INSERT INTO twilio_pools (name, sender, mps) VALUES ('bad', '+14155550100', 1e-300);
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('é', 32), '+14155550100', 1);
\set VERBOSITY default
RESET session_replication_role;
-- burst >= 1
INSERT INTO twilio_pools (name, sender, mps, burst) VALUES ('bad', '+14155550100', 1, 0);
UPDATE twilio_pools SET burst = -5 WHERE name = 'alpha';
-- names are 1 to 63 bytes: the worker's shared-memory slot holds 63 bytes,
-- and 32 characters of 'é' are 64
INSERT INTO twilio_pools (name, sender, mps) VALUES ('', '+14155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('p', 64), '+14155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('é', 32), '+14155550100', 1);
UPDATE twilio_pools SET name = repeat('é', 32) WHERE name = 'alpha';
INSERT INTO twilio_pools (name, sender, mps) VALUES (repeat('é', 31) || 'p', '+14155550100', 1);
SELECT octet_length(name), length(name) FROM twilio_pools WHERE name LIKE 'é%';
SELECT count(*) AS pools FROM twilio_pools;

-- the worker has 256 pool slots (TOB_MAX_POOLS in src/shmem.h): a pool
-- beyond them would never be served, so it is refused, also within one
-- statement; a deleted pool frees its slot
DELETE FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps)
SELECT 'p' || i, '+14155550100', 1 FROM generate_series(1, 255) i;
INSERT INTO twilio_pools (name, sender, mps) VALUES ('p256', '+14155550100', 1), ('p257', '+14155550100', 1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO twilio_pools (name, sender, mps) VALUES ('p256', '+14155550100', 1);
INSERT INTO twilio_pools (name, sender, mps) VALUES ('p257', '+14155550100', 1);
SELECT count(*) AS pools FROM twilio_pools;
DELETE FROM twilio_pools WHERE name = 'p1';
INSERT INTO twilio_pools (name, sender, mps) VALUES ('p257', '+14155550100', 1);
-- renaming and editing a pool needs no new slot
UPDATE twilio_pools SET name = 'p258', mps = 2 WHERE name = 'p257';
SELECT count(*) AS pools FROM twilio_pools;
DELETE FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps)
SELECT 'p' || i, '+14155550100', 1 FROM generate_series(1, 257) i;
SELECT count(*) AS pools FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps, burst) VALUES
	('long_code', '+14155550100', 1, 1), ('alpha', 'ACME Shop', 10, 1);

-- a pool that messages reference cannot be deleted; renaming carries them along
SELECT twilio_enqueue('+14155550199', 'hello', pool => 'long_code') > 0 AS enqueued;
DELETE FROM twilio_pools WHERE name = 'long_code';
UPDATE twilio_pools SET name = 'us_long_code' WHERE name = 'long_code';
SELECT pool, to_number FROM twilio_outbox;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools WHERE name = 'us_long_code';
DELETE FROM twilio_pools;
