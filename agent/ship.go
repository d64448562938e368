package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/jsonl"
	vnats "github.com/vigil-ebpf/vigil/pkg/ship/nats"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

// ShipConfig is the `ship:` section of the configuration file: where the
// log goes off the host (docs/SHIPPING.md). Each list may hold several
// sinks; every sink needs a distinct name (it names its cursor file).
type ShipConfig struct {
	Interval  string            `yaml:"interval"` // how often to look for new data; default 1s
	S3        []S3SinkConfig    `yaml:"s3"`
	NATS      []NATSSinkConfig  `yaml:"nats"`
	JSONL     []JSONLSinkConfig `yaml:"jsonl"`
	Retention RetentionConfig   `yaml:"retention"` // local retention; default keep everything
}

// RetentionConfig bounds the local log (docs/SHIPPING.md, "Local
// retention"): over MaxBytes, the oldest sealed segments that every sink
// confirmed are removed, each after a signed log.prune entry.
type RetentionConfig struct {
	// MaxBytes is a size such as 10GiB or 500MB; "" or 0 keeps everything.
	MaxBytes string `yaml:"max_bytes"`
	// DropUnshipped removes unshipped segments too (each behind a log.gap
	// entry) when the log is over MaxBytes; by default retention waits for
	// the sinks and reports the backlog instead.
	DropUnshipped bool `yaml:"drop_unshipped"`
}

// parse returns the budget in bytes.
func (c RetentionConfig) parse() (int64, error) {
	s := strings.TrimSpace(c.MaxBytes)
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("agent: ship retention max_bytes %q: want a size such as 10GiB or 500MB, or 0 to keep everything", c.MaxBytes)
	}
	return int64(n), nil
}

