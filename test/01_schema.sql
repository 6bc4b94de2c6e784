/*
 * test/01_schema.sql
 *		pgTAP: the SQL objects of twilio_outbox as CONTRACT.md fixes them.
 *
 * Covers: tables twilio_pools and twilio_outbox (every contract column with
 * its type, NOT NULL-ness and default, primary keys, the unique dedup_key,
 * the foreign key pool -> twilio_pools(name), the CHECK on status allowing
 * exactly the contract's statuses); the partial index twilio_outbox_due_idx
 * and that the worker's claim-shaped query is planned on it; the views
 * twilio_queue_stats, twilio_worker_status and twilio_pool_status with their
 * columns; the signatures of twilio_enqueue, twilio_cancel, twilio_retry and
 * twilio_enqueue_trigger; SECURITY DEFINER on twilio_enqueue and a pinned
 * search_path on every SECURITY DEFINER function of the extension.
 *
 * Needs: a server with shared_preload_libraries = 'twilio_outbox', run in
 * the database named by twilio_outbox.database, where the extensions pgtap
 * and twilio_outbox already exist (the runner creates them); the worker
 * should have twilio_outbox.enabled = off.  Run as a superuser.  Everything
 * (pools, ~2000 outbox rows, their ANALYZE statistics) is rolled back.
 */
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SELECT plan(119);

-- Start from empty tables so that the planner test sees only our rows.
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;

------------------------------------------------------------------------
-- twilio_pools
------------------------------------------------------------------------
SELECT has_table('twilio_pools', 'table twilio_pools exists');

SELECT col_type_is('twilio_pools', 'name',   'text',    'twilio_pools.name is text');
SELECT col_type_is('twilio_pools', 'sender', 'text',    'twilio_pools.sender is text');
SELECT col_type_is('twilio_pools', 'mps',    'numeric', 'twilio_pools.mps is numeric');
SELECT col_type_is('twilio_pools', 'burst',  'integer', 'twilio_pools.burst is integer');
SELECT col_type_is('twilio_pools', 'paused', 'boolean', 'twilio_pools.paused is boolean');

SELECT col_not_null('twilio_pools', 'name',   'twilio_pools.name is NOT NULL');
SELECT col_not_null('twilio_pools', 'sender', 'twilio_pools.sender is NOT NULL');
SELECT col_not_null('twilio_pools', 'mps',    'twilio_pools.mps is NOT NULL');
SELECT col_not_null('twilio_pools', 'burst',  'twilio_pools.burst is NOT NULL');
SELECT col_not_null('twilio_pools', 'paused', 'twilio_pools.paused is NOT NULL');

SELECT col_default_is('twilio_pools', 'burst', 1, 'twilio_pools.burst defaults to 1');
SELECT col_default_is('twilio_pools', 'paused', 'false', 'twilio_pools.paused defaults to false');

SELECT col_is_pk('twilio_pools', 'name', 'twilio_pools primary key is name');

------------------------------------------------------------------------
-- twilio_outbox
------------------------------------------------------------------------
SELECT has_table('twilio_outbox', 'table twilio_outbox exists');

