// Package s3 ships sealed segments and signed checkpoints to S3-compatible
// object storage with Object Lock (WORM), and reads such an archive back
// for verification. Object names are documented in docs/SHIPPING.md and
// built by pkg/ship.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// Retention modes (S3 Object Lock).
const (
	Compliance = "COMPLIANCE" // nobody, not even the account root, can delete or shorten it before retain-until
	Governance = "GOVERNANCE" // users with s3:BypassGovernanceRetention can
)

// Endpoint says how to reach the storage.
type Endpoint struct {
	Endpoint  string // host:port or URL (http:// means no TLS); default s3.amazonaws.com
	Region    string
	AccessKey string
	SecretKey string
	Insecure  bool // plain HTTP (only sensible on loopback or inside a trusted network)
}

// EndpointFromEnv fills what e leaves empty from AWS_ENDPOINT_URL,
// AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func EndpointFromEnv(e Endpoint) Endpoint {
	set := func(dst *string, env string) {
		if *dst == "" {
			*dst = os.Getenv(env)
		}
	}
	set(&e.Endpoint, "AWS_ENDPOINT_URL")
	set(&e.Region, "AWS_REGION")
	set(&e.AccessKey, "AWS_ACCESS_KEY_ID")
	set(&e.SecretKey, "AWS_SECRET_ACCESS_KEY")
	return e
}

// NewClient connects a minio client to e.
func NewClient(e Endpoint) (*minio.Client, error) {
	host, secure := e.Endpoint, !e.Insecure
	if host == "" {
		host = "s3.amazonaws.com"
	}
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("s3: endpoint %q: want host:port or http(s)://host:port", e.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https" && !e.Insecure
	}
	var creds *credentials.Credentials
	if e.AccessKey != "" {
		creds = credentials.NewStaticV4(e.AccessKey, e.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.IAM{}})
	}
	c, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: e.Region})
	if err != nil {
		return nil, fmt.Errorf("s3: client: %w", err)
	}
	return c, nil
}

// ParseURL splits s3://bucket/prefix into bucket and prefix.
func ParseURL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("s3: %q is not an s3://bucket/prefix URL", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("s3: %q names no bucket: want s3://bucket/prefix", s)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

// Config configures a Sink.
type Config struct {
	Name          string // sink name (cursor file); default "s3"
	Endpoint      Endpoint
	Bucket        string
	Prefix        string        // key prefix before HOST/
	Host          string        // host name in object names
	Mode          string        // Compliance (default) or Governance
	Retention     time.Duration // retain-until = upload time + Retention (required)
	LegalHold     bool          // also place a legal hold on every object
	AllowUnlocked bool          // ship into a bucket without Object Lock (objects could be deleted)
}

// Sink uploads segments and checkpoints with Object Lock retention.
type Sink struct {
	cfg    Config
	client *minio.Client
	locked bool // the bucket has Object Lock: put retention on objects
}

// New validates cfg and builds the client; it does not contact the server.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = "s3"
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket configured")
	}
	if cfg.Host == "" {
		return nil, errors.New("s3: no host name configured")
	}
	switch strings.ToUpper(cfg.Mode) {
	case "", Compliance:
		cfg.Mode = Compliance
	case Governance:
		cfg.Mode = Governance
	default:
		return nil, fmt.Errorf("s3: retention mode %q: want COMPLIANCE or GOVERNANCE", cfg.Mode)
	}
	if cfg.Retention <= 0 && !cfg.AllowUnlocked {
		return nil, errors.New("s3: no retention configured: set retention (e.g. 400d)")
	}
	c, err := NewClient(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, client: c}, nil
}

// Name implements ship.Sink.
func (s *Sink) Name() string { return s.cfg.Name }

// Kind implements ship.Sink.
func (s *Sink) Kind() string { return "s3" }

// Close implements ship.Sink.
func (s *Sink) Close() error { return nil }

