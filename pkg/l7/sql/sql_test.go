package sql

import (
	"maps"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		text    string
		d       Dialect
		kind    string
		kinds   string
		noWhere bool
	}{
		{"SELECT 1", Postgres, "SELECT", "SELECT", false},
		{"  \n\tselect * from t", Postgres, "SELECT", "SELECT", false},
		{"-- hi\n/* a /* nested */ b */ DROP TABLE t", Postgres, "DROP", "DROP", false},
		{"/* x */ delete from t", MySQL, "DELETE", "DELETE", true},
		{"DELETE FROM t WHERE id = 1", Postgres, "DELETE", "DELETE", false},
		{"UPDATE t SET a = (SELECT b FROM u WHERE c)", Postgres, "UPDATE", "UPDATE", true},
		{"update t set a='where' ", MySQL, "UPDATE", "UPDATE", true},
		{"UPDATE t SET a = 1 WHERE b", MySQL, "UPDATE", "UPDATE", false},
		{"TRUNCATE t", Postgres, "TRUNCATE", "TRUNCATE", false},
		{"(SELECT 1) UNION (SELECT 2)", Postgres, "SELECT", "SELECT", false},
		{"WITH a AS (SELECT 1), b(x) AS (SELECT 2) DELETE FROM t", Postgres, "DELETE", "DELETE", true},
		{"WITH RECURSIVE r(n) AS NOT MATERIALIZED (SELECT 1) SELECT * FROM r", Postgres, "SELECT", "SELECT", false},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", Postgres, "DELETE", "DELETE,SELECT", true},
		{"WITH d AS (DELETE FROM t WHERE x RETURNING *) SELECT * FROM d", Postgres, "DELETE", "DELETE,SELECT", false},
		{"BEGIN; DROP TABLE t; COMMIT", Postgres, "DROP", "BEGIN,DROP,COMMIT", false},
		{"SELECT ';DROP'; ", Postgres, "SELECT", "SELECT", false},
		{"SELECT $$;DROP$$", Postgres, "SELECT", "SELECT", false},
		{"/*!50000 DROP TABLE t */", MySQL, "DROP", "DROP", false},
		{"/*!50000 DROP TABLE t */", Postgres, "EMPTY", "", false},
		{"# c\nSHOW TABLES", MySQL, "SHOW", "SHOW", false},
		{"", Postgres, "EMPTY", "", false},
		{" ; ;", Postgres, "EMPTY", "", false},
		{"42", Postgres, "UNKNOWN", "UNKNOWN", false},
		{"EXPLAIN SELECT 1", Postgres, "EXPLAIN", "EXPLAIN", false},
		{"EXPLAIN DELETE FROM t", Postgres, "EXPLAIN", "EXPLAIN", false},
		{"EXPLAIN ANALYZE DELETE FROM t", Postgres, "DELETE", "EXPLAIN,DELETE", true},
		{"explain (analyze, buffers) update t set a = 1 where b", Postgres, "UPDATE", "EXPLAIN,UPDATE", false},
		{"EXPLAIN ANALYZE VERBOSE WITH d AS (SELECT 1) DELETE FROM t", Postgres, "DELETE", "EXPLAIN,DELETE", true},
		{"ANALYZE DELETE FROM t", MySQL, "DELETE", "ANALYZE,DELETE", true},
		{"ANALYZE TABLE t", MySQL, "ANALYZE", "ANALYZE", false},
		{"ANALYZE t", Postgres, "ANALYZE", "ANALYZE", false},
		{"PREPARE p (int) AS DELETE FROM t", Postgres, "DELETE", "PREPARE,DELETE", true},
		{"PREPARE p FROM 'DROP TABLE t'", MySQL, "DROP", "PREPARE,DROP", false},
		{`PREPARE p FROM "SELECT 'a'; UPDATE t SET a = 1"`, MySQL, "UPDATE", "PREPARE,SELECT,UPDATE", true},
		{"PREPARE p FROM @sql", MySQL, "PREPARE", "PREPARE", false},
		{`PREPARE p FROM 'PREPARE q FROM ''DROP TABLE t'''`, MySQL, "PREPARE", "PREPARE,PREPARE", false},
		{"WITH", Postgres, "WITH", "WITH", false},
		{"SELECT 'unterminated", Postgres, "SELECT", "SELECT", false},
	}
	for _, tt := range tests {
		in := Classify(tt.text, tt.d)
		if in.Kind() != tt.kind || in.Kinds() != tt.kinds || in.NoWhere() != tt.noWhere {
			t.Errorf("Classify(%q) = %s [%s] nowhere=%v; want %s [%s] nowhere=%v",
				tt.text, in.Kind(), in.Kinds(), in.NoWhere(), tt.kind, tt.kinds, tt.noWhere)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		text, want string
		d          Dialect
	}{
		{"SELECT * FROM t WHERE a = 'x''y' AND b = 42", "SELECT * FROM t WHERE a = ? AND b = ?", Postgres},
		{"select 1.5e10, .5, 0x1F, 1_000", "select ?, ?, ?, ?", Postgres},
		{"SELECT E'a\\'b', B'101', X'ff', U&'d\\0061t'", "SELECT ?, ?, ?, ?", Postgres},
		{"SELECT $tag$ it's $$ $tag$, $$x$$, $1", "SELECT ?, ?, $1", Postgres},
		{`SELECT "col" FROM t1 WHERE c2 = 'v'`, `SELECT "col" FROM t1 WHERE c2 = ?`, Postgres},
		{`SELECT "str", 'a\'b', x'0A', 0xff FROM ` + "`t`", "SELECT ?, ?, ?, ? FROM `t`", MySQL},
		{"INSERT INTO t VALUES (1,'a'),(2,'b')", "INSERT INTO t VALUES (?,?),(?,?)", MySQL},
		{"SELECT a--1\n", "SELECT a--?\n", MySQL},
		{"SELECT 1 -- 'c'\n", "SELECT ? -- 'c'\n", Postgres},
		{"SELECT 'open", "SELECT ?", Postgres},
		{"SELECT ? FROM t", "SELECT ? FROM t", MySQL},
	}
	for _, tt := range tests {
		if got := Redact(tt.text, tt.d); got != tt.want {
			t.Errorf("Redact(%q) = %q; want %q", tt.text, got, tt.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},
		{"a\xffb", 10, "a\uFFFDb"},
	}
	for _, tt := range tests {
		if got := Truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q; want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "WITH a AS (DELETE FROM t) SELECT 1", "/*!5 DROP */", "$a$ $a", "E'\\", "'", "0x", "U&'", "SET PASSWORD FOR 'u'@'h' = 'p'", "ALTER USER u IDENTIFIED WITH p BY 'x'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range []Dialect{Postgres, MySQL} {
			in := Classify(s, d)
			_ = in.Kind()
			r := Redact(s, d)
			if len(r) > len(s) {
				t.Fatalf("Redact(%q) = %q is longer than its input", s, r)
			}
			if m := MaskSecrets(s, d); len(m) > len(s) {
				t.Fatalf("MaskSecrets(%q) = %q is longer than its input", s, m)
			}
			if tr := Truncate(s, 100); len(tr) > 100 || !utf8.ValidString(tr) {
				t.Fatalf("Truncate(%q) = %q", s, tr)
			}
			if strings.Contains(s, "'") && d == Postgres && !strings.Contains(s, "--") && !strings.Contains(s, "/*") && !strings.Contains(s, "$") && !strings.Contains(s, `"`) && !strings.ContainsAny(s, "eEbBxXnNuU") && strings.Contains(r, "'") {
				t.Fatalf("Redact(%q) = %q kept a quote", s, r)
			}
		}
	})
}

