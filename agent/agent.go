// Package agent is the vigil daemon: it owns the lifecycle of the audit log
// and of everything that writes to it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// DefaultDataDir is where the agent keeps its log and, in zero-config mode,
// its signing key.
const DefaultDataDir = "/var/lib/vigil"

// Config is the agent's configuration.
type Config struct {
	DataDir  string // default DefaultDataDir
	KeyRef   string // private key path or KMS URI; "" means DataDir/signing.key, created on first start
	Password []byte // password of an encrypted key file
	Host     string // default: hostname
	Log      auditlog.Options
	Logger   *slog.Logger
}

// Agent is a running vigil daemon.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	audit  *auditlog.Log
	keyID  string
	pubKey string
}

// New loads (or, with no key configured, creates) the signing key and opens
// the audit log.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("agent: cannot create data directory %s: permission denied: run as root or pass --data-dir", cfg.DataDir)
		}
		return nil, fmt.Errorf("agent: create data directory: %w", err)
	}
	sv, pubPath, err := loadKey(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pub, err := keys.PublicKey(sv)
	if err != nil {
		return nil, err
	}
	id, err := keys.ID(pub)
	if err != nil {
		return nil, err
	}
	lo := cfg.Log
	lo.Signer = sv
	lo.Host = cfg.Host
	lo.Logger = cfg.Logger
	audit, err := auditlog.Open(ctx, cfg.DataDir, lo)
	if err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: cfg.Logger, audit: audit, keyID: id, pubKey: pubPath}, nil
}

// loadKey returns the signer and, when known, the path of its public key.
func loadKey(ctx context.Context, cfg Config) (signature.SignerVerifier, string, error) {
	ref := cfg.KeyRef
	pubPath := ""
	if ref == "" {
		ref = filepath.Join(cfg.DataDir, keys.PrivateKeyFile)
		pubPath = filepath.Join(cfg.DataDir, keys.PublicKeyFile)
		if _, err := os.Stat(ref); errors.Is(err, fs.ErrNotExist) {
			p, err := keys.WritePair(cfg.DataDir, keys.ECDSAP256, cfg.Password)
			if err != nil {
				return nil, "", fmt.Errorf("agent: create signing key: %w", err)
			}
			cfg.Logger.Info("generated a signing key on first start", "private_key", p.PrivatePath, "public_key", p.PublicPath, "fingerprint", p.ID, "encrypted", cfg.Password != nil)
		}
	}
	sv, err := keys.LoadSigner(ctx, ref, func() ([]byte, error) { return cfg.Password, nil })
	if err != nil {
		return nil, "", err
	}
	if err := checkKeyMode(ref); err != nil {
		return nil, "", err
	}
	return sv, pubPath, nil
}

// checkKeyMode refuses a private key file that others can read.
func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil // a KMS URI, not a file
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("agent: signing key %s has mode %04o: others can read it; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}

// Run records agent.start, serves until ctx ends, then records agent.stop,
// writes a final checkpoint and closes the log.
func (a *Agent) Run(ctx context.Context) error {
	v := version.Get()
	start := time.Now()
	if _, err := a.audit.AppendSync(ctx, auditlog.Entry{
		Type:  auditlog.AgentStart,
		Attrs: map[string]string{"version": v.Version, "commit": v.Commit, "key_id": a.keyID, "pid": fmt.Sprint(os.Getpid())},
	}); err != nil {
		_ = a.audit.Close(context.Background())
		return fmt.Errorf("agent: record start: %w", err)
	}
	a.log.Info("vigil agent started", "data_dir", a.cfg.DataDir, "fingerprint", a.keyID, "public_key", a.pubKey, "version", v.Version)
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, serr := a.audit.AppendSync(stopCtx, auditlog.Entry{
		Type:  auditlog.AgentStop,
		Attrs: map[string]string{"uptime": time.Since(start).Round(time.Millisecond).String()},
	})
	cerr := a.audit.Close(stopCtx)
	a.log.Info("vigil agent stopped", "next_seq", a.audit.Stats().NextSeq)
	return errors.Join(serr, cerr)
}

// Close releases the log without recording a stop; for errors before Run.
func (a *Agent) Close(ctx context.Context) error { return a.audit.Close(ctx) }
