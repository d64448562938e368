package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Detection looks at a connection's first bytes with MSG_PEEK: nothing is
// consumed, so a connection whose protocol is unknown, or that no rule
// inspects, is relayed by the same splice as one never looked at.

// peekStart is the first size of a peek buffer; it doubles up to
// l7.MaxBuffer while a message needs more.
const peekStart = 4 << 10

// errNoProgress means the peer sent no more bytes: it closed its side, or
// waits for the other side first.
var errNoProgress = errors.New("proxy: no more bytes")

// peeker reads the start of one direction of a connection without
// consuming it.
type peeker struct {
	c   *net.TCPConn
	buf []byte
	n   int // bytes peeked so far: buf[:n]
}

func newPeeker(c *net.TCPConn) *peeker { return &peeker{c: c, buf: make([]byte, peekStart)} }

func (pk *peeker) bytes() []byte { return pk.buf[:pk.n] }

// more waits until the socket holds more unread bytes than were peeked
// (or the read deadline passes) and peeks at all of them.
func (pk *peeker) more() error {
	if pk.n == len(pk.buf) {
		if len(pk.buf) >= l7.MaxBuffer {
			return l7.ErrTooLarge
		}
		pk.buf = append(pk.buf, make([]byte, min(len(pk.buf), l7.MaxBuffer-len(pk.buf)))...)
	}
	rc, err := pk.c.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, perr = unix.Recvfrom(int(fd), pk.buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if perr != unix.EINTR {
				break
			}
		}
		switch {
		case perr == unix.EAGAIN:
			return false
		case perr != nil:
			return true
		case n == 0:
			return true // EOF before any byte
		}
		// The poller is edge-triggered: returning false parks until
		// new bytes arrive.
		return n > pk.n
	})
	switch {
	case err != nil:
		return err
	case perr != nil:
		return fmt.Errorf("proxy: peek: %w", perr)
	case n <= pk.n:
		return errNoProgress
	}
	pk.n = n
	return nil
}

// detect peeks until Detect names the protocol of direction d of a
// connection to port, or gives up. It returns "" for unknown (and on any
// error or deadline).
func (p *Proxy) detect(pk *peeker, d l7.Dir, port uint16) string {
	for {
		if pk.n > 0 {
			proto, done := p.cfg.L7.Detect(port, d, pk.bytes())
			if done {
				return proto
			}
		}
		if err := pk.more(); err != nil {
			return ""
		}
	}
}

// aLongTimeAgo is a read deadline that has passed: setting it wakes a
// blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// firstSpeaker waits until the client or the server sends its first bytes
// (or closes) and returns which did, with a peeker holding them. The
// other side's wait is cut short; nothing is consumed on either side.
func firstSpeaker(client, server *net.TCPConn) (l7.Dir, *peeker) {
	var winner atomic.Int32 // 1 client, 2 server
	cp, sp := newPeeker(client), newPeeker(server)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sp.more()
		if winner.CompareAndSwap(0, 2) {
			_ = client.SetReadDeadline(aLongTimeAgo)
		}
	}()
	_ = cp.more()
	if winner.CompareAndSwap(0, 1) {
		_ = server.SetReadDeadline(aLongTimeAgo)
	}
	<-done
	_ = client.SetReadDeadline(time.Time{})
	_ = server.SetReadDeadline(time.Time{})
	if winner.Load() == 2 {
		return l7.FromServer, sp
	}
	return l7.FromClient, cp
}

// safeParse calls Parse, turning a panic into an error and checking the
// message lengths, so that no parser bug can take the connection (or the
// agent) down.
func safeParse(pr l7.Parser, d l7.Dir, b []byte) (msgs []l7.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msgs, err = nil, fmt.Errorf("parser panic: %v: %w", r, l7.ErrProtocol)
		}
	}()
	msgs, err = pr.Parse(d, b)
	total := 0
	for _, m := range msgs {
		if m.Len < 0 || total+m.Len > len(b) {
			return nil, fmt.Errorf("parser returned a message of %d bytes at %d of %d: %w", m.Len, total, len(b), l7.ErrProtocol)
		}
		total += m.Len
	}
	// With an error, the messages are those before the point parsing
	// stopped (see l7.Parser).
	return msgs, err
}

// safeDeny calls Deny, turning a panic into nil (close the connection).
func safeDeny(pr l7.Parser, req *l7.Request, reason string) (b []byte) {
	defer func() {
		if r := recover(); r != nil {
			b = nil
		}
	}()
	return pr.Deny(req, reason)
}

// safeDenyLast calls DenyLast when the parser has it, Deny otherwise,
// turning a panic into nil.
func safeDenyLast(pr l7.Parser, req *l7.Request, reason string) (b []byte) {
	ld, ok := pr.(l7.LastDenier)
	if !ok {
		return safeDeny(pr, req, reason)
	}
	defer func() {
		if r := recover(); r != nil {
			b = nil
		}
	}()
	return ld.DenyLast(req, reason)
}

// safeReplace calls Replace when the parser has it, turning a panic into
// an error, as safeParse does: parsing stops there.
func safeReplace(pr l7.Parser, req *l7.Request) (rp *l7.Replacement, err error) {
	rr, ok := pr.(l7.Replacer)
	if !ok {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			rp, err = nil, fmt.Errorf("parser panic: %v: %w", r, l7.ErrProtocol)
		}
	}()
	return rr.Replace(req), nil
}

// safeEncrypted calls Encrypted, turning a panic into false.
func safeEncrypted(pr l7.Parser) (enc bool) {
	defer func() {
		if r := recover(); r != nil {
			enc = false
		}
	}()
	return pr.Encrypted()
}
