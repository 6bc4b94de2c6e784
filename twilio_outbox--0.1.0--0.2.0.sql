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

------------------------------------------------------------------------
-- Issue 11: hardening the SQL surface, the settings and the webhooks
------------------------------------------------------------------------

-- The internet-facing web tier gets twilio_ingest_callback and nothing else.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'twilio_outbox_webhook') THEN
		CREATE ROLE twilio_outbox_webhook NOLOGIN;
	END IF;
END
$$;
GRANT twilio_outbox_webhook TO twilio_outbox_writer;

-- Pools: names are limited in bytes (the worker's shared-memory slot holds
-- 63), mps is at least 0.001, and no more pools than the worker has slots.
-- A name that is too long cannot be fixed here (messages carry it): the
-- update stops and says which.  Such a pool was never served anyway.
DO $$
DECLARE
	bad text;
BEGIN
	SELECT pg_catalog.string_agg(pg_catalog.quote_literal(p.name), ', ' ORDER BY p.name) INTO bad
	  FROM @extschema@.twilio_pools p WHERE pg_catalog.octet_length(p.name) > 63;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'pool names longer than 63 bytes: %', bad
			USING ERRCODE = 'check_violation',
			      DETAIL = 'twilio_outbox 0.2.0 limits pool names to 63 bytes; the worker never served these pools.',
			      HINT = 'Rename them (UPDATE twilio_pools SET name = ... carries their messages along), then run ALTER EXTENSION twilio_outbox UPDATE again.';
	END IF;
	-- below 0.001 the pacing arithmetic overflows; one segment per 1000 s is
	-- as slow as a pool goes now
	SELECT pg_catalog.string_agg(pg_catalog.format('%L (%s)', p.name, pg_catalog.btrim(pg_catalog.to_char(p.mps, '9.999EEEE'))),
	                             ', ' ORDER BY p.name) INTO bad
	  FROM @extschema@.twilio_pools p WHERE p.mps < 0.001;
	IF bad IS NOT NULL THEN
		UPDATE @extschema@.twilio_pools p SET mps = 0.001 WHERE p.mps < 0.001;
		RAISE WARNING 'mps of pools % raised to 0.001, the new minimum', bad
			USING HINT = 'Pause a pool (twilio_pool_pause) to stop it sending.';
	END IF;
	-- 256: TOB_MAX_POOLS in src/shmem.h
	IF (SELECT pg_catalog.count(*) FROM @extschema@.twilio_pools) > 256 THEN
		RAISE WARNING 'there are more pools than the worker can serve (256)'
			USING DETAIL = 'The pools after the first 256 by name are not served; new pools are refused from now on.',
			      HINT = 'Delete or merge pools.';
	END IF;
END
$$;
ALTER TABLE twilio_pools
	DROP CONSTRAINT twilio_pools_name_check,
	ADD CONSTRAINT twilio_pools_name_check CHECK (pg_catalog.octet_length(name) BETWEEN 1 AND 63),
	DROP CONSTRAINT twilio_pools_mps_check,
	ADD CONSTRAINT twilio_pools_mps_check CHECK (mps >= 0.001 AND mps <= 10000);
COMMENT ON COLUMN twilio_pools.mps IS 'message segments per second this pool may send (0.001 <= mps <= 10000)';

CREATE FUNCTION _twilio_check_pool_slots() RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'twilio_outbox_check_pool_slots_1_0';

