package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestS3SecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"no flag uses the environment", "", "", ""},
		{"trailing newline trimmed", write("ok", "s3cret\n"), "s3cret", ""},
		{"empty file", write("empty", " \n"), "", "is empty"},
		{"missing file", filepath.Join(dir, "absent"), "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s3SecretKey(tc.path)
			if tc.err == "" && (err != nil || got != tc.want) {
				t.Fatalf("s3SecretKey(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("s3SecretKey(%q) error = %v; want one saying %q", tc.path, err, tc.err)
			}
		})
	}
}

// The secret is not accepted as a flag value: argv is world readable.
func TestS3SecretKeyFlagGone(t *testing.T) {
	code, _, stderr := vigil(t, context.Background(), "archive", "pull", "--s3-secret-key", "s3cret", "s3://b/p/h", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "s3-secret-key") {
		t.Fatalf("archive pull --s3-secret-key = %d, %q; want a usage error", code, stderr)
	}
	code, _, stderr = vigil(t, context.Background(), "archive", "pull", "--s3-secret-key-file", filepath.Join(t.TempDir(), "absent"), "s3://b/p/h", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "--s3-secret-key-file") {
		t.Fatalf("archive pull --s3-secret-key-file absent = %d, %q; want an error naming the flag", code, stderr)
	}
}
