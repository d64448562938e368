package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

func TestRunRecordsStartAndStop(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Config{DataDir: dir, Password: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, keys.PrivateKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key: %v, mode %v; want 0600", err, st.Mode())
	}
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	var types []auditlog.Type
	if err := auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		types = append(types, r.Entry.Type)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(types) != 3 || types[0] != auditlog.AgentStart || types[1] != auditlog.PolicyLoad || types[2] != auditlog.AgentStop {
		t.Errorf("entries = %v; want [agent.start policy.load agent.stop]", types)
	}
	// The generated key was encrypted with the password; without it the
	// agent must say what to do.
	_, err = New(context.Background(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "VIGIL_KEY_PASSWORD") {
		t.Errorf("New without the password = %v; want a hint to set VIGIL_KEY_PASSWORD", err)
	}
}

func TestRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := keys.WritePair(dir, keys.Ed25519, nil); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, keys.PrivateKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("New with a world-readable key = %v; want a chmod 600 hint", err)
	}
}

func TestDataDirPermission(t *testing.T) {
	// A file where a directory should be fails for root and others alike.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := New(context.Background(), Config{DataDir: filepath.Join(file, "sub")})
	if err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("New with an impossible data dir = %v; want a data directory error", err)
	}
}
