package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

func TestShipConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(p, []byte(`ship:
  interval: 2s
  s3:
    - bucket: audit
      prefix: vigil
      endpoint: http://127.0.0.1:57070
      retention: 400d
      mode: GOVERNANCE
      legal_hold: true
  nats:
    - url: nats://127.0.0.1:54222
      create: false
  jsonl:
    - path: /var/log/vigil/audit.jsonl
`), 0o600)
	fc, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := fc.Ship
	if s.Interval != "2s" || len(s.S3) != 1 || s.S3[0].Retention != "400d" || !s.S3[0].LegalHold ||
		len(s.NATS) != 1 || s.NATS[0].Create == nil || *s.NATS[0].Create || len(s.JSONL) != 1 {
		t.Fatalf("ship section = %+v", s)
	}
	os.WriteFile(p, []byte("ship:\n  s3:\n    - bucket: a\n      retension: 1d\n"), 0o600)
	if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "retension") {
		t.Fatalf("LoadFile with a misspelt key = %v; want an error naming it", err)
	}
}

// TestAgentShipsOffHost runs the agent with an S3 and a JSON-lines sink:
// the final checkpoint, written when the log closes, must leave the host.
func TestAgentShipsOffHost(t *testing.T) {
	srv := shiptest.NeedS3(t)
	ctx := context.Background()
	cl, err := s3.NewClient(s3.Endpoint{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	locked, unlocked := shiptest.Name(t, "vigil"), shiptest.Name(t, "vigil-u")
	if err := cl.MakeBucket(ctx, locked, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	if err := cl.MakeBucket(ctx, unlocked, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg := Config{DataDir: dir, Password: []byte("pw"), Host: "host-a", Log: auditlog.Options{CheckpointInterval: 10 * time.Millisecond},
		Ship: ShipConfig{
			Interval: "10ms",
			S3:       []S3SinkConfig{{Bucket: locked, Prefix: "vigil", Endpoint: srv.Endpoint, Insecure: true, Retention: "1d"}},
			JSONL:    []JSONLSinkConfig{{Path: out}},
		}}

	bad := cfg
	bad.Ship.S3 = []S3SinkConfig{{Bucket: unlocked, Endpoint: srv.Endpoint, Insecure: true, Retention: "1d"}}
	if _, err := New(ctx, bad); err == nil || !strings.Contains(err.Error(), "Object Lock") {
		t.Fatalf("New with an unlocked bucket = %v; want refused", err)
	}

	rctx, cancel := context.WithCancel(ctx)
	a, err := New(rctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- a.Run(rctx) }()
	time.Sleep(200 * time.Millisecond)
	if st := a.ShipStatus(); len(st) != 2 || st[0].Kind != "s3" || st[1].Kind != "jsonl" {
		t.Fatalf("ShipStatus() = %+v; want an s3 and a jsonl sink", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	var last uint64
	if err := auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error { last = r.Entry.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	ls, err := s3.List(ctx, cl, locked, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ls.Checkpoints); n == 0 || ls.Checkpoints[n-1].Size != last {
		t.Fatalf("shipped checkpoints %+v; want the final one of size %d", ls.Checkpoints, last)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var types []string
	var ckpt uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m ship.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.Kind == ship.KindEntry {
			types = append(types, string(m.Entry.Type))
		} else {
			ckpt = m.Size
		}
	}
	if len(types) == 0 || types[0] != string(auditlog.AgentStart) || types[len(types)-1] != string(auditlog.AgentStop) || ckpt != last {
		t.Fatalf("jsonl entries %v, last checkpoint %d; want agent.start..agent.stop and checkpoint %d", types, ckpt, last)
	}
}

func TestRetentionConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(p, []byte("ship:\n  retention:\n    max_bytes: 10GiB\n    drop_unshipped: true\n"), 0o600)
	fc, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if r := fc.Ship.Retention; r.MaxBytes != "10GiB" || !r.DropUnshipped {
		t.Fatalf("retention section = %+v", r)
	}
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"0", 0, true},
		{"10GiB", 10 << 30, true},
		{"500MB", 500e6, true},
		{"1048576", 1 << 20, true},
		{"ten gigs", 0, false},
		{"-1GiB", 0, false},
	}
	for _, tc := range tests {
		got, err := RetentionConfig{MaxBytes: tc.in}.parse()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	// A budget without any sink would only ever drop unshipped data.
	_, err = newShipper(context.Background(), Config{DataDir: t.TempDir(), Host: "h",
		Ship: ShipConfig{Retention: RetentionConfig{MaxBytes: "1GiB"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no sink is configured") {
		t.Fatalf("newShipper(retention without sinks) = %v; want a refusal", err)
	}
}
