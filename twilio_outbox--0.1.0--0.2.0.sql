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
	OUT lookups bigint, OUT lookup_failures bigint, OUT recovered bigint,
	OUT calls_per_second double precision, OUT call_tokens double precision,
	OUT calls_sent bigint, OUT calls_canceled bigint)
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

------------------------------------------------------------------------
-- Voice calls (issue 13)
------------------------------------------------------------------------

-- Calls are rows of the outbox too; every row so far is a message.
ALTER TABLE twilio_outbox ADD COLUMN kind text NOT NULL DEFAULT 'message';
ALTER TABLE twilio_outbox ADD COLUMN twiml text;
ALTER TABLE twilio_outbox ADD COLUMN call_url text;
ALTER TABLE twilio_outbox ADD COLUMN call_duration integer;
ALTER TABLE twilio_outbox ADD COLUMN answered_by text;
ALTER TABLE twilio_outbox ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE twilio_outbox ADD CONSTRAINT twilio_outbox_kind_check CHECK (kind IN ('message', 'call'));
COMMENT ON COLUMN twilio_outbox.kind IS 'message (twilio_enqueue) or call (twilio_enqueue_call)';
COMMENT ON COLUMN twilio_outbox.twiml IS 'a call''s TwiML (sent as Twiml)';
COMMENT ON COLUMN twilio_outbox.call_url IS 'the URL that returns a call''s TwiML (sent as Url)';
COMMENT ON COLUMN twilio_outbox.call_duration IS 'seconds the call lasted (CallDuration of its status callbacks)';
COMMENT ON COLUMN twilio_outbox.answered_by IS 'human, machine_start, fax, ... (AnsweredBy, with MachineDetection)';
COMMENT ON COLUMN twilio_outbox.cancel_requested_at IS 'twilio_cancel of a call Twilio has: the worker cancels it at Twilio';

