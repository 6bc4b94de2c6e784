/* twilio_outbox--0.1.0--0.2.0.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION twilio_outbox UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------
-- Backups: the user's data comes back with pg_dump / pg_restore
------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('twilio_pools', '');
SELECT pg_catalog.pg_extension_config_dump('twilio_outbox', '');
SELECT pg_catalog.pg_extension_config_dump('twilio_outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('twilio_inbox', '');
SELECT pg_catalog.pg_extension_config_dump('twilio_inbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('twilio_opt_outs', '');
