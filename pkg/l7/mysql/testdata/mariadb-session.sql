DROP TABLE IF EXISTS vigil_t;
CREATE TABLE vigil_t (id INT PRIMARY KEY, name VARCHAR(32), note TEXT);
INSERT INTO vigil_t VALUES (1, 'alice', 'secret-1'), (2, "bob", 'it\'s'), (3, 'carol', 0x41);
SELECT id, name FROM vigil_t WHERE name = 'alice';
UPDATE vigil_t SET note = 'all';
DELETE FROM vigil_t WHERE id = 3;
SELECT * FROM vigil_no_such_table;
use mysql
SELECT COUNT(*) > 0 FROM user;
use test
/*!40101 DROP TABLE IF EXISTS vigil_u */;
SELECT REPEAT('x', 100000) AS big;
DELIMITER //
SELECT 1; SELECT 2 //
DELIMITER ;
TRUNCATE vigil_t;
DROP TABLE vigil_t;