// Check refuses a bucket that does not exist, and one without Object Lock
// unless AllowUnlocked: there, whoever holds the credentials could delete
// what was shipped.
func (s *Sink) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.cfg.Bucket, err)
	}
	if !ok {
		return ship.Refuse(fmt.Errorf("s3: bucket %s does not exist: create it with Object Lock enabled", s.cfg.Bucket))
	}
	status, _, _, _, err := s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
	s.locked = err == nil && status == "Enabled"
	if !s.locked {
		if s.cfg.AllowUnlocked {
			return nil
		}
		why := "Object Lock is not enabled"
		if err != nil {
			if !isLockMissing(err) {
				return fmt.Errorf("s3: bucket %s: read Object Lock configuration: %w", s.cfg.Bucket, err)
			}
			why = fmt.Sprintf("it has no Object Lock configuration (%v)", err)
		}
		return ship.Refuse(fmt.Errorf("s3: refusing to ship into bucket %s: %s, so shipped objects could be deleted; create the bucket with Object Lock enabled, or set allow_unlocked: true to accept that", s.cfg.Bucket, why))
	}
	return nil
}

// isLockMissing tells "this bucket has no Object Lock" from a failure to
// ask (network, credentials), which is retried instead of refused.
func isLockMissing(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == 404 || strings.Contains(r.Code, "ObjectLockConfiguration")
}

func (s *Sink) root() string { return strings.Trim(s.cfg.Prefix, "/") }

func (s *Sink) putOpts(contentType string, meta map[string]string) minio.PutObjectOptions {
	o := minio.PutObjectOptions{ContentType: contentType, UserMetadata: meta, SendContentMd5: true, DisableMultipart: true}
	if s.locked && s.cfg.Retention > 0 {
		o.Mode = minio.RetentionMode(s.cfg.Mode)
		o.RetainUntilDate = time.Now().Add(s.cfg.Retention).UTC().Truncate(time.Second)
	}
	if s.locked && s.cfg.LegalHold {
		o.LegalHold = minio.LegalHoldEnabled
	}
	return o
}

// exists reports whether name is already stored with these bytes, so a
// retry after a crash does not upload a second version. An object of that
// name with other content is an error, not something to overwrite: another
// log writes under this host name (a reused name, a reset data directory).
func (s *Sink) exists(ctx context.Context, name string, r io.ReadSeeker, size int64) (bool, error) {
	st, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == 404 {
			return false, nil
		}
		return false, fmt.Errorf("s3: stat %s: %w", name, err)
	}
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		return false, fmt.Errorf("s3: hash %s: %w", name, err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("s3: %w", err)
	}
	etag := strings.Trim(st.ETag, `"`)
	same := st.Size == size
	if len(etag) == 32 && !strings.Contains(etag, "-") { // a single-part upload: the ETag is the MD5
		same = same && etag == hex.EncodeToString(h.Sum(nil))
	}
	if !same {
		return false, fmt.Errorf("s3: %s already exists with other content: another log ships under host %q (was the data directory reset or the host name reused?); set another prefix or host", name, s.cfg.Host)
	}
	return true, nil
}

// SegmentLocation implements ship.SegmentLocator: s3://BUCKET/OBJECT.
func (s *Sink) SegmentLocation(first, last uint64, t time.Time) string {
	return "s3://" + s.cfg.Bucket + "/" + ship.SegmentObject(s.root(), s.cfg.Host, first, last, t)
}

// PutSegment implements ship.SegmentSink.
func (s *Sink) PutSegment(ctx context.Context, path string, first, last uint64, t time.Time) error {
	name := ship.SegmentObject(s.root(), s.cfg.Host, first, last, t)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	if ok, err := s.exists(ctx, name, f, st.Size()); err != nil || ok {
		return err
	}
	meta := map[string]string{"first-seq": strconv.FormatUint(first, 10), "last-seq": strconv.FormatUint(last, 10)}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, f, st.Size(), s.putOpts("application/octet-stream", meta)); err != nil {
		return fmt.Errorf("s3: upload %s: %w", name, err)
	}
	return nil
}

// PutCheckpoint implements ship.SegmentSink.
func (s *Sink) PutCheckpoint(ctx context.Context, c ship.Checkpoint) error {
	name := ship.CheckpointObject(s.root(), s.cfg.Host, c.Size)
	body := bytes.NewReader(c.Note)
	if ok, err := s.exists(ctx, name, body, int64(len(c.Note))); err != nil || ok {
		return err
	}
	meta := map[string]string{"size": strconv.FormatUint(c.Size, 10)}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, body, int64(len(c.Note)), s.putOpts("text/plain; charset=utf-8", meta)); err != nil {
		return fmt.Errorf("s3: upload %s: %w", name, err)
	}
	return nil
}