func TestAddAttrs(t *testing.T) {
	tests := []struct {
		text string
		want map[string]string
	}{
		{"SELECT 1", map[string]string{}},
		{"DELETE FROM t", map[string]string{"sql_where": "false"}},
		{"SELECT 1; UPDATE t SET a = 1", map[string]string{"sql_kinds": "SELECT,UPDATE", "sql_where": "false"}},
	}
	for _, tt := range tests {
		got := map[string]string{}
		Classify(tt.text, Postgres).AddAttrs(got)
		if !maps.Equal(got, tt.want) {
			t.Errorf("%q: %v; want %v", tt.text, got, tt.want)
		}
	}
}

// TestMaskSecrets: the literal that sets a password is masked in every
// form the dialects have; other literals stay.
func TestMaskSecrets(t *testing.T) {
	tests := []struct {
		text string
		d    Dialect
		want string
	}{
		{"ALTER ROLE bob PASSWORD 's3cret'", Postgres, "ALTER ROLE bob PASSWORD ?"},
		{"alter role bob with encrypted password 'x' valid until '2030-01-01'", Postgres, "alter role bob with encrypted password ? valid until '2030-01-01'"},
		{"CREATE USER u WITH PASSWORD E'it\\'s'", Postgres, "CREATE USER u WITH PASSWORD ?"},
		{"CREATE ROLE r LOGIN PASSWORD $$pw$$", Postgres, "CREATE ROLE r LOGIN PASSWORD ?"},
		{"ALTER ROLE r PASSWORD NULL", Postgres, "ALTER ROLE r PASSWORD NULL"},
		{"CREATE USER 'u'@'%' IDENTIFIED BY 'pw'", MySQL, "CREATE USER 'u'@'%' IDENTIFIED BY ?"},
		{"ALTER USER u IDENTIFIED WITH mysql_native_password BY \"pw\"", MySQL, "ALTER USER u IDENTIFIED WITH mysql_native_password BY ?"},
		{"CREATE USER u IDENTIFIED WITH caching_sha2_password AS '$A$005$x'", MySQL, "CREATE USER u IDENTIFIED WITH caching_sha2_password AS ?"},
		{"GRANT ALL ON db.* TO u IDENTIFIED BY PASSWORD '*ABC'", MySQL, "GRANT ALL ON db.* TO u IDENTIFIED BY PASSWORD ?"},
		{"SET PASSWORD = 'pw'", MySQL, "SET PASSWORD = ?"},
		{"SET PASSWORD = PASSWORD('pw')", MySQL, "SET PASSWORD = PASSWORD(?)"},
		{"SET PASSWORD FOR 'u'@'h' = 'pw'", MySQL, "SET PASSWORD FOR 'u'@'h' = ?"},
		{"SELECT 'a' AS b; ALTER USER u IDENTIFIED BY 'pw'; SELECT 'c' AS d", MySQL, "SELECT 'a' AS b; ALTER USER u IDENTIFIED BY ?; SELECT 'c' AS d"},
		{"SELECT 'x' AS password", Postgres, "SELECT 'x' AS password"},
		{"SELECT 1 AS n, 'y'", Postgres, "SELECT 1 AS n, 'y'"},
		{"ALTER ROLE bob PASSWORD", Postgres, "ALTER ROLE bob PASSWORD"},
		{"", Postgres, ""},
	}
	for _, tt := range tests {
		if got := MaskSecrets(tt.text, tt.d); got != tt.want {
			t.Errorf("MaskSecrets(%q) = %q; want %q", tt.text, got, tt.want)
		}
	}
}

func TestRecord(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		redact bool
		max    int
		want   string
	}{
		{"redacted", "SELECT * FROM t WHERE id = 42 AND name = 'bob'", true, 100, "SELECT * FROM t WHERE id = ? AND name = ?"},
		{"kept", "SELECT * FROM t WHERE id = 42", false, 100, "SELECT * FROM t WHERE id = 42"},
		{"password masked without redact", "ALTER ROLE app PASSWORD 'hunter2'", false, 100, "ALTER ROLE app PASSWORD ?"},
		{"cut", "SELECT 1234567890", false, 8, "SELECT 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Record(tt.text, Postgres, tt.redact, tt.max); got != tt.want {
				t.Errorf("Record(%q, redact %v, %d) = %q; want %q", tt.text, tt.redact, tt.max, got, tt.want)
			}
		})
	}
}
