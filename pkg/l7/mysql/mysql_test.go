package mysql

import (
	"flag"
	"fmt"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

var update = flag.Bool("update", false, "rewrite testdata/*.want from the parser's output")

// summary renders requests and responses in one line each.
func summary(res l7test.Result) []string {
	var out []string
	for _, r := range res.Requests {
		s := r.Kind
		if r.Text != "" {
			s += " " + r.Text
		}
		keys := []string{"sql_kinds", "sql_where", "statement_id", "query_attributes"}
		if r.Kind == "STARTUP" || r.Kind == "CHANGE_USER" {
			keys = []string{"user", "database", "application_name", "server_version"}
		}
		for _, k := range keys {
			if v, ok := r.Attrs[k]; ok {
				s += fmt.Sprintf(" %s=%s", k, v)
			}
		}
		if r.Target != "" {
			s += " target=" + r.Target
		}
		out = append(out, s)
	}
	for _, r := range res.Responses {
		s := "-> " + r.Status
		if r.Error != "" {
			s += " " + r.Error
		}
		for _, k := range []string{"rows", "affected_rows", "errno", "sqlstate"} {
			if v, ok := r.Attrs[k]; ok {
				s += fmt.Sprintf(" %s=%s", k, v)
			}
		}
		out = append(out, s)
	}
	return out
}

// TestCaptures replays conversations of real clients with a real server
// (recorded by TestRecordCaptures) whole, byte by byte and in odd pieces,
// and compares the requests and responses found with testdata/*.want.
func TestCaptures(t *testing.T) {
	l7test.ReplayCaptures(t, []string{"mariadb", "prepared"}, func() l7.Parser { return New(l7.DefaultOptions()) }, summary, *update)
}
