package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func serve(t *testing.T, path string) *Server {
	t.Helper()
	s, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.HandleFunc("GET /v1/hello", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, map[string]string{"hello": r.URL.Query().Get("name")})
	})
	s.HandleFunc("GET /v1/fail", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusBadRequest, errors.New("bad filter: try --help"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "vigil.sock")
	serve(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("socket mode = %v, want 0600", m)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	c := NewClient(path)
	ctx := context.Background()
	var out map[string]string
	if err := c.Get(ctx, "/v1/hello", map[string][]string{"name": {"auditor"}}, &out); err != nil {
		t.Fatal(err)
	}
	if out["hello"] != "auditor" {
		t.Errorf("got %v", out)
	}
	err = c.Get(ctx, "/v1/fail", nil, &out)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest || se.Message != "bad filter: try --help" {
		t.Errorf("error response = %v", err)
	}
	if err := c.Get(ctx, "/v1/nope", nil, &out); !IsNotFound(err) {
		t.Errorf("unknown route = %v, want a 404", err)
	}
}

func TestSocketLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vigil.sock")

	c := NewClient(path)
	if err := c.Get(context.Background(), "/v1/hello", nil, new(any)); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no socket: %v, want ErrNoAgent", err)
	}

	// A crashed agent leaves its socket behind: the next one replaces it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	serve(t, path)
	if _, err := Listen(path, nil); err == nil {
		t.Fatal("a second server on a live socket was allowed")
	}
	if err := c.Get(context.Background(), "/v1/hello", nil, new(any)); err != nil {
		t.Errorf("after replacing the stale socket: %v", err)
	}

	path = filepath.Join(dir, "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, nil); err == nil {
		t.Error("Listen replaced a regular file")
	}
}