SELECT col_type_is('twilio_outbox', 'id',               'bigint',                   'twilio_outbox.id is bigint');
SELECT col_type_is('twilio_outbox', 'pool',             'text',                     'twilio_outbox.pool is text');
SELECT col_type_is('twilio_outbox', 'to_number',        'text',                     'twilio_outbox.to_number is text');
SELECT col_type_is('twilio_outbox', 'body',             'text',                     'twilio_outbox.body is text');
SELECT col_type_is('twilio_outbox', 'media_urls',       'text[]',                   'twilio_outbox.media_urls is text[]');
SELECT col_type_is('twilio_outbox', 'num_segments',     'integer',                  'twilio_outbox.num_segments is integer');
SELECT col_type_is('twilio_outbox', 'params',           'jsonb',                    'twilio_outbox.params is jsonb');
SELECT col_type_is('twilio_outbox', 'status',           'text',                     'twilio_outbox.status is text');
SELECT col_type_is('twilio_outbox', 'priority',         'integer',                  'twilio_outbox.priority is integer');
SELECT col_type_is('twilio_outbox', 'attempts',         'integer',                  'twilio_outbox.attempts is integer');
SELECT col_type_is('twilio_outbox', 'next_attempt_at',  'timestamp with time zone', 'twilio_outbox.next_attempt_at is timestamptz');
SELECT col_type_is('twilio_outbox', 'expires_at',       'timestamp with time zone', 'twilio_outbox.expires_at is timestamptz');
SELECT col_type_is('twilio_outbox', 'dedup_key',        'text',                     'twilio_outbox.dedup_key is text');
SELECT col_type_is('twilio_outbox', 'twilio_sid',       'text',                     'twilio_outbox.twilio_sid is text');
SELECT col_type_is('twilio_outbox', 'delivery_status',  'text',                     'twilio_outbox.delivery_status is text');
SELECT col_type_is('twilio_outbox', 'last_http_status', 'integer',                  'twilio_outbox.last_http_status is integer');
SELECT col_type_is('twilio_outbox', 'last_error_code',  'integer',                  'twilio_outbox.last_error_code is integer');
SELECT col_type_is('twilio_outbox', 'last_error',       'text',                     'twilio_outbox.last_error is text');
SELECT col_type_is('twilio_outbox', 'created_at',       'timestamp with time zone', 'twilio_outbox.created_at is timestamptz');
SELECT col_type_is('twilio_outbox', 'sent_at',          'timestamp with time zone', 'twilio_outbox.sent_at is timestamptz');

SELECT col_not_null('twilio_outbox', 'id',              'twilio_outbox.id is NOT NULL');
SELECT col_not_null('twilio_outbox', 'pool',            'twilio_outbox.pool is NOT NULL');
SELECT col_not_null('twilio_outbox', 'to_number',       'twilio_outbox.to_number is NOT NULL');
SELECT col_not_null('twilio_outbox', 'num_segments',    'twilio_outbox.num_segments is NOT NULL');
SELECT col_not_null('twilio_outbox', 'params',          'twilio_outbox.params is NOT NULL');
SELECT col_not_null('twilio_outbox', 'status',          'twilio_outbox.status is NOT NULL');
SELECT col_not_null('twilio_outbox', 'priority',        'twilio_outbox.priority is NOT NULL');
SELECT col_not_null('twilio_outbox', 'attempts',        'twilio_outbox.attempts is NOT NULL');
SELECT col_not_null('twilio_outbox', 'next_attempt_at', 'twilio_outbox.next_attempt_at is NOT NULL');
SELECT col_not_null('twilio_outbox', 'created_at',      'twilio_outbox.created_at is NOT NULL');

-- The contract leaves these nullable: body may be null (media / ContentSid),
-- the rest are unknown until the worker has tried to send.
SELECT col_is_null('twilio_outbox', 'body',             'twilio_outbox.body is nullable');
SELECT col_is_null('twilio_outbox', 'media_urls',       'twilio_outbox.media_urls is nullable');
SELECT col_is_null('twilio_outbox', 'expires_at',       'twilio_outbox.expires_at is nullable');
SELECT col_is_null('twilio_outbox', 'dedup_key',        'twilio_outbox.dedup_key is nullable');
SELECT col_is_null('twilio_outbox', 'twilio_sid',       'twilio_outbox.twilio_sid is nullable');
SELECT col_is_null('twilio_outbox', 'delivery_status',  'twilio_outbox.delivery_status is nullable');
SELECT col_is_null('twilio_outbox', 'last_http_status', 'twilio_outbox.last_http_status is nullable');
SELECT col_is_null('twilio_outbox', 'last_error_code',  'twilio_outbox.last_error_code is nullable');
SELECT col_is_null('twilio_outbox', 'last_error',       'twilio_outbox.last_error is nullable');
SELECT col_is_null('twilio_outbox', 'sent_at',          'twilio_outbox.sent_at is nullable');

