package agent

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

// TestAgentRetention runs the agent with an S3 sink and a small retention
// budget: old segments leave the host first, then the data directory, and
// the log left behind still verifies.
func TestAgentRetention(t *testing.T) {
	srv := shiptest.NeedS3(t)
	ctx := context.Background()
	cl, err := s3.NewClient(s3.Endpoint{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	bucket := shiptest.Name(t, "vigil")
	if err := cl.MakeBucket(ctx, bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Password: []byte("pw"), Host: "host-a",
		Log: auditlog.Options{SegmentMaxBytes: 4 << 10, CheckpointInterval: 10 * time.Millisecond},
		Ship: ShipConfig{
			Interval:  "10ms",
			S3:        []S3SinkConfig{{Bucket: bucket, Prefix: "vigil", Endpoint: srv.Endpoint, Insecure: true, Retention: "1d"}},
			Retention: RetentionConfig{MaxBytes: "16KiB"},
		}}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, err := New(rctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- a.Run(rctx) }()
	for i := range 150 {
		if _, err := a.audit.AppendSync(ctx, auditlog.Entry{Type: auditlog.ConnOpen, Dst: "10.1.2.3:5432", Attrs: map[string]string{"i": string(rune('a' + i%26))}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := a.RetentionStatus()
		if !ok {
			t.Fatal("RetentionStatus() not configured")
		}
		if st.PrunedSegments > 0 && st.LocalBytes <= st.MaxBytes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention status after 10s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	v, err := keys.LoadVerifier(a.pubKey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := auditlog.Verify(ctx, dir, v, auditlog.VerifyOptions{})
	if err != nil || rep.PrunedThrough == 0 || rep.UnshippedPruned {
		t.Fatalf("Verify(agent's pruned log) = %+v, %v; want a pruned log that verifies", rep, err)
	}
}
