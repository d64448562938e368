// Package sql classifies SQL statement text for the audit log and the
// guardrails, and masks its literals. It is a lexer, not a parser: it knows
// where comments, quoted strings and identifiers start and end in the
// PostgreSQL and MySQL dialects, which is enough to find the keyword that
// names each statement, to tell a DELETE or UPDATE without a WHERE clause,
// and to replace every literal with "?". A full grammar would be more
// precise but would refuse the many dialect extensions clients send; a
// lexer never refuses anything, so a guardrail cannot be skipped by
// sending text it fails to parse.
package sql

import (
	"strings"
	"unicode/utf8"
)

// Dialect selects the lexical rules that differ between servers.
type Dialect uint8

const (
	// Postgres: "..." quotes identifiers, $tag$...$tag$ and E'...' are
	// strings, $1 is a parameter.
	Postgres Dialect = iota
	// MySQL (and MariaDB): "..." is a string, `...` quotes identifiers,
	// backslash escapes in strings, # starts a comment, and /*! ... */ is
	// executed, not ignored.
	MySQL
)

// Statement describes one statement of a possibly multi-statement text.
type Statement struct {
	// Kind is the statement's first keyword in upper case ("SELECT",
	// "DROP"), after comments, parentheses and a WITH clause. It is
	// "UNKNOWN" when the statement does not start with a keyword.
	Kind string
	// NoWhere is true for a DELETE or UPDATE with no WHERE clause at the
	// top level: the statement touches every row.
	NoWhere bool
}

// Info is what Classify found in a text.
type Info struct {
	// Statements are the statements in order, empty ones left out. A
	// data-modifying statement inside a WITH clause (PostgreSQL allows
	// "WITH d AS (DELETE FROM t) SELECT ...") is listed right before the
	// statement that contains it, because it runs too.
	Statements []Statement
}

// Kind is the kind to record for the whole text: the first statement's
// kind that is not a read or transaction control, else the first kind, or
// "EMPTY" for text with no statement. Guardrails that must see every kind
// use Kinds.
func (in Info) Kind() string {
	if len(in.Statements) == 0 {
		return "EMPTY"
	}
	for _, s := range in.Statements {
		if !benign[s.Kind] {
			return s.Kind
		}
	}
	return in.Statements[0].Kind
}

// Kinds lists the kind of every statement, comma separated, in order.
func (in Info) Kinds() string {
	ks := make([]string, len(in.Statements))
	for i, s := range in.Statements {
		ks[i] = s.Kind
	}
	return strings.Join(ks, ",")
}

// NoWhere reports whether any statement is a DELETE or UPDATE without WHERE.
func (in Info) NoWhere() bool {
	for _, s := range in.Statements {
		if s.NoWhere {
			return true
		}
	}
	return false
}

// AddAttrs records in a request's attributes what a policy may match
// beyond the kind: sql_kinds (every kind, when there are several
// statements) and sql_where=false (a DELETE or UPDATE without WHERE).
// The attribute names are the same for every SQL protocol.
func (in Info) AddAttrs(attrs map[string]string) {
	if len(in.Statements) > 1 {
		attrs["sql_kinds"] = in.Kinds()
	}
	if in.NoWhere() {
		attrs["sql_where"] = "false"
	}
}

// benign kinds neither change data nor schema; Info.Kind looks past them so
// that "BEGIN; DROP TABLE t" is recorded as a DROP.
var benign = map[string]bool{
	"SELECT": true, "SHOW": true, "SET": true, "BEGIN": true, "START": true,
	"COMMIT": true, "ROLLBACK": true, "END": true, "VALUES": true, "TABLE": true,
	"EXPLAIN": true, "DESCRIBE": true, "DESC": true, "USE": true, "SAVEPOINT": true,
	"RELEASE": true, "FETCH": true, "DECLARE": true, "CLOSE": true, "DISCARD": true,
	"RESET": true, "ANALYZE": true, "LISTEN": true, "UNLISTEN": true, "PREPARE": true, "DEALLOCATE": true,
}

// explained are the statements EXPLAIN can run.
var explained = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true, "REPLACE": true,
	"VALUES": true, "TABLE": true, "WITH": true, "EXECUTE": true, "CREATE": true, "DECLARE": true,
}

// Classify splits text into statements at top-level semicolons and names
// each one.
func Classify(text string, d Dialect) Info { return classify(text, d, false) }