-- The claim takes messages and calls of a pool apart (calls also wait for
-- the account's calls per second).  Rebuilding it takes as long as a scan of
-- the due rows; the worker waits meanwhile.
DROP INDEX twilio_outbox_due_idx;
CREATE INDEX twilio_outbox_due_idx ON twilio_outbox (pool, kind, priority DESC, next_attempt_at, id)
	WHERE status IN ('queued', 'retrying');
-- Calls to cancel at Twilio (twilio_cancel).
CREATE INDEX twilio_outbox_cancel_idx ON twilio_outbox (id) WHERE cancel_requested_at IS NOT NULL;

ALTER TABLE _twilio_attempt_errors ADD COLUMN kind text NOT NULL DEFAULT 'message';

CREATE OR REPLACE FUNCTION twilio_cancel(id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF id IS NULL THEN
		RAISE EXCEPTION 'id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Pass the id twilio_enqueue returned.';
	END IF;
	UPDATE @extschema@.twilio_outbox o
	   SET status = 'canceled', finished_at = now()
	 WHERE o.id = twilio_cancel.id AND o.status IN ('queued', 'retrying');
	IF FOUND THEN
		RETURN true;
	END IF;
	-- a call Twilio has (or is about to have) and has not started ringing
	-- through: the worker cancels it at Twilio
	UPDATE @extschema@.twilio_outbox o
	   SET cancel_requested_at = now()
	 WHERE o.id = twilio_cancel.id AND o.kind = 'call' AND o.status IN ('sending', 'sent')
	   AND COALESCE(o.delivery_status, 'queued') IN ('queued', 'initiated', 'ringing');
	IF FOUND THEN
		RAISE NOTICE 'call % is with Twilio already: the worker cancels it there', id
			USING HINT = 'Its delivery_status becomes canceled when Twilio confirms; last_error says so if Twilio refuses (a call that was answered meanwhile).';
		PERFORM @extschema@._twilio_wake_at_commit();
	END IF;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION twilio_cancel(bigint) IS 'Cancel a queued or retrying message or call, or a call Twilio has not connected yet (the worker cancels it there); true when it was canceled';

CREATE FUNCTION twilio_enqueue_call(to_number text, twiml text DEFAULT NULL, pool text DEFAULT 'default',
									url text DEFAULT NULL, send_after timestamptz DEFAULT NULL,
									valid_for interval DEFAULT NULL, priority integer DEFAULT 0,
									dedup_key text DEFAULT NULL, status_callback text DEFAULT NULL,
									params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'twilio_outbox_enqueue_call_2_0';
COMMENT ON FUNCTION twilio_enqueue_call(text, text, text, text, timestamptz, interval, integer, text, text, jsonb)
	IS 'Validate a voice call (TwiML or a URL that returns it) and add it to the outbox; it is placed after the calling transaction commits';

CREATE FUNCTION twilio_enqueue_call_trigger() RETURNS trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'twilio_outbox_enqueue_call_trigger_2_0';
COMMENT ON FUNCTION twilio_enqueue_call_trigger() IS
	'Row trigger: EXECUTE FUNCTION twilio_enqueue_call_trigger(pool, to_column, twiml_template) enqueues a call per row; {column} in the TwiML takes that column of NEW, XML-escaped';

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
	              AND t.tgfoid IN (pg_catalog.to_regprocedure('@extschema@.twilio_enqueue_trigger()'),
	                               pg_catalog.to_regprocedure('@extschema@.twilio_enqueue_call_trigger()'))
	LOOP
		PERFORM @extschema@._twilio_check_trigger(cmd.oid, cmd.tgfoid::pg_catalog.regprocedure);
	END LOOP;
END
$$;

-- Call status callbacks are stored once per (CallSid, CallStatus) and
-- applied in a call's order of statuses.
ALTER TABLE twilio_inbox ADD COLUMN call_sid text GENERATED ALWAYS AS
	(CASE WHEN kind = 'status' THEN params OPERATOR(pg_catalog.->>) 'CallSid' END) STORED;
ALTER TABLE twilio_inbox ADD COLUMN call_status text GENERATED ALWAYS AS
	(CASE WHEN kind = 'status' THEN params OPERATOR(pg_catalog.->>) 'CallStatus' END) STORED;
CREATE UNIQUE INDEX twilio_inbox_call_status_key ON twilio_inbox (call_sid, call_status);

-- API: private
-- The order of a call's statuses, as _twilio_delivery_rank for messages.
CREATE FUNCTION _twilio_call_status_rank(s text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
	WHEN s = 'queued' THEN 1
	WHEN s = 'initiated' THEN 2
	WHEN s = 'ringing' THEN 3
	WHEN s = 'in-progress' THEN 4
	WHEN s IN ('completed', 'busy', 'no-answer', 'failed', 'canceled') THEN 5
	ELSE 0
END;

-- API: private
-- Apply up to max_events stored callbacks, oldest first: status callbacks
-- onto the outbox row with their MessageSid or CallSid, inbound opt-out
-- keywords onto twilio_opt_outs.  Returns how many were applied.  Rows are locked (not
-- skipped), so when it returns everything stored before it started is applied.
--
-- The order of opt-out keywords: nothing in an inbound webhook says when
-- Twilio received the message (no timestamp, and MessageSids are random), so
-- the order is that of first arrival here.  That is Twilio's order except
-- where Twilio redelivered a webhook it could not deliver at first, which it
-- does only within its 15 s time limit for a webhook.  So a keyword that
-- arrived more than 15 s after another came after it at Twilio too; of
-- keywords that arrived within 15 s of each other the order is unknown, and
-- an opt-out among them wins.  Each keyword message counts once, ever
-- (_twilio_opt_out_keywords): a redelivery or replay changes nothing.
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

	-- call status callbacks: the same in a call's order of statuses; the
	-- duration and AnsweredBy are kept from whichever callback has them
	WITH ev AS (
		SELECT DISTINCT ON (i.call_sid) i.call_sid AS sid, i.call_status AS status,
		       CASE WHEN i.params->>'ErrorCode' ~ '^[0-9]{1,9}$'
		            THEN (i.params->>'ErrorCode')::integer END AS code
		  FROM @extschema@.twilio_inbox i
		 WHERE i.id = ANY (ids) AND i.kind = 'status' AND i.call_sid IS NOT NULL
		   AND @extschema@._twilio_call_status_rank(i.call_status) > 0
		 ORDER BY i.call_sid, @extschema@._twilio_call_status_rank(i.call_status) DESC, i.id)
	UPDATE @extschema@.twilio_outbox o
	   SET delivery_status = ev.status,
	       last_error_code = COALESCE(ev.code, o.last_error_code),
	       last_error = CASE WHEN ev.code IS NOT NULL
	                         THEN format('call status %s, error %s', ev.status, ev.code)
	                         ELSE o.last_error END
	  FROM ev
	 WHERE o.twilio_sid = ev.sid AND o.kind = 'call'
	   AND @extschema@._twilio_call_status_rank(ev.status) >
	       COALESCE(@extschema@._twilio_call_status_rank(o.delivery_status), 0);
	WITH ev AS (
		SELECT i.call_sid AS sid,
		       max(CASE WHEN i.params->>'CallDuration' ~ '^[0-9]{1,9}$'
		                THEN (i.params->>'CallDuration')::integer END) AS duration,
		       max(NULLIF(i.params->>'AnsweredBy', '')) AS answered_by
		  FROM @extschema@.twilio_inbox i
		 WHERE i.id = ANY (ids) AND i.kind = 'status' AND i.call_sid IS NOT NULL
		 GROUP BY i.call_sid)
	UPDATE @extschema@.twilio_outbox o
	   SET call_duration = GREATEST(o.call_duration, ev.duration),
	       answered_by = COALESCE(o.answered_by, ev.answered_by)
	  FROM ev
	 WHERE o.twilio_sid = ev.sid AND o.kind = 'call'
	   AND (ev.duration IS NOT NULL OR ev.answered_by IS NOT NULL);

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
	           WHEN s.rank = 0 THEN 'ignored'
	           WHEN o.id IS NULL THEN 'unmatched'
	           WHEN o.delivery_status = s.status THEN 'applied'
	           ELSE 'stale' END,
	       retry_at = NULL
	  FROM (SELECT u.id FROM unnest(ids) u(id)) b
	  LEFT JOIN LATERAL (
	        SELECT COALESCE(i2.message_sid, i2.call_sid) AS sid,
	               COALESCE(i2.message_status, i2.call_status) AS status,
	               CASE WHEN i2.message_sid IS NULL AND i2.call_sid IS NOT NULL
	                    THEN @extschema@._twilio_call_status_rank(i2.call_status)
	                    ELSE @extschema@._twilio_delivery_rank(i2.message_status) END AS rank
	          FROM @extschema@.twilio_inbox i2 WHERE i2.id = b.id) s ON true
	  LEFT JOIN LATERAL (SELECT o.id, o.delivery_status FROM @extschema@.twilio_outbox o
	                      WHERE o.twilio_sid = s.sid LIMIT 1) o ON true
	 WHERE i.id = b.id
	   AND (i.kind = 'inbound' OR o.id IS NOT NULL OR s.rank = 0
	        OR i.received_at < now() - interval '10 minutes');
	GET DIAGNOSTICS n = ROW_COUNT;

	-- tried again after as long as it has waited (at least 1 s, at most 1 min)
	UPDATE @extschema@.twilio_inbox i
	   SET retry_at = now() + LEAST(GREATEST(now() - i.received_at, interval '1 second'), interval '1 minute')
	 WHERE i.id = ANY (ids) AND i.applied_at IS NULL;
	RETURN n;
END
$$;


-- API: private
-- The exact number of pending (queued, retrying, sending) rows by pool,
-- kind and, for retrying rows, reason (the last HTTP status, or
-- 'transport'), for twilio_queue_stats: the outbox's triggers append +1/-1
-- rows in the transaction that changes a row (src/counts.c); the worker
-- folds them into one row per group every second.  The sum of n over a
-- group is that count as the reader's snapshot sees it.
CREATE TABLE _twilio_pending_counts (
	pool			text NOT NULL,
	status			text NOT NULL,
	kind			text NOT NULL,
	reason			text,
	n				bigint NOT NULL,
	segments		bigint NOT NULL
);
-- appended to and folded all the time: vacuumed often, so that reads stay short
ALTER TABLE _twilio_pending_counts SET (autovacuum_vacuum_scale_factor = 0,
	autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0,
	autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_cost_delay = 0);

-- API: private
-- The rows that finished (sent, failed) in the last two hours, by pool,
-- minute of finished_at (date_bin('1 minute', finished_at, 'epoch')),
-- status, kind, delivery status (sent rows) and whether a machine answered
-- (calls), kept the same way, for the views' last hour and minute: the
-- whole minutes after the hour's start and the whole seconds after the
-- minute's are sums over this table, the part-minute and part-second
-- before them are counted from the outbox's indexes.  Three kinds of row:
-- raw (appended by the triggers, with minute and second), by minute
-- (second is null) and by second (sent rows of the last two minutes); the
-- worker's fold adds each raw row to its minute's and second's sums and
-- drops minutes older than two hours and seconds older than two minutes.
CREATE TABLE _twilio_recent_counts (
	pool			text NOT NULL,
	minute			timestamptz NOT NULL,
	second			timestamptz,
	status			text NOT NULL,
	kind			text NOT NULL,
	delivery_status	text,
	machine			boolean NOT NULL,
	raw				boolean NOT NULL,
	n				bigint NOT NULL,
	segments		bigint NOT NULL
);
ALTER TABLE _twilio_recent_counts SET (autovacuum_vacuum_scale_factor = 0,
	autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0,
	autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_cost_delay = 0);

-- API: private
CREATE FUNCTION _twilio_count_pending() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'twilio_outbox_count_pending_2_0';

-- Only rows that change a count fire (enqueue: one heap insert more): a
-- pending row, or one that finished (sent, failed) in the last two hours
-- (src/counts.h, TOB_RECENT_HORIZON_S); retention's deletes of old rows do
-- not.  An insert's condition stays short (the function checks how long ago
-- a finished row finished): a WHEN clause is read back from its stored form
-- for every statement, and an enqueue is a statement of one row.  ENABLE ALWAYS: they fire under session_replication_role = replica
-- too (logical replication's apply, pg_restore --disable-triggers aside).
CREATE TRIGGER twilio_outbox_count_insert AFTER INSERT ON twilio_outbox
	FOR EACH ROW WHEN (NEW.status IN ('queued', 'retrying', 'sending', 'sent', 'failed'))
	EXECUTE FUNCTION _twilio_count_pending();
CREATE TRIGGER twilio_outbox_count_update AFTER UPDATE OF status, pool, kind, num_segments, last_http_status,
	finished_at, delivery_status, answered_by ON twilio_outbox
	FOR EACH ROW WHEN (((OLD.status IN ('queued', 'retrying', 'sending') OR NEW.status IN ('queued', 'retrying', 'sending'))
	                    AND (OLD.status, OLD.pool, OLD.kind, OLD.num_segments, OLD.last_http_status)
	                        IS DISTINCT FROM (NEW.status, NEW.pool, NEW.kind, NEW.num_segments, NEW.last_http_status))
	                   OR (((OLD.status IN ('sent', 'failed') AND OLD.finished_at > now() - interval '2 hours')
	                        OR (NEW.status IN ('sent', 'failed') AND NEW.finished_at > now() - interval '2 hours'))
	                       AND (OLD.status, OLD.pool, OLD.kind, OLD.num_segments, OLD.finished_at,
	                            OLD.delivery_status, OLD.answered_by)
	                           IS DISTINCT FROM (NEW.status, NEW.pool, NEW.kind, NEW.num_segments, NEW.finished_at,
	                                             NEW.delivery_status, NEW.answered_by)))
	EXECUTE FUNCTION _twilio_count_pending();
CREATE TRIGGER twilio_outbox_count_delete AFTER DELETE ON twilio_outbox
	FOR EACH ROW WHEN (OLD.status IN ('queued', 'retrying', 'sending')
	                   OR (OLD.status IN ('sent', 'failed') AND OLD.finished_at > now() - interval '2 hours'))
	EXECUTE FUNCTION _twilio_count_pending();
CREATE TRIGGER twilio_outbox_count_truncate AFTER TRUNCATE ON twilio_outbox
	FOR EACH STATEMENT EXECUTE FUNCTION _twilio_count_pending();
ALTER TABLE twilio_outbox ENABLE ALWAYS TRIGGER twilio_outbox_count_insert;
ALTER TABLE twilio_outbox ENABLE ALWAYS TRIGGER twilio_outbox_count_update;
ALTER TABLE twilio_outbox ENABLE ALWAYS TRIGGER twilio_outbox_count_delete;
ALTER TABLE twilio_outbox ENABLE ALWAYS TRIGGER twilio_outbox_count_truncate;
-- the rows pending now and those finished in the last two hours (no one
-- writes the outbox while the triggers are being created)
INSERT INTO _twilio_pending_counts (pool, status, kind, reason, n, segments)
SELECT o.pool, o.status, o.kind,
       CASE WHEN o.status = 'retrying' THEN COALESCE(o.last_http_status::text, 'transport') END,
       pg_catalog.count(*), COALESCE(pg_catalog.sum(o.num_segments), 0)
  FROM twilio_outbox o WHERE o.status IN ('queued', 'retrying', 'sending')
 GROUP BY 1, 2, 3, 4;
INSERT INTO _twilio_recent_counts (pool, minute, second, status, kind, delivery_status, machine, raw,
                                   n, segments)
SELECT o.pool, pg_catalog.date_bin('1 minute', o.finished_at, 'epoch'),
       pg_catalog.date_bin('1 second', o.finished_at, 'epoch'), o.status, o.kind,
       CASE WHEN o.status = 'sent' THEN o.delivery_status END,
       o.kind = 'call' AND COALESCE(o.answered_by LIKE 'machine%', false), true,
       pg_catalog.count(*), COALESCE(pg_catalog.sum(o.num_segments), 0)
  FROM twilio_outbox o
 WHERE o.status IN ('sent', 'failed') AND o.finished_at > pg_catalog.now() - interval '2 hours'
 GROUP BY 1, 2, 3, 4, 5, 6, 7;

-- The views count calls too, and count exactly from an index (issue 14).
DROP VIEW twilio_queue_stats;
DROP FUNCTION _twilio_queue_stats();
DROP VIEW twilio_error_stats;
DROP INDEX twilio_outbox_pool_status_idx;
-- Per-pool counts and recent finishes for the views (counted by
-- _twilio_outbox_counts, src/counts.c, as an index-only scan: every column
-- the views need of a pending or recently finished row is here; none of them
-- changes without status changing too, so no update that could be HOT stops
-- being HOT), and the foreign key's lookups.
CREATE INDEX twilio_outbox_pool_status_idx ON twilio_outbox (pool, status, kind, finished_at, next_attempt_at)
	INCLUDE (num_segments);

-- API: private
-- Exact counts of one pool's rows by status and kind (those that finished
-- after `after` and before `before`, each when not null) and, when
-- with_segments, the sum of
-- their segments, read from twilio_outbox_pool_status_idx like an index-only
-- scan, without the executor's cost per row (src/counts.c).  One row per
-- status and kind (message, call).
CREATE FUNCTION _twilio_outbox_counts(pool text, statuses text[], after timestamptz,
	before timestamptz, with_segments boolean, OUT status text, OUT kind text, OUT n bigint, OUT segments bigint)
RETURNS SETOF record
LANGUAGE c STABLE ROWS 6
AS 'MODULE_PATHNAME', 'twilio_outbox_outbox_counts_2_0';

-- API: private
-- The recent counts' windows: hour, the first whole minute after now() - 1
-- hour (the last hour is _twilio_recent_counts' minutes from there on, plus
-- the outbox's rows finished between now() - 1 hour and it); minute, the
-- first whole second after now() - 1 minute (the last minute is its seconds
-- from there on, plus the rows finished between now() - 1 minute and it).
CREATE FUNCTION _twilio_recent_minutes(OUT hour timestamptz, OUT minute timestamptz)
LANGUAGE sql STABLE
AS $$
	SELECT pg_catalog.date_bin('1 minute', pg_catalog.now() - interval '1 hour', 'epoch') + interval '1 minute',
	       pg_catalog.date_bin('1 second', pg_catalog.now() - interval '1 minute', 'epoch') + interval '1 second';
$$;

-- API: private
-- The query behind twilio_queue_stats.  A function so that it can carry SET
-- jit = off (the planner's guesses over a large outbox would otherwise pay
-- for JIT compilation on every poll) and run as its owner.  No count reads
-- the backlog or the last hour's rows (src/counts.c):
-- - queued, retrying, sending, calls_pending, retrying_by_reason and the
--   pending segments are sums over _twilio_pending_counts;
-- - the last hour (sent, failed, calls sent) is the sum over
--   _twilio_recent_counts of the whole minutes after its start, plus the
--   rows of the part-minute before them counted from the pool/status index
--   (only when that minute has any);
-- - the last minute (sent, observed_mps) is counted from the index, only
--   when the pool sent anything in its minutes;
-- - oldest_queued_age is one descent of the same index per kind, only for a
--   pool with queued rows.
-- An idle pool costs a row of twilio_pools and nothing else.
CREATE FUNCTION _twilio_queue_stats(
	OUT pool text, OUT mps numeric, OUT paused boolean, OUT queued bigint,
	OUT retrying bigint, OUT sending bigint, OUT sent_last_minute bigint,
	OUT failed_last_hour bigint, OUT oldest_queued_age interval, OUT est_drain_time interval,
	OUT sent_last_hour bigint, OUT retrying_by_reason jsonb, OUT observed_mps numeric,
	OUT effective_mps double precision, OUT paused_until timestamptz,
	OUT throttled_until timestamptz, OUT calls_pending bigint, OUT calls_sent_last_hour bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	SELECT p.name AS pool,
	       p.mps,
	       p.paused AND (p.paused_until IS NULL OR p.paused_until > pg_catalog.now()) AS paused,
	       COALESCE(a.queued, 0)::bigint AS queued,
	       COALESCE(a.retrying, 0)::bigint AS retrying,
	       COALESCE(a.sending, 0)::bigint AS sending,
	       m.sent_last_minute,
	       (COALESCE(r.failed, 0) + h.failed)::bigint AS failed_last_hour,
	       pg_catalog.now() OPERATOR(pg_catalog.-) d.oldest_due AS oldest_queued_age,
	       pg_catalog.make_interval(secs => COALESCE(a.pending_segments, 0)
	           OPERATOR(pg_catalog./) COALESCE(w.effective_mps::numeric, p.mps)) AS est_drain_time,
	       (COALESCE(r.sent, 0) + h.sent)::bigint AS sent_last_hour,
	       COALESCE(a.by_reason, '{}') AS retrying_by_reason,
	       pg_catalog.round(m.segments_last_minute::numeric / 60, 3) AS observed_mps,
	       w.effective_mps,
	       p.paused_until,
	       w.paused_until AS throttled_until,
	       COALESCE(a.calls_pending, 0)::bigint AS calls_pending,
	       (COALESCE(r.calls_sent, 0) + h.calls_sent)::bigint AS calls_sent_last_hour
	  FROM @extschema@.twilio_pools p
	  LEFT JOIN (
	        SELECT g.pool,
	               pg_catalog.sum(g.n) FILTER (WHERE g.status = 'queued') AS queued,
	               pg_catalog.sum(g.n) FILTER (WHERE g.status = 'retrying') AS retrying,
	               pg_catalog.sum(g.n) FILTER (WHERE g.status = 'sending') AS sending,
	               pg_catalog.sum(g.segments) AS pending_segments,
	               pg_catalog.sum(g.calls) AS calls_pending,
	               pg_catalog.jsonb_object_agg(g.reason, g.n) FILTER (WHERE g.status = 'retrying' AND g.n <> 0)
	                   AS by_reason
	          FROM (SELECT c.pool, c.status, c.reason,
	                       pg_catalog.sum(c.n) AS n, pg_catalog.sum(c.segments) AS segments,
	                       pg_catalog.sum(c.n) FILTER (WHERE c.kind = 'call') AS calls
	                  FROM @extschema@._twilio_pending_counts c
	                 GROUP BY 1, 2, 3) g
	         GROUP BY g.pool) a ON a.pool = p.name
	  LEFT JOIN (
	        SELECT c.pool,
	               pg_catalog.sum(c.n) FILTER (WHERE c.by_minute AND c.minute >= w.hour AND c.status = 'sent') AS sent,
	               pg_catalog.sum(c.n) FILTER (WHERE c.by_minute AND c.minute >= w.hour AND c.status = 'failed') AS failed,
	               pg_catalog.sum(c.n) FILTER (WHERE c.by_minute AND c.minute >= w.hour AND c.status = 'sent'
	                                             AND c.kind = 'call') AS calls_sent,
	               pg_catalog.sum(c.n) FILTER (WHERE c.by_second AND c.second >= w.minute) AS sent_minute,
	               pg_catalog.sum(c.segments) FILTER (WHERE c.by_second AND c.second >= w.minute) AS segments_minute,
	               pg_catalog.bool_or(c.by_minute AND c.minute < w.hour) AS in_first_minute,
	               pg_catalog.bool_or(c.by_second AND c.second = w.minute - interval '1 second') AS in_first_second
	          FROM (SELECT c.*, c.raw OR c.second IS NULL AS by_minute,
	                       c.second IS NOT NULL AND c.status = 'sent' AS by_second
	                  FROM @extschema@._twilio_recent_counts c) c,
	               @extschema@._twilio_recent_minutes() w
	         WHERE c.minute >= w.hour - interval '1 minute'
	         GROUP BY c.pool) r ON r.pool = p.name
	 CROSS JOIN LATERAL (
	        SELECT COALESCE(pg_catalog.sum(c.n) FILTER (WHERE c.status = 'sent'), 0) AS sent,
	               COALESCE(pg_catalog.sum(c.n) FILTER (WHERE c.status = 'failed'), 0) AS failed,
	               COALESCE(pg_catalog.sum(c.n) FILTER (WHERE c.status = 'sent' AND c.kind = 'call'), 0)
	                   AS calls_sent
	          FROM @extschema@._twilio_recent_minutes() w,
	               @extschema@._twilio_outbox_counts(p.name, '{sent,failed}',
	                   pg_catalog.now() - interval '1 hour', w.hour, false) c
	         WHERE r.in_first_minute) h
	 CROSS JOIN LATERAL (
	        SELECT (COALESCE(r.sent_minute, 0) + COALESCE(pg_catalog.sum(c.n), 0))::bigint AS sent_last_minute,
	               COALESCE(r.segments_minute, 0) + COALESCE(pg_catalog.sum(c.segments), 0) AS segments_last_minute
	          FROM @extschema@._twilio_recent_minutes() w,
	               @extschema@._twilio_outbox_counts(p.name, '{sent}',
	                   pg_catalog.now() - interval '1 minute', w.minute, true) c
	         WHERE r.in_first_second) m
	 CROSS JOIN LATERAL (
	        SELECT CASE WHEN a.queued > 0 THEN LEAST(
	                   (SELECT o.next_attempt_at FROM @extschema@.twilio_outbox o
	                     WHERE o.pool = p.name AND o.status = 'queued' AND o.kind = 'message'
	                       AND o.finished_at IS NULL AND o.next_attempt_at <= pg_catalog.now()
	                     ORDER BY o.finished_at, o.next_attempt_at LIMIT 1),
	                   (SELECT o.next_attempt_at FROM @extschema@.twilio_outbox o
	                     WHERE o.pool = p.name AND o.status = 'queued' AND o.kind = 'call'
	                       AND o.finished_at IS NULL AND o.next_attempt_at <= pg_catalog.now()
	                     ORDER BY o.finished_at, o.next_attempt_at LIMIT 1)) END AS oldest_due) d
	  LEFT JOIN @extschema@._twilio_pool_status() w ON w.pool = p.name;
$$;

CREATE VIEW twilio_queue_stats AS
	SELECT * FROM _twilio_queue_stats();
COMMENT ON VIEW twilio_queue_stats IS 'One row per pool: queue depth (messages and calls; calls_pending of them calls), recent throughput and failures, estimated drain time';

-- API: private
-- The query behind twilio_error_stats (SET jit = off, as its owner): the
-- last hour's attempts counted by group in one pass, then each group's
-- latest attempt (example_id, last_error) found by its time in the index.
CREATE FUNCTION _twilio_error_stats(
	OUT pool text, OUT http_status integer, OUT error_code integer, OUT count bigint,
	OUT last_seen timestamptz, OUT example_id bigint, OUT failed bigint, OUT retried bigint,
	OUT last_error text, OUT calls bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	SELECT g.pool, g.http_status, g.error_code, g.count, g.last_seen,
	       l.message_id AS example_id, g.failed, g.retried, l.error AS last_error, g.calls
	  FROM (SELECT e.pool, e.http_status, e.error_code,
	               pg_catalog.count(*) AS count,
	               pg_catalog.max(e.at) AS last_seen,
	               pg_catalog.count(*) FILTER (WHERE e.outcome = 'failed') AS failed,
	               pg_catalog.count(*) FILTER (WHERE e.outcome <> 'failed') AS retried,
	               pg_catalog.count(*) FILTER (WHERE e.kind = 'call') AS calls
	          FROM @extschema@._twilio_attempt_errors e
	         WHERE e.at > pg_catalog.now() - interval '1 hour'
	         GROUP BY e.pool, e.http_status, e.error_code) g
	  CROSS JOIN LATERAL (
	        SELECT e.message_id, e.error
	          FROM @extschema@._twilio_attempt_errors e
	         WHERE e.at = g.last_seen AND e.pool = g.pool
	           AND e.http_status IS NOT DISTINCT FROM g.http_status
	           AND e.error_code IS NOT DISTINCT FROM g.error_code
	         ORDER BY e.message_id DESC LIMIT 1) l;
$$;

CREATE VIEW twilio_error_stats AS
	SELECT * FROM _twilio_error_stats();
COMMENT ON VIEW twilio_error_stats IS 'Failed attempts of the last hour by pool, HTTP status and Twilio error code (calls: how many of them were calls)';

DROP VIEW twilio_delivery_stats;
DROP VIEW twilio_webhook_stats;
DROP INDEX twilio_inbox_received_idx;
-- Retention of applied events, and twilio_webhook_stats's last hour (index-only).
CREATE INDEX twilio_inbox_received_idx ON twilio_inbox (received_at, kind, applied_at);

-- API: private
-- The query behind twilio_webhook_stats (SET jit = off, as its owner): the
-- last hour is an index-only scan of twilio_inbox_received_idx, the
-- unapplied events come from their partial index.
CREATE FUNCTION _twilio_webhook_stats(
	OUT listen text, OUT listener_pid integer, OUT requests bigint, OUT accepted bigint,
	OUT duplicates bigint, OUT rejected bigint, OUT errors bigint,
	OUT received_last_hour bigint, OUT status_last_hour bigint, OUT inbound_last_hour bigint,
	OUT applied_last_hour bigint, OUT unapplied bigint, OUT lag interval)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	SELECT c.listen, c.listener_pid, c.requests, c.accepted, c.duplicates, c.rejected, c.errors,
	       i.received_last_hour, i.status_last_hour, i.inbound_last_hour, i.applied_last_hour,
	       u.unapplied, u.lag
	  FROM @extschema@._twilio_webhook_counters() c,
	       LATERAL (SELECT pg_catalog.count(*) AS received_last_hour,
	                       pg_catalog.count(*) FILTER (WHERE x.kind = 'status') AS status_last_hour,
	                       pg_catalog.count(*) FILTER (WHERE x.kind = 'inbound') AS inbound_last_hour,
	                       pg_catalog.count(*) FILTER (WHERE x.applied_at IS NOT NULL) AS applied_last_hour
	                  FROM @extschema@.twilio_inbox x
	                 WHERE x.received_at > pg_catalog.now() - interval '1 hour') i,
	       LATERAL (SELECT pg_catalog.count(*) AS unapplied,
	                       pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(x.received_at) AS lag
	                  FROM @extschema@.twilio_inbox x WHERE x.applied_at IS NULL) u;
$$;

CREATE VIEW twilio_webhook_stats AS
	SELECT * FROM _twilio_webhook_stats();
COMMENT ON VIEW twilio_webhook_stats IS
	'Callbacks: requests, accepted, duplicates and rejected (bad signature) since the server started; received and applied in the last hour; unapplied and the age of the oldest (lag)';

-- API: private
-- The query behind twilio_delivery_stats (SET jit = off, as its owner): the
-- last hour's sent rows by pool, kind, delivery status and machine, from
-- _twilio_recent_counts for the whole minutes after the hour's start and
-- from the finished-rows index for the part-minute before them; the columns
-- are sums over those few groups.
CREATE FUNCTION _twilio_delivery_stats(
	OUT pool text, OUT sent_last_hour bigint, OUT delivered bigint, OUT undelivered bigint,
	OUT failed bigint, OUT awaiting bigint, OUT delivery_rate numeric, OUT calls_last_hour bigint,
	OUT calls_completed bigint, OUT calls_busy bigint, OUT calls_no_answer bigint,
	OUT calls_failed bigint, OUT calls_answered_by_machine bigint, OUT calls_awaiting bigint,
	OUT answer_rate numeric)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	SELECT p.name AS pool,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message'), 0)::bigint AS sent_last_hour,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message' AND b.ds IN ('delivered', 'read')), 0)::bigint AS delivered,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message' AND b.ds = 'undelivered'), 0)::bigint AS undelivered,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message' AND b.ds = 'failed'), 0)::bigint AS failed,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message' AND @extschema@._twilio_delivery_rank(b.ds) < 4), 0)::bigint AS awaiting,
	       pg_catalog.round(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'message' AND b.ds IN ('delivered', 'read'))
	             OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(b.n) FILTER (
	                 WHERE b.kind = 'message' AND b.ds IN ('delivered', 'read', 'undelivered', 'failed')), 0), 4) AS delivery_rate,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call'), 0)::bigint AS calls_last_hour,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.ds = 'completed'), 0)::bigint AS calls_completed,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.ds = 'busy'), 0)::bigint AS calls_busy,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.ds = 'no-answer'), 0)::bigint AS calls_no_answer,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.ds IN ('failed', 'canceled')), 0)::bigint AS calls_failed,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.machine), 0)::bigint AS calls_answered_by_machine,
	       COALESCE(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND @extschema@._twilio_call_status_rank(b.ds) < 5), 0)::bigint AS calls_awaiting,
	       pg_catalog.round(pg_catalog.sum(b.n) FILTER (WHERE b.kind = 'call' AND b.ds = 'completed')
	             OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(b.n) FILTER (
	                 WHERE b.kind = 'call' AND @extschema@._twilio_call_status_rank(b.ds) = 5), 0), 4) AS answer_rate
	  FROM @extschema@.twilio_pools p
	  LEFT JOIN (
	        SELECT c.pool, c.kind, c.delivery_status AS ds, c.machine, pg_catalog.sum(c.n) AS n
	          FROM @extschema@._twilio_recent_counts c, @extschema@._twilio_recent_minutes() w
	         WHERE c.status = 'sent' AND c.minute >= w.hour AND (c.raw OR c.second IS NULL)
	         GROUP BY 1, 2, 3, 4
	        UNION ALL
	        SELECT o.pool, o.kind, o.delivery_status,
	               o.kind = 'call' AND COALESCE(o.answered_by LIKE 'machine%', false), pg_catalog.count(*)
	          FROM @extschema@.twilio_outbox o, @extschema@._twilio_recent_minutes() w
	         WHERE o.status = 'sent' AND o.finished_at > pg_catalog.now() - interval '1 hour'
	           AND o.finished_at < w.hour
	         GROUP BY 1, 2, 3, 4) b ON b.pool = p.name
	 GROUP BY p.name;
