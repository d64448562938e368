package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// Conn describes a redirected connection to the Decider.
type Conn struct {
	Client   netip.AddrPort    // the client's address as the proxy sees it
	Origin   intercept.Origin  // what the kernel recorded: original destination and caller
	Identity auditlog.Identity // Origin enriched from /proc, as it is recorded in the audit log
	Process  identity.Info     // what /proc said about Origin.PID; Process.Complete tells whether all of it was read
	// Name is the destination's DNS name from the client's TLS SNI or
	// HTTP Host, learned before the decision when the Decider uses names
	// (see L7Config); "" when unknown.
	Name string
}

// Decision is a Decider's verdict on one connection.
type Decision struct {
	// Verdict is auditlog.Allow, auditlog.Audit (allowed and flagged) or
	// auditlog.Deny. Anything else, including "", denies, and the entry
	// records the bad verdict in attribute "invalid_verdict".
	Verdict auditlog.Decision
	Rule    string   // name of the rule that decided, recorded in the audit entry
	L7      *L7Rules // parse, check and record the connection's requests; nil relays it untouched
}

// Rule names the proxy records for decisions it makes itself.
const (
	RuleDefaultAllow  = "default-allow"  // no Decider configured
	RuleNotRedirected = "not-redirected" // the kernel has no record of the client: it connected to the proxy directly
	RuleLookupFailed  = "lookup-failed"  // the kernel's record could not be read
	RuleLoop          = "proxy-loop"     // the original destination is the proxy itself
)

// Reasons recorded in attribute "reason" of conn.close entries.
const (
	reasonClosed     = "closed"      // both sides closed their direction
	reasonReset      = "reset"       // a side reset the connection or went away
	reasonError      = "error"       // another I/O error; see attribute "error"
	reasonIdle       = "idle"        // no bytes either way for Config.IdleTimeout
	reasonShutdown   = "shutdown"    // the proxy's shutdown deadline passed
	reasonDialFailed = "dial_failed" // the destination could not be reached; see attribute "error"
	reasonRefused    = "refused"     // not relayed (not recorded: conn.deny says why)
)

// handle runs one accepted connection from lookup to conn.close. src is
// the Source of a listener added with AddListener, nil for Config.Listen.
func (p *Proxy) handle(ctx context.Context, c *net.TCPConn, src *Source) {
	defer p.connWG.Done()
	p.stats.active.Add(1)
	defer p.stats.active.Add(-1)
	s := &session{client: c, start: time.Now()}
	if !p.track(s) {
		reset(c)
		return
	}
	defer p.untrack(s)

	client := addrPort(c.RemoteAddr())
	origin, found, err := p.resolverFor(src).Lookup(client)
	switch {
	case err != nil:
		p.refuse(ctx, s, auditlog.Entry{Src: client.String(), Dst: addrPort(c.LocalAddr()).String(), Rule: RuleLookupFailed,
			Attrs: map[string]string{"error": err.Error()}})
		return
	case !found:
		p.stats.notRedirected.Add(1)
		// Anyone on the host can connect to the proxy port directly; such
		// connections are recorded without waiting for a flush of their
		// own, so a flood of them cannot turn into a flood of fsyncs.
		p.stats.refused.Add(1)
		p.appendLazy(ctx, auditlog.Entry{Type: auditlog.ConnDeny, Decision: auditlog.Deny, Proto: "tcp",
			Src: client.String(), Dst: addrPort(c.LocalAddr()).String(), Rule: RuleNotRedirected})
		s.stop(reasonRefused, true)
		return
	}

	info := p.identify(origin)
	conn := &Conn{Client: client, Origin: origin, Identity: IdentityOf(origin, info), Process: info}
	e := auditlog.Entry{
		Identity: conn.Identity,
		Proto:    "tcp",
		Src:      client.String(),
		Dst:      origin.Dst.String(),
		Attrs:    identityAttrs(info),
	}
	if src != nil {
		for k, v := range src.Attrs {
			e.Attrs[k] = v
		}
	}
	if p.cfg.Enrich != nil {
		p.cfg.Enrich(conn, e.Attrs)
		e.Identity = conn.Identity
	}
	if !origin.Dst.IsValid() || p.isOwnAddr(origin.Dst) {
		e.Rule = RuleLoop
		p.refuse(ctx, s, e)
		return
	}
	names := p.learnName(s, conn)
	d := p.decide(ctx, conn)
	e.Decision, e.Rule = d.Verdict, d.Rule
	p.attachL7(s, conn, d, &e, names)
	if d.Verdict != auditlog.Allow && d.Verdict != auditlog.Audit {
		if d.Verdict != auditlog.Deny {
			e.Attrs = withAttr(e.Attrs, "invalid_verdict", string(d.Verdict))
		}
		p.stats.denied.Add(1)
		p.refuse(ctx, s, e)
		return
	}
	p.open(ctx, s, e, origin.Dst, src)
}

