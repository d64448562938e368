DROP TABLE IF EXISTS vigil_t;
CREATE TABLE vigil_t (id int PRIMARY KEY, name text, note text);
INSERT INTO vigil_t VALUES (1, 'alice', 'secret-1'), (2, 'bob', E'it\'s'), (3, 'carol', $$dollar$$);
SELECT id, name FROM vigil_t WHERE name = 'alice';
UPDATE vigil_t SET note = 'all';
DELETE FROM vigil_t WHERE id = 3;
SELECT * FROM vigil_no_such_table;
BEGIN; SELECT 1; COMMIT;
WITH d AS (DELETE FROM vigil_t WHERE id = 2 RETURNING *) SELECT count(*) FROM d;
COPY vigil_t (id, name, note) FROM STDIN;
10	copy-a	x
11	copy-b	y
12	copy-c	z
\.
COPY (SELECT g, md5(g::text) FROM generate_series(1, 2000) g) TO STDOUT;
SELECT count(*) FROM vigil_t;
TRUNCATE vigil_t;
DROP TABLE vigil_t;
