--
-- num_segments: the pacing cost.  GSM-7 160 alone / 153 per part, with the
-- extension table's characters taking two septets; anything else UCS-2, 70
-- alone / 67 per part, counted in UTF-16 units; MMS and WhatsApp one each.
--
INSERT INTO twilio_pools (name, sender, mps) VALUES ('default', '+15005550006', 1);
CREATE TEMP TABLE cases (label text, body text, to_number text DEFAULT '+14155550100',
                         media text[]);
INSERT INTO cases (label, body) VALUES
	('gsm 1', 'a'),
	('gsm 160', repeat('a', 160)),
	('gsm 161', repeat('a', 161)),
	('gsm 306', repeat('a', 306)),
	('gsm 307', repeat('a', 307)),
	('gsm 1600', repeat('a', 1600)),
	('gsm accents 160', repeat('é', 160)),
	('gsm greek 161', repeat('Ω', 161)),
	('gsm newlines', repeat(E'ab\n', 53)),
	('euro 80 (160 septets)', repeat('€', 80)),
	('euro 81 (162 septets)', repeat('€', 81)),
	('braces 80', repeat('{', 80)),
	('escape not split: 152 a [ 152 a (306 septets)', repeat('a', 152) || '[' || repeat('a', 152)),
	('ucs2 70', repeat('ж', 70)),
	('ucs2 71', repeat('ж', 71)),
	('ucs2 134', repeat('ж', 134)),
	('ucs2 135', repeat('ж', 135)),
	('one emoji makes ucs2', repeat('a', 69) || '😀'),
	('emoji 35 (70 units)', repeat('😀', 35)),
	('emoji 36 (72 units)', repeat('😀', 36)),
	('surrogate not split: 66 ж emoji 66 ж (134 units)', repeat('ж', 66) || '😀' || repeat('ж', 66)),
	('backtick is not gsm', repeat('`', 100)),
	('cjk', '你好，世界');
INSERT INTO cases (label, body, to_number) VALUES
	('whatsapp long', repeat('a', 500), 'whatsapp:+14155550100');
INSERT INTO cases (label, body, media) VALUES
	('mms long', repeat('a', 500), ARRAY['https://example.com/a.jpg']);
CREATE TEMP TABLE enqueued AS
	SELECT label, length(body) AS chars,
	       twilio_enqueue(c.to_number, c.body, media_urls => c.media) AS id
	  FROM cases c;
SELECT e.label, e.chars, o.num_segments
  FROM enqueued e JOIN twilio_outbox o USING (id) ORDER BY e.id;
DELETE FROM twilio_outbox;
DELETE FROM twilio_pools;
