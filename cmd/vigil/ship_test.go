package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

// shippedLog writes a log, ships it to a fresh GOVERNANCE bucket (so the
// test can remove an object with the bypass) and returns the log, the
// public key file, the archive URL and a client.
func shippedLog(t *testing.T) (*shiptest.Log, string, string, *minio.Client, string) {
	t.Helper()
	srv := shiptest.NeedS3(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://"+srv.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	ctx := context.Background()
	kd := t.TempDir()
	p, err := keys.WritePair(kd, keys.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := keys.LoadSigner(ctx, p.PrivatePath, func() ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	ep := s3.Endpoint{Endpoint: "http://" + srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	cl, err := s3.NewClient(ep)
	if err != nil {
		t.Fatal(err)
	}
	bucket := shiptest.Name(t, "vigil")
	if err := cl.MakeBucket(ctx, bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, sv)
	l.Write(t, 150)
	l.WaitCheckpoint(t, 150)
	k, err := s3.New(s3.Config{Endpoint: ep, Bucket: bucket, Prefix: "vigil", Host: "host-a", Mode: s3.Governance, Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a"}, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	return l, p.PublicPath, "s3://" + bucket + "/vigil/host-a", cl, bucket
}

func TestVerifyRemoteArchive(t *testing.T) {
	ctx := context.Background()
	l, pub, url, cl, bucket := shippedLog(t)
	defer l.Close(t)

	code, out, errs := vigil(t, ctx, "verify", "--pubkey", pub, "--min-retention", "1d", url)
	if code != 0 || !strings.Contains(out, "no gaps") || !strings.Contains(out, "locked until") || !strings.Contains(out, "pending") {
		t.Fatalf("verify %s = %d\n%s%s", url, code, out, errs)
	}
	code, out, _ = vigil(t, ctx, "verify", "--pubkey", pub, "--min-retention", "3d", url)
	if code != exitFailure || !strings.Contains(out, "retention") {
		t.Fatalf("verify --min-retention 3d of a 2-day archive = %d\n%s; want failure naming retention", code, out)
	}
	code, out, errs = vigil(t, ctx, "verify", "--pubkey", pub, "--remote", url, l.Dir)
	if code != 0 || !strings.Contains(out, "extends the shipped checkpoint of size 150") {
		t.Fatalf("verify --remote of the intact local log = %d\n%s%s", code, out, errs)
	}

	// archive pull, then verify the copy offline.
	pulled := filepath.Join(t.TempDir(), "copy")
	code, out, errs = vigil(t, ctx, "archive", "pull", url, pulled)
	if code != 0 || !strings.Contains(out, "pulled") {
		t.Fatalf("archive pull = %d\n%s%s", code, out, errs)
	}
	if code, out, errs = vigil(t, ctx, "verify", "--pubkey", pub, pulled); code != 0 {
		t.Fatalf("verify of the pulled archive = %d\n%s%s", code, out, errs)
	}

	// A segment object removed (governance bypass) is reported as missing.
	ls, err := s3.List(ctx, cl, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	victim := ls.Segments[1]
	for o := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: victim.Name, WithVersions: true}) {
		if err := cl.RemoveObject(ctx, bucket, victim.Name, minio.RemoveObjectOptions{VersionID: o.VersionID, GovernanceBypass: true}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ = vigil(t, ctx, "verify", "--pubkey", pub, url)
	if code != exitFailure || !strings.Contains(out, "FAIL") {
		t.Fatalf("verify of an archive missing a segment = %d\n%s; want failure", code, out)
	}
	code, out, _ = vigil(t, ctx, "archive", "pull", url, filepath.Join(t.TempDir(), "c2"))
	if code != exitFailure || !strings.Contains(out, "MISSING") {
		t.Fatalf("archive pull of an archive missing a segment = %d\n%s; want MISSING", code, out)
	}
}

func TestVerifyRemoteDetectsTruncatedLocalLog(t *testing.T) {
	ctx := context.Background()
	l, pub, url, _, _ := shippedLog(t)
	l.Close(t)
	// Root on the host cuts the newest segments and the checkpoint file:
	// the rest still verifies on its own, but not against what was shipped.
	segs, _ := filepath.Glob(filepath.Join(l.Dir, "segment-*.vlog"))
	sort.Strings(segs)
	for _, s := range segs[len(segs)/2:] {
		os.Remove(s)
	}
	os.Remove(filepath.Join(l.Dir, auditlog.CheckpointFile))
	if code, out, errs := vigil(t, ctx, "verify", "--pubkey", pub, l.Dir); code != 0 {
		t.Fatalf("the cut log should verify on its own: %d\n%s%s", code, out, errs)
	}
	code, out, errs := vigil(t, ctx, "verify", "--pubkey", pub, "--remote", url, l.Dir)
	if code != exitFailure || !strings.Contains(out, "truncated") {
		t.Fatalf("verify --remote of a truncated log = %d\n%s%s; want truncated", code, out, errs)
	}
	code, _, errs = vigil(t, ctx, "verify", "--pubkey", pub, "--remote", "/tmp", l.Dir)
	if code != exitUsage {
		t.Fatalf("verify --remote /tmp = %d %s; want usage error", code, errs)
	}
}