CREATE OR REPLACE FUNCTION _twilio_pools_validate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.name IS NULL OR octet_length(NEW.name) = 0 THEN
		RAISE EXCEPTION 'pool name must be 1 to 63 bytes long'
			USING ERRCODE = 'check_violation', COLUMN = 'name',
			      HINT = 'Use a short name such as ''default'' or ''marketing''.';
	END IF;
	IF octet_length(NEW.name) > 63 THEN
		RAISE EXCEPTION 'pool name must be 1 to 63 bytes long'
			USING ERRCODE = 'check_violation', COLUMN = 'name',
			      DETAIL = format('The name has %s characters and %s bytes.', length(NEW.name), octet_length(NEW.name)),
			      HINT = 'Use a shorter name; a character outside ASCII takes 2 to 4 bytes.';
	END IF;
	IF NEW.sender IS NULL OR @extschema@._twilio_sender_form(NEW.sender) IS NULL THEN
		RAISE EXCEPTION 'invalid sender % for pool "%"', coalesce(quote_literal(NEW.sender), 'NULL'), NEW.name
			USING ERRCODE = 'check_violation', COLUMN = 'sender',
			      HINT = 'Use a +E164 number (''+14155550100''), a short code (''12345''), an alphanumeric sender id of up to 11 characters (''ACME''), ''whatsapp:+14155550100'', or a Messaging Service SID (''MG'' and 32 hex digits).';
	END IF;
	-- NaN is greater than every number, so it fails the upper bound
	IF NEW.mps IS NULL OR NOT (NEW.mps >= 0.001 AND NEW.mps <= 10000) THEN
		RAISE EXCEPTION 'mps % for pool "%" is out of range',
				CASE WHEN NEW.mps IS NULL THEN 'NULL'
				     WHEN length(NEW.mps::text) > 20 THEN btrim(to_char(NEW.mps, '9.999EEEE'))
				     ELSE NEW.mps::text END, NEW.name
			USING ERRCODE = 'check_violation', COLUMN = 'mps',
			      HINT = 'mps is the segments per second the sender may send, from 0.001 to 10000 (a US long code is 1, toll-free 3, a short code 100).';
	END IF;
	IF NEW.burst IS NULL OR NEW.burst < 1 THEN
		RAISE EXCEPTION 'burst % for pool "%" is out of range', coalesce(NEW.burst::text, 'NULL'), NEW.name
			USING ERRCODE = 'check_violation', COLUMN = 'burst',
			      HINT = 'burst is how many segments may go back to back; it is at least 1.';
	END IF;
	IF TG_OP = 'INSERT' THEN
		PERFORM @extschema@._twilio_check_pool_slots();
	END IF;
	RETURN NEW;
END
$$;

-- The CREATE TRIGGER check calls into C only for triggers of ours.
CREATE OR REPLACE FUNCTION _twilio_on_create_trigger() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cmd record;
BEGIN
	FOR cmd IN SELECT t.oid, t.tgfoid
	             FROM pg_catalog.pg_event_trigger_ddl_commands() d
	             JOIN pg_catalog.pg_trigger t ON t.oid = d.objid
	            WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
	              AND t.tgfoid = pg_catalog.to_regprocedure('@extschema@.twilio_enqueue_trigger()')
	LOOP
		PERFORM @extschema@._twilio_check_trigger(cmd.oid, cmd.tgfoid::pg_catalog.regprocedure);
	END LOOP;
END
$$;

-- Inbound messages: stored once per MessageSid, whichever way in.  Copies
-- stored before are removed first (the first one stays).
DELETE FROM twilio_inbox a
 USING twilio_inbox b
 WHERE a.kind = 'inbound' AND b.kind = 'inbound' AND a.id > b.id
   AND (a.params OPERATOR(pg_catalog.->>) 'MessageSid') OPERATOR(pg_catalog.=) (b.params OPERATOR(pg_catalog.->>) 'MessageSid');
CREATE UNIQUE INDEX twilio_inbox_inbound_key ON twilio_inbox ((params OPERATOR(pg_catalog.->>) 'MessageSid'))
	WHERE kind = 'inbound';

-- Opt-out keywords, once per MessageSid and in order; the ones applied so
-- far are carried over.
CREATE TABLE _twilio_opt_out_keywords (
	message_sid		text PRIMARY KEY,
	phone_number	text NOT NULL,
	keyword			text NOT NULL,
	opt_out			boolean NOT NULL,
	received_at		timestamptz NOT NULL,
	inbox_id		bigint NOT NULL
);
CREATE INDEX _twilio_opt_out_keywords_number_idx ON _twilio_opt_out_keywords (phone_number, received_at);
INSERT INTO _twilio_opt_out_keywords (message_sid, phone_number, keyword, opt_out, received_at, inbox_id)
SELECT k.sid, k.number, k.word, k.word NOT IN ('START', 'YES', 'UNSTOP'), k.received_at, k.id
  FROM (SELECT i.id, COALESCE(NULLIF(i.params OPERATOR(pg_catalog.->>) 'MessageSid', ''), 'inbox ' || i.id) AS sid,
               i.params OPERATOR(pg_catalog.->>) 'From' AS number,
               pg_catalog.upper(pg_catalog.btrim(i.params OPERATOR(pg_catalog.->>) 'Body', E' \t\r\n')) AS word,
               i.received_at
          FROM twilio_inbox i
         WHERE i.kind = 'inbound' AND i.applied_at IS NOT NULL) k
 WHERE COALESCE(k.number, '') <> ''
   AND k.word IN ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'START', 'YES', 'UNSTOP')
 ORDER BY k.id