$$;

CREATE VIEW twilio_delivery_stats AS
	SELECT * FROM _twilio_delivery_stats();
COMMENT ON VIEW twilio_delivery_stats IS
	'Per pool, messages sent in the last hour by what their status callbacks said (delivered, undelivered, failed, still awaiting), and calls placed in the last hour by how they ended (completed, busy, no-answer, failed or canceled, answered by a machine)';

REVOKE ALL ON FUNCTION
	twilio_enqueue_call(text, text, text, text, timestamptz, interval, integer, text, text, jsonb),
	twilio_enqueue_call_trigger(), _twilio_call_status_rank(text), _twilio_queue_stats(),
	_twilio_outbox_counts(text, text[], timestamptz, timestamptz, boolean), _twilio_recent_minutes(), _twilio_error_stats(), _twilio_webhook_stats(),
	_twilio_delivery_stats()
	FROM PUBLIC;
REVOKE ALL ON twilio_queue_stats, twilio_error_stats, twilio_delivery_stats, twilio_webhook_stats FROM PUBLIC;
REVOKE ALL ON TABLE _twilio_pending_counts, _twilio_recent_counts FROM PUBLIC;
REVOKE ALL ON FUNCTION _twilio_count_pending() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	twilio_enqueue_call(text, text, text, text, timestamptz, interval, integer, text, text, jsonb),
	twilio_enqueue_call_trigger()
	TO twilio_outbox_writer;