// S3SinkConfig ships sealed segments and checkpoints to S3 with Object Lock.
// Credentials come from access_key/secret_key_file or the AWS_* environment.
type S3SinkConfig struct {
	Name          string `yaml:"name"` // default "s3"
	Endpoint      string `yaml:"endpoint"`
	Region        string `yaml:"region"`
	Bucket        string `yaml:"bucket"`
	Prefix        string `yaml:"prefix"`
	Insecure      bool   `yaml:"insecure"`  // plain HTTP
	Mode          string `yaml:"mode"`      // COMPLIANCE (default) or GOVERNANCE
	Retention     string `yaml:"retention"` // e.g. 400d
	LegalHold     bool   `yaml:"legal_hold"`
	AllowUnlocked bool   `yaml:"allow_unlocked"`
	AccessKey     string `yaml:"access_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
}

// NATSSinkConfig streams entries and checkpoints to NATS JetStream.
type NATSSinkConfig struct {
	Name        string `yaml:"name"` // default "nats"
	URL         string `yaml:"url"`
	Stream      string `yaml:"stream"`  // default VIGIL
	Subject     string `yaml:"subject"` // default vigil
	Create      *bool  `yaml:"create"`  // create the stream when missing; default true
	AllowLimits bool   `yaml:"allow_limits"`
	CredsFile   string `yaml:"creds_file"`
}

// JSONLSinkConfig appends entries and checkpoints as JSON lines to a file.
type JSONLSinkConfig struct {
	Name string `yaml:"name"` // default "jsonl"
	Path string `yaml:"path"`
}

// empty reports whether no sink is configured.
func (c ShipConfig) empty() bool { return len(c.S3)+len(c.NATS)+len(c.JSONL) == 0 }

// newShipper builds the configured sinks and checks each destination, so
// a bucket that could lose data or a stream with limits stops the agent at
// start with the reason. It returns nil when nothing is configured.
func newShipper(ctx context.Context, cfg Config, audit *auditlog.Log) (*ship.Shipper, error) {
	sc := cfg.Ship
	maxBytes, err := sc.Retention.parse()
	if err != nil {
		return nil, err
	}
	if sc.empty() {
		if maxBytes > 0 && !sc.Retention.DropUnshipped {
			return nil, errors.New("agent: ship retention max_bytes is set but no sink is configured, so nothing is ever shipped: configure a sink, or set drop_unshipped: true to delete unshipped entries (each deletion recorded as a log.gap entry)")
		}
		if maxBytes == 0 {
			return nil, nil
		}
	}
	host := cfg.Host
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("agent: ship: hostname: %w", err)
		}
	}
	var interval time.Duration
	if sc.Interval != "" {
		d, err := time.ParseDuration(sc.Interval)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("agent: ship: interval %q: want a duration such as 1s", sc.Interval)
		}
		interval = d
	}
	var sinks []ship.Sink
	closeAll := func() {
		for _, k := range sinks {
			_ = k.Close()
		}
	}
	for _, c := range sc.S3 {
		var ret time.Duration
		if c.Retention != "" {
			var err error
			if ret, err = ship.ParseRetention(c.Retention); err != nil {
				return nil, fmt.Errorf("agent: ship s3 %s: %w", c.Name, err)
			}
		}
		secret := ""
		if c.SecretKeyFile != "" {
			b, err := os.ReadFile(c.SecretKeyFile)
			if err != nil {
				return nil, fmt.Errorf("agent: ship s3 %s: secret key file: %w", c.Name, err)
			}
			secret = strings.TrimSpace(string(b))
		}
		k, err := s3.New(s3.Config{
			Name: c.Name,
			Endpoint: s3.EndpointFromEnv(s3.Endpoint{Endpoint: c.Endpoint, Region: c.Region,
				AccessKey: c.AccessKey, SecretKey: secret, Insecure: c.Insecure}),
			Bucket: c.Bucket, Prefix: c.Prefix, Host: host, Mode: c.Mode, Retention: ret,
			LegalHold: c.LegalHold, AllowUnlocked: c.AllowUnlocked,
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("agent: ship: %w", err)
		}
		sinks = append(sinks, k)
	}
	for _, c := range sc.NATS {
		create := c.Create == nil || *c.Create
		var opts []nats.Option
		if c.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(c.CredsFile))
		}
		k, err := vnats.New(vnats.Config{Name: c.Name, URL: c.URL, Stream: c.Stream, Subject: c.Subject,
			Host: host, Create: create, AllowLimits: c.AllowLimits, Options: opts})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("agent: ship: %w", err)
		}
		sinks = append(sinks, k)
	}
	for _, c := range sc.JSONL {
		k, err := jsonl.New(jsonl.Config{Name: c.Name, Path: c.Path})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("agent: ship: %w", err)
		}
		sinks = append(sinks, k)
	}
	ret := ship.Retention{MaxBytes: maxBytes, DropUnshipped: sc.Retention.DropUnshipped}
	if maxBytes > 0 {
		ret.Pruner = audit
	}
	sh, err := ship.New(ship.Config{Dir: cfg.DataDir, Host: host, Interval: interval,
		Logger: cfg.Logger.With("component", "ship"), Retention: ret,
		Durable: func() uint64 { return audit.Stats().DurableSeq }}, sinks...)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := sh.Check(ctx); err != nil {
		_ = sh.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return sh, nil
}

// ShipStatus reports each sink's progress, backlog and lag; nil when
// shipping is not configured.
func (a *Agent) ShipStatus() []ship.SinkStatus {
	if a.ship == nil {
		return nil
	}
	return a.ship.Status()
}

// RetentionStatus reports local retention; ok=false when it is not
// configured.
func (a *Agent) RetentionStatus() (ship.RetentionStatus, bool) {
	if a.ship == nil {
		return ship.RetentionStatus{}, false
	}
	return a.ship.RetentionStatus()
}

// stopShip makes a last pass after the log was closed, so the final
// checkpoint leaves the host too, then closes the sinks. A sink that is
// down only costs the wait: its cursor keeps the rest for the next start.
func (a *Agent) stopShip(ctx context.Context) {
	if a.ship == nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.ship.Drain(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("final shipping pass failed; the rest ships at the next start", "err", err)
	}
	if err := a.ship.Close(); err != nil {
		a.log.Warn("close sinks", "err", err)
	}
}
