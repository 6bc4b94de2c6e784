/*
 * test/02_privileges.sql
 *		pgTAP: who may do what with twilio_outbox.
 *
 * Covers: PUBLIC has no privilege on the tables, views and functions (checked
 * through a fresh role that belongs to no group, and in the catalogs for
 * every object of the extension); the group role twilio_outbox_writer may
 * execute twilio_enqueue, twilio_cancel and twilio_enqueue_trigger and read
 * the outbox, but may not write the outbox directly, execute twilio_retry or
 * modify twilio_pools; twilio_outbox_admin may modify twilio_pools and
 * execute twilio_retry; pg_monitor may read the three views.  Then the same
 * as behaviour: roles created here (members of one group each) SET ROLE and
 * try it: enqueue through the SECURITY DEFINER function (and through
 * twilio_enqueue_trigger on the writer's own table), a direct INSERT failing
 * with 42501, a role without grants getting 42501 for twilio_enqueue and for
 * CREATE TRIGGER ... twilio_enqueue_trigger, an admin editing pools and
 * retrying, a pg_monitor member reading the views but not the messages;
 * twilio_outbox_webhook may execute twilio_ingest_callback and nothing
 * else (no other function, table, view or sequence, no other role), and
 * twilio_outbox_writer may too, as its member.
 *
 * Needs: a server with shared_preload_libraries = 'twilio_outbox', run in
 * the database named by twilio_outbox.database, where the extensions pgtap
 * and twilio_outbox already exist (the runner creates them); the worker
 * should have twilio_outbox.enabled = off.  Run as a superuser (it creates
 * roles).  The roles tob_tap_nobody, tob_tap_writer, tob_tap_admin and
 * tob_tap_monitor must not exist; they, the pools and the rows are all
 * rolled back.
 */
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SELECT plan(58);

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps)
	VALUES ('default', '+15005550006', 1), ('spare', '+15005550006', 1);

CREATE ROLE tob_tap_nobody NOLOGIN;
CREATE ROLE tob_tap_writer NOLOGIN IN ROLE twilio_outbox_writer;
CREATE ROLE tob_tap_admin NOLOGIN IN ROLE twilio_outbox_admin;
CREATE ROLE tob_tap_monitor NOLOGIN IN ROLE pg_monitor;

------------------------------------------------------------------------
-- PUBLIC gets nothing
------------------------------------------------------------------------
SELECT table_privs_are('twilio_pools', 'tob_tap_nobody', ARRAY[]::name[],
					   'PUBLIC has no privilege on twilio_pools');
SELECT table_privs_are('twilio_outbox', 'tob_tap_nobody', ARRAY[]::name[],
					   'PUBLIC has no privilege on twilio_outbox');
SELECT table_privs_are('twilio_queue_stats', 'tob_tap_nobody', ARRAY[]::name[],
					   'PUBLIC has no privilege on twilio_queue_stats');
SELECT table_privs_are('twilio_worker_status', 'tob_tap_nobody', ARRAY[]::name[],
					   'PUBLIC has no privilege on twilio_worker_status');
SELECT table_privs_are('twilio_pool_status', 'tob_tap_nobody', ARRAY[]::name[],
					   'PUBLIC has no privilege on twilio_pool_status');
SELECT function_privs_are('twilio_enqueue',
	ARRAY['text', 'text', 'text', 'text[]', 'timestamptz', 'interval', 'integer', 'text', 'text', 'jsonb'],
	'tob_tap_nobody', ARRAY[]::name[], 'PUBLIC may not execute twilio_enqueue');
SELECT function_privs_are('twilio_cancel', ARRAY['bigint'], 'tob_tap_nobody', ARRAY[]::name[],
						  'PUBLIC may not execute twilio_cancel');
SELECT function_privs_are('twilio_retry', ARRAY['bigint'], 'tob_tap_nobody', ARRAY[]::name[],
						  'PUBLIC may not execute twilio_retry');
SELECT function_privs_are('twilio_enqueue_trigger', ARRAY[]::name[], 'tob_tap_nobody', ARRAY[]::name[],
						  'PUBLIC may not execute twilio_enqueue_trigger');

