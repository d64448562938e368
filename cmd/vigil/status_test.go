package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/api"
)

const (
	cliPolicy = "apiVersion: vigil.dev/v1\n# the agent keeps these bytes as they are\ndefault: audit\n"
	cliNext   = "apiVersion: vigil.dev/v1\ndefault: deny\n"
	cliBad    = "apiVersion: vigil.dev/v1\ndefault: sometimes\n"
)

// startAgentCLI runs `vigil agent --no-intercept` in-process and returns
// its socket and policy file once it answers.
func startAgentCLI(t *testing.T) (socket, policyFile string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "vigil.sock")
	policyFile = filepath.Join(dir, "policy.yaml")
	replacePolicy(t, policyFile, cliPolicy)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		code, _, errs := vigil(t, ctx, "agent", "--no-intercept", "--data-dir", filepath.Join(dir, "data"), "--socket", socket, "--policy", policyFile)
		if code != 0 {
			done <- fmt.Sprintf("exit %d: %s", code, errs)
			return
		}
		done <- ""
	}()
	t.Cleanup(func() {
		cancel()
		if msg := <-done; msg != "" {
			t.Errorf("vigil agent: %s", msg)
		}
	})
	c := api.NewClient(socket)
	for i := 0; ; i++ {
		var v agent.VersionResponse
		if err := c.Get(context.Background(), api.Prefix+"/version", nil, &v); err == nil {
			return socket, policyFile
		} else if i == 250 {
			t.Fatalf("agent did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replacePolicy writes a policy file atomically.
func replacePolicy(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func hexSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	none := filepath.Join(t.TempDir(), "none.sock")
	code, out, errs := vigil(t, ctx, "status", "--socket", none)
	if code != exitFailure || out != "" || errs != "vigil: the agent is not running: nothing listens on "+none+" (start it with `vigil agent`, or pass --socket)\n" {
		t.Errorf("status without an agent = %d, %q, %q; want exit 1 and one line", code, out, errs)
	}
	t.Setenv("VIGIL_SOCKET", none)
	if code, _, errs := vigil(t, ctx, "status"); code != exitFailure || !strings.Contains(errs, none) {
		t.Errorf("status with VIGIL_SOCKET = %d, %q; want the socket from the environment", code, errs)
	}
	if code, _, errs := vigil(t, ctx, "status", "-o", "csv"); code != exitUsage || !strings.Contains(errs, "use table or json") {
		t.Errorf("status -o csv = %d, %q; want a usage error", code, errs)
	}

	socket, policyFile := startAgentCLI(t)
	code, out, errs = vigil(t, ctx, "status", "--socket", socket)
	for _, want := range []string{"status     healthy\n", "intercept  off", "policy     " + policyFile + ": 0 rules, default audit\n",
		"sha256 " + hexSHA(cliPolicy), " appends/s over the last minute", "shipping   no sinks configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q", want)
		}
	}
	if code != exitOK || strings.Contains(out, "problems") {
		t.Errorf("status = %d,\n%s%s", code, out, errs)
	}
	t.Setenv("VIGIL_SOCKET", socket)
	code, out, _ = vigil(t, ctx, "status", "-o", "json")
	var s agent.StatusResponse
	if code != exitOK || json.Unmarshal([]byte(out), &s) != nil || !s.Healthy || s.Policy.File != policyFile || s.Log.Entries < 2 {
		t.Errorf("status -o json = %d, %q", code, out)
	}
}

// TestStatusUnhealthy checks the exit status against an agent that reports
// problems; a stand-in answers, because a real agent is only unhealthy
// when something outside the test's control breaks.
func TestStatusUnhealthy(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "vigil.sock")
	srv, err := api.Listen(socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		api.WriteJSON(w, agent.StatusResponse{
			Version: "test", Shipping: []agent.SinkStatus{{Name: "s3", Kind: "s3", BacklogEntries: 7, LastError: "access denied"}},
			Problems: []string{"the audit log cannot be written: no space left on device", "shipping to s3 fails: access denied"},
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	code, out, errs := vigil(t, context.Background(), "status", "--socket", socket)
	want := "problems:\n  - the audit log cannot be written: no space left on device\n  - shipping to s3 fails: access denied\n"
	if code != exitFailure || !strings.Contains(out, "status     UNHEALTHY (2 problems)\n") || !strings.HasSuffix(out, want) ||
		!strings.Contains(out, "s3 (s3): shipped to seq 0, backlog 7 entries (0 B), lag 0s, ERROR access denied") {
		t.Errorf("status of an unhealthy agent = %d,\n%s%s\nwant exit 1 and the problems", code, out, errs)
	}
	code, out, _ = vigil(t, context.Background(), "status", "--socket", socket, "-o", "json")
	if code != exitFailure || !strings.Contains(out, `"healthy": false`) {
		t.Errorf("status -o json of an unhealthy agent = %d, %q", code, out)
	}
}

func TestPolicyShowReload(t *testing.T) {
	ctx := context.Background()
	none := filepath.Join(t.TempDir(), "none.sock")
	for _, cmd := range []string{"show", "reload"} {
		if code, _, errs := vigil(t, ctx, "policy", cmd, "--socket", none); code != exitFailure || !strings.Contains(errs, "the agent is not running") {
			t.Errorf("policy %s without an agent = %d, %q", cmd, code, errs)
		}
	}
	socket, policyFile := startAgentCLI(t)

	code, out, errs := vigil(t, ctx, "policy", "show", "--socket", socket)
	if code != exitOK || out != cliPolicy || !strings.Contains(errs, "# "+policyFile+"\n# sha256 "+hexSHA(cliPolicy)+", loaded ") {
		t.Errorf("policy show = %d, %q, %q; want the exact file on stdout, its hash on stderr", code, out, errs)
	}
	if code, out, _ := vigil(t, ctx, "policy", "show", "--hash", "--socket", socket); code != exitOK || out != hexSHA(cliPolicy)+"\n" {
		t.Errorf("policy show --hash = %d, %q", code, out)
	}
	if code, _, errs := vigil(t, ctx, "policy", "show", "--socket", socket, "file.yaml"); code != exitUsage {
		t.Errorf("policy show FILE = %d, %q; want a usage error", code, errs)
	}

	replacePolicy(t, policyFile, cliBad)
	code, out, errs = vigil(t, ctx, "policy", "reload", "--socket", socket)
	if code != exitFailure || out != "" || !strings.Contains(errs, policyFile+":2:") || !strings.Contains(errs, "sometimes") ||
		!strings.Contains(errs, "keeps enforcing the policy it had") {
		t.Errorf("policy reload of a bad file = %d, %q, %q; want exit 1 with the problem", code, out, errs)
	}
	if _, out, _ := vigil(t, ctx, "policy", "show", "--hash", "--socket", socket); out != hexSHA(cliPolicy)+"\n" {
		t.Errorf("after a rejected reload the agent enforces %q; want the old policy", out)
	}

	replacePolicy(t, policyFile, cliNext)
	code, out, errs = vigil(t, ctx, "policy", "reload", "--socket", socket)
	// The file watcher may have applied it first: then it is unchanged.
	if code != exitOK || !strings.HasPrefix(out, "applied "+policyFile) || !strings.Contains(out, "0 rules, default deny, sha256 "+hexSHA(cliNext)+"\n") {
		t.Errorf("policy reload = %d, %q, %q", code, out, errs)
	}
	if _, out, _ := vigil(t, ctx, "policy", "show", "--socket", socket); out != cliNext {
		t.Errorf("policy show after reload = %q; want %q", out, cliNext)
	}
	code, out, _ = vigil(t, ctx, "policy", "reload", "--socket", socket, "-o", "json")
	var r agent.ReloadResponse
	if code != exitOK || json.Unmarshal([]byte(out), &r) != nil || r.Result != "applied" || r.Changed || r.Policy.Default != "deny" {
		t.Errorf("policy reload -o json = %d, %q; want applied, unchanged", code, out)
	}
}
