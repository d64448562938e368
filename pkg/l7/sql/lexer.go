package sql

import "strings"

type tokType uint8

const (
	tEOF     tokType = iota
	tWord            // keyword or bare identifier
	tLiteral         // string, number, hex, bit, dollar-quoted string
	tSemi            // ;
	tOpen            // (
	tClose           // )
	tOther           // operator, quoted identifier, parameter
)

type token struct {
	typ        tokType
	start, end int // byte offsets in the source
	text       string
}

// lexer walks SQL text token by token. It never fails: an unterminated
// string or comment runs to the end of the text.
type lexer struct {
	src  string
	pos  int
	d    Dialect
	exec bool   // inside a MySQL /*! ... */ comment, whose text is code
	back *token // a token pushed back by unread
}

func (lx *lexer) unread(t token) { lx.back = &t }

func isWordStart(c byte) bool {
	return c == '_' || c >= 0x80 || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func isWordByte(c byte) bool {
	return isWordStart(c) || c == '$' || isDigit(c)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func (lx *lexer) next() token {
	if lx.back != nil {
		t := *lx.back
		lx.back = nil
		return t
	}
	s := lx.src
	for {
		// Skip whitespace and comments.
		for lx.pos < len(s) && isSpace(s[lx.pos]) {
			lx.pos++
		}
		if lx.pos >= len(s) {
			return token{typ: tEOF, start: len(s), end: len(s)}
		}
		c := s[lx.pos]
		rest := s[lx.pos:]
		switch {
		case strings.HasPrefix(rest, "--") && lx.dashComment(rest):
			lx.skipLine()
			continue
		case c == '#' && lx.d == MySQL:
			lx.skipLine()
			continue
		case lx.exec && strings.HasPrefix(rest, "*/"):
			lx.exec = false
			lx.pos += 2
			continue
		case strings.HasPrefix(rest, "/*"):
			if lx.d == MySQL && (strings.HasPrefix(rest, "/*!") || strings.HasPrefix(rest, "/*M!")) {
				// Executable comment: its text runs on servers newer
				// than the optional version number, so lex it as code.
				lx.pos += strings.IndexByte(rest, '!') + 1
				for lx.pos < len(s) && isDigit(s[lx.pos]) {
					lx.pos++
				}
				lx.exec = true
				continue
			}
			lx.skipBlockComment()
			continue
		}
		break
	}
	start := lx.pos
	c := s[start]
	tok := func(typ tokType) token {
		return token{typ: typ, start: start, end: lx.pos, text: s[start:lx.pos]}
	}
	switch {
	case c == ';':
		lx.pos++
		return tok(tSemi)
	case c == '(':
		lx.pos++
		return tok(tOpen)
	case c == ')':
		lx.pos++
		return tok(tClose)
	case c == '\'':
		lx.pos++
		lx.skipQuoted('\'', lx.d == MySQL)
		return tok(tLiteral)
	case c == '"':
		lx.pos++
		if lx.d == MySQL {
			lx.skipQuoted('"', true)
			return tok(tLiteral)
		}
		lx.skipQuoted('"', false)
		return tok(tOther)
	case c == '`' && lx.d == MySQL:
		lx.pos++
		lx.skipQuoted('`', false)
		return tok(tOther)
	case c == '$' && lx.d == Postgres:
		return lx.dollar()
	case isDigit(c) || c == '.' && start+1 < len(s) && isDigit(s[start+1]):
		lx.number()
		return tok(tLiteral)
	case isWordStart(c):
		for lx.pos < len(s) && isWordByte(s[lx.pos]) {
			lx.pos++
		}
		// A one-letter prefix glued to a quote makes a literal: E'..',
		// B'..', X'..', N'..'; U&'..' in PostgreSQL.
		if lx.pos < len(s) && s[lx.pos] == '\'' && lx.pos-start == 1 {
			switch c | 0x20 {
			case 'e', 'b', 'x', 'n':
				lx.pos++
				lx.skipQuoted('\'', c|0x20 == 'e' || lx.d == MySQL)
				return tok(tLiteral)
			}
		}
		if lx.d == Postgres && lx.pos-start == 1 && (c|0x20) == 'u' && strings.HasPrefix(s[lx.pos:], "&'") {
			lx.pos += 2
			lx.skipQuoted('\'', false)
			return tok(tLiteral)
		}
		return tok(tWord)
	}
	lx.pos++
	return tok(tOther)
}

// dashComment reports whether "--" at the start of rest opens a comment.
// MySQL needs a space or control character after the dashes.
func (lx *lexer) dashComment(rest string) bool {
	if lx.d != MySQL {
		return true
	}
	return len(rest) == 2 || rest[2] <= ' '
}

func (lx *lexer) skipLine() {
	i := strings.IndexByte(lx.src[lx.pos:], '\n')
	if i < 0 {
		lx.pos = len(lx.src)
		return
	}
	lx.pos += i + 1
}

// skipBlockComment skips a /* */ comment; PostgreSQL nests them.
func (lx *lexer) skipBlockComment() {
	s := lx.src
	lx.pos += 2
	depth := 1
	for lx.pos < len(s) {
		switch {
		case strings.HasPrefix(s[lx.pos:], "*/"):
			lx.pos += 2
			depth--
			if depth == 0 || lx.d == MySQL {
				return
			}
		case lx.d == Postgres && strings.HasPrefix(s[lx.pos:], "/*"):
			lx.pos += 2
			depth++
		default:
			lx.pos++
		}
	}
}

// skipQuoted skips to after the closing quote q; a doubled quote is an
// escaped quote, and so is a backslash-escaped character when backslash is
// true.
func (lx *lexer) skipQuoted(q byte, backslash bool) {
	s := lx.src
	for lx.pos < len(s) {
		c := s[lx.pos]
		switch {
		case c == '\\' && backslash:
			lx.pos += 2
		case c == q:
			lx.pos++
			if lx.pos < len(s) && s[lx.pos] == q {
				lx.pos++
				continue
			}
			return
		default:
			lx.pos++
		}
	}
	lx.pos = len(s)
}

// dollar lexes what starts with "$" in PostgreSQL: a parameter ($1), a
// dollar-quoted string ($$...$$, $tag$...$tag$), or a lone "$".
func (lx *lexer) dollar() token {
	s := lx.src
	start := lx.pos
	i := start + 1
	if i < len(s) && isDigit(s[i]) {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		lx.pos = i
		return token{typ: tOther, start: start, end: i, text: s[start:i]}
	}
	for i < len(s) && s[i] != '$' && (isWordStart(s[i]) || i > start+1 && isDigit(s[i])) {
		i++
	}
	if i >= len(s) || s[i] != '$' {
		lx.pos = start + 1
		return token{typ: tOther, start: start, end: start + 1, text: "$"}
	}
	tag := s[start : i+1]
	end := strings.Index(s[i+1:], tag)
	if end < 0 {
		lx.pos = len(s)
	} else {
		lx.pos = i + 1 + end + len(tag)
	}
	return token{typ: tLiteral, start: start, end: lx.pos, text: s[start:lx.pos]}
}

// number lexes a decimal, float, or 0x/0b/0o number (with _ separators).
func (lx *lexer) number() {
	s := lx.src
	i := lx.pos
	if s[i] == '0' && i+1 < len(s) && strings.IndexByte("xXbBoO", s[i+1]) >= 0 {
		i += 2
		for i < len(s) && (isDigit(s[i]) || s[i] == '_' || (s[i]|0x20) >= 'a' && (s[i]|0x20) <= 'f') {
			i++
		}
		lx.pos = i
		return
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
			i++
		}
	}
	if i < len(s) && (s[i]|0x20) == 'e' {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			i = j
		}
	}
	lx.pos = i
}
