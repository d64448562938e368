// Package proxy is vigil's transparent TCP proxy. The kernel redirects an
// application's connect() to the proxy's listener; for each connection the
// proxy finds where the application meant to go and who it is, asks the
// policy, records the decision in the audit log and, only once that record
// is durable, relays bytes to the original destination.
//
// Each accepted connection is handled by one goroutine:
//
//  1. Resolver.Lookup by the client's address. No record means the client
//     connected to the proxy's port directly: conn.deny, rule
//     "not-redirected", and a reset.
//  2. The kernel's Origin is enriched from /proc (identity.FromPID).
//  3. Decider.Decide. A deny is recorded as conn.deny, made durable, and the
//     client is reset (RST).
//  4. Otherwise conn.open is appended while the destination is dialed (with
//     SO_MARK, so the kernel does not redirect the proxy's own connection).
//     No byte is relayed before conn.open is durable; if it cannot be made
//     durable both sides are reset. If the dial fails, a conn.close with
//     attribute error=refused|timeout|unreachable|… follows and the client
//     is reset: its connect() already succeeded against the proxy, so it
//     sees a reset on its first read or write rather than ECONNREFUSED, and
//     a destination that never answers costs it DialTimeout first.
//  5. Bytes are relayed both ways with splice(2), half-closes passed on;
//     or, when the Decision carries L7 rules and a parser knows the
//     protocol, through that parser (l7relay.go). When the Decider uses
//     destination names, step 3 first peeks at the client's TLS SNI or
//     HTTP Host (l7.go).
//  6. conn.close records bytes_in (destination to client), bytes_out
//     (client to destination), duration_ms, reason and open_seq (the seq of
//     the conn.open), without waiting for durability.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// Resolver finds what the kernel recorded for a redirected connection, by
// the client's address as the proxy's listener sees it. found is false when
// the kernel has no record: the connection did not come through the
// redirect. An error means the record could not be read.
type Resolver interface {
	Lookup(client netip.AddrPort) (origin intercept.Origin, found bool, err error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(client netip.AddrPort) (origin intercept.Origin, found bool, err error)

// Lookup calls f.
func (f ResolverFunc) Lookup(client netip.AddrPort) (intercept.Origin, bool, error) { return f(client) }

// Auditor appends entries to the audit log; *auditlog.Log is one. The Ack's
// Wait returns nil only once the entry is durable.
type Auditor interface {
	Append(ctx context.Context, e auditlog.Entry) (*auditlog.Ack, error)
}

// Decider is the policy hook. Decide is called concurrently, once per
// redirected connection, before anything is sent to the destination; the
// client waits for it, so it should return promptly. When it uses names
// (Conn.Name), Decide is called again, with the same Conn but another
// Name, for an HTTP request inspected by the L7 relay whose Host names
// another destination than the one the connection was decided for.
type Decider interface {
	Decide(ctx context.Context, c *Conn) Decision
}

// Defaults for Config.
const (
	DefaultDialMark    = 0x7669 // "vi"
	DefaultDialTimeout = 10 * time.Second
)

// DefaultListen are the addresses the proxy listens on when Config.Listen
// is empty.
var DefaultListen = []string{"127.0.0.1:1015", "[::1]:1015"}

// closeAuditTimeout bounds how long appending a conn.close entry may block
// (Append blocks only while the log's queue is full).
const closeAuditTimeout = 5 * time.Second

// Config configures a Proxy. Zero values take the defaults shown.
type Config struct {
	// Listen are the addresses to listen on; default DefaultListen. An IPv6
	// address that cannot be bound because IPv6 is disabled on the host is
	// skipped with a warning, as long as another address was bound.
	Listen   []string
	Resolver Resolver // required
	Auditor  Auditor  // required
	Decider  Decider  // nil allows every connection under rule "default-allow"
	// DialMark is set as SO_MARK on every outbound socket so that the
	// kernel side never redirects the proxy's own connections; default
	// DefaultDialMark. Setting it needs CAP_NET_ADMIN.
	DialMark    uint32
	DialTimeout time.Duration // default DefaultDialTimeout
	// IdleTimeout closes a relay after no bytes moved either way for this
	// long (checked every IdleTimeout/4 from both sockets' kernel
	// counters, so a relay closes between IdleTimeout and 1.25×IdleTimeout
	// after its last byte). 0 never closes idle relays.
	IdleTimeout      time.Duration
	Logger           *slog.Logger // default: discard
	IdentityProcRoot string       // /proc of the host pid namespace; default "/proc"
	// Enrich, when set, adds to a connection's identity what /proc does
	// not tell (the Kubernetes pod), before the Decider sees it and the
	// entry is written; attrs are the entry's attributes, to add to. It
	// runs on the connection's goroutine before anything is relayed, so it
	// must not block: memory reads only.
	Enrich func(c *Conn, attrs map[string]string)
	// IdentityCacheTTL is how long what /proc said about a process is
	// reused for its next connections (identity.Cache: same pid, start
	// time, comm and cgroup); default identity.DefaultCacheTTL. Negative
	// reads /proc for every connection.
	IdentityCacheTTL time.Duration
	// L7 turns on request-level inspection for connections whose
	// Decision asks for it; the zero value inspects nothing.
	L7 L7Config
}

// Proxy is a transparent proxy bound to its listeners. Create it with New,
// run it with Serve, stop it with Shutdown or by ending Serve's context.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	lns   []*net.TCPListener
	addrs []netip.AddrPort
	ids   *identity.Cache // nil: read /proc for every connection
	stats counters

	stopOnce sync.Once
	stopped  chan struct{} // closed when the proxy stops accepting

	acceptWG sync.WaitGroup // accept loops
	connWG   sync.WaitGroup // connection goroutines

	mu       sync.Mutex
	serving  bool
	closing  bool
	forced   bool
	sessions map[*session]struct{}
	cancel   context.CancelFunc // cancels connection contexts on a forced shutdown

	extra     map[*net.TCPListener]*extraListener // AddListener; guarded by mu
	startLoop func(*extraListener)                // set by Serve: starts an added listener's accept loop

	// withinSlots bounds dials made inside another namespace: each holds
	// a locked OS thread for the whole dial, and Go aborts the process
	// past 10,000 threads, so one pod dialing a black hole must queue,
	// not crash the agent.
	withinSlots chan struct{}
}

// maxWithinDials is how many dials may run inside other namespaces at once.
const maxWithinDials = 512

// New checks cfg and binds the listeners, so that Addrs is valid at once
// and a port that is taken is reported here rather than from Serve. It
// also checks that outbound sockets can be marked.
func New(cfg Config) (*Proxy, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("proxy: no resolver configured")
	}
	if cfg.Auditor == nil {
		return nil, errors.New("proxy: no auditor configured")
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = DefaultListen
	}
	if cfg.DialMark == 0 {
		cfg.DialMark = DefaultDialMark
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("proxy: idle timeout %v is negative", cfg.IdleTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkMark(cfg.DialMark); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		stopped:  make(chan struct{}),
		sessions: make(map[*session]struct{}),

		withinSlots: make(chan struct{}, maxWithinDials),
	}
	if cfg.IdentityCacheTTL >= 0 {
		p.ids = identity.NewCache(cfg.IdentityProcRoot, 0, cfg.IdentityCacheTTL)
	}
	lc := listenConfig()
	for _, addr := range cfg.Listen {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			if ipv6Unavailable(addr, err) {
				p.log.Warn("IPv6 listener skipped: IPv6 is disabled on this host", "listen", addr, "err", err)
				continue
			}
			p.closeListeners()
			return nil, fmt.Errorf("proxy: listen on %s: %w", addr, err)
		}
		tl := ln.(*net.TCPListener)
		p.lns = append(p.lns, tl)
		p.addrs = append(p.addrs, addrPort(tl.Addr()))
	}
	if len(p.lns) == 0 {
		return nil, fmt.Errorf("proxy: none of the listen addresses %v could be bound", cfg.Listen)
	}
	return p, nil
}

