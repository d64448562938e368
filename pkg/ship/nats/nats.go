// Package nats streams entries and checkpoints to NATS JetStream, into a
// stream that denies deletes and purges and has no limit that would age
// out or discard what was shipped.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// Config configures a Sink.
type Config struct {
	Name        string // sink name (cursor file); default "nats"
	URL         string // e.g. nats://127.0.0.1:4222
	Stream      string // stream name; default "VIGIL"
	Subject     string // subject prefix; messages go to PREFIX.HOST.entry and PREFIX.HOST.checkpoint; default "vigil"
	Host        string
	Create      bool // create the stream (deny_delete, deny_purge, no limits) when it does not exist
	AllowLimits bool // accept a stream whose limits may drop messages (max age, msgs, bytes, ...)
	Options     []nats.Option
}

// Sink publishes to JetStream.
type Sink struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	entry   string
	ckpt    string
	timeout time.Duration
}

// New validates cfg; it connects on Check.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = "nats"
	}
	if cfg.URL == "" {
		return nil, errors.New("nats: no url configured")
	}
	if cfg.Host == "" {
		return nil, errors.New("nats: no host name configured")
	}
	if cfg.Stream == "" {
		cfg.Stream = "VIGIL"
	}
	if cfg.Subject == "" {
		cfg.Subject = "vigil"
	}
	host := subjectToken(cfg.Host)
	return &Sink{cfg: cfg, entry: cfg.Subject + "." + host + ".entry", ckpt: cfg.Subject + "." + host + ".checkpoint", timeout: 10 * time.Second}, nil
}

// subjectToken makes a host name one subject token: '.', '*', '>' and
// white space would split or widen it.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// Name implements ship.Sink.
func (s *Sink) Name() string { return s.cfg.Name }

// Kind implements ship.Sink.
func (s *Sink) Kind() string { return "nats" }

// Close implements ship.Sink.
func (s *Sink) Close() error {
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}

// Check connects, creates the stream when allowed and it is missing, and
// refuses a stream that lets what was shipped be removed.
func (s *Sink) Check(ctx context.Context) error {
	if s.nc == nil {
		opts := append([]nats.Option{nats.Name("vigil-ship"), nats.MaxReconnects(-1)}, s.cfg.Options...)
		nc, err := nats.Connect(s.cfg.URL, opts...)
		if err != nil {
			return connectError(s.cfg.URL, err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return fmt.Errorf("nats: %w", err)
		}
		s.nc, s.js = nc, js
	}
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) && s.cfg.Create {
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        s.cfg.Stream,
			Description: "vigil audit log: entries and signed checkpoints (append-only)",
			Subjects:    []string{s.cfg.Subject + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Discard:     jetstream.DiscardNew,
			MaxMsgs:     -1,
			MaxBytes:    -1,
			MaxAge:      0,
			DenyDelete:  true,
			DenyPurge:   true,
			Duplicates:  2 * time.Minute,
		})
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return ship.Refuse(fmt.Errorf("nats: stream %s does not exist: create it with deny_delete and deny_purge, or set create: true", s.cfg.Stream))
		}
		return fmt.Errorf("nats: stream %s: %w", s.cfg.Stream, err)
	}
	if err := CheckStream(st.CachedInfo().Config, s.cfg.AllowLimits); err != nil {
		return ship.Refuse(err)
	}
	return nil
}

// CheckStream refuses a stream configuration under which shipped messages
// could disappear: deletes or purges allowed, a retention policy that
// removes acknowledged messages, a roll-up, or (unless allowLimits) any
// limit that ages out or discards messages.
func CheckStream(c jetstream.StreamConfig, allowLimits bool) error {
	var why []string
	if !c.DenyDelete {
		why = append(why, "deny_delete is off")
	}
	if !c.DenyPurge {
		why = append(why, "deny_purge is off")
	}
	if c.Retention != jetstream.LimitsPolicy {
		why = append(why, fmt.Sprintf("retention is %s (messages are removed once consumed)", c.Retention))
	}
	if c.AllowRollup {
		why = append(why, "roll-ups are allowed (a roll-up purges earlier messages)")
	}
	if c.AllowMsgTTL {
		why = append(why, "per-message TTLs are allowed")
	}
	if !allowLimits {
		if c.MaxAge > 0 {
			why = append(why, fmt.Sprintf("max_age is %s", c.MaxAge))
		}
		if c.MaxMsgs > 0 {
			why = append(why, fmt.Sprintf("max_msgs is %d", c.MaxMsgs))
		}
		if c.MaxBytes > 0 {
			why = append(why, fmt.Sprintf("max_bytes is %d", c.MaxBytes))
		}
		if c.MaxMsgsPerSubject > 0 {
			why = append(why, fmt.Sprintf("max_msgs_per_subject is %d", c.MaxMsgsPerSubject))
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("nats: refusing stream %s: %s; shipped entries could be lost. Use a stream with deny_delete, deny_purge, limits retention and no max_age/max_msgs/max_bytes (allow_limits: true accepts limits)", c.Name, strings.Join(why, ", "))
	}
	return nil
}

// Publish implements ship.EntrySink. Each message is published and
// acknowledged before the next, so the stream holds them in log order even
// across retries; the Nats-Msg-Id header lets JetStream drop a duplicate
// sent again after a failure within its duplicate window.
func (s *Sink) Publish(ctx context.Context, msgs []ship.Message) error {
	if s.js == nil {
		if err := s.Check(ctx); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("nats: encode: %w", err)
		}
		subj := s.entry
		if m.Kind == ship.KindCheckpoint {
			subj = s.ckpt
		}
		pctx, cancel := context.WithTimeout(ctx, s.timeout)
		_, err = s.js.PublishMsg(pctx, &nats.Msg{Subject: subj, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{m.ID()}}})
		cancel()
		if err != nil {
			return fmt.Errorf("nats: publish %s: %w", m.ID(), err)
		}
	}
	return nil
}