// identify reads what /proc says about the caller, through the cache when
// there is one.
func (p *Proxy) identify(o intercept.Origin) identity.Info {
	if p.ids == nil {
		return identity.FromPID(o.PID, p.cfg.IdentityProcRoot)
	}
	return p.ids.Lookup(o.PID, o.Comm, o.CgroupID)
}

// decide asks the Decider, if any.
func (p *Proxy) decide(ctx context.Context, c *Conn) Decision {
	if p.cfg.Decider == nil {
		return Decision{Verdict: auditlog.Allow, Rule: RuleDefaultAllow}
	}
	return p.cfg.Decider.Decide(ctx, c)
}

// refuse records e as a conn.deny entry, waits until it is durable, and
// resets the client.
func (p *Proxy) refuse(ctx context.Context, s *session, e auditlog.Entry) {
	p.stats.refused.Add(1)
	e.Type, e.Decision = auditlog.ConnDeny, auditlog.Deny
	if e.Proto == "" {
		e.Proto = "tcp"
	}
	if err := p.appendDurable(ctx, e); err != nil {
		p.log.Warn("conn.deny not recorded", "src", e.Src, "dst", e.Dst, "rule", e.Rule, "err", err)
	}
	p.log.Debug("connection denied", "src", e.Src, "dst", e.Dst, "rule", e.Rule)
	s.stop(reasonRefused, true)
}

type dialResult struct {
	conn *net.TCPConn
	err  error
}

// open records the conn.open entry while dialing the destination, and
// relays once the entry is durable and the dial succeeded.
func (p *Proxy) open(ctx context.Context, s *session, e auditlog.Entry, dst netip.AddrPort, src *Source) {
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dialed := make(chan dialResult, 1)
	go func() {
		c, err := p.dialFor(dialCtx, src, dst)
		dialed <- dialResult{c, err}
	}()

	e.Type = auditlog.ConnOpen
	ack, err := p.cfg.Auditor.Append(ctx, e)
	if err == nil {
		err = ack.Wait(ctx)
	}
	if err != nil {
		// No access without an audit record.
		cancelDial()
		if r := <-dialed; r.conn != nil {
			reset(r.conn)
		}
		p.stats.refused.Add(1)
		s.stop(reasonRefused, true)
		if ctx.Err() == nil {
			p.stats.auditFailures.Add(1)
			p.stats.auditRefused.Add(1)
			p.log.Error("connection refused: conn.open could not be recorded", "src", e.Src, "dst", e.Dst, "err", err)
			return
		}
		// A forced shutdown while waiting: the conn.open may still reach
		// the disk, so close it.
		if ack != nil {
			p.appendLazy(ctx, closeEntry(e, ack.Seq, reasonShutdown, 0, 0, s.start))
		}
		return
	}

	r := <-dialed
	if r.err != nil {
		p.stats.refused.Add(1)
		p.stats.dialFailed.Add(1)
		p.log.Debug("dial failed", "src", e.Src, "dst", e.Dst, "err", r.err)
		closing := closeEntry(e, ack.Seq, reasonDialFailed, 0, 0, s.start)
		closing.Attrs["error"] = dialErrorClass(r.err)
		closing.Attrs["error_detail"] = r.err.Error()
		// The client's connect() succeeded against the proxy long ago, so
		// it cannot get ECONNREFUSED: it gets a reset on its next I/O.
		s.stop(reasonDialFailed, true)
		p.appendLazy(ctx, closing)
		return
	}
	if !s.setDst(r.conn) {
		reset(r.conn) // a forced shutdown got here first
	} else {
		p.stats.relayed.Add(1)
		p.log.Debug("relaying", "src", e.Src, "dst", e.Dst, "pid", e.Identity.PID, "comm", e.Identity.Comm, "rule", e.Rule)
	}
	in, out := p.relayFor(ctx, s, e, ack.Seq)
	p.stats.bytesIn.Add(uint64(in))
	p.stats.bytesOut.Add(uint64(out))
	reason, rerr := s.result()
	closing := closeEntry(e, ack.Seq, reason, in, out, s.start)
	if rerr != nil {
		closing.Attrs["error"] = rerr.Error()
	}
	s.l7CloseAttrs(closing.Attrs)
	p.appendLazy(ctx, closing)
}