-- Every relation, sequence and function of the extension, private ones too:
-- no ACL entry for PUBLIC (grantee 0), counting a NULL ACL as the default.
SELECT is_empty(
	$$SELECT pg_describe_object(d.classid, d.objid, 0) || ': ' || a.privilege_type
	    FROM pg_depend d
	    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'twilio_outbox'
	    LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
	    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
	    CROSS JOIN LATERAL aclexplode(CASE
	        WHEN c.oid IS NOT NULL THEN coalesce(c.relacl,
	            acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))
	        WHEN p.oid IS NOT NULL THEN coalesce(p.proacl, acldefault('f'::"char", p.proowner))
	    END) a
	   WHERE d.deptype = 'e' AND a.grantee = 0$$,
	'no object of the extension grants anything to PUBLIC');

------------------------------------------------------------------------
-- Group roles, in the catalogs
------------------------------------------------------------------------
SELECT function_privs_are('twilio_enqueue',
	ARRAY['text', 'text', 'text', 'text[]', 'timestamptz', 'interval', 'integer', 'text', 'text', 'jsonb'],
	'twilio_outbox_writer', ARRAY['EXECUTE'], 'twilio_outbox_writer may execute twilio_enqueue');
SELECT function_privs_are('twilio_cancel', ARRAY['bigint'], 'twilio_outbox_writer', ARRAY['EXECUTE'],
						  'twilio_outbox_writer may execute twilio_cancel');
SELECT function_privs_are('twilio_enqueue_trigger', ARRAY[]::name[], 'twilio_outbox_writer', ARRAY['EXECUTE'],
						  'twilio_outbox_writer may execute twilio_enqueue_trigger');
SELECT function_privs_are('twilio_retry', ARRAY['bigint'], 'twilio_outbox_writer', ARRAY[]::name[],
						  'twilio_outbox_writer may not execute twilio_retry');
SELECT ok(has_table_privilege('twilio_outbox_writer', 'twilio_outbox', 'SELECT'),
		  'twilio_outbox_writer may select twilio_outbox');
SELECT ok(NOT has_table_privilege('twilio_outbox_writer', 'twilio_outbox', 'INSERT, UPDATE, DELETE, TRUNCATE'),
		  'twilio_outbox_writer may not insert, update, delete or truncate twilio_outbox');
SELECT ok(NOT has_table_privilege('twilio_outbox_writer', 'twilio_pools', 'INSERT, UPDATE, DELETE, TRUNCATE'),
		  'twilio_outbox_writer may not insert, update, delete or truncate twilio_pools');

-- twilio_outbox_webhook: twilio_ingest_callback and nothing else
SELECT function_privs_are('twilio_ingest_callback', ARRAY['text', 'jsonb', 'text', 'text', 'text'],
						  'twilio_outbox_webhook', ARRAY['EXECUTE'],
						  'twilio_outbox_webhook may execute twilio_ingest_callback');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text
	    FROM pg_depend d
	    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'twilio_outbox'
	    JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
	   WHERE d.deptype = 'e' AND p.proname <> 'twilio_ingest_callback'
	     AND has_function_privilege('twilio_outbox_webhook', p.oid, 'EXECUTE')$$,
	'twilio_outbox_webhook may execute no other function of the extension');
