//go:build linux

package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/detect"
	l7http "github.com/vigil-ebpf/vigil/pkg/l7/http"
)

// nameless allows a connection whose name is unknown by its address (a
// CIDR rule, as docs/POLICY.md recommends beside name rules) and decides
// the rest as hostDecider does.
type nameless struct{ *hostDecider }

func (d nameless) Decide(ctx context.Context, c *Conn) Decision {
	dec := d.hostDecider.Decide(ctx, c)
	if c.Name == "" {
		return Decision{Verdict: auditlog.Allow, Rule: "by-cidr", L7: d.rules}
	}
	return dec
}

// TestL7HostAttacks: requests shaped so that the proxy and the server
// could read different names, or so that the parser would stop checking,
// never reach the server under a name the policy denies: each is refused
// (403) or its connection reset.
func TestL7HostAttacks(t *testing.T) {
	type write struct {
		data    string
		answers int // responses to read before the next write
	}
	tests := []struct {
		name     string
		guard    Guard
		nameless bool
		writes   []write
	}{
		{
			// A server that ignores an Upgrade goes on with HTTP; so must
			// the parser, with every check.
			name:  "upgrade the server ignores",
			guard: verbGuard{"DELETE": true},
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\nConnection: upgrade\r\nUpgrade: nothing\r\n\r\n", 1},
				{"GET /1 HTTP/1.1\r\nHost: denied.example\r\n\r\n", 1},
			},
		},
		{
			name:  "upgrade the server ignores, then a guarded method",
			guard: verbGuard{"DELETE": true},
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\nConnection: upgrade\r\nUpgrade: nothing\r\n\r\n", 1},
				{"DELETE /denied.example HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 1},
			},
		},
		{
			name: "requests pipelined behind an upgrade",
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\nConnection: upgrade\r\nUpgrade: nothing\r\n\r\nGET /1 HTTP/1.1\r\nHost: denied.example\r\n\r\n", 2},
			},
		},
		{
			name:     "absolute form without authority",
			nameless: true,
			writes:   []write{{"GET http:///x HTTP/1.1\r\nHost: denied.example\r\n\r\n", 1}},
		},
		{
			name: "absolute form against the Host",
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 1},
				{"GET http://allowed.example/1 HTTP/1.1\r\nHost: denied.example\r\n\r\n", 1},
			},
		},
		{
			name: "a port that is not one",
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 1},
				{"GET /1 HTTP/1.1\r\nHost: allowed.example:80@denied.example\r\n\r\n", 1},
			},
		},
		{
			// Without guardrails, a parse error used to switch the
			// connection to plain bytes, and with it the Host checks.
			name: "bare LF after a good request",
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 1},
				{"GET /1 HTTP/1.1\nHost: denied.example\n\n", 1},
			},
		},
		{
			name: "a bad request, then a denied name",
			writes: []write{
				{"GET /0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n", 1},
				{"GET /1 HTTP/1.1\r\nHost: allowed.example\r\nHost: allowed.example\r\n\r\nGET /2 HTTP/1.1\r\nHost: denied.example\r\n\r\n", 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen syncLines
			dst := hostServer(t, &seen)
			hd := &hostDecider{rules: &L7Rules{Guard: tt.guard}}
			var d Decider = hd
			if tt.nameless {
				d = nameless{hd}
			}
			e := newEnv(t, func(c *Config) {
				c.Decider = d
				c.L7 = L7Config{
					Parsers:      map[string]NewParser{"http": func(o l7.Options) l7.Parser { return l7http.New(o) }},
					Detect:       detect.Detect,
					ResponseWait: time.Second,
				}
			})
			c := e.dial(t, dst)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			var statuses []int
			for _, w := range tt.writes {
				if _, err := io.WriteString(c, w.data); err != nil {
					break
				}
				statuses = append(statuses, readStatuses(br, w.answers)...)
			}
			c.Close()
			e.waitIdle(t)
			for _, s := range seen.get() {
				if strings.Contains(s, "denied.example") {
					t.Errorf("the server served %q (statuses %v, decided names %q)", s, statuses, hd.names())
				}
			}
			if slices.Contains(statuses, 0) {
				t.Errorf("statuses %v", statuses)
			}
		})
	}
}

// readStatuses reads up to n responses and returns their status codes;
// it stops early when the connection ends.
func readStatuses(br *bufio.Reader, n int) []int {
	var st []int
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st = append(st, resp.StatusCode)
	}
	return st
}
