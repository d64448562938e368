//go:build linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// TestAddListener: connections accepted on an added listener are resolved
// with its Source's resolver, dialed through its Within, and recorded with
// its attributes; after RemoveListener nothing is accepted there, and the
// Config listeners never use the Source.
func TestAddListener(t *testing.T) {
	e := newEnv(t, nil)
	dst := server(t, echo)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := addrPort(ln.Addr())
	var resolved, within atomic.Int32
	src := Source{
		Resolver: ResolverFunc(func(c netip.AddrPort) (intercept.Origin, bool, error) {
			resolved.Add(1)
			return e.res.Lookup(c)
		}),
		Within: func(fn func() error) error { within.Add(1); return fn() },
		Attrs:  map[string]string{"netns_ino": "4026532000"},
	}
	before := e.p.Listeners()
	if err := e.p.AddListener(ln, src); err != nil {
		t.Fatal(err)
	}
	if err := e.p.AddListener(ln, src); err == nil {
		t.Error("AddListener twice = nil error; want one")
	}
	if got := e.p.Listeners(); got != before+1 {
		t.Errorf("Listeners() = %d; want %d", got, before+1)
	}

	c, _, err := e.dialTo(addr, dst, true)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "through the added listener")
	c.Close()
	c = e.dial(t, dst) // a Config listener: no Source
	roundTrip(t, c, "through the main listener")
	c.Close()
	e.waitIdle(t)
	if resolved.Load() != 1 || within.Load() != 1 {
		t.Errorf("Source used %d times to resolve, %d to dial; want 1 each", resolved.Load(), within.Load())
	}
	var tagged, plain int
	for _, o := range ofType(e.entries(t), auditlog.ConnOpen) {
		if o.Attr("netns_ino") == "4026532000" {
			tagged++
		} else {
			plain++
		}
	}
	if tagged != 1 || plain != 1 {
		t.Errorf("conn.open entries with the Source's attrs = %d, without = %d; want 1 each", tagged, plain)
	}

	if err := e.p.RemoveListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := e.p.RemoveListener(ln); err == nil {
		t.Error("RemoveListener twice = nil error; want one")
	}
	if got := e.p.Listeners(); got != before {
		t.Errorf("Listeners() after RemoveListener = %d; want %d", got, before)
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Errorf("dial %v after RemoveListener succeeded; want refused", addr)
	}
}

// TestAddListenerWithinFails: a Source that cannot dial (its namespace is
// gone) ends the connection as a failed dial, recorded.
func TestAddListenerWithinFails(t *testing.T) {
	e := newEnv(t, nil)
	dst := server(t, echo)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	gone := errors.New("namespace gone")
	if err := e.p.AddListener(ln, Source{Within: func(func() error) error { return gone }}); err != nil {
		t.Fatal(err)
	}
	c, _, err := e.dialTo(addrPort(ln.Addr()), dst, true)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		// The proxy's reset came before connect() had looked at the
		// socket's state: the reset is what is expected, only sooner.
	case err != nil:
		t.Fatal(err)
	default:
		expectReset(t, c)
	}
	e.waitIdle(t)
	closes := ofType(e.entries(t), auditlog.ConnClose)
	if len(closes) != 1 || closes[0].Attr("reason") != reasonDialFailed {
		t.Errorf("conn.close entries = %+v; want one with reason %s", closes, reasonDialFailed)
	}
}

// TestAddListenerAfterShutdown: a proxy that stopped refuses new listeners
// and closes them.
func TestAddListenerAfterShutdown(t *testing.T) {
	e := newEnv(t, nil)
	e.cancel()
	<-e.serve
	e.serve <- nil // for the cleanup
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.AddListener(ln, Source{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddListener after shutdown = %v; want ErrClosed", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still open after a refused AddListener")
	}
}
