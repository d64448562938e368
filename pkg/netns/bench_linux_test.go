package netns

import (
	"context"
	"net"
	"testing"
	"time"
)

// acceptAndClose accepts on ln until it is closed.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// BenchmarkDial measures what dialing from inside a namespace (Do: a
// locked thread and two setns calls) costs over a plain dial, both to a
// loopback listener, alternating in one loop so that both see the same
// machine load. It reports each mean and their ratio (netns/host).
func BenchmarkDial(b *testing.B) {
	name := testNetns(b)
	h, err := Open("/run/netns/"+name, ID{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	inner, err := h.Listen(context.Background(), nil, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	outer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer outer.Close()
	go acceptAndClose(inner)
	go acceptAndClose(outer)
	innerAddr, outerAddr := inner.Addr().String(), outer.Addr().String()

	var host, ns time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		c, err := net.Dial("tcp", outerAddr)
		if err != nil {
			b.Fatal(err)
		}
		host += time.Since(t0)
		c.Close()

		t0 = time.Now()
		if err := h.Do(func() error {
			var err error
			c, err = net.Dial("tcp", innerAddr)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		ns += time.Since(t0)
		c.Close()
	}
	b.ReportMetric(float64(host.Nanoseconds())/float64(b.N), "host-ns/dial")
	b.ReportMetric(float64(ns.Nanoseconds())/float64(b.N), "netns-ns/dial")
	b.ReportMetric(float64(ns)/float64(host), "ratio")
}