SELECT col_default_is('twilio_outbox', 'params',     '{}',    'twilio_outbox.params defaults to ''{}''');
SELECT col_default_is('twilio_outbox', 'priority',   0,       'twilio_outbox.priority defaults to 0');
SELECT col_default_is('twilio_outbox', 'attempts',   0,       'twilio_outbox.attempts defaults to 0');
SELECT col_default_is('twilio_outbox', 'created_at', 'now()', 'twilio_outbox.created_at defaults to now()');

SELECT col_is_pk('twilio_outbox', 'id', 'twilio_outbox primary key is id');
SELECT col_is_unique('twilio_outbox', 'dedup_key', 'twilio_outbox.dedup_key is unique');
SELECT fk_ok('twilio_outbox', 'pool', 'twilio_pools', 'name',
			 'twilio_outbox.pool references twilio_pools(name)');

------------------------------------------------------------------------
-- The status CHECK allows exactly the contract's statuses
------------------------------------------------------------------------
INSERT INTO twilio_pools (name, sender, mps) VALUES ('p', '+15005550006', 1);
INSERT INTO twilio_outbox (id, pool, to_number, body, num_segments, status)
	VALUES (-1, 'p', '+14155550100', 'status probe', 1, 'queued');

SELECT lives_ok($$UPDATE twilio_outbox SET status = 'queued'   WHERE id = -1$$, 'status ''queued'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'sending'  WHERE id = -1$$, 'status ''sending'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'sent'     WHERE id = -1$$, 'status ''sent'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'retrying' WHERE id = -1$$, 'status ''retrying'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'failed'   WHERE id = -1$$, 'status ''failed'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'expired'  WHERE id = -1$$, 'status ''expired'' is allowed');
SELECT lives_ok($$UPDATE twilio_outbox SET status = 'canceled' WHERE id = -1$$, 'status ''canceled'' is allowed');
SELECT throws_ok($$UPDATE twilio_outbox SET status = 'bogus' WHERE id = -1$$, '23514', NULL,
				 'status ''bogus'' is rejected by a CHECK (23514)');
SELECT throws_ok($$UPDATE twilio_outbox SET status = 'delivered' WHERE id = -1$$, '23514', NULL,
				 'status ''delivered'' (a delivery_status, not a status) is rejected (23514)');
SELECT throws_ok($$UPDATE twilio_outbox SET status = 'QUEUED' WHERE id = -1$$, '23514', NULL,
				 'statuses are lower case: ''QUEUED'' is rejected (23514)');
SELECT throws_ok($$UPDATE twilio_outbox SET status = NULL WHERE id = -1$$, '23502', NULL,
				 'status NULL is rejected (23502)');

DELETE FROM twilio_outbox WHERE id = -1;

------------------------------------------------------------------------
-- The claim index
------------------------------------------------------------------------
SELECT has_index('twilio_outbox', 'twilio_outbox_due_idx',
				 ARRAY['pool', 'kind', 'priority', 'next_attempt_at', 'id'],
				 'twilio_outbox_due_idx is on (pool, kind, priority, next_attempt_at, id)');
SELECT index_is_type('twilio_outbox', 'twilio_outbox_due_idx', 'btree');
SELECT is(ARRAY(SELECT (i.indoption[k] & 1)::int	-- INDOPTION_DESC
				  FROM pg_index i, generate_series(0, 4) k
				 WHERE i.indexrelid = 'twilio_outbox_due_idx'::regclass
				 ORDER BY k),
		  ARRAY[0, 0, 1, 0, 0],
		  'twilio_outbox_due_idx orders pool, kind ASC, priority DESC, next_attempt_at, id ASC');
SELECT matches(pg_get_expr(i.indpred, i.indrelid), '^\(?status = ANY ',
			   'twilio_outbox_due_idx is partial on status')
  FROM pg_index i WHERE i.indexrelid = 'twilio_outbox_due_idx'::regclass;