SELECT is_empty(
	$$SELECT c.oid::regclass::text
	    FROM pg_depend d
	    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'twilio_outbox'
	    JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
	   WHERE d.deptype = 'e' AND c.relkind IN ('r', 'v', 'S')
	     AND (has_table_privilege('twilio_outbox_webhook', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
	          OR (c.relkind = 'S' AND has_sequence_privilege('twilio_outbox_webhook', c.oid, 'USAGE, SELECT, UPDATE')))$$,
	'twilio_outbox_webhook has no privilege on any table, view or sequence of the extension');
SELECT is_empty(
	$$SELECT roleid::regrole::text FROM pg_auth_members
	   WHERE member = 'twilio_outbox_webhook'::regrole$$,
	'twilio_outbox_webhook is a member of no other role');
SELECT function_privs_are('twilio_ingest_callback', ARRAY['text', 'jsonb', 'text', 'text', 'text'],
						  'twilio_outbox_writer', ARRAY['EXECUTE'],
						  'twilio_outbox_writer may execute twilio_ingest_callback (a member of twilio_outbox_webhook)');

SELECT ok(has_table_privilege('twilio_outbox_admin', 'twilio_pools', 'INSERT')
		  AND has_table_privilege('twilio_outbox_admin', 'twilio_pools', 'UPDATE')
		  AND has_table_privilege('twilio_outbox_admin', 'twilio_pools', 'DELETE'),
		  'twilio_outbox_admin may insert, update and delete twilio_pools');
SELECT function_privs_are('twilio_retry', ARRAY['bigint'], 'twilio_outbox_admin', ARRAY['EXECUTE'],
						  'twilio_outbox_admin may execute twilio_retry');

SELECT ok(has_table_privilege('pg_monitor', 'twilio_queue_stats', 'SELECT'),
		  'pg_monitor may select twilio_queue_stats');
SELECT ok(has_table_privilege('pg_monitor', 'twilio_worker_status', 'SELECT'),
		  'pg_monitor may select twilio_worker_status');
SELECT ok(has_table_privilege('pg_monitor', 'twilio_pool_status', 'SELECT'),
		  'pg_monitor may select twilio_pool_status');

------------------------------------------------------------------------
-- A member of twilio_outbox_writer, in action
------------------------------------------------------------------------
SET ROLE tob_tap_writer;

SELECT isnt(twilio_enqueue('+14155550100', 'writer says hi'), NULL,
			'a writer enqueues through twilio_enqueue (SECURITY DEFINER)');
SELECT is((SELECT count(*)::int FROM twilio_outbox WHERE body = 'writer says hi' AND status = 'queued'), 1,
		  'the writer sees its queued row');
SELECT throws_ok($$INSERT INTO twilio_outbox (pool, to_number, body, num_segments)
				   VALUES ('default', '+14155550100', 'sneaky', 1)$$,
				 '42501', 'permission denied for table twilio_outbox',
				 'a writer cannot INSERT into twilio_outbox directly (42501)');
SELECT throws_ok($$UPDATE twilio_outbox SET priority = 100$$,
				 '42501', 'permission denied for table twilio_outbox',
				 'a writer cannot UPDATE twilio_outbox directly (42501)');
SELECT throws_ok($$DELETE FROM twilio_outbox$$,
				 '42501', 'permission denied for table twilio_outbox',
				 'a writer cannot DELETE from twilio_outbox directly (42501)');
SELECT is(twilio_cancel((SELECT id FROM twilio_outbox WHERE body = 'writer says hi')), true,
		  'a writer cancels its queued message with twilio_cancel');
SELECT throws_ok($$SELECT twilio_retry((SELECT id FROM twilio_outbox WHERE body = 'writer says hi'))$$,
				 '42501', 'permission denied for function twilio_retry',
				 'a writer cannot execute twilio_retry (42501)');
SELECT throws_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('w', '+15005550006', 1)$$,
				 '42501', 'permission denied for table twilio_pools',
				 'a writer cannot INSERT into twilio_pools (42501)');
SELECT throws_ok($$UPDATE twilio_pools SET mps = 100$$,
				 '42501', 'permission denied for table twilio_pools',
				 'a writer cannot UPDATE twilio_pools (42501)');
SELECT throws_ok($$DELETE FROM twilio_pools$$,
				 '42501', 'permission denied for table twilio_pools',
				 'a writer cannot DELETE from twilio_pools (42501)');

-- The trigger function works for a writer on its own (temporary) table.
CREATE TEMP TABLE tap_signups (id int, phone text, name text);
SELECT lives_ok($$CREATE TRIGGER tap_signups_sms AFTER INSERT ON tap_signups
				  FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('default', 'phone', 'Welcome {name}')$$,
				'a writer creates a trigger using twilio_enqueue_trigger');
INSERT INTO tap_signups VALUES (1, '+14155550101', 'Ann');
SELECT is((SELECT count(*)::int FROM twilio_outbox WHERE body = 'Welcome Ann' AND to_number = '+14155550101'), 1,
		  'a writer''s row enqueues through twilio_enqueue_trigger');

