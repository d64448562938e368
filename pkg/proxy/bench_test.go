//go:build linux

package proxy

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The benchmarks run the same work directly and through the proxy in one
// process and report both rates and their ratio, which holds up better on
// a noisy machine than either number alone. The proxy's side includes the
// whole path: kernel-record lookup, /proc identity, policy, a signed
// conn.open made durable (fsync) before the first byte, the dial, the
// relay, and a signed conn.close.

// BenchmarkThroughput streams data to a sink, directly and through the
// proxy (one connection each), alternating 8 MiB blocks between the two so
// that both see the same machine. One op is 1 MiB each way.
func BenchmarkThroughput(b *testing.B) {
	const block = 8 << 20
	e := newEnv(b, nil)
	// The sink acknowledges each block with one byte.
	dst := server(b, func(c *net.TCPConn) {
		buf := make([]byte, 256<<10)
		var n int
		for {
			m, err := c.Read(buf)
			n += m
			if n >= block {
				n -= block
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	direct, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(dst))
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	proxied := e.dial(b, dst)
	defer proxied.Close()
	chunk := make([]byte, 1<<20)
	ack := make([]byte, 1)
	send := func(c *net.TCPConn) time.Duration {
		start := time.Now()
		for range block / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	blocks := (b.N*len(chunk) + block - 1) / block
	b.SetBytes(2 * int64(len(chunk)))
	b.ResetTimer()
	var dt, pt time.Duration
	for range blocks {
		dt += send(direct)
		pt += send(proxied)
	}
	b.StopTimer()
	mb := float64(blocks) * block / 1e6
	b.ReportMetric(mb/dt.Seconds(), "direct-MB/s")
	b.ReportMetric(mb/pt.Seconds(), "proxy-MB/s")
	b.ReportMetric(dt.Seconds()/pt.Seconds(), "proxy/direct")
}

// BenchmarkConnRate opens connections that each carry a 1-byte request
// and a 1-byte response, directly and through the proxy, from 1 and from
// 32 concurrent clients.
func BenchmarkConnRate(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) { benchConnRate(b, clients) })
	}
}

func benchConnRate(b *testing.B, clients int) {
	e := newEnv(b, nil)
	dst := server(b, func(c *net.TCPConn) {
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // until the client closes
	})
	direct := func() (*net.TCPConn, error) {
		return net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(dst))
	}
	proxied := func() (*net.TCPConn, error) {
		c, _, err := e.dialTo(e.addr, dst, true)
		return c, err
	}
	// run makes n connections spread over the clients and returns the
	// wall time.
	run := func(dial func() (*net.TCPConn, error), n int) time.Duration {
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		start := time.Now()
		for w := range clients {
			k := n / clients
			if w < n%clients {
				k++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := []byte{'x'}
				for range k {
					c, err := dial()
					if err != nil {
						errs <- err
						return
					}
					_, err = c.Write(buf)
					if err == nil {
						_, err = io.ReadFull(c, buf)
					}
					c.Close()
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return d
	}
	// Alternate rounds of direct and proxied connections so that both see
	// the same machine.
	round := 16 * clients
	b.ResetTimer()
	var dt, pt time.Duration
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		dt += run(direct, n)
		pt += run(proxied, n)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(n/dt.Seconds(), "direct-conns/s")
	b.ReportMetric(n/pt.Seconds(), "proxy-conns/s")
	b.ReportMetric(dt.Seconds()/pt.Seconds(), "proxy/direct")
	e.waitIdle(b)
	if s := e.p.Stats(); s.Relayed != uint64(b.N) || s.AuditFailures != 0 {
		b.Errorf("Stats() = %+v; want %d relayed", s, b.N)
	}
}
