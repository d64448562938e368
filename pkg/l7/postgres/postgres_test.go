package postgres

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// summary renders requests and responses in one line each.
func summary(res capture.Result) []string {
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
	for _, name := range []string{"psql", "extended"} {
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
