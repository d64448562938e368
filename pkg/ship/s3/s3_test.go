package s3_test

import (
	"context"
	"net"
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

// setup returns a client and a fresh bucket, with Object Lock when locked.
func setup(t *testing.T, locked bool) (shiptest.S3, *minio.Client, string) {
	t.Helper()
	srv := shiptest.NeedS3(t)
	c, err := s3.NewClient(s3.Endpoint{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	bucket := shiptest.Name(t, "vigil")
	if err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{ObjectLocking: locked}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	return srv, c, bucket
}

func newSink(t *testing.T, srv shiptest.S3, bucket, mode string, allowUnlocked bool) *s3.Sink {
	t.Helper()
	k, err := s3.New(s3.Config{
		Endpoint:      s3.Endpoint{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true},
		Bucket:        bucket,
		Prefix:        "vigil",
		Host:          "host-a",
		Mode:          mode,
		Retention:     24 * time.Hour,
		AllowUnlocked: allowUnlocked,
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func drain(t *testing.T, dir string, k ship.Sink) *ship.Shipper {
	t.Helper()
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a"}, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sh.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sh
}

// countVersions returns the number of versions of every object under prefix.
func countVersions(t *testing.T, c *minio.Client, bucket string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n[o.Key]++
	}
	return n
}

func TestUploadWithRetentionDeleteRefused(t *testing.T) {
	srv, c, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 120)
	l.Close(t)
	drain(t, dir, newSink(t, srv, bucket, s3.Compliance, false))

	ls, err := s3.List(ctx, c, bucket, "vigil/host-a", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Segments) < 2 {
		t.Fatalf("shipped %d segments; want several", len(ls.Segments))
	}
	if len(ls.Gaps) != 0 || len(ls.Other) != 0 {
		t.Fatalf("gaps %v, other objects %v; want none", ls.Gaps, ls.Other)
	}
	if len(ls.Checkpoints) == 0 {
		t.Fatal("no checkpoint shipped")
	}
	for _, o := range objects(ls) {
		if o.Mode != s3.Compliance {
			t.Errorf("%s: retention mode %q; want COMPLIANCE", o.Name, o.Mode)
		}
		if d := time.Until(o.RetainUntil); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("%s: retain until %s; want about a day from now", o.Name, o.RetainUntil)
		}
		if !strings.HasPrefix(o.Name, "vigil/host-a/") {
			t.Errorf("object %s outside vigil/host-a/", o.Name)
		}
	}
	// The server itself must refuse to delete a locked version, even
	// with the governance bypass (COMPLIANCE has none).
	seg := ls.Segments[0].Name
	tried := 0
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: seg, WithVersions: true}) {
		tried++
		for _, bypass := range []bool{false, true} {
			err := c.RemoveObject(ctx, bucket, seg, minio.RemoveObjectOptions{VersionID: o.VersionID, GovernanceBypass: bypass})
			if err == nil {
				t.Fatalf("deleting locked version %s of %s (bypass %v) succeeded; want refused", o.VersionID, seg, bypass)
			}
		}
	}
	if tried == 0 {
		t.Fatalf("no version of %s listed", seg)
	}
	if _, err := c.StatObject(ctx, bucket, seg, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("segment gone after refused deletes: %v", err)
	}
}

func objects(ls *s3.Listing) []s3.Object {
	var out []s3.Object
	for _, s := range ls.Segments {
		out = append(out, s.Object)
	}
	for _, k := range ls.Checkpoints {
		out = append(out, k.Object)
	}
	return out
}

func TestBucketWithoutObjectLockRefused(t *testing.T) {
	srv, _, bucket := setup(t, false)
	err := newSink(t, srv, bucket, "", false).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Object Lock") || !strings.Contains(err.Error(), "allow_unlocked") {
		t.Fatalf("Check(unlocked bucket) = %v; want a refusal naming Object Lock and allow_unlocked", err)
	}
	if err := newSink(t, srv, bucket, "", true).Check(context.Background()); err != nil {
		t.Fatalf("Check(unlocked bucket, allow_unlocked) = %v; want nil", err)
	}
	if err := newSink(t, srv, bucket+"-missing", "", true).Check(context.Background()); err == nil {
		t.Fatal("Check(missing bucket) = nil; want an error")
	}
}

