package postgres

import (
	"flag"
	"fmt"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// summary renders requests and responses in one line each.
func summary(res l7test.Result) []string {
	var out []string
	for _, r := range res.Requests {
		s := r.Kind
		if r.Text != "" {
			s += " " + r.Text
		}
		for _, k := range []string{"sql_kinds", "sql_where", "executes", "statement", "user", "database", "application_name"} {
			if v, ok := r.Attrs[k]; ok && (r.Kind == "STARTUP" || (k != "user" && k != "database" && k != "application_name")) {
				s += fmt.Sprintf(" %s=%s", k, v)
			}
		}
		out = append(out, s)
	}
	for _, r := range res.Responses {
		s := "-> " + r.Status
		if r.Error != "" {
			s += " " + r.Error
		}
		if r.Attrs["tag"] != "" {
			s += " tag=" + r.Attrs["tag"]
		}
		if r.Attrs["sqlstate"] != "" {
			s += " sqlstate=" + r.Attrs["sqlstate"]
		}
		out = append(out, s)
	}
	return out
}

var update = flag.Bool("update", false, "rewrite testdata/*.want from the parser's output")

// TestCaptures replays conversations of real clients with a real server
// (recorded by TestRecordCaptures) whole, byte by byte and in odd pieces,
// and compares the requests and responses found with testdata/*.want.
func TestCaptures(t *testing.T) {
	l7test.ReplayCaptures(t, []string{"psql", "extended"}, func() l7.Parser { return New(l7.DefaultOptions()) }, summary, *update)
}
