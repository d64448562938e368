//go:build linux

package proxy

import (
	"maps"
	"testing"
)

// TestL7Stats: the L7 counters of Stats count the parsed connection, its
// requests, the denied one and the reason parsing stopped, and the
// connection whose protocol was not recognised.
func TestL7Stats(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("GET a\n"))
	readLines(t, c, 1)
	c.Write([]byte("FLUSH\n"))
	readLines(t, c, 1)
	// Parsing stops; under a guardrail the connection is reset.
	c.Write([]byte("BAD \xff\xfe\nGET b\n"))
	expectReset(t, c)
	c.Close()
	// A protocol the detector does not know is refused, for the same
	// reason.
	u := e.dial(t, dst)
	u.Write([]byte("lower case\n"))
	expectReset(t, u)
	u.Close()
	e.waitIdle(t)

	s := e.p.Stats()
	wantStopped := map[string]uint64{}
	for _, r := range L7StopReasons() {
		wantStopped[r] = 0
	}
	wantStopped["protocol_error"] = 1
	if s.L7Parsed != 1 || s.L7Unparsed != 1 || s.L7Requests != 2 || s.L7Denied != 1 || !maps.Equal(s.L7Stopped, wantStopped) {
		t.Errorf("Stats() L7 = parsed %d, unparsed %d, requests %d, denied %d, stopped %v; want 1, 1, 2, 1, %v",
			s.L7Parsed, s.L7Unparsed, s.L7Requests, s.L7Denied, s.L7Stopped, wantStopped)
	}
}