// classify is Classify; nested is true for the text of a MySQL PREPARE,
// whose own PREPAREs are not looked into (one level bounds the work).
func classify(text string, d Dialect, nested bool) Info {
	var in Info
	lx := lexer{src: text, d: d}
	var (
		first     = true // next word is the statement's first keyword
		explain   uint8  // 1 after EXPLAIN, 2 after MySQL's ANALYZE: the explained statement is to come
		analyze   bool   // the explained statement runs (EXPLAIN ANALYZE)
		prepare   bool   // after PREPARE: the prepared statement is to come
		kind      string // current statement's kind
		depth     int    // parenthesis depth
		where     bool   // WHERE seen at depth 0
		inWith    bool   // between WITH and the main keyword
		afterAS   bool   // in a WITH clause, after "AS": next "(" opens a CTE body
		cteDepth  = -1   // depth of the CTE body being read, -1 if none
		cteFirst  bool   // next word is the CTE body's first keyword
		prevClose bool   // previous token was ")" at depth 0
		pending   []Statement
	)
	flush := func() {
		if kind == "" && inWith {
			kind = "WITH"
		}
		if kind != "" {
			in.Statements = append(in.Statements, pending...)
			in.Statements = append(in.Statements, Statement{
				Kind:    kind,
				NoWhere: (kind == "DELETE" || kind == "UPDATE") && !where,
			})
		} else if len(pending) > 0 {
			in.Statements = append(in.Statements, pending...)
		}
		explain, analyze, prepare = 0, false, false
		first, kind, depth, where, inWith, afterAS, cteDepth, cteFirst, prevClose, pending =
			true, "", 0, false, false, false, -1, false, false, nil
	}
	for {
		t := lx.next()
		switch t.typ {
		case tEOF:
			flush()
			return in
		case tSemi:
			if depth == 0 {
				flush()
				continue
			}
		case tOpen:
			depth++
			if inWith && afterAS {
				cteDepth, cteFirst, afterAS = depth, true, false
			}
			prevClose = false
			continue
		case tClose:
			if depth > 0 {
				depth--
			}
			if depth < cteDepth {
				cteDepth = -1
			}
			prevClose = depth == 0
			continue
		case tWord:
			// Upper-case only the words that name a statement: most
			// words of a statement are looked at for nothing.
			switch {
			case first:
				first = false
				w := strings.ToUpper(t.text)
				switch {
				case w == "WITH":
					inWith = true
					continue
				case w == "EXPLAIN":
					explain = 1
				case w == "ANALYZE" && d == MySQL:
					// MariaDB's ANALYZE <statement> runs it.
					explain, analyze = 2, true
				case w == "PREPARE":
					prepare = true
				}
				kind = w
			case prepare && depth == 0:
				// PREPARE name AS <statement> (PostgreSQL): the
				// statement EXECUTE will run is listed with its kind.
				if strings.EqualFold(t.text, "AS") {
					explain, analyze, prepare = 1, true, false
				}
			case explain != 0:
				// EXPLAIN ANALYZE runs the statement it explains: it is
				// recorded under that statement's kind.
				w := strings.ToUpper(t.text)
				if w == "ANALYZE" || w == "ANALYSE" {
					analyze = true
					break
				}
				if depth > 0 || !explained[w] || explain == 2 && w == "TABLE" {
					if depth == 0 && explain == 2 {
						explain = 0 // ANALYZE TABLE: maintenance
					}
					break
				}
				explain = 0
				if analyze {
					pending = append(pending, Statement{Kind: kind})
					kind = w
					if w == "WITH" {
						kind, inWith = "", true
					}
				}
			case inWith && depth == 0:
				switch {
				case strings.EqualFold(t.text, "AS"):
					afterAS = true
				case prevClose:
					inWith, afterAS = false, false
					kind = strings.ToUpper(t.text)
				}
			case cteFirst:
				cteFirst = false
				w := strings.ToUpper(t.text)
				if w == "INSERT" || w == "UPDATE" || w == "DELETE" || w == "MERGE" {
					pending = append(pending, Statement{Kind: w, NoWhere: w != "INSERT" && w != "MERGE" && !cteWhere(&lx, depth)})
				}
			case depth == 0 && len(t.text) == 5 && strings.EqualFold(t.text, "WHERE"):
				where = true
			}
			prevClose = false
			continue
		}
		if prepare && !nested && t.typ == tLiteral && d == MySQL && len(t.text) >= 2 && (t.text[0] == '\'' || t.text[0] == '"') {
			// PREPARE name FROM 'text' (MySQL): the statements in the
			// text are listed with their kinds.
			prepare = false
			q := t.text[0]
			inner := strings.NewReplacer(`\`+string(q), string(q), string(q)+string(q), string(q)).Replace(strings.Trim(t.text, string(q)))
			pending = append(pending, Statement{Kind: "PREPARE"})
			pending = append(pending, classify(inner, d, true).Statements...)
			kind = ""
		}
		if first && t.typ != tSemi {
			// A statement that starts with something other than a
			// keyword (a bare literal, an operator).
			first = false
			kind = "UNKNOWN"
		}
		prevClose = false
	}
}

// cteWhere reads the rest of a data-modifying CTE body that started at
// depth and reports whether it had a WHERE at its own level. It leaves the
// lexer after the body's closing parenthesis.
func cteWhere(lx *lexer, depth int) bool {
	where := false
	d := depth
	for {
		t := lx.next()
		switch t.typ {
		case tEOF:
			return where
		case tOpen:
			d++
		case tClose:
			d--
			if d < depth {
				lx.unread(t)
				return where
			}
		case tWord:
			if d == depth && strings.EqualFold(t.text, "WHERE") {
				where = true
			}
		}
	}
}

// Redact returns text with every literal (quoted string, number, dollar-
// quoted string, hex, bit and escape string) replaced by "?". Comments,
// identifiers, keywords and parameters ($1, ?) are kept.
func Redact(text string, d Dialect) string {
	var b strings.Builder
	b.Grow(len(text))
	lx := lexer{src: text, d: d}
	last := 0
	for {
		t := lx.next()
		if t.typ == tEOF {
			break
		}
		if t.typ == tLiteral {
			b.WriteString(text[last:t.start])
			b.WriteByte('?')
			last = t.end
		}
	}
	b.WriteString(text[last:])
	return b.String()
}

// MaskSecrets returns text with the literals that set a password replaced
// by "?", whether or not the rest is redacted: the literal after PASSWORD
// (ALTER ROLE .. PASSWORD '..', PASSWORD('..')), after IDENTIFIED BY or
// IDENTIFIED WITH plugin BY|AS, and after the "=" of SET PASSWORD FOR
// user = '..'. A statement with none is returned as it is.
func MaskSecrets(text string, d Dialect) string {
	var b strings.Builder
	lx := lexer{src: text, d: d}
	last := 0
	const (
		idle  = iota
		armed // the next literal is a secret
		toEq  // PASSWORD FOR user: the secret follows the next "="
	)
	state, identified := idle, false
	for {
		t := lx.next()
		if t.typ == tEOF {
			break
		}
		switch t.typ {
		case tSemi:
			state, identified = idle, false
		case tLiteral:
			if state == armed {
				if b.Len() == 0 {
					b.Grow(len(text))
				}
				b.WriteString(text[last:t.start])
				b.WriteByte('?')
				last = t.end
				state = idle
			}
		case tWord:
			switch w := strings.ToUpper(t.text); {
			case w == "PASSWORD":
				state = armed
			case w == "IDENTIFIED":
				identified, state = true, idle
			case identified && (w == "BY" || w == "AS"):
				state = armed
			case w == "FOR" && state == armed:
				state = toEq
			case state == armed:
				state = idle
			}
		case tOther:
			if state == toEq && t.text == "=" {
				state = armed
			}
		}
	}
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// Record returns SQL text as it may go into an audit entry: every literal
// masked when redact is set, the literals that set a password masked
// always, and the result cut to at most max bytes. Both SQL parsers use
// it, so what is kept out of the log is decided in one place.
func Record(text string, d Dialect, redact bool, max int) string {
	if redact {
		text = Redact(text, d)
	} else {
		text = MaskSecrets(text, d)
	}
	return Truncate(text, max)
}

// Truncate cuts s to at most n bytes on a rune boundary and replaces
// invalid UTF-8, so the result is safe to log.
func Truncate(s string, n int) string {
	if len(s) > n {
		i := n
		for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
			i--
		}
		// A copy, so a short text does not keep a long one's memory.
		s = strings.Clone(s[:i])
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if len(s) > n {
			return Truncate(s, n)
		}
	}
	return s
}
