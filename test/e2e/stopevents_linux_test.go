package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// runDenyLoop connects to addr up to n times as fast as it can and
// counts the connects the kernel refused with EPERM (the deny rule's
// errno). It prints "started" after the first such refusal, stops early
// after ok connects in a row that were not refused (interception is
// gone), or 20,000 connects after the file stop appears (stop "-": none),
// and prints "denied=N other=M" at the end.
func runDenyLoop(addr, n, ok, stop string) int {
	ap, err := netip.ParseAddrPort(addr)
	max, err2 := strconv.Atoi(n)
	okRun, err3 := strconv.Atoi(ok)
	if err := errors.Join(err, err2, err3); err != nil {
		fmt.Fprintln(os.Stderr, "bad denyloop spec:", err)
		return 2
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	denied, other, run := 0, 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < max && time.Now().Before(deadline); i++ {
		if stop != "-" && i%1000 == 0 {
			if _, err := os.Stat(stop); err == nil {
				max, stop = i+20000, "-"
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socket:", err)
			return 1
		}
		err = unix.Connect(fd, sa)
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			if denied == 0 {
				fmt.Println("started")
			}
			denied++
			run = 0
			continue
		}
		other++
		run++
		if okRun > 0 && run >= okRun {
			break
		}
	}
	fmt.Printf("denied=%d other=%d\n", denied, other)
	return 0
}

// denyLoop runs runDenyLoop in cg and returns a channel closed once the
// kernel refused a connect and, to call at the end, the number of
// connects it saw refused. stop is runDenyLoop's stop file ("-": none).
func denyLoop(t *testing.T, cg string, port, n, ok int, stop string) (started <-chan struct{}, denied func() int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := cgroupCmd(ctx, cg, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=denyloop 127.0.0.1:%d %d %d %s", clientEnv, port, n, ok, stop))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := make(chan struct{})
	result := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		last := ""
		for sc.Scan() {
			if sc.Text() == "started" {
				close(st)
			}
			last = sc.Text()
		}
		result <- last
	}()
	return st, func() int {
		defer cancel()
		last := <-result
		if err := cmd.Wait(); err != nil {
			t.Fatalf("deny loop: %v: %s", err, errb.String())
		}
		var d, o int
		if _, err := fmt.Sscanf(last, "denied=%d other=%d", &d, &o); err != nil {
			t.Fatalf("deny loop output %q: %v", last, err)
		}
		t.Logf("deny loop: %d connects denied by the kernel, %d not", d, o)
		return d
	}
}

// kernelDenyAccount counts the conn.deny entries to dst that the kernel
// decided, and the kernel events recorded as lost.
func kernelDenyAccount(t *testing.T, dir, dst string) (denies, lost int) {
	t.Helper()
	for _, e := range entries(t, dir) {
		switch {
		case e.Type == auditlog.ConnDeny && e.Dst == dst && e.Attr("path") == "kernel":
			denies++
		case e.Type == auditlog.LogGap && e.Attr("source") == "kernel":
			n, err := strconv.Atoi(e.Attr("events_lost"))
			if err != nil {
				t.Fatalf("log.gap %d: events_lost %q", e.Seq, e.Attr("events_lost"))
			}
			lost += n
		}
	}
	return denies, lost
}

// TestKernelEventsAcrossStop proves that no kernel event is lost without
// a trace when the agent stops: every connect the kernel refused is a
// conn.deny entry or counted in a log.gap. Fail-open: the agent stops
// while a client is refused as fast as it can connect; the programs are
// detached before the last drain of the ring buffer. Fail-closed: the
// agent stops, without draining, while the client is refused as fast as
// it can connect, and the client goes on being refused while no agent
// runs, more often than the ring buffer holds; the next agent records
// what waited in the pinned ring buffer and, as a log.gap, what did not
// fit.
func TestKernelEventsAcrossStop(t *testing.T) {
	requireRoot(t)
	port := echoServer(t)
	dst := fmt.Sprintf("127.0.0.1:%d", port)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: deny-loop
    action: deny
    errno: EPERM
    match:
      dst: { cidr: ["127.0.0.1"], ports: ["%d"] }
`, port))

	t.Run("open", func(t *testing.T) {
		cg := testCgroup(t)
		a := startAgent(t, cg, "", 0, "--capture", capture(port), "--policy", polPath)
		started, denied := denyLoop(t, cg, port, 400000, 200, "-")
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the kernel did not deny the loop's connects")
		}
		time.Sleep(200 * time.Millisecond)
		a.stop()
		n := denied()
		d, lost := kernelDenyAccount(t, a.dataDir, dst)
		t.Logf("recorded: %d conn.deny, %d lost in log.gap", d, lost)
		if d+lost != n {
			kinds := map[string]int{}
			for _, e := range entries(t, a.dataDir) {
				kinds[fmt.Sprintf("%s %s %s %s", e.Type, e.Attr("path"), e.Dst, e.Attr("events_lost"))]++
			}
			t.Errorf("kernel denied %d connects; the log has %d conn.deny and %d lost in log.gap (%d unaccounted)\nentries: %v\nagent:\n%s", n, d, lost, n-d-lost, kinds, a.stderr.String())
		}
		verify(t, a.dataDir)
	})

	t.Run("closed", func(t *testing.T) {
		pin := bpffsDir(t)
		cg := testCgroup(t)
		proxyPort := freePort(t)
		flags := []string{"--capture", capture(port), "--policy", polPath, "--fail-mode", "closed", "--pin-path", pin}
		a := startAgent(t, cg, "", proxyPort, flags...)
		// The agent stops while a client is refused as fast as it can
		// connect: the pinned programs go on queueing faster than any
		// reader, so the agent must stop without draining (the harness
		// fails a stop that takes 30 s; the client goes on until the
		// stop is over). Then the client goes on being refused while no
		// agent runs, more often than the ring buffer holds.
		stopFile := filepath.Join(t.TempDir(), "stop")
		started, denied := denyLoop(t, cg, port, 10000000, 0, stopFile)
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the kernel did not deny the loop's connects")
		}
		time.Sleep(100 * time.Millisecond)
		a.stop()
		if err := os.WriteFile(stopFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		n := denied()
		b := startAgent(t, cg, a.dataDir, proxyPort, flags...)
		waitFor(t, func() bool {
			d, lost := liveDenyAccount(b.dataDir, dst)
			return d+lost >= n
		})
		b.stop()
		d, lost := kernelDenyAccount(t, a.dataDir, dst)
		t.Logf("recorded: %d conn.deny, %d lost in log.gap", d, lost)
		if lost == 0 {
			t.Errorf("no log.gap for the events that did not fit in the ring buffer (%d conn.deny recorded of %d)", d, n)
		}
		if d+lost != n {
			t.Errorf("kernel denied %d connects; the log has %d conn.deny and %d lost in log.gap (%d unaccounted)", n, d, lost, n-d-lost)
		}
		var downtime bool
		for _, e := range entries(t, a.dataDir) {
			downtime = downtime || e.Type == auditlog.LogGap && e.Attr("source") == "kernel" && strings.Contains(e.Attr("reason"), "no agent")
		}
		if !downtime {
			t.Error("no log.gap says that events were dropped while no agent ran")
		}
		verify(t, a.dataDir)
	})
}

// liveDenyAccount is kernelDenyAccount on the log of a running agent: it
// counts what it can read and ignores a tail still being written.
func liveDenyAccount(dir, dst string) (denies, lost int) {
	_ = auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		e := r.Entry
		switch {
		case e.Type == auditlog.ConnDeny && e.Dst == dst && e.Attr("path") == "kernel":
			denies++
		case e.Type == auditlog.LogGap && e.Attr("source") == "kernel":
			n, _ := strconv.Atoi(e.Attr("events_lost"))
			lost += n
		}
		return nil
	})
	return denies, lost
}