// listenConfig sets keepalive and the receive buffer once on the listening
// socket; every accepted socket inherits them from there, so accepting
// costs no setsockopt calls.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: listenControl}
}

// ipv6Unavailable reports whether err from listening on addr means that
// IPv6 is disabled (sysctl disable_ipv6, or ipv6.disable=1 at boot).
func ipv6Unavailable(addr string, err error) bool {
	ap, perr := netip.ParseAddrPort(addr)
	if perr != nil || !ap.Addr().Is6() || ap.Addr().Is4In6() {
		return false
	}
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EPROTONOSUPPORT)
}

// Addrs returns the bound listen addresses (with the actual port when the
// configured one was 0).
func (p *Proxy) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), p.addrs...) }

// ErrClosed is returned by Serve after Shutdown.
var ErrClosed = errors.New("proxy: closed")

// Serve accepts connections until ctx ends or Shutdown is called, then stops
// accepting and returns once every connection has finished. Ending ctx
// does not cut relays short: to bound the drain, call Shutdown with a
// deadline. Serve may be called once.
func (p *Proxy) Serve(ctx context.Context) error {
	connCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.mu.Lock()
	switch {
	case p.closing:
		p.mu.Unlock()
		cancel()
		return ErrClosed
	case p.serving:
		p.mu.Unlock()
		cancel()
		return errors.New("proxy: Serve called twice")
	}
	p.serving = true
	p.cancel = cancel
	p.acceptWG.Add(len(p.lns) + len(p.extra))
	p.startLoop = func(el *extraListener) { go p.acceptLoop(connCtx, el.ln, el) }
	extra := make([]*extraListener, 0, len(p.extra))
	for _, el := range p.extra {
		extra = append(extra, el)
	}
	p.mu.Unlock()
	defer cancel()

	p.log.Info("proxy listening", "addrs", p.addrs, "added_listeners", len(extra))
	for _, ln := range p.lns {
		go p.acceptLoop(connCtx, ln, nil)
	}
	for _, el := range extra {
		p.startLoop(el)
	}
	select {
	case <-ctx.Done():
	case <-p.stopped:
	}
	p.stopAccepting()
	p.acceptWG.Wait()
	p.connWG.Wait()
	p.log.Info("proxy stopped", "accepted", p.stats.accepted.Load())
	return nil
}