// closeEntry makes the conn.close entry for the conn.open entry open,
// recorded at seq.
func closeEntry(open auditlog.Entry, seq uint64, reason string, in, out int64, start time.Time) auditlog.Entry {
	e := open
	e.Type = auditlog.ConnClose
	e.Attrs = withAttr(open.Attrs, "open_seq", strconv.FormatUint(seq, 10))
	e.Attrs["reason"] = reason
	e.Attrs["bytes_in"] = strconv.FormatInt(in, 10)
	e.Attrs["bytes_out"] = strconv.FormatInt(out, 10)
	e.Attrs["duration_ms"] = strconv.FormatInt(time.Since(start).Milliseconds(), 10)
	return e
}

// dial connects to the original destination with the proxy's mark set.
func (p *Proxy) dial(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{
		Timeout:   p.cfg.DialTimeout,
		KeepAlive: -1, // set by markControl, with the mark
		Control:   markControl(p.cfg.DialMark),
	}
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// appendDurable appends e and waits until it is durable.
func (p *Proxy) appendDurable(ctx context.Context, e auditlog.Entry) error {
	ack, err := p.cfg.Auditor.Append(ctx, e)
	if err == nil {
		err = ack.Wait(ctx)
	}
	if err != nil && ctx.Err() == nil {
		p.stats.auditFailures.Add(1)
	}
	return err
}

// appendLazy appends an entry nobody waits on (conn.close, a direct
// connection's conn.deny) without waiting for durability. It is appended
// even during a forced shutdown, within closeAuditTimeout.
func (p *Proxy) appendLazy(ctx context.Context, e auditlog.Entry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeAuditTimeout)
	defer cancel()
	appendFn := p.cfg.Auditor.Append
	if la, ok := p.cfg.Auditor.(lazyAuditor); ok {
		appendFn = la.AppendLazy
	}
	if _, err := appendFn(ctx, e); err != nil {
		p.stats.auditFailures.Add(1)
		p.log.Warn("entry not recorded", "type", e.Type, "src", e.Src, "dst", e.Dst, "err", err)
	}
}

// lazyAuditor is an Auditor that can let an entry nobody waits on share
// a later flush (*auditlog.Log is one). conn.close uses it, so closing a
// connection never costs an fsync of its own.
type lazyAuditor interface {
	AppendLazy(ctx context.Context, e auditlog.Entry) (*auditlog.Ack, error)
}

// dialErrorClass names why a dial failed, for attribute "error".
func dialErrorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return "unreachable"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "forbidden"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}

// identityOf fills an audit identity from the kernel's record and /proc.
// IdentityOf is the identity recorded for a caller: the kernel's view at
// connect time (Origin) enriched with what /proc said (info).
func IdentityOf(o intercept.Origin, info identity.Info) auditlog.Identity {
	return auditlog.Identity{
		PID:         uint64(o.PID),
		TID:         uint64(o.TID),
		UID:         uint64(o.UID),
		GID:         uint64(o.GID),
		Comm:        o.Comm,
		Exe:         info.Exe,
		Cmdline:     info.Cmdline,
		CgroupPath:  info.CgroupPath,
		CgroupID:    o.CgroupID,
		NetnsCookie: o.NetnsCookie,
		ContainerID: info.ContainerID,
		Runtime:     info.Runtime,
	}
}

// IdentityAttrs are the attributes an entry of a caller carries for what
// auditlog.Identity has no field for (pod UID, systemd unit, session), as
// the proxy records them; for entries of events the proxy does not see.
func IdentityAttrs(info identity.Info) map[string]string { return identityAttrs(info) }

// identityAttrs carries what auditlog.Identity has no field for.
func identityAttrs(info identity.Info) map[string]string {
	m := make(map[string]string, 8)
	if info.PodUID != "" {
		m["pod_uid"] = info.PodUID
	}
	if info.Unit != "" {
		m["unit"] = info.Unit
	}
	if info.Session != "" {
		m["session"] = info.Session
	}
	if info.UserUID != "" {
		m["user_slice"] = info.UserUID
	}
	if !info.Complete {
		m["identity"] = "partial" // the process exited or /proc was unreadable
	}
	return m
}

// withAttr returns a copy of m with k set to v, so entries already handed
// to the Auditor never share a map with later ones.
func withAttr(m map[string]string, k, v string) map[string]string {
	n := make(map[string]string, len(m)+8)
	for mk, mv := range m {
		n[mk] = mv
	}
	n[k] = v
	return n
}

// reset closes c so that the peer sees a reset (RST) rather than an
// orderly close.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
