package policy

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong (or suspicious) in a policy file, with where it
// is and how to fix it.
type Problem struct {
	File    string `json:"file"`              // file name as given to Load or Parse
	Line    int    `json:"line,omitempty"`    // 1-based; 0 when the problem is about the whole file
	Col     int    `json:"col,omitempty"`     // 1-based; 0 when unknown
	Field   string `json:"field,omitempty"`   // path of the field, e.g. "rules[2].match.dst.cidr"; "" for the file
	Msg     string `json:"msg"`               // what is wrong
	Hint    string `json:"hint,omitempty"`    // how to fix it; may be empty
	Warning bool   `json:"warning,omitempty"` // the policy still loads, but probably does not do what was meant
}

// String formats p as "file:line:col: [warning: ]field: msg (hint)".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Hint != "" {
		b.WriteString(" (")
		b.WriteString(p.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// ValidationError is returned by Load and Parse when a policy file has at
// least one error. Problems holds every error and warning found, in file
// order, so that all of them can be fixed in one pass.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Errors returns how many of e.Problems are errors (not warnings).
func (e *ValidationError) Errors() int {
	n := 0
	for _, p := range e.Problems {
		if !p.Warning {
			n++
		}
	}
	return n
}
