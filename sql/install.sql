--
-- Installing the extension: only in twilio_outbox.database, objects prefixed
-- twilio_, nothing granted to PUBLIC.
--
CREATE DATABASE twilio_other;
\c twilio_other
CREATE EXTENSION twilio_outbox;
\c contrib_regression
DROP DATABASE twilio_other;

CREATE EXTENSION twilio_outbox;
SELECT extversion, extrelocatable, extnamespace::regnamespace
  FROM pg_extension WHERE extname = 'twilio_outbox';

-- every member object is named twilio_ or _twilio_
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'twilio_outbox')
   AND deptype = 'e'
 ORDER BY 1;

-- the group roles exist and cannot log in
SELECT rolname, rolcanlogin FROM pg_roles
 WHERE rolname IN ('twilio_outbox_writer', 'twilio_outbox_admin', 'twilio_outbox_webhook') ORDER BY 1;

-- settings: every contract GUC is defined; the secrets are hidden from SHOW ALL
SELECT name, setting, unit, context
  FROM pg_settings WHERE name LIKE 'twilio\_outbox.%' ORDER BY name;
SHOW twilio_outbox.auth_token;
SHOW twilio_outbox.api_key_secret;
-- the prefix is reserved: a misspelt setting is refused
SET twilio_outbox.max_concurency = 5;
