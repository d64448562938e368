package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestWatchdogWithheldWhileLogFails fills the file system under a running
// agent: while its audit log cannot be written, the systemd watchdog pings
// stop (so systemd restarts it) and vigil_log_writable reads 0; once space
// is back the log recovers and the pings resume.
func TestWatchdogWithheldWhileLogFails(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Need(t, "root", "mounts a size-limited tmpfs to fill it")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m,mode=0700"); err != nil {
		testenv.Need(t, "CAP_SYS_ADMIN", fmt.Sprintf("mount tmpfs: %v", err))
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)

	sockDir, err := os.MkdirTemp("", "vigil-wd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	notify := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	// Pings every 200ms: long enough that traffic on a full disk loses
	// entries between two checks, as it does between systemd's 15s ones.
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := filepath.Join(mnt, "data")
	a, err := New(ctx, Config{DataDir: dir, PolicyPath: filepath.Join(mnt, "none.yaml"), MetricsAddr: "127.0.0.1:0",
		Log: auditlog.Options{SegmentMaxBytes: 64 << 10, RetryInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// pings counts WATCHDOG=1 messages during d.
	pings := func(d time.Duration) int {
		n := 0
		buf := make([]byte, 64)
		for end := time.Now().Add(d); time.Now().Before(end); {
			conn.SetReadDeadline(end)
			m, err := conn.Read(buf)
			if err != nil {
				break
			}
			if string(buf[:m]) == "WATCHDOG=1" {
				n++
			}
		}
		return n
	}
	if n := pings(time.Second); n == 0 {
		t.Fatal("no watchdog pings from a healthy agent")
	}

	// Fill the file system, then append until the log notices.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	// Traffic keeps coming while the disk is full, as it would on a host.
	big := strings.Repeat("x", 4096)
	fillCtx, stopFill := context.WithCancel(ctx)
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		for i := 0; fillCtx.Err() == nil && i < 20000; i++ {
			_, _ = a.audit.Append(fillCtx, auditlog.Entry{Type: auditlog.AgentReload, Attrs: map[string]string{"fill": big}})
			time.Sleep(time.Millisecond)
		}
	}()
	for i := 0; a.audit.Stats().Err == nil; i++ {
		if i == 2000 {
			t.Fatal("the log kept accepting entries on a full file system")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pings(300 * time.Millisecond) // a ping already in flight
	if n := pings(1500 * time.Millisecond); n != 0 {
		t.Errorf("%d watchdog pings while the log could not be written; want none", n)
	}
	if v := scrapeValues(t, "http://"+a.MetricsAddr()+"/metrics")["vigil_log_writable"]; v != 0 {
		t.Errorf("vigil_log_writable = %v while the log fails; want 0", v)
	}

	stopFill()
	<-filled
	os.Remove(filler)
	deadline := time.Now().Add(10 * time.Second)
	for a.audit.Stats().Err != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not recover after space was freed: %v", a.audit.Stats().Err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := pings(2 * time.Second); n == 0 {
		t.Error("watchdog pings did not resume after the log recovered")
	}
}
