--
-- Secrets, settings and SECURITY DEFINER functions against other roles.
--
\set VERBOSITY default

-- A secret cannot be set by a statement: its text would stay in the
-- statement log and pg_stat_statements (test/e2e/22_secrets.py checks both).
-- The hint points at the *_file settings; nothing is written.
ALTER SYSTEM SET twilio_outbox.auth_token = 'regress-secret-token';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET twilio_outbox.api_key_secret TO 'regress-secret-key';
ALTER SYSTEM SET "twilio_outbox"."auth_token" = unquoted_secret;
ALTER SYSTEM SET TWILIO_OUTBOX.API_KEY_SECRET = 12345;
SET twilio_outbox.auth_token = 'regress-secret-token';
SET LOCAL twilio_outbox.api_key_secret = 'regress-secret-key';
ALTER ROLE CURRENT_USER SET twilio_outbox.auth_token = 'regress-secret-token';
ALTER DATABASE contrib_regression SET twilio_outbox.auth_token = 'regress-secret-token';
CREATE FUNCTION sets_secret() RETURNS int LANGUAGE sql
	SET twilio_outbox.auth_token = 'regress-secret-token' AS 'SELECT 1';
CREATE FUNCTION sets_nothing() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION sets_nothing() SET twilio_outbox.api_key_secret = 'regress-secret-key';
DROP FUNCTION sets_nothing();
SELECT count(*) AS written FROM pg_file_settings
 WHERE sourcefile LIKE '%postgresql.auto.conf' AND name LIKE 'twilio_outbox.%';
-- taking a secret away, and naming a file, are allowed
ALTER SYSTEM RESET twilio_outbox.auth_token;
ALTER SYSTEM SET twilio_outbox.api_key_secret TO DEFAULT;
ALTER SYSTEM SET twilio_outbox.auth_token_file = '/etc/twilio/auth_token';
SELECT name, setting FROM pg_file_settings
 WHERE sourcefile LIKE '%postgresql.auto.conf' AND name LIKE 'twilio_outbox.%';
ALTER SYSTEM RESET twilio_outbox.auth_token_file;

-- the secrets (test/regress.conf sets them) are masked for everyone, listed nowhere
SHOW twilio_outbox.auth_token;
SELECT current_setting('twilio_outbox.api_key_secret');
SELECT count(*) AS listed FROM pg_settings WHERE name IN ('twilio_outbox.auth_token', 'twilio_outbox.api_key_secret');
CREATE ROLE tob_monitor IN ROLE pg_monitor;
CREATE ROLE tob_nobody;
SET ROLE tob_monitor;
SHOW twilio_outbox.auth_token;
SELECT current_setting('twilio_outbox.auth_token');
SELECT count(*) AS visible FROM pg_settings WHERE setting LIKE '%regress-secret%' OR setting = '12345';
SELECT * FROM pg_file_settings;
\echo :LAST_ERROR_SQLSTATE
SET ROLE tob_nobody;
SHOW twilio_outbox.auth_token;
\echo :LAST_ERROR_SQLSTATE
SHOW twilio_outbox.account_sid;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- settings are checked when they are set
ALTER SYSTEM SET twilio_outbox.api_base_url = 'http://api.twilio.com';
ALTER SYSTEM SET twilio_outbox.api_base_url = 'ftp://127.0.0.1';
ALTER SYSTEM SET twilio_outbox.account_sid = 'AC123';
ALTER SYSTEM SET twilio_outbox.api_key_sid = 'AC0123456789abcdef0123456789abcdef';
ALTER SYSTEM SET twilio_outbox.api_base_url = 'http://127.0.0.1:8080';
ALTER SYSTEM SET twilio_outbox.api_base_url = 'http://[::1]:8080/';
ALTER SYSTEM RESET twilio_outbox.api_base_url;

-- a user's objects shadowing built-ins and ours cannot hijack the
-- SECURITY DEFINER functions: they pin search_path and qualify everything
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);
CREATE ROLE tob_writer IN ROLE twilio_outbox_writer;
CREATE SCHEMA evil AUTHORIZATION tob_writer;
GRANT CREATE ON SCHEMA public TO tob_writer;
SET ROLE tob_writer;
CREATE TABLE evil.twilio_outbox (id bigint, status text);
CREATE TABLE evil.twilio_pools (name text, sender text, mps numeric);
INSERT INTO evil.twilio_pools VALUES ('default', 'evil', 1);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION evil.texteq_evil(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_evil);
SET search_path = evil, public;
SELECT twilio_enqueue('+14155550100', 'hijack?') > 0 AS enqueued;
SELECT twilio_cancel((SELECT max(id) FROM public.twilio_outbox)) AS canceled;
RESET search_path;
RESET ROLE;
SELECT count(*) AS evil_rows FROM evil.twilio_outbox;
SELECT pool, body, status, next_attempt_at > '2001-01-01' AS real_now FROM twilio_outbox;

DROP SCHEMA evil CASCADE;
REVOKE CREATE ON SCHEMA public FROM tob_writer;
DROP ROLE tob_writer, tob_monitor, tob_nobody;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
