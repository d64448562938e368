package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/eventquery"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// eventsLog writes a small synthetic log and its public key.
func eventsLog(t *testing.T) (dir, pub string) {
	t.Helper()
	dir = t.TempDir()
	sv := testenv.Signer(t)
	opts := auditlog.Options{Signer: sv, Host: "node-1", SegmentMaxBytes: 32 << 10}
	if err := eventquery.WriteSynthetic(context.Background(), dir, opts, 600, time.Now().Add(-2*time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	pk, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keys.EncodePublic(pk)
	if err != nil {
		t.Fatal(err)
	}
	pub = filepath.Join(t.TempDir(), "signing.pub")
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pub
}

func TestEventsDataDir(t *testing.T) {
	ctx := context.Background()
	dir, pub := eventsLog(t)
	idx := "--index-dir=" + filepath.Join(t.TempDir(), "idx")

	code, out, errs := vigil(t, ctx, "events", "--data-dir", dir, idx, "--type", "conn.deny", "-o", "json")
	if code != 0 {
		t.Fatalf("events -o json = %d, %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var e auditlog.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Type != auditlog.ConnDeny {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	code, out, _ = vigil(t, ctx, "events", "--data-dir", dir, idx, "--type", "conn.deny", "-o", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != len(lines)+1 {
		t.Errorf("events -o csv = %d, %d rows (%v); want %d", code, len(rows), err, len(lines)+1)
	}
	code, out, _ = vigil(t, ctx, "events", "--data-dir", dir, idx, "--since", "90m", "--pod", "app-1*", "--limit", "4", "--reverse")
	if tl := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(tl) != 5 || !strings.HasPrefix(tl[0], "SEQ") {
		t.Errorf("events table = %d:\n%s", code, out)
	}
	code, out, errs = vigil(t, ctx, "events", "--data-dir", dir, idx, "--verify", "--pubkey", pub, "--pid", "1000", "-o", "json")
	if code != 0 || !strings.Contains(out, `"pid":1000`) {
		t.Errorf("events --verify = %d, %q, %s", code, out, errs)
	}
	other := filepath.Join(t.TempDir(), "other")
	p, _ := keys.WritePair(other, keys.Ed25519, nil)
	code, _, errs = vigil(t, ctx, "events", "--data-dir", dir, "--verify", "--pubkey", p.PublicPath)
	if code != exitFailure || !strings.Contains(errs, "signature does not verify") {
		t.Errorf("events --verify with another key = %d, %s", code, errs)
	}
	for _, bad := range [][]string{{"--since", "soon"}, {"-o", "yaml"}, {"--follow", "--reverse"}, {"--verify"}, {"--dst", "x"}} {
		code, _, errs := vigil(t, ctx, append([]string{"events", "--data-dir", dir}, bad...)...)
		if code != exitUsage {
			t.Errorf("events %v = %d, %s; want a usage error", bad, code, errs)
		}
	}
	// A damaged archive names the segment and byte.
	segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.vlog"))
	b, _ := os.ReadFile(segs[0])
	b[len(b)/2] ^= 0xff
	os.WriteFile(segs[0], b, 0o600)
	code, _, errs = vigil(t, ctx, "events", "--data-dir", dir, "--no-index")
	if code != exitInternal || !strings.Contains(errs, filepath.Base(segs[0])) || !strings.Contains(errs, "byte ") {
		t.Errorf("damaged archive = %d, %s", code, errs)
	}
}

func TestEventsSocket(t *testing.T) {
	ctx := context.Background()
	dir, _ := eventsLog(t)
	sock := filepath.Join(t.TempDir(), "vigil.sock")
	s, err := api.Listen(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	var gotQuery string
	s.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		f, err := eventquery.ParseValues(r.URL.Query(), time.Now())
		if err != nil {
			api.WriteError(w, http.StatusBadRequest, err)
			return
		}
		enc := json.NewEncoder(w)
		src := &eventquery.Source{Dir: dir, NoIndex: true}
		_, _ = src.Query(r.Context(), f, func(e *auditlog.Entry) error { return enc.Encode(e) })
		enc.Encode(api.Error{Error: "log damaged at byte 42"})
	})
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.Serve(sctx)
	code, out, errs := vigil(t, ctx, "events", "--socket", sock, "--type", "conn.deny", "--port", "443", "-o", "json")
	if code != exitInternal || !strings.Contains(errs, "byte 42") {
		t.Errorf("a mid-stream error line = %d, %s; want it reported", code, errs)
	}
	if !strings.Contains(gotQuery, "type=conn.deny") || !strings.Contains(gotQuery, "port=443") {
		t.Errorf("query sent = %q", gotQuery)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e auditlog.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Type != auditlog.ConnDeny || !strings.HasSuffix(e.Dst, ":443") {
			t.Errorf("line %q: %v", l, err)
		}
	}
	// No agent: a one-line note, then the default data directory.
	_, _, errs = vigil(t, ctx, "events", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if !strings.Contains(errs, "no agent on") || !strings.Contains(errs, "reading /var/lib/vigil directly") {
		t.Errorf("fallback note missing: %q", errs)
	}
}

func TestBenchQuery(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	code, out, errs := vigil(t, context.Background(), "bench", "query", "--dir", dir, "--entries", "3000", "--segment-bytes", "100000")
	if code != 0 || !strings.Contains(out, "ratio") || !strings.Contains(out, "destination ip") {
		t.Fatalf("bench query = %d, %q, %q", code, out, errs)
	}
	code, out, errs = vigil(t, context.Background(), "verify", "--pubkey", filepath.Join(dir, "signing.pub"), dir)
	if code != 0 {
		t.Errorf("verify after bench query = %d, %q, %q", code, out, errs)
	}
}