func TestResumeAfterRestart(t *testing.T) {
	srv, c, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 60)
	sh := drain(t, dir, newSink(t, srv, bucket, s3.Governance, false))
	first := sh.Status()[0]
	if first.LastSeq == 0 || first.LastSegment == "" {
		t.Fatalf("status after first run %+v; want progress", first)
	}
	// "Restart": a new shipper reads the cursor the first one left.
	l.Write(t, 60)
	l.Close(t)
	sh2 := drain(t, dir, newSink(t, srv, bucket, s3.Governance, false))
	st := sh2.Status()[0]
	if st.LastSeq <= first.LastSeq {
		t.Fatalf("second run shipped up to %d; want beyond %d", st.LastSeq, first.LastSeq)
	}
	for name, n := range countVersions(t, c, bucket) {
		if n != 1 {
			t.Errorf("%s stored %d times; want once", name, n)
		}
	}
	ls, err := s3.List(ctx, c, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Gaps) != 0 {
		t.Fatalf("gaps %v after restart; want none", ls.Gaps)
	}
	last := ls.Segments[len(ls.Segments)-1]
	if last.Last != st.LastSeq {
		t.Fatalf("last shipped segment ends at %d; cursor says %d", last.Last, st.LastSeq)
	}
	// A cursor lost with the disk means shipping again: objects that are
	// already there are not stored twice.
	if err := os.RemoveAll(filepath.Join(dir, "ship")); err != nil {
		t.Fatal(err)
	}
	drain(t, dir, newSink(t, srv, bucket, s3.Governance, false))
	for name, n := range countVersions(t, c, bucket) {
		if n != 1 {
			t.Errorf("after a lost cursor, %s stored %d times; want once", name, n)
		}
	}
}

func TestMissingObjectDetected(t *testing.T) {
	srv, c, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 120)
	l.Close(t)
	drain(t, dir, newSink(t, srv, bucket, s3.Governance, false))
	ls, err := s3.List(ctx, c, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	victim := ls.Segments[1]
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: victim.Name, WithVersions: true}) {
		if err := c.RemoveObject(ctx, bucket, victim.Name, minio.RemoveObjectOptions{VersionID: o.VersionID, GovernanceBypass: true}); err != nil {
			t.Fatalf("governance bypass delete: %v", err)
		}
	}
	ls, err = s3.List(ctx, c, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Gaps) != 1 || ls.Gaps[0] != [2]uint64{victim.First, victim.Last} {
		t.Fatalf("gaps %v; want [[%d %d]]", ls.Gaps, victim.First, victim.Last)
	}
	// The pulled archive fails verification at the missing seq.
	out := t.TempDir()
	if _, err := s3.Pull(ctx, c, bucket, "vigil/host-a", out); err != nil {
		t.Fatal(err)
	}
	_, err = auditlog.Verify(ctx, out, l.Signer, auditlog.VerifyOptions{})
	if err == nil {
		t.Fatal("Verify(archive with a missing segment) = nil; want an error")
	}
}

// TestUnreachableAtStartIsNotARefusal: auditing must not depend on the
// network, so a storage that does not answer is retried, not refused,
// and nothing is uploaded before the bucket's lock was checked.
func TestUnreachableAtStartIsNotARefusal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dir := t.TempDir()
	lg := shiptest.OpenLog(t, dir, nil)
	lg.Write(t, 60)
	lg.Close(t)
	k := newSink(t, shiptest.S3{Endpoint: addr, AccessKey: "a", SecretKey: "b"}, "bucket", "", false)
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a"}, k)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := sh.Check(ctx); err != nil {
		t.Fatalf("Check(unreachable) = %v; want nil (retried later)", err)
	}
	st := sh.Status()[0]
	if st.LastError == "" || st.LastSeq != 0 {
		t.Fatalf("Status() = %+v; want the connection error and nothing shipped", st)
	}
	if err := sh.Drain(ctx); err == nil {
		t.Fatal("Drain(unreachable) = nil; want an error")
	}
	if st := sh.Status()[0]; st.BacklogEntries == 0 || st.BacklogBytes == 0 || st.LagSeconds <= 0 {
		t.Fatalf("Status() = %+v; want the backlog and lag", st)
	}
}

func TestLegalHold(t *testing.T) {
	srv, c, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 40)
	l.Close(t)
	k, err := s3.New(s3.Config{
		Endpoint: s3.Endpoint{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true},
		Bucket:   bucket, Prefix: "vigil", Host: "host-a", Mode: s3.Governance, Retention: time.Hour, LegalHold: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, dir, k)
	ls, err := s3.List(ctx, c, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	seg := ls.Segments[0].Name
	st, err := c.StatObject(ctx, bucket, seg, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := st.Metadata.Get("X-Amz-Object-Lock-Legal-Hold"); h != "ON" {
		t.Fatalf("%s legal hold %q; want ON", seg, h)
	}
	// Under a legal hold even the governance bypass cannot delete it.
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: seg, WithVersions: true}) {
		if err := c.RemoveObject(ctx, bucket, seg, minio.RemoveObjectOptions{VersionID: o.VersionID, GovernanceBypass: true}); err == nil {
			t.Fatalf("deleting %s under legal hold succeeded; want refused", seg)
		}
	}
}

func TestOtherLogUnderSameNameNotOverwritten(t *testing.T) {
	srv, _, bucket := setup(t, true)
	for i, want := range []string{"", "other content"} {
		dir := t.TempDir()
		l := shiptest.OpenLog(t, dir, nil)
		l.Write(t, 40)
		l.Close(t)
		sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a"}, newSink(t, srv, bucket, s3.Governance, false))
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		err = sh.Drain(context.Background())
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Fatalf("log %d: Drain = %v; want error containing %q", i, err, want)
		}
	}
}
