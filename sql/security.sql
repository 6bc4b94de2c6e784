--
-- Secrets, settings and SECURITY DEFINER functions against other roles.
--
\set VERBOSITY default
ALTER SYSTEM SET twilio_outbox.auth_token = 'regress-secret-token';
ALTER SYSTEM SET twilio_outbox.api_key_secret = 'regress-secret-key';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);

-- the secrets are masked for everyone, listed nowhere
SHOW twilio_outbox.auth_token;
SELECT current_setting('twilio_outbox.api_key_secret');
SELECT count(*) AS listed FROM pg_settings WHERE name IN ('twilio_outbox.auth_token', 'twilio_outbox.api_key_secret');
CREATE ROLE tob_monitor IN ROLE pg_monitor;
CREATE ROLE tob_nobody;
SET ROLE tob_monitor;
SHOW twilio_outbox.auth_token;
SELECT current_setting('twilio_outbox.auth_token');
SELECT count(*) AS visible FROM pg_settings WHERE setting LIKE '%regress-secret%';
SELECT * FROM pg_file_settings;
\echo :LAST_ERROR_SQLSTATE
SET ROLE tob_nobody;
SHOW twilio_outbox.auth_token;
\echo :LAST_ERROR_SQLSTATE
SHOW twilio_outbox.account_sid;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER SYSTEM RESET twilio_outbox.auth_token;
ALTER SYSTEM RESET twilio_outbox.api_key_secret;
SELECT pg_reload_conf();

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
