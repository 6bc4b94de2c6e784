--
-- twilio_enqueue_trigger(pool, to_column, body_template) on a business table.
--
\set VERBOSITY default
INSERT INTO twilio_pools (name, sender, mps) VALUES ('orders', '+15005550006', 1);
CREATE TABLE orders (id integer PRIMARY KEY, phone text, "Name" text, total numeric,
                     placed_at timestamptz);

CREATE TRIGGER notify AFTER INSERT OR UPDATE OF total ON orders
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone',
		'Hi {Name}, order #{id} of ${total} placed {placed_at}. {{Reply STOP}} to opt out');

SET timezone = 'UTC';
INSERT INTO orders VALUES
	(1, '+14155550100', 'Ann', 12.50, '2026-01-02 03:04:05+00'),
	(2, NULL, 'Bob', 3, NULL),                  -- no phone: nothing enqueued
	(3, '+14155550102', NULL, 7, NULL);         -- nulls render as empty text
UPDATE orders SET total = 13 WHERE id = 1;
SELECT pool, to_number, body, num_segments FROM twilio_outbox ORDER BY id;

-- a row the trigger cannot send makes the business insert fail: nothing is lost silently
INSERT INTO orders VALUES (4, '4155550100', 'Dan', 1, NULL);
SELECT count(*) AS orders FROM orders;

-- a BEFORE trigger works too and keeps the row
CREATE TABLE signups (phone text, code text);
CREATE TRIGGER welcome BEFORE INSERT ON signups
	FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'Code: {code}');
INSERT INTO signups VALUES ('+14155550103', '9876');
SELECT * FROM signups;
SELECT body FROM twilio_outbox WHERE to_number = '+14155550103';

-- mistakes are refused at CREATE TRIGGER
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger();
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'x', 'y');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'mobile', 'x');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'Hi {name}');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'Hi {Name');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('', 'phone', 'x');
CREATE TRIGGER t AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'x');
CREATE TRIGGER t AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION twilio_enqueue_trigger('orders', 'phone', 'x');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;

-- ... and at fire time when the table changed under the trigger
ALTER TABLE orders RENAME COLUMN "Name" TO full_name;
INSERT INTO orders VALUES (5, '+14155550105', 'Eve', 1, NULL);
ALTER TABLE orders RENAME COLUMN full_name TO "Name";
ALTER TABLE orders RENAME COLUMN phone TO mobile;
INSERT INTO orders VALUES (6, '+14155550106', 'Fay', 1, NULL);
-- and called outside a trigger
SELECT twilio_enqueue_trigger();

DROP TABLE orders, signups;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