ON CONFLICT (message_sid) DO NOTHING;
REVOKE ALL ON TABLE _twilio_opt_out_keywords FROM PUBLIC;
GRANT SELECT ON _twilio_opt_out_keywords TO twilio_outbox_admin;
SELECT pg_catalog.pg_extension_config_dump('_twilio_opt_out_keywords', '');

CREATE OR REPLACE FUNCTION _twilio_apply_inbox(max_events integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids bigint[];
	numbers text[];
	n integer;
BEGIN
	SELECT array_agg(x.id ORDER BY x.id) INTO ids
	  FROM (SELECT i.id FROM @extschema@.twilio_inbox i
	         WHERE i.applied_at IS NULL AND (i.retry_at IS NULL OR i.retry_at <= now())
	         ORDER BY i.id LIMIT max_events FOR UPDATE) x;
	IF ids IS NULL THEN
		RETURN 0;
	END IF;

	-- status callbacks: per sid the furthest status of the batch, if it is
	-- further than the row's
	WITH ev AS (
		SELECT DISTINCT ON (i.message_sid) i.message_sid AS sid, i.message_status AS status,
		       CASE WHEN i.params->>'ErrorCode' ~ '^[0-9]{1,9}$'
		            THEN (i.params->>'ErrorCode')::integer END AS code,
		       i.received_at
		  FROM @extschema@.twilio_inbox i
		 WHERE i.id = ANY (ids) AND i.kind = 'status'
		   AND @extschema@._twilio_delivery_rank(i.message_status) > 0
		 ORDER BY i.message_sid, @extschema@._twilio_delivery_rank(i.message_status) DESC, i.id)
	UPDATE @extschema@.twilio_outbox o
	   SET delivery_status = ev.status,
	       delivered_at = CASE WHEN ev.status IN ('delivered', 'read')
	                           THEN COALESCE(o.delivered_at, ev.received_at) ELSE o.delivered_at END,
	       last_error_code = COALESCE(ev.code, o.last_error_code),
	       last_error = CASE WHEN ev.code IS NOT NULL
	                         THEN format('delivery status %s, error %s', ev.status, ev.code)
	                         ELSE o.last_error END
	  FROM ev
	 WHERE o.twilio_sid = ev.sid
	   AND @extschema@._twilio_delivery_rank(ev.status) >
	       COALESCE(@extschema@._twilio_delivery_rank(o.delivery_status), 0);

	-- inbound opt-out keywords: each message once, ever
	WITH kw AS (
		SELECT i.id, COALESCE(NULLIF(i.params->>'MessageSid', ''), 'inbox ' || i.id) AS sid,
		       i.params->>'From' AS number,
		       upper(btrim(i.params->>'Body', E' \t\r\n')) AS word, i.received_at
		  FROM @extschema@.twilio_inbox i
		 WHERE i.id = ANY (ids) AND i.kind = 'inbound' AND COALESCE(i.params->>'From', '') <> ''
		   AND upper(btrim(i.params->>'Body', E' \t\r\n')) IN
		       ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'START', 'YES', 'UNSTOP')),
	logged AS (
		INSERT INTO @extschema@._twilio_opt_out_keywords AS k
		       (message_sid, phone_number, keyword, opt_out, received_at, inbox_id)
		SELECT kw.sid, kw.number, kw.word, kw.word NOT IN ('START', 'YES', 'UNSTOP'), kw.received_at, kw.id
		  FROM kw ORDER BY kw.id
		ON CONFLICT (message_sid) DO NOTHING
		RETURNING k.phone_number)
	SELECT array_agg(DISTINCT l.phone_number) INTO numbers FROM logged l;

	-- the state of each number that got a new keyword: out when its latest
	-- keyword, or one that arrived within 15 s before it, is an opt-out
	IF numbers IS NOT NULL THEN
		WITH latest AS (
			SELECT DISTINCT ON (k.phone_number) k.phone_number, k.received_at
			  FROM @extschema@._twilio_opt_out_keywords k
			 WHERE k.phone_number = ANY (numbers)
			 ORDER BY k.phone_number, k.received_at DESC, k.inbox_id DESC),
		state AS (
			SELECT l.phone_number, x.keyword AS out_word, x.received_at AS out_at
			  FROM latest l
			  LEFT JOIN LATERAL (
			        SELECT k.keyword, k.received_at
			          FROM @extschema@._twilio_opt_out_keywords k
			         WHERE k.phone_number = l.phone_number AND k.opt_out
			           AND k.received_at >= l.received_at - interval '15 seconds'
			         ORDER BY k.received_at DESC, k.inbox_id DESC LIMIT 1) x ON true),
		ins AS (
			INSERT INTO @extschema@.twilio_opt_outs (phone_number, created_at, source)
			SELECT s.phone_number, s.out_at, 'inbound ' || s.out_word FROM state s
			 WHERE s.out_word IS NOT NULL
			ON CONFLICT (phone_number) DO NOTHING)
		DELETE FROM @extschema@.twilio_opt_outs x
		 USING state s
		 WHERE s.out_word IS NULL AND x.phone_number = s.phone_number;
	END IF;

	-- a status callback may come before the worker has recorded the sid:
	-- try it again for 10 minutes before calling it unmatched
	UPDATE @extschema@.twilio_inbox i
	   SET applied_at = now(),
	       outcome = CASE
	           WHEN i.kind = 'inbound' THEN 'applied'
	           WHEN @extschema@._twilio_delivery_rank(i.message_status) = 0 THEN 'ignored'
	           WHEN o.id IS NULL THEN 'unmatched'
	           WHEN o.delivery_status = i.message_status THEN 'applied'
	           ELSE 'stale' END,
	       retry_at = NULL
	  FROM (SELECT u.id FROM unnest(ids) u(id)) b
	  LEFT JOIN LATERAL (SELECT i2.message_sid FROM @extschema@.twilio_inbox i2 WHERE i2.id = b.id) s ON true
	  LEFT JOIN LATERAL (SELECT o.id, o.delivery_status FROM @extschema@.twilio_outbox o
	                      WHERE o.twilio_sid = s.message_sid LIMIT 1) o ON true
	 WHERE i.id = b.id
	   AND (i.kind = 'inbound' OR o.id IS NOT NULL
	        OR @extschema@._twilio_delivery_rank(i.message_status) = 0
	        OR i.received_at < now() - interval '10 minutes');
	GET DIAGNOSTICS n = ROW_COUNT;

	-- tried again after as long as it has waited (at least 1 s, at most 1 min)
	UPDATE @extschema@.twilio_inbox i
	   SET retry_at = now() + LEAST(GREATEST(now() - i.received_at, interval '1 second'), interval '1 minute')
	 WHERE i.id = ANY (ids) AND i.applied_at IS NULL;
	RETURN n;