SELECT set_eq(
	$$SELECT m[1] FROM pg_index i,
	         regexp_matches(pg_get_expr(i.indpred, i.indrelid), '''([^'']*)''', 'g') m
	   WHERE i.indexrelid = 'twilio_outbox_due_idx'::regclass$$,
	ARRAY['queued', 'retrying'],
	'twilio_outbox_due_idx covers exactly the statuses queued and retrying');

-- A realistic table: four pools, mostly finished rows, some due ones.
INSERT INTO twilio_pools (name, sender, mps)
	VALUES ('q', '+15005550006', 1), ('r', '+15005550006', 1), ('s', '+15005550006', 1);
INSERT INTO twilio_outbox (pool, to_number, body, num_segments, status, priority, next_attempt_at)
SELECT (ARRAY['p', 'q', 'r', 's'])[1 + i % 4], '+14155550100', 'planner row ' || i, 1,
	   CASE WHEN i % 10 < 8 THEN 'sent' WHEN i % 10 = 8 THEN 'queued' ELSE 'retrying' END,
	   i % 3, now() - i * interval '1 second'
  FROM generate_series(1, 2000) i;
ANALYZE twilio_outbox;

CREATE FUNCTION pg_temp.plan_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	line text;
	result text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		result := result || line || E'\n';
	END LOOP;
	RETURN result;
END
$$;

SELECT matches(
	pg_temp.plan_of($$SELECT id FROM twilio_outbox
	                   WHERE pool = 'p' AND kind = 'message' AND status IN ('queued', 'retrying')
	                     AND next_attempt_at <= now()
	                   ORDER BY priority DESC, next_attempt_at LIMIT 10$$),
	'twilio_outbox_due_idx',
	'the claim query is planned on twilio_outbox_due_idx');
SELECT doesnt_match(
	pg_temp.plan_of($$SELECT id FROM twilio_outbox
	                   WHERE pool = 'p' AND kind = 'message' AND status IN ('queued', 'retrying')
	                     AND next_attempt_at <= now()
	                   ORDER BY priority DESC, next_attempt_at LIMIT 10$$),
	'Sort',
	'the claim query needs no Sort: the index gives priority DESC, next_attempt_at order');

------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------
SELECT has_view('twilio_queue_stats',   'view twilio_queue_stats exists');
SELECT has_view('twilio_worker_status', 'view twilio_worker_status exists');
SELECT has_view('twilio_pool_status',   'view twilio_pool_status exists');

SELECT has_column('twilio_queue_stats', 'pool',              'twilio_queue_stats has pool');
SELECT has_column('twilio_queue_stats', 'mps',               'twilio_queue_stats has mps');
SELECT has_column('twilio_queue_stats', 'paused',            'twilio_queue_stats has paused');
SELECT has_column('twilio_queue_stats', 'queued',            'twilio_queue_stats has queued');
SELECT has_column('twilio_queue_stats', 'retrying',          'twilio_queue_stats has retrying');
SELECT has_column('twilio_queue_stats', 'sending',           'twilio_queue_stats has sending');
SELECT has_column('twilio_queue_stats', 'sent_last_minute',  'twilio_queue_stats has sent_last_minute');
SELECT has_column('twilio_queue_stats', 'failed_last_hour',  'twilio_queue_stats has failed_last_hour');
SELECT has_column('twilio_queue_stats', 'oldest_queued_age', 'twilio_queue_stats has oldest_queued_age');
SELECT has_column('twilio_queue_stats', 'est_drain_time',    'twilio_queue_stats has est_drain_time');

SELECT has_column('twilio_worker_status', 'pid',       'twilio_worker_status has pid');
SELECT has_column('twilio_worker_status', 'state',     'twilio_worker_status has state');
SELECT has_column('twilio_worker_status', 'in_flight', 'twilio_worker_status has in_flight');
SELECT col_type_is('twilio_worker_status', 'pools', 'jsonb',
				   'twilio_worker_status has the per pool state as jsonb in pools');

