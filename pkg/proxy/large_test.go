//go:build linux

package proxy

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestRelayLarge pushes 48 MiB through the proxy to an echo server and
// reads the echo back slowly at first, so both relay directions fill up
// and wait on the unsent-bytes bound and the small client-side receive
// buffer: every byte must come back, in order, and be counted.
func TestRelayLarge(t *testing.T) {
	const size = 48 << 20
	e := newEnv(t, nil)
	dst := server(t, echo)
	c := e.dial(t, dst)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))

	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		rng := rand.NewChaCha8([32]byte{7})
		buf := make([]byte, 256<<10)
		for left := size; left > 0; left -= len(buf) {
			rng.Read(buf)
			sent.Write(buf)
			if _, err := c.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	time.Sleep(200 * time.Millisecond) // let the buffers on the way fill up
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if n != size || string(got.Sum(nil)) != string(sent.Sum(nil)) {
		t.Fatalf("echo through proxy: %d bytes, sha256 %x; want %d bytes, sha256 %x", n, got.Sum(nil), size, sent.Sum(nil))
	}
	e.waitIdle(t)
	closes := ofType(e.entries(t), auditlog.ConnClose)
	if len(closes) != 1 {
		t.Fatalf("conn.close entries = %d; want 1", len(closes))
	}
	if in, out := attrInt(t, closes[0], "bytes_in"), attrInt(t, closes[0], "bytes_out"); in != size || out != size {
		t.Errorf("conn.close bytes_in, bytes_out = %d, %d; want %d each", in, out, size)
	}
}
