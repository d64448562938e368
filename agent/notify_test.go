package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNotify runs the agent under a stand-in for systemd's notify socket:
// READY=1 after start, WATCHDOG=1 at half the watchdog interval, then
// STOPPING=1.
func TestNotify(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "vigil-notify-") // short: unix paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	path := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", "")

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, Config{DataDir: dir, PolicyPath: dir + "/none.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	var got []string
	buf := make([]byte, 256)
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
		return string(buf[:n])
	}
	if m := read(); m != "READY=1" {
		t.Fatalf("first notification = %q; want READY=1", m)
	}
	for range 2 {
		if m := read(); m != "WATCHDOG=1" {
			t.Fatalf("notification = %q; want WATCHDOG=1", m)
		}
	}
	cancel()
	for {
		if m := read(); m == "STOPPING=1" {
			break
		} else if m != "WATCHDOG=1" {
			t.Fatalf("notifications %q; want STOPPING=1 after the pings", got)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}