SELECT has_column('twilio_pool_status', 'pool',          'twilio_pool_status has pool');
SELECT has_column('twilio_pool_status', 'mps',           'twilio_pool_status has mps');
SELECT has_column('twilio_pool_status', 'effective_mps', 'twilio_pool_status has effective_mps');
SELECT has_column('twilio_pool_status', 'burst',         'twilio_pool_status has burst');
SELECT has_column('twilio_pool_status', 'tokens',        'twilio_pool_status has tokens');
SELECT has_column('twilio_pool_status', 'paused',        'twilio_pool_status has paused');
SELECT has_column('twilio_pool_status', 'paused_until',  'twilio_pool_status has paused_until');
SELECT has_column('twilio_pool_status', 'in_flight',     'twilio_pool_status has in_flight');
SELECT has_column('twilio_pool_status', 'sent',          'twilio_pool_status has sent');

------------------------------------------------------------------------
-- Functions
------------------------------------------------------------------------
SELECT has_function('twilio_enqueue',
	ARRAY['text', 'text', 'text', 'text[]', 'timestamp with time zone', 'interval',
		  'integer', 'text', 'text', 'jsonb'],
	'twilio_enqueue(text, text, text, text[], timestamptz, interval, integer, text, text, jsonb) exists');
SELECT has_function('twilio_cancel', ARRAY['bigint'], 'twilio_cancel(bigint) exists');
SELECT has_function('twilio_retry', ARRAY['bigint'], 'twilio_retry(bigint) exists');
SELECT has_function('twilio_enqueue_trigger', ARRAY[]::name[], 'twilio_enqueue_trigger() exists');

SELECT function_returns('twilio_enqueue',
	ARRAY['text', 'text', 'text', 'text[]', 'timestamp with time zone', 'interval',
		  'integer', 'text', 'text', 'jsonb'],
	'bigint', 'twilio_enqueue returns bigint');
SELECT function_returns('twilio_cancel', ARRAY['bigint'], 'boolean', 'twilio_cancel returns boolean');
SELECT function_returns('twilio_retry', ARRAY['bigint'], 'boolean', 'twilio_retry returns boolean');
SELECT function_returns('twilio_enqueue_trigger', ARRAY[]::name[], 'trigger',
						'twilio_enqueue_trigger returns trigger');

-- Argument names and defaults matter: callers use named notation (pool => ...).
SELECT is(pg_get_function_arguments('twilio_enqueue(text, text, text, text[], timestamptz, interval, integer, text, text, jsonb)'::regprocedure),
		  'to_number text, body text, pool text DEFAULT ''default''::text, '
		  'media_urls text[] DEFAULT NULL::text[], '
		  'send_after timestamp with time zone DEFAULT NULL::timestamp with time zone, '
		  'valid_for interval DEFAULT NULL::interval, priority integer DEFAULT 0, '
		  'dedup_key text DEFAULT NULL::text, status_callback text DEFAULT NULL::text, '
		  'params jsonb DEFAULT NULL::jsonb',
		  'twilio_enqueue has the contract''s argument names and defaults');
SELECT is(pg_get_function_arguments('twilio_cancel(bigint)'::regprocedure), 'id bigint',
		  'twilio_cancel''s argument is named id');
SELECT is(pg_get_function_arguments('twilio_retry(bigint)'::regprocedure), 'id bigint',
		  'twilio_retry''s argument is named id');

SELECT is_definer('twilio_enqueue',
	ARRAY['text', 'text', 'text', 'text[]', 'timestamp with time zone', 'interval',
		  'integer', 'text', 'text', 'jsonb'],
	'twilio_enqueue is SECURITY DEFINER');

-- STYLE.md 3: SECURITY DEFINER functions SET search_path = pg_catalog, pg_temp.
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text
	    FROM pg_proc p
	    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'twilio_outbox'
	   WHERE p.prosecdef
	     AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
	'every SECURITY DEFINER function of the extension sets search_path = pg_catalog, pg_temp');

SELECT * FROM finish();
ROLLBACK;
