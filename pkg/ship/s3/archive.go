package s3

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// Object is one shipped object and its lock.
type Object struct {
	Name         string
	Size         int64
	LastModified time.Time
	Mode         string    // COMPLIANCE, GOVERNANCE or "" (no retention)
	RetainUntil  time.Time // zero without retention
}

// Segment is a shipped segment object.
type Segment struct {
	Object
	First, Last uint64 // seq range its name claims
}

// Checkpoint is a shipped checkpoint object.
type Checkpoint struct {
	Object
	Size uint64 // tree size
}

// Objects returns every segment and checkpoint object.
func (l *Listing) Objects() []Object {
	out := make([]Object, 0, len(l.Segments)+len(l.Checkpoints))
	for _, s := range l.Segments {
		out = append(out, s.Object)
	}
	for _, k := range l.Checkpoints {
		out = append(out, k.Object)
	}
	return out
}

// Listing is what an archive holds under one host's root.
type Listing struct {
	Segments    []Segment    // in seq order
	Checkpoints []Checkpoint // in size order
	Gaps        [][2]uint64  // seq ranges no segment covers, before the last segment
	Other       []string     // objects that are neither
}

// List lists the archive under root (PREFIX/HOST) in bucket. With
// retention it also reads each object's Object Lock retention.
func List(ctx context.Context, c *minio.Client, bucket, root string, retention bool) (*Listing, error) {
	root = strings.Trim(root, "/")
	var l Listing
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: root + "/", Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3: list s3://%s/%s: %w", bucket, root, o.Err)
		}
		obj := Object{Name: o.Key, Size: o.Size, LastModified: o.LastModified.UTC()}
		rel := strings.TrimPrefix(o.Key, root+"/")
		if r, ok := ship.ParseSegmentObject("/" + rel); ok && strings.HasPrefix(rel, "segments/") {
			l.Segments = append(l.Segments, Segment{Object: obj, First: r.First, Last: r.Last})
		} else if n, ok := ship.ParseCheckpointObject("/" + rel); ok && strings.HasPrefix(rel, "checkpoints/") {
			l.Checkpoints = append(l.Checkpoints, Checkpoint{Object: obj, Size: n})
		} else {
			l.Other = append(l.Other, o.Key)
		}
	}
	sort.Slice(l.Segments, func(i, j int) bool { return l.Segments[i].First < l.Segments[j].First })
	sort.Slice(l.Checkpoints, func(i, j int) bool { return l.Checkpoints[i].Size < l.Checkpoints[j].Size })
	rs := make([]ship.SegmentRange, len(l.Segments))
	for i, s := range l.Segments {
		rs[i] = ship.SegmentRange{Name: s.Name, First: s.First, Last: s.Last}
	}
	l.Gaps = ship.Gaps(rs)
	if retention {
		for i := range l.Segments {
			if err := readRetention(ctx, c, bucket, &l.Segments[i].Object); err != nil {
				return nil, err
			}
		}
		for i := range l.Checkpoints {
			if err := readRetention(ctx, c, bucket, &l.Checkpoints[i].Object); err != nil {
				return nil, err
			}
		}
	}
	return &l, nil
}

// readRetention reads an object's lock from the headers HEAD returns
// (x-amz-object-lock-mode and -retain-until-date), which every S3
// implementation with Object Lock sends; GetObjectRetention's XML body is
// spelled differently by some servers.
func readRetention(ctx context.Context, c *minio.Client, bucket string, o *Object) error {
	st, err := c.StatObject(ctx, bucket, o.Name, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("s3: retention of %s: %w", o.Name, err)
	}
	o.Mode = st.Metadata.Get("X-Amz-Object-Lock-Mode")
	if u := st.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date"); u != "" {
		t, err := time.Parse(time.RFC3339, u)
		if err != nil {
			return fmt.Errorf("s3: retention of %s: retain-until %q: %w", o.Name, u, err)
		}
		o.RetainUntil = t.UTC()
	}
	return nil
}

// CheckpointDir is where Pull puts checkpoint objects inside the archive
// directory; log readers ignore directories.
const CheckpointDir = "checkpoints"

// Pull downloads the archive under root into dir as a log directory: each
// segment object becomes segment-<first seq>.vlog (so `vigil verify DIR`
// works on it) and each checkpoint object checkpoints/<size>.ckpt.
func Pull(ctx context.Context, c *minio.Client, bucket, root, dir string) (*Listing, error) {
	l, err := List(ctx, c, bucket, root, false)
	if err != nil {
		return nil, err
	}
	if len(l.Segments) == 0 && len(l.Checkpoints) == 0 {
		return l, fmt.Errorf("s3: nothing shipped under s3://%s/%s/ (want PREFIX/HOST, e.g. s3://bucket/vigil/host-a)", bucket, strings.Trim(root, "/"))
	}
	if err := os.MkdirAll(filepath.Join(dir, CheckpointDir), 0o700); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	for _, s := range l.Segments {
		if err := download(ctx, c, bucket, s.Name, filepath.Join(dir, ship.LocalSegmentName(s.First))); err != nil {
			return nil, err
		}
	}
	for _, k := range l.Checkpoints {
		if err := download(ctx, c, bucket, k.Name, filepath.Join(dir, CheckpointDir, fmt.Sprintf("%020d.ckpt", k.Size))); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// ReadCheckpoint returns the note of a checkpoint object.
func ReadCheckpoint(ctx context.Context, c *minio.Client, bucket, name string) ([]byte, error) {
	o, err := c.GetObject(ctx, bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", name, err)
	}
	defer o.Close()
	b, err := io.ReadAll(io.LimitReader(o, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", name, err)
	}
	return b, nil
}

func download(ctx context.Context, c *minio.Client, bucket, name, path string) error {
	o, err := c.GetObject(ctx, bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("s3: get %s: %w", name, err)
	}
	defer o.Close()
	// Synced and renamed into place: an interrupted pull leaves no
	// half-written segment that a later verify would take for the copy.
	if err := atomicfile.WriteFrom(path, o, 0o600); err != nil {
		return fmt.Errorf("s3: download %s: %w", name, err)
	}
	return nil
}