// Shutdown stops accepting, lets relays finish until ctx ends, then resets
// the connections that remain and returns ctx's error once their
// conn.close entries are appended. It returns nil if every relay finished
// in time.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.stopAccepting()
	done := make(chan struct{})
	go func() {
		p.acceptWG.Wait()
		p.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	p.forced = true
	if p.cancel != nil {
		p.cancel()
	}
	n := len(p.sessions)
	for s := range p.sessions {
		s.stop(reasonShutdown, true)
	}
	p.mu.Unlock()
	p.log.Warn("proxy shutdown deadline reached: connections reset", "connections", n)
	<-done
	return fmt.Errorf("proxy: shutdown: %w", ctx.Err())
}

// stopAccepting closes the listeners, once.
func (p *Proxy) stopAccepting() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		close(p.stopped)
		p.closeListeners()
	})
}

func (p *Proxy) closeListeners() {
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	p.mu.Lock()
	for _, el := range p.extra {
		_ = el.ln.Close()
	}
	p.mu.Unlock()
}

// acceptLoop accepts on ln until the proxy stops or, for a listener added
// with AddListener (el non-nil), until it is removed.
func (p *Proxy) acceptLoop(ctx context.Context, ln *net.TCPListener, el *extraListener) {
	defer p.acceptWG.Done()
	var removed <-chan struct{}
	var src *Source
	if el != nil {
		removed, src = el.removed, &el.src
	}
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			select {
			case <-p.stopped:
				return
			case <-removed:
				return
			default:
			}
			// Out of file descriptors or memory: wait and retry, as
			// net/http does, rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed", "listen", ln.Addr(), "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.stopped:
				t.Stop()
				return
			case <-removed:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		p.stats.accepted.Add(1)
		p.connWG.Add(1)
		go p.handle(ctx, c, src)
	}
}

// track registers s for a forced shutdown; false if one already happened.
func (p *Proxy) track(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.forced {
		return false
	}
	p.sessions[s] = struct{}{}
	return true
}

func (p *Proxy) untrack(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// isOwnAddr reports whether dst is one of the proxy's listeners: relaying
// there would loop.
func (p *Proxy) isOwnAddr(dst netip.AddrPort) bool {
	for _, a := range p.addrs {
		if a.Port() == dst.Port() && (a.Addr() == dst.Addr() || a.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

// addrPort converts a *net.TCPAddr, unmapping IPv4-mapped IPv6.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
