// Package shiptest finds the real servers the shipping tests talk to
// (started by scripts/e2e-env.sh) and writes real audit logs for them.
package shiptest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func reachable(t testing.TB, what, hostport string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err != nil {
		testenv.Need(t, what, fmt.Sprintf("nothing answers on %s (run scripts/e2e-env.sh start): %v", hostport, err))
		return
	}
	c.Close()
}

// S3 is how to reach the test S3 server (versitygw with Object Lock).
type S3 struct {
	Endpoint, AccessKey, SecretKey string
}

// NeedS3 returns the S3 server from VIGIL_E2E_S3_* (defaults as in
// scripts/e2e-env.sh), skipping or failing the test when it is down.
func NeedS3(t testing.TB) S3 {
	t.Helper()
	s := S3{
		Endpoint:  env("VIGIL_E2E_S3_ENDPOINT", "127.0.0.1:57070"),
		AccessKey: env("VIGIL_E2E_S3_ACCESS_KEY", "vigil-e2e"),
		SecretKey: env("VIGIL_E2E_S3_SECRET_KEY", "vigil-e2e-secret"),
	}
	reachable(t, "an S3 server with Object Lock (versitygw)", s.Endpoint)
	return s
}

// NeedNATS returns the NATS URL from VIGIL_E2E_NATS_URL (default as in
// scripts/e2e-env.sh), skipping or failing the test when it is down.
func NeedNATS(t testing.TB) string {
	t.Helper()
	u := env("VIGIL_E2E_NATS_URL", "nats://127.0.0.1:54222")
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("VIGIL_E2E_NATS_URL %q: %v", u, err)
	}
	reachable(t, "a NATS server with JetStream", pu.Host)
	return u
}

// Name returns a name unique to this test run, usable as a bucket or
// stream name.
func Name(t testing.TB, prefix string) string {
	n := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(n) > 30 {
		n = n[:30]
	}
	return fmt.Sprintf("%s-%s-%d", prefix, strings.Trim(n, "-"), time.Now().UnixNano()%1e9)
}

// Log is a real audit log being written in a test.
type Log struct {
	*auditlog.Log
	Dir    string
	Signer signature.SignerVerifier
}

// OpenLog opens a log in dir that rotates every few entries, so tests get
// several sealed segments quickly. A nil signer makes a fresh key.
func OpenLog(t testing.TB, dir string, sv signature.SignerVerifier) *Log {
	t.Helper()
	if sv == nil {
		sv = testenv.Signer(t)
	}
	l, err := auditlog.Open(context.Background(), dir, auditlog.Options{
		Signer:             sv,
		Host:               "host-a",
		SegmentMaxBytes:    4 << 10,
		CheckpointInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A test that does not close the log would leave its writer running
	// (it writes checkpoints every CheckpointInterval) while the test's
	// directory is removed. Closing again after Close is harmless.
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return &Log{Log: l, Dir: dir, Signer: sv}
}

// Write appends n entries and waits until they are durable.
func (l *Log) Write(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := l.AppendSync(ctx, auditlog.Entry{Type: auditlog.ConnOpen, Proto: "tcp",
			Dst: "10.1.2.3:5432", Decision: auditlog.Allow, Rule: "default",
			Attrs: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
}

// Close closes the log (writing its final checkpoint).
func (l *Log) Close(t testing.TB) {
	t.Helper()
	if err := l.Log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// WaitCheckpoint waits until the log's checkpoint file, which the
// shipper reads, covers size entries (the writer updates it just after
// its counters).
func (l *Log) WaitCheckpoint(t testing.TB, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(l.Dir, auditlog.CheckpointFile))
		if err == nil {
			if n, err := ship.CheckpointSize(b); err == nil && n >= size {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint file does not cover %d entries after 10s (stats: %d)", size, l.Stats().CheckpointSize)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
