package main

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

// s3Flags reach an S3 archive; empty values fall back to the AWS_*
// environment variables.
var s3Flags = []cli.Flag{
	&cli.StringFlag{Name: "s3-endpoint", Usage: "S3 endpoint host:port or URL (else AWS_ENDPOINT_URL; default s3.amazonaws.com)"},
	&cli.StringFlag{Name: "s3-region", Usage: "S3 region (else AWS_REGION)"},
	&cli.StringFlag{Name: "s3-access-key", Usage: "S3 access key id (else AWS_ACCESS_KEY_ID)"},
	// The secret comes from a file or the environment, never a flag: argv
	// is readable by every user in /proc/PID/cmdline.
	&cli.StringFlag{Name: "s3-secret-key-file", Usage: "file holding the S3 secret access key (else AWS_SECRET_ACCESS_KEY)"},
	&cli.BoolFlag{Name: "s3-insecure", Usage: "plain HTTP to the S3 endpoint"},
}

// s3Client builds a client from the flags and environment.
func s3Client(c *cli.Context) (*minio.Client, error) {
	secret, err := s3SecretKey(c.String("s3-secret-key-file"))
	if err != nil {
		return nil, err
	}
	e := s3.EndpointFromEnv(s3.Endpoint{
		Endpoint:  c.String("s3-endpoint"),
		Region:    c.String("s3-region"),
		AccessKey: c.String("s3-access-key"),
		SecretKey: secret,
		Insecure:  c.Bool("s3-insecure"),
	})
	return s3.NewClient(e)
}

// s3SecretKey reads the secret access key from path; with no path it
// returns "" so the environment is used.
func s3SecretKey(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("--s3-secret-key-file: %v", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", usagef("--s3-secret-key-file: %s is empty: write the secret access key into it", path)
	}
	return secret, nil
}

// archiveCheck is what verify found out about an S3 archive beyond the
// log itself.
type archiveCheck struct {
	URL              string      `json:"url"`
	Segments         int         `json:"segments"`
	Checkpoints      int         `json:"checkpoints"`
	Gaps             [][2]uint64 `json:"gaps,omitempty"`
	MinRetainUntil   time.Time   `json:"min_retain_until,omitzero"`
	LastCheckpoint   uint64      `json:"last_checkpoint,omitempty"`
	NewestCheckpoint uint64      `json:"newest_checkpoint,omitempty"` // size of the newest shipped checkpoint
	Consistent       bool        `json:"consistent"`                  // the log was proven to extend the newest shipped checkpoint
}

// pullForVerify downloads the archive at url into a temporary directory
// for auditlog.Verify; the caller removes it.
func pullForVerify(ctx context.Context, c *cli.Context, url string) (string, *s3.Listing, *minio.Client, error) {
	bucket, root, err := s3.ParseURL(url)
	if err != nil {
		return "", nil, nil, usagef("%v", err)
	}
	cl, err := s3Client(c)
	if err != nil {
		return "", nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "vigil-verify-")
	if err != nil {
		return "", nil, nil, err
	}
	l, err := s3.Pull(ctx, cl, bucket, root, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, nil, err
	}
	return tmp, l, cl, nil
}

// checkArchive reports, as a VerifyError, what is wrong with a listing:
// missing segments (seq gaps between object names) and objects locked for
// less than minRetention after they were written.
func checkArchive(ctx context.Context, cl *minio.Client, url string, l *s3.Listing, minRetention time.Duration, ac *archiveCheck) (*auditlog.VerifyError, error) {
	ac.URL, ac.Segments, ac.Checkpoints, ac.Gaps = url, len(l.Segments), len(l.Checkpoints), l.Gaps
	if len(l.Gaps) > 0 {
		g := l.Gaps[0]
		return &auditlog.VerifyError{Kind: auditlog.Gap, Seq: g[0],
			Reason: fmt.Sprintf("no segment object holds seqs %d..%d (%d gaps in the archive): objects are missing", g[0], g[1], len(l.Gaps))}, nil
	}
	if minRetention <= 0 {
		return nil, nil
	}
	bucket, root, err := s3.ParseURL(url)
	if err != nil {
		return nil, err
	}
	full, err := s3.List(ctx, cl, bucket, root, true)
	if err != nil {
		return nil, err
	}
	for _, o := range full.Objects() {
		if ac.MinRetainUntil.IsZero() || o.RetainUntil.Before(ac.MinRetainUntil) {
			ac.MinRetainUntil = o.RetainUntil
		}
		// A minute of slack for the clock between upload and lock.
		if o.RetainUntil.IsZero() || o.RetainUntil.Before(o.LastModified.Add(minRetention-time.Minute)) {
			until := "no retention"
			if !o.RetainUntil.IsZero() {
				until = "retained until " + o.RetainUntil.Format(time.RFC3339)
			}
			return &auditlog.VerifyError{Kind: "retention", Segment: o.Name,
				Reason: fmt.Sprintf("%s, written %s: %s, shorter than --min-retention %s", o.Name, o.LastModified.Format(time.RFC3339), until, minRetention)}, nil
		}
	}
	return nil, nil
}

// newestCheckpoint returns the note of the newest shipped checkpoint of at
// most limit entries, or nil when there is none.
func newestCheckpoint(ctx context.Context, cl *minio.Client, url string, l *s3.Listing, limit uint64) ([]byte, error) {
	bucket, _, err := s3.ParseURL(url)
	if err != nil {
		return nil, err
	}
	for i := len(l.Checkpoints) - 1; i >= 0; i-- {
		if l.Checkpoints[i].Size <= limit {
			return s3.ReadCheckpoint(ctx, cl, bucket, l.Checkpoints[i].Name)
		}
	}
	return nil, nil
}

// checkAgainstShipped checks that the log in dir (holding size entries)
// extends the newest checkpoint in the archive.
func checkAgainstShipped(ctx context.Context, dir string, size uint64, note []byte, pub crypto.PublicKey) *auditlog.VerifyError {
	c, err := ship.OpenCheckpoint(note, pub)
	if err != nil {
		return &auditlog.VerifyError{Kind: auditlog.BadCheckpoint, Reason: "newest shipped checkpoint: " + err.Error()}
	}
	if err := ship.CheckExtends(ctx, dir, size, c); err != nil {
		if ve, ok := err.(*auditlog.VerifyError); ok {
			return ve
		}
		return &auditlog.VerifyError{Kind: auditlog.Malformed, Reason: err.Error()}
	}
	return nil
}
