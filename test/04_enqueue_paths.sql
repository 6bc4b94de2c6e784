/*
 * test/04_enqueue_paths.sql
 *		pgTAP: the cheaper paths twilio_enqueue takes on the hot path give
 *		the same results and errors as before.
 *
 * Covers: an unknown pool, found by the outbox's foreign key rather than a
 * lookup before the insert, still raises 42704 "pool ... does not exist"
 * with its hint (no foreign key detail), with and without a dedup_key (new,
 * or already in the outbox), after the pool was deleted or renamed in the
 * same session, and writes nothing; the transaction goes on normally after
 * the error is caught; a foreign key violation that is not the pool's is
 * not rewritten.  The in-place count of short ASCII bodies (segments and
 * characters) at its boundaries: 160 septets, extension characters, 70
 * characters that need UCS-2, and a body that is ASCII but one character.
 *
 * Needs: as test/03_behaviour.sql (pgtap and twilio_outbox created, the
 * worker disabled, a superuser); everything is rolled back.
 */
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SELECT plan(26);

DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);

-- What an error looks like from inside: SQLSTATE, message, detail, hint, constraint.
CREATE FUNCTION pg_temp.error_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hnt text; con text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		hnt = PG_EXCEPTION_HINT, con = CONSTRAINT_NAME;
	RETURN concat_ws(' | ', st, msg, nullif(det, ''), hnt, nullif(con, ''));
END
$$;

------------------------------------------------------------------------
-- an unknown pool
------------------------------------------------------------------------
SELECT twilio_enqueue('+14155550100', 'warm the plans up') AS warm1 \gset
SELECT twilio_enqueue('+14155550100', 'warm the plans up', dedup_key => 'd-warm') AS warm2 \gset

SELECT is(pg_temp.error_of($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope')$$),
		  '42704 | pool "nope" does not exist | Create it first, e.g. INSERT INTO twilio_pools (name, sender, mps) VALUES (''nope'', ''+15005550006'', 1);',
		  'an unknown pool without a dedup_key raises 42704 with its hint, and no foreign key detail');
SELECT is(pg_temp.error_of($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope', dedup_key => 'd-new')$$),
		  '42704 | pool "nope" does not exist | Create it first, e.g. INSERT INTO twilio_pools (name, sender, mps) VALUES (''nope'', ''+15005550006'', 1);',
		  'an unknown pool with a new dedup_key raises the same error');
SELECT is(pg_temp.error_of($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope', dedup_key => 'd-warm')$$),
		  '42704 | pool "nope" does not exist | Create it first, e.g. INSERT INTO twilio_pools (name, sender, mps) VALUES (''nope'', ''+15005550006'', 1);',
		  'an unknown pool with a dedup_key already in the outbox raises the same error');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'Default')$$,
				 '42704', 'pool "Default" does not exist', 'pool names are compared exactly');
SELECT is((SELECT count(*) FROM twilio_outbox), 2::bigint, 'the failed enqueues wrote nothing');
SELECT is((SELECT count(*) FROM twilio_outbox WHERE dedup_key = 'd-new'), 0::bigint,
		  'the dedup_key of a failed enqueue is not taken');

-- the transaction goes on after the error was caught
SELECT ok(twilio_enqueue('+14155550100', 'after the error') > :warm2,
		  'an enqueue after a caught unknown-pool error works');
SELECT ok(twilio_enqueue('+14155550100', 'after the error', dedup_key => 'd-new') > :warm2,
		  'the dedup_key of the failed enqueue can be used');
SELECT is(twilio_enqueue('+14155550100', 'again', dedup_key => 'd-new'),
		  (SELECT id FROM twilio_outbox WHERE dedup_key = 'd-new'),
		  'and is then found like any other');

-- pools that go away while the session has its plans
INSERT INTO twilio_pools (name, sender, mps) VALUES ('brief', '+15005550006', 1);
SELECT ok(twilio_enqueue('+14155550100', 'to brief', pool => 'brief') > 0, 'a new pool is served at once');
DELETE FROM twilio_outbox WHERE pool = 'brief';
DELETE FROM twilio_pools WHERE name = 'brief';
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'brief')$$,
				 '42704', 'pool "brief" does not exist', 'a deleted pool is unknown');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'brief', dedup_key => 'd-brief')$$,
				 '42704', 'pool "brief" does not exist', 'a deleted pool is unknown with a dedup_key too');

INSERT INTO twilio_pools (name, sender, mps) VALUES ('old', '+15005550006', 1);
SELECT twilio_enqueue('+14155550100', 'to old', pool => 'old') AS old1 \gset
UPDATE twilio_pools SET name = 'new' WHERE name = 'old';
SELECT is((SELECT pool FROM twilio_outbox WHERE id = :old1), 'new', 'a renamed pool takes its rows along');
SELECT throws_ok($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'old')$$,
				 '42704', 'pool "old" does not exist', 'the old name of a renamed pool is unknown');
SELECT twilio_enqueue('+14155550100', 'to new', pool => 'new') AS new1 \gset
SELECT is((SELECT pool FROM twilio_outbox WHERE id = :new1), 'new', 'the new name is served');

-- only the pool's foreign key is rewritten: under another name it is raised as it is
SAVEPOINT renamed;
ALTER TABLE twilio_outbox RENAME CONSTRAINT twilio_outbox_pool_fkey TO some_other_fkey;
SELECT is(split_part(pg_temp.error_of($$SELECT twilio_enqueue('+14155550100', 'hi', pool => 'nope')$$), ' | ', 1),
		  '23503', 'a foreign key violation under another constraint name is not rewritten');
ROLLBACK TO SAVEPOINT renamed;

------------------------------------------------------------------------
-- short ASCII bodies, counted in place
------------------------------------------------------------------------
CREATE FUNCTION pg_temp.segments(body text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	new_id bigint := twilio_enqueue('+14155550100', body);
BEGIN
	RETURN (SELECT num_segments FROM twilio_outbox WHERE id = new_id);
END
$$;
SELECT is(pg_temp.segments(repeat('a', 160)), 1, '160 GSM-7 letters: 1 segment');
SELECT is(pg_temp.segments(repeat('a', 159) || '{'), 2, '159 letters and a brace are 161 septets: 2 segments');
SELECT is(pg_temp.segments(repeat('{', 81)), 2, '81 braces are 162 septets: 2 segments');
SELECT is(pg_temp.segments(repeat('a', 158) || E'\f'), 1, 'a form feed takes two septets (160): 1 segment');
SELECT is(pg_temp.segments(repeat('`', 70)), 1, '70 backticks need UCS-2 and fit one segment');
SELECT is(pg_temp.segments(repeat('`', 71)), 2, '71 backticks: 2 UCS-2 segments');
SELECT is(pg_temp.segments(repeat('a', 69) || E'\t'), 1, 'a tab needs UCS-2: 70 characters, 1 segment');
SELECT is(pg_temp.segments(repeat('a', 70) || E'\t'), 2, '71 characters with a tab: 2 segments');
SELECT is(pg_temp.segments(repeat('a', 159) || 'é'), 1, 'é is GSM-7: 160 septets after 159 letters, 1 segment');
SELECT lives_ok($$SELECT twilio_enqueue('+14155550100', repeat('a', 1599) || 'é')$$,
				'1,600 characters in 1,601 bytes are accepted');

SELECT * FROM finish();
ROLLBACK;