END
$$;

-- twilio_ingest_callback takes the I-Twilio-Idempotency-Token too.  The
-- 4-argument function is replaced (both would make a 4-argument call
-- ambiguous).  A role that was granted EXECUTE on it directly becomes a
-- member of twilio_outbox_webhook, which may call the new one and nothing
-- else: a membership, unlike a grant made in this script, is not taken for
-- one of the extension's own privileges, so pg_dump keeps it.
CREATE FUNCTION twilio_ingest_callback(path text, params jsonb, signature text, url text,
									   idempotency_token text DEFAULT NULL)
RETURNS boolean
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'twilio_outbox_ingest_callback_2_0';
COMMENT ON FUNCTION twilio_ingest_callback(text, jsonb, text, text, text) IS
	'Check a Twilio callback''s X-Twilio-Signature and store it for the worker to apply; false (and nothing stored) when the signature does not match';
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT a.grantee
	           FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
	          WHERE p.oid = '@extschema@.twilio_ingest_callback(text, jsonb, text, text)'::pg_catalog.regprocedure
	            AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
	            AND a.grantee NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r
	                                   WHERE r.rolname IN ('twilio_outbox_writer', 'twilio_outbox_admin'))
	LOOP
		IF g.grantee = 0 THEN
			RAISE WARNING 'twilio_ingest_callback was granted to PUBLIC; the new one is not'
				USING HINT = 'Grant twilio_outbox_webhook to the role of the web tier that calls it.';
		ELSE
			EXECUTE pg_catalog.format('GRANT twilio_outbox_webhook TO %s', g.grantee::pg_catalog.regrole);
			RAISE NOTICE 'role % may call twilio_ingest_callback as a member of twilio_outbox_webhook now',
				g.grantee::pg_catalog.regrole;
		END IF;
	END LOOP;
END
$$;
DROP FUNCTION twilio_ingest_callback(text, jsonb, text, text);

REVOKE ALL ON FUNCTION twilio_ingest_callback(text, jsonb, text, text, text), _twilio_check_pool_slots()
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _twilio_check_pool_slots() TO twilio_outbox_admin;
GRANT EXECUTE ON FUNCTION twilio_ingest_callback(text, jsonb, text, text, text) TO twilio_outbox_webhook;
