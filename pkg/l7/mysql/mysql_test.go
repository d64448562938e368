package mysql

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

var update = flag.Bool("update", false, "rewrite testdata/*.want from the parser's output")

// summary renders requests and responses in one line each.
func summary(res capture.Result) []string {
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
	for _, name := range []string{"mariadb", "prepared"} {
		t.Run(name, func(t *testing.T) {
			chunks, err := capture.Read("testdata/" + name + ".cap")
			if err != nil {
				t.Fatal(err)
			}
			var first []string
			for _, step := range []int{0, 1, 3, 1000} {
				res, err := capture.Replay(New(l7.DefaultOptions()), chunks, step)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				got := summary(res)
				if first == nil {
					first = got
					golden(t, "testdata/"+name+".want", strings.Join(got, "\n")+"\n")
				} else if strings.Join(got, "\n") != strings.Join(first, "\n") {
					t.Errorf("step %d: got\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(first, "\n"))
				}
			}
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("got\n%s\nwant (%s)\n%s", got, path, want)
	}
}