RESET ROLE;

SELECT is((SELECT count(*)::int FROM twilio_outbox), 2,
		  'the writer''s refused statements wrote nothing');

------------------------------------------------------------------------
-- A role with no grants
------------------------------------------------------------------------
SET ROLE tob_tap_nobody;

SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'nobody says hi')$$,
				 '42501', 'permission denied for function twilio_enqueue',
				 'a role without grants cannot execute twilio_enqueue (42501)');
SELECT throws_ok($$SELECT twilio_cancel(1)$$,
				 '42501', 'permission denied for function twilio_cancel',
				 'a role without grants cannot execute twilio_cancel (42501)');
SELECT throws_ok($$SELECT count(*) FROM twilio_outbox$$,
				 '42501', 'permission denied for table twilio_outbox',
				 'a role without grants cannot read twilio_outbox (42501)');
SELECT throws_ok($$SELECT count(*) FROM twilio_pools$$,
				 '42501', 'permission denied for table twilio_pools',
				 'a role without grants cannot read twilio_pools (42501)');
SELECT throws_ok($$SELECT count(*) FROM twilio_queue_stats$$,
				 '42501', 'permission denied for view twilio_queue_stats',
				 'a role without grants cannot read twilio_queue_stats (42501)');
SELECT throws_ok($$SELECT count(*) FROM twilio_worker_status$$,
				 '42501', 'permission denied for view twilio_worker_status',
				 'a role without grants cannot read twilio_worker_status (42501)');
CREATE TEMP TABLE tap_nobody_signups (id int, phone text);
SELECT throws_ok($$CREATE TRIGGER tap_nobody_sms AFTER INSERT ON tap_nobody_signups
				   FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('default', 'phone', 'hi')$$,
				 '42501', 'permission denied for function twilio_enqueue_trigger',
				 'a role without grants cannot create a trigger using twilio_enqueue_trigger (42501)');

RESET ROLE;

------------------------------------------------------------------------
-- A member of twilio_outbox_admin, in action
------------------------------------------------------------------------
SET ROLE tob_tap_admin;

SELECT lives_ok($$INSERT INTO twilio_pools (name, sender, mps) VALUES ('admin_pool', '+15005550006', 5)$$,
				'an admin inserts a pool');
SELECT lives_ok($$UPDATE twilio_pools SET mps = 2, burst = 3 WHERE name = 'default'$$,
				'an admin updates a pool');
SELECT lives_ok($$UPDATE twilio_pools SET paused = true WHERE name = 'default'$$,
				'an admin pauses a pool');
SELECT is(twilio_retry((SELECT id FROM twilio_outbox WHERE body = 'writer says hi')), true,
		  'an admin queues a canceled message again with twilio_retry');
WITH d AS (DELETE FROM twilio_pools WHERE name = 'spare' RETURNING 1)
SELECT is(count(*)::int, 1, 'an admin deletes an unused pool') FROM d;

RESET ROLE;

SELECT is((SELECT status FROM twilio_outbox WHERE body = 'writer says hi'), 'queued',
		  'the admin''s twilio_retry queued the row again');
SELECT is((SELECT (mps, burst, paused)::text FROM twilio_pools WHERE name = 'default'), '(2,3,t)',
		  'the admin''s pool updates took effect');

------------------------------------------------------------------------
-- A member of pg_monitor, in action
------------------------------------------------------------------------
SET ROLE tob_tap_monitor;

SELECT lives_ok($$SELECT * FROM twilio_queue_stats$$, 'a pg_monitor member reads twilio_queue_stats');
SELECT lives_ok($$SELECT * FROM twilio_worker_status$$, 'a pg_monitor member reads twilio_worker_status');
SELECT lives_ok($$SELECT * FROM twilio_pool_status$$, 'a pg_monitor member reads twilio_pool_status');
SELECT throws_ok($$SELECT body FROM twilio_outbox$$,
				 '42501', 'permission denied for table twilio_outbox',
				 'a pg_monitor member cannot read message bodies in twilio_outbox (42501)');

RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
