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

------------------------------------------------------------------------
-- Failure handling, second pass (issue 10)
------------------------------------------------------------------------

-- The lookup of an ambiguous attempt reads Twilio's list back to the first
-- such attempt, across later attempts and manual retries.
ALTER TABLE twilio_outbox ADD COLUMN unconfirmed_since timestamptz;
COMMENT ON COLUMN twilio_outbox.unconfirmed_since IS 'when the first attempt that may have reached Twilio was claimed: the lookup reads Twilio''s list back to then';
UPDATE twilio_outbox SET unconfirmed_since = COALESCE(claimed_at, created_at) WHERE unconfirmed;

-- The worker's once-a-second sweep for rows left in sending without a request.
CREATE INDEX twilio_outbox_sending_idx ON twilio_outbox (id) WHERE status = 'sending';

-- A manual retry keeps a row unconfirmed: it is looked up before it is sent.
CREATE OR REPLACE FUNCTION twilio_retry(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Pass the id of a failed, expired or canceled message.';
	END IF;
	-- An expiry that has already passed would expire the row again at once.
	-- An unconfirmed row stays so: it is looked up at Twilio before it is sent.
	UPDATE @extschema@.twilio_outbox o
	   SET status = 'queued', attempts = 0, next_attempt_at = now(), finished_at = NULL,
	       expires_at = CASE WHEN o.expires_at <= now() THEN NULL ELSE o.expires_at END
	 WHERE o.id = twilio_retry.id AND o.status IN ('failed', 'expired', 'canceled');
	IF FOUND THEN
		PERFORM @extschema@._twilio_wake_at_commit();
	END IF;
	RETURN FOUND;
END
$$;
CREATE OR REPLACE FUNCTION twilio_retry_failed(pool text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF pool IS NOT NULL THEN
		PERFORM @extschema@._twilio_check_pool(pool);
	END IF;
	UPDATE @extschema@.twilio_outbox o
	   SET status = 'queued', attempts = 0, next_attempt_at = now(), finished_at = NULL,
	       expires_at = CASE WHEN o.expires_at <= now() THEN NULL ELSE o.expires_at END
	 WHERE o.status = 'failed'
	   AND (twilio_retry_failed.pool IS NULL OR o.pool = twilio_retry_failed.pool)
	   AND (twilio_retry_failed.since IS NULL OR o.finished_at >= twilio_retry_failed.since);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM @extschema@._twilio_wake_at_commit();
	END IF;
	RETURN n;
END
$$;

-- The worker's state has more columns: the concurrency window, holds, lookups.
DROP VIEW twilio_worker_status;
DROP VIEW twilio_pool_status;
DROP FUNCTION _twilio_worker_status();
DROP FUNCTION _twilio_pool_status();

-- API: private
CREATE FUNCTION _twilio_worker_status(
	OUT pid integer, OUT state text, OUT in_flight integer,
	OUT started_at timestamptz, OUT last_activity_at timestamptz,
	OUT requests bigint, OUT sent bigint, OUT retried bigint, OUT failed bigint,
	OUT expired bigint, OUT http_429 bigint, OUT http_5xx bigint,
	OUT transport_errors bigint, OUT reconciled bigint, OUT resent_blind bigint,
	OUT commit_wakeups bigint, OUT concurrency_window double precision,
	OUT max_concurrency integer, OUT twilio_concurrent_requests integer,
	OUT rtt_ms double precision, OUT held text, OUT held_until timestamptz,
	OUT lookups bigint, OUT lookup_failures bigint, OUT recovered bigint)
RETURNS record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'twilio_outbox_worker_status_2_0';

-- API: private
CREATE FUNCTION _twilio_pool_status(
	OUT pool text, OUT mps double precision, OUT effective_mps double precision,
	OUT burst integer, OUT tokens double precision, OUT paused boolean,
	OUT paused_until timestamptz, OUT in_flight integer, OUT sent bigint,
	OUT breaker text, OUT next_cost integer)
RETURNS SETOF record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'twilio_outbox_pool_status_2_0';

CREATE VIEW twilio_pool_status AS
	SELECT * FROM _twilio_pool_status();
COMMENT ON VIEW twilio_pool_status IS 'Per pool pacing state of the worker: effective rate, bucket tokens, circuit breaker (paused_until: held by it until then)';

CREATE VIEW twilio_worker_status AS
	SELECT w.*,
	       (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(p) ORDER BY p.pool), '[]')
	          FROM @extschema@._twilio_pool_status() p) AS pools
	  FROM _twilio_worker_status() w;
COMMENT ON VIEW twilio_worker_status IS 'Live state of the twilio_outbox worker: concurrency window, holds, counters, and per pool rates in pools';

REVOKE ALL ON FUNCTION _twilio_worker_status(), _twilio_pool_status() FROM PUBLIC;
REVOKE ALL ON twilio_pool_status, twilio_worker_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _twilio_worker_status(), _twilio_pool_status()
	TO pg_monitor, twilio_outbox_admin;
GRANT SELECT ON twilio_pool_status, twilio_worker_status TO pg_monitor, twilio_outbox_admin;
