package redis

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// TestSessions replays what redis-cli and Redis said to each other,
// recorded by capture; VIGIL_L7_CAPTURE=1 records them again against the
// server scripts/e2e-env.sh starts.
func TestSessions(t *testing.T) {
	if l7test.Capturing() {
		capture(t)
	}
	l7test.ReplaySessions(t, func() l7.Parser { return New(l7.DefaultOptions()) }, l7test.Capturing())
}

// capture runs redis-cli through a recording relay, one session per
// scenario. Keys live under vigil:l7test: and are deleted at the end.
func capture(t *testing.T) {
	port := os.Getenv("VIGIL_E2E_REDIS_PORT")
	if port == "" {
		port = "63799"
	}
	big := strings.Repeat("0123456789abcdef", 5<<10) // 80 KiB, over l7.MaxBuffer
	scenarios := []struct {
		name  string
		args  []string
		stdin string
	}{
		{"cli-basic", nil, "SET vigil:l7test:k hello\nGET vigil:l7test:k\nINCR vigil:l7test:n\n" +
			"EXPIRE vigil:l7test:n 60\nCONFIG GET maxmemory\nNOPE arg\nPING\nDEL vigil:l7test:k vigil:l7test:n\n" +
			"MULTI\nSET vigil:l7test:t 1\nINCR vigil:l7test:t\nEXEC\nDEL vigil:l7test:t\n"},
		{"cli-resp3", []string{"-3"}, "HSET vigil:l7test:h f1 v1 f2 v2\nHGETALL vigil:l7test:h\n" +
			"SADD vigil:l7test:s a b\nSMEMBERS vigil:l7test:s\nZADD vigil:l7test:z 1.5 m\nZSCORE vigil:l7test:z m\n" +
			"GET vigil:l7test:none\nDEL vigil:l7test:h vigil:l7test:s vigil:l7test:z\n"},
		{"cli-pipe", []string{"--pipe"}, "SET vigil:l7test:p1 a\r\nSET vigil:l7test:p2 b\r\nMGET vigil:l7test:p1 vigil:l7test:p2\r\n" +
			"DEL vigil:l7test:p1 vigil:l7test:p2\r\n"},
		{"cli-big", []string{"-x", "SET", "vigil:l7test:big"}, big},
		{"cli-big-get", []string{"GETDEL", "vigil:l7test:big"}, ""},
	}
	for _, sc := range scenarios {
		rec, err := l7test.NewRecorder("127.0.0.1:" + port)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(rec.Port())}, sc.args...)
		cmd := exec.Command("redis-cli", args...)
		cmd.Stdin = strings.NewReader(sc.stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", sc.args, err, out)
		}
		conns := rec.Close()
		if len(conns) != 1 {
			t.Fatalf("%s: redis-cli made %d connections; want 1", sc.name, len(conns))
		}
		l7test.SaveSession(t, sc.name, conns[0], withoutCommandDocs(conns[0]))
	}
}

// withoutCommandDocs drops the COMMAND DOCS exchange redis-cli starts
// with (a reply of 170 KiB), so the rest of the session can seed fuzzing.
func withoutCommandDocs(steps []l7test.Step) []l7test.Step {
	var out []l7test.Step
	skip := false
	for _, s := range steps {
		if s.Dir == l7.FromClient {
			skip = strings.Contains(string(s.Data), "COMMAND\r\n$4\r\nDOCS")
		}
		if !skip {
			out = append(out, s)
		}
	}
	return out
}
