package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// session is one accepted connection and, once dialed, its destination.
type session struct {
	client *net.TCPConn
	start  time.Time

	mu      sync.Mutex
	dst     *net.TCPConn
	stopped bool
	reason  string // why the relay ended; set once
	err     error  // the I/O error behind reason, if any

	l7 *l7conn // protocol inspection, when the policy asks for it; nil otherwise
}

// setDst attaches the destination; false if the session was already
// stopped (by a forced shutdown), in which case the caller closes dst.
func (s *session) setDst(dst *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.dst = dst
	return true
}

// stop records why the session ends and closes both sides (with a reset if
// rst), once; later calls do nothing.
func (s *session) stop(reason string, rst bool) {
	s.stopWithErr(reason, nil, rst)
}

func (s *session) stopWithErr(reason string, err error, rst bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped, s.reason, s.err = true, reason, err
	for _, c := range []*net.TCPConn{s.client, s.dst} {
		if c == nil {
			continue
		}
		if rst {
			reset(c)
		} else {
			_ = c.Close()
		}
	}
}

// result is why the session ended.
func (s *session) result() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason, s.err
}

// relay copies bytes both ways until both directions are done and returns
// the byte counts: in from the destination to the client, out from the
// client to the destination.
//
// io.Copy between two *net.TCPConn uses splice(2) on Linux (TCPConn.WriteTo
// falls through to the destination's ReadFrom, which splices from a
// TCPConn): bytes never enter userspace. The conns must stay unwrapped for
// that to hold; TestRelaySplices checks it.
func (p *Proxy) relay(s *session) (in, out int64) {
	s.mu.Lock()
	dst := s.dst
	s.mu.Unlock()
	if dst == nil {
		return 0, 0
	}
	if p.cfg.IdleTimeout > 0 {
		stopWatch := make(chan struct{})
		defer close(stopWatch)
		go watchIdle(s, dst, p.cfg.IdleTimeout, stopWatch)
	}
	setNotSentLowat(s.client) // the dialed socket has it from markControl
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out = s.pipe(dst, s.client)
	}()
	in = s.pipe(s.client, dst)
	wg.Wait()
	s.stop(reasonClosed, false)
	return in, out
}

// pipe copies src to dst. At EOF it passes the half-close on (CloseWrite:
// the peer reads EOF while the other direction goes on); on an error it
// ends the session, resetting both sides so that neither waits for data
// that will not come.
func (s *session) pipe(dst, src *net.TCPConn) int64 {
	n, err := io.Copy(dst, src)
	if err == nil {
		_ = dst.CloseWrite()
		return n
	}
	reason := reasonError
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		reason = reasonReset
	}
	s.stopWithErr(reason, err, true)
	return n
}

// watchIdle stops s once no bytes moved either way for idle. It reads the
// kernel byte counters of both sockets every idle/4, so it sees traffic
// that splice keeps out of userspace, and it never closes a session whose
// last byte moved less than idle ago.
func watchIdle(s *session, dst *net.TCPConn, idle time.Duration, stop <-chan struct{}) {
	moved := func() (uint64, error) {
		a, err := tcpBytes(s.client)
		if err != nil {
			return 0, err
		}
		b, err := tcpBytes(dst)
		return a + b, err
	}
	tick := time.NewTicker(max(idle/4, time.Millisecond))
	defer tick.Stop()
	last, err := moved()
	if err != nil {
		return
	}
	lastMove := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			cur, err := moved()
			if err != nil {
				return // closed: the relay is ending anyway
			}
			if cur != last {
				last, lastMove = cur, now
				continue
			}
			if now.Sub(lastMove) >= idle {
				s.stop(reasonIdle, false)
				return
			}
		}
	}
}