GRANT EXECUTE ON FUNCTION _twilio_queue_stats(), _twilio_error_stats(), _twilio_webhook_stats(),
	_twilio_delivery_stats() TO pg_monitor, twilio_outbox_admin;
GRANT EXECUTE ON FUNCTION _twilio_call_status_rank(text) TO pg_monitor, twilio_outbox_admin;
GRANT SELECT ON twilio_queue_stats, twilio_error_stats TO pg_monitor, twilio_outbox_admin;
GRANT SELECT ON twilio_delivery_stats, twilio_webhook_stats TO pg_monitor, twilio_outbox_admin;

------------------------------------------------------------------------
-- Performance at scale (issue 14)
------------------------------------------------------------------------

-- API: private
-- Tells the worker, when the transaction commits, that the pools changed: it
-- reads twilio_pools only then (and every 30 s), not every second.  For each
-- row, so that a statement that changes no pool (the worker's own check for
-- timed pauses that are over, every second) does not count as a change.
CREATE FUNCTION _twilio_pools_changed() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'twilio_outbox_pools_changed_2_0';

CREATE TRIGGER twilio_pools_changed
	AFTER INSERT OR UPDATE OR DELETE ON twilio_pools
	FOR EACH ROW EXECUTE FUNCTION _twilio_pools_changed();
CREATE TRIGGER twilio_pools_truncated
	AFTER TRUNCATE ON twilio_pools
	FOR EACH STATEMENT EXECUTE FUNCTION _twilio_pools_changed();
REVOKE ALL ON FUNCTION _twilio_pools_changed() FROM PUBLIC;
