package proxy

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Reasons recorded in attribute "reason" of conn.close entries by the L7
// relay.
const (
	reasonTLSRequired = "tls_required" // require_tls: the session was not encrypted
	reasonL7Denied    = "l7_denied"    // a request was denied and the protocol cannot refuse one and go on
	// reasonHostChanged: an HTTP request's Host named a destination the
	// connection may not reach; it was refused and the connection closed.
	reasonHostChanged = "host_changed"
	// reasonL7Unparsed: parsing stopped (too large, protocol error, too
	// many pending) on a connection whose guardrails, require_tls or
	// audit: required need every request seen; l7_stopped says why.
	reasonL7Unparsed = "l7_unparsed"
	// reasonProtocolUnknown: the protocol was not recognised (or not in
	// time) on such a connection.
	reasonProtocolUnknown = "protocol_unknown"
)

// TypeL7Response is the entry that completes an l7.request recorded
// durably before its request was forwarded (audit: required): that entry
// could not wait for the response.
const TypeL7Response auditlog.Type = "l7.response"

// maxPending bounds the requests of one connection waiting for their
// responses, denied ones waiting for their turn included; a client that
// pipelines more has its connection relayed without parsing from then on
// (reset, where its rules deny).
const maxPending = 4096

// l7readStart is the first size of a direction's buffer; it doubles up to
// l7.MaxBuffer while a message needs more.
const l7readStart = 16 << 10

// l7stats is what the L7 relay reports in conn.close.
type l7stats struct {
	proto    string
	requests int
	denied   int
	stopped  string // why parsing stopped, if it did
}

// l7pending is a request waiting for its response, or a denied request
// whose error waits for the responses to the requests before it.
type l7pending struct {
	e     auditlog.Entry
	start time.Time
	seq   uint64 // the entry's seq, when it was recorded before forwarding
	// deny is what the client gets in this request's turn: a denied
	// request's error, or (not denied) the answer that replaces the
	// server's reply to a request forwarded in another form
	// (l7.Replacement).
	deny     []byte
	denied   bool // no response comes: deny goes once the ones before it went
	last     bool // the connection closes once deny is sent
	recorded bool
	timer    *time.Timer
}

// l7relay relays one connection through its parser.
type l7relay struct {
	p        *Proxy
	ctx      context.Context
	s        *session
	lc       *l7conn
	rules    *L7Rules
	parser   l7.Parser
	base     auditlog.Entry // the conn.open entry
	openSeq  string
	respWait time.Duration
	// dropping: the client messages marked Part that follow are the rest
	// of a denied request (client direction only).
	dropping bool
	// name is the destination name the connection's HTTP requests were
	// last decided for, starting with the connection's (client direction
	// only; used when lc.conn is set).
	name string

	plain atomic.Bool // parsing stopped: both directions relay plain bytes
	// closed: parsing stopped on a strict connection, which was reset;
	// nothing more is forwarded either way.
	closed  atomic.Bool
	stopped atomic.Bool // stop ran

	clientMu sync.Mutex // serializes writes to the client (server bytes, denials)

	mu      sync.Mutex
	pending []*l7pending
}

// relayL7 detects the protocol of s and relays it through its parser, or
// with splice when no parser knows it.
func (p *Proxy) relayL7(ctx context.Context, s *session, open auditlog.Entry, openSeq uint64) (in, out int64) {
	s.mu.Lock()
	dst := s.dst
	s.mu.Unlock()
	if dst == nil {
		return 0, 0
	}
	lc := s.l7
	cfg := &p.cfg.L7
	proto := lc.proto
	// Idle connections end while nobody speaks, too.
	stopWatch := make(chan struct{})
	watching := p.cfg.IdleTimeout > 0
	if watching {
		go watchIdle(s, dst, p.cfg.IdleTimeout, stopWatch)
	}
	defer func() {
		if watching {
			close(stopWatch)
		}
	}()
	if !lc.detected {
		dir, pk := firstSpeaker(s.client, dst)
		if pk.n > 0 {
			wait := cfg.FirstBytesWait
			if wait <= 0 {
				wait = DefaultFirstBytesWait
			}
			_ = pk.c.SetReadDeadline(time.Now().Add(wait))
			proto = p.detect(pk, dir, lc.port)
			_ = pk.c.SetReadDeadline(time.Time{})
		}
	}
	r := &l7relay{p: p, ctx: ctx, s: s, lc: lc, rules: lc.rules, base: open,
		openSeq: strconv.FormatUint(openSeq, 10), respWait: cfg.ResponseWait}
	if lc.conn != nil {
		r.name = lc.conn.Name
	}
	if r.respWait <= 0 {
		r.respWait = DefaultResponseWait
	}
	newParser := cfg.Parsers[proto]
	if newParser == nil {
		p.stats.l7Unparsed.Add(1)
		if lc.rules.strict() {
			// Guardrails and required auditing fail closed: a session
			// whose requests cannot be seen is refused.
			lc.stats.proto = "unknown"
			e := r.entry(&l7.Request{Protocol: "unknown"})
			reason, why := reasonProtocolUnknown, "the protocol was not recognised, so its requests cannot be checked"
			if lc.rules.RequireTLS {
				reason, why = reasonTLSRequired, "TLS is required and the protocol was not recognised"
			}
			r.denyEntry(&e, why)
			p.appendLazy(ctx, e)
			s.stop(reason, true)
			return 0, 0
		}
		if watching {
			close(stopWatch) // relay watches on its own
			watching = false
		}
		return p.relay(s)
	}
	p.stats.l7Parsed.Add(1)
	lc.stats.proto = proto
	r.parser = newParser(l7.Options{Redact: lc.rules.Redact})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out = r.pipe(l7.FromClient, s.client, dst)
	}()
	in = r.pipe(l7.FromServer, dst, s.client)
	wg.Wait()
	r.finish()
	s.stop(reasonClosed, false)
	return in, out
}

// pipe relays one direction through the parser until EOF or an error,
// and as plain bytes once parsing has stopped.
func (r *l7relay) pipe(d l7.Dir, src, dst *net.TCPConn) (n int64) {
	buf := make([]byte, 0, l7readStart)
	for {
		// plain is read before closed: stop sets closed first, so a
		// direction that sees plain also sees whether it closes.
		if r.plain.Load() {
			if r.closed.Load() {
				return n
			}
			if len(buf) > 0 && !r.write(d, dst, buf, &n) {
				return n
			}
			return n + r.s.pipe(dst, src)
		}
		if r.closed.Load() {
			return n
		}
		if len(buf) == cap(buf) {
			if cap(buf) >= l7.MaxBuffer {
				// The parser should have said ErrTooLarge.
				r.stop(d, l7.ErrTooLarge)
				continue
			}
			nb := make([]byte, len(buf), min(2*cap(buf), l7.MaxBuffer))
			copy(nb, buf)
			buf = nb
		}
		k, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if k > 0 && !r.plain.Load() {
			var ok bool
			if buf, ok = r.process(d, dst, buf, &n); !ok {
				return n
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(buf) > 0 && !r.write(d, dst, buf, &n) {
				return n
			}
			_ = dst.CloseWrite()
			return n
		}
		reason := reasonError
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			reason = reasonReset
		}
		r.s.stopWithErr(reason, err, true)
		return n
	}
}

// write sends b to dst (the client, for d == FromServer), counting it in
// *n; false if the session ended.
func (r *l7relay) write(d l7.Dir, dst *net.TCPConn, b []byte, n *int64) bool {
	if d == l7.FromServer {
		r.clientMu.Lock()
		defer r.clientMu.Unlock()
	}
	return r.writeLocked(dst, b, n)
}

func (r *l7relay) writeLocked(dst *net.TCPConn, b []byte, n *int64) bool {
	if len(b) == 0 {
		return true
	}
	k, err := dst.Write(b)
	if n != nil {
		*n += int64(k)
	}
	if err != nil {
		reason := reasonError
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			reason = reasonReset
		}
		r.s.stopWithErr(reason, err, true)
		return false
	}
	return true
}

// process parses buf, forwards its complete messages (or answers denied
// requests) and returns the unfinished rest, moved to the front of buf.
// ok is false when the session ended.
func (r *l7relay) process(d l7.Dir, dst *net.TCPConn, buf []byte, n *int64) (rest []byte, ok bool) {
	msgs, perr := safeParse(r.parser, d, buf)
	// A strict connection is reset before anything of a read the parser
	// could not finish goes: the allowed requests before the point it
	// stopped would run while their replies, and any denial queued among
	// them, could no longer reach the client in their turn. One that only
	// audits has those requests handled (recorded) before it goes plain.
	if perr != nil && (len(msgs) == 0 || r.strict()) {
		r.stop(d, perr)
		return buf, !r.closed.Load() // the loop forwards it as plain bytes
	}
	off, from := 0, 0 // bytes handled; start of the bytes not yet forwarded
	for i := range msgs {
		if r.plain.Load() {
			if r.closed.Load() {
				// The connection was reset: the rest, from the request
				// that stopped parsing on, never goes.
				return nil, false
			}
			// Parsing stopped (here or in the other direction): the rest
			// goes as it is.
			off = len(buf)
			break
		}
		m := &msgs[i]
		switch {
		case d == l7.FromClient && m.Request == nil && m.Part && r.dropping:
			// The rest of a denied request's body.
			if !r.write(d, dst, buf[from:off], n) {
				return nil, false
			}
			off += m.Len
			from = off
			continue
		case d == l7.FromClient && m.Request == nil && !m.Part:
			r.dropping = false
		case d == l7.FromClient && m.Request != nil:
			r.dropping = false
			v := r.request(m.Request)
			var rp *l7.Replacement
			if !v.deny {
				var err error
				if rp, err = safeReplace(r.parser, m.Request); err != nil {
					r.stop(d, err)
					if r.closed.Load() {
						return nil, false
					}
					off += m.Len // forwarded as plain bytes
					continue
				}
			}
			switch {
			case v.deny:
				if !r.write(d, dst, buf[from:off], n) {
					return nil, false
				}
				if !r.refuse(m.Request, v) {
					return nil, false
				}
				r.dropping = true
				off += m.Len
				from = off
				continue
			case rp != nil:
				if !r.write(d, dst, buf[from:off], n) || !r.replace(dst, m.Request, rp, n) {
					return nil, false
				}
				r.dropping = true // the rest of the request goes with it
				off += m.Len
				from = off
				continue
			case r.rules.Durable:
				if !r.write(d, dst, buf[from:off], n) {
					return nil, false
				}
				from = off
				if !r.recordDurable(m.Request) {
					return nil, false
				}
			default:
				if !r.track(m.Request) {
					r.overflow(m.Request)
					r.stop(d, errTooManyPending)
				}
			}
		case d == l7.FromServer && m.Response != nil:
			// Pushes before the reply go as they are: a replaced reply
			// must not take them with it.
			if !r.write(d, dst, buf[from:off], n) {
				return nil, false
			}
			if !r.complete(dst, buf[off:off+m.Len], m.Response, n) {
				return nil, false
			}
			from = off + m.Len
		}
		off += m.Len
	}
	if r.closed.Load() || !r.write(d, dst, buf[from:off], n) {
		return nil, false
	}
	k := copy(buf, buf[off:])
	buf = buf[:k]
	if perr != nil {
		// Parsing stops after the messages before the point the parser
		// could not go past: the rest is reset with a strict connection,
		// relayed as plain bytes otherwise.
		r.stop(d, perr)
		return buf, !r.closed.Load()
	}
	// Once encrypted, the parser only passes opaque bytes through; it still
	// sees the server's first bytes after the switch when requests wait,
	// so the reply to a TLS ClientHello (or to a Postgres SSLRequest, an
	// HTTP CONNECT) completes its entry.
	if !r.plain.Load() && safeEncrypted(r.parser) && (d == l7.FromServer || r.waiting() == 0) {
		r.stop(d, errEncrypted)
	}
	return buf, true
}

var (
	errTooManyPending = errors.New("too many requests waiting for a response")
	errEncrypted      = errors.New("the session is encrypted")
)

// verdict is what happens to one request.
type verdict struct {
	deny      bool
	reason    string
	plaintext bool   // refused because TLS is required: the connection closes
	last      bool   // refused, and the connection closes after the answer
	rule      string // the rule that decided, when not the connection's
}

// request decides a request.
func (r *l7relay) request(req *l7.Request) verdict {
	r.mu.Lock()
	r.lc.stats.requests++
	r.mu.Unlock()
	r.p.stats.l7Requests.Add(1)
	if r.rules.RequireTLS && req.Protocol != "tls" && !safeEncrypted(r.parser) {
		return verdict{deny: true, reason: "TLS is required", plaintext: true}
	}
	if v := r.redecide(req); v.deny {
		return v
	}
	if r.rules.Guard == nil {
		return verdict{}
	}
	deny, reason := checkGuard(r.rules.Guard, req)
	return verdict{deny: deny, reason: reason}
}

// redecide decides the connection again for an HTTP request whose Host
// names another destination than the one its requests were decided for
// (the connection's name at first): a client could otherwise open a
// connection with an allowed name and, kept alive, send requests for a
// denied one. The Decider sees the same Conn with the request's name,
// normalised as learnName does ("" for none, or an address). If the new
// decision denies, or allows under another rule (whose guardrails are
// not the ones this connection is inspected with), the request is refused
// and the connection closed after the answer; if the same rule allows
// the name, the request goes on under it.
func (r *l7relay) redecide(req *l7.Request) verdict {
	if r.lc.conn == nil || req.Protocol != "http" {
		return verdict{}
	}
	name := hostName(req.Target)
	if name == r.name {
		return verdict{}
	}
	c := *r.lc.conn
	c.Name = name
	d := r.p.decide(r.ctx, &c)
	shown := strconv.Quote(name)
	if name == "" {
		shown = "no name"
	}
	switch {
	case d.Verdict != auditlog.Allow && d.Verdict != auditlog.Audit:
		return verdict{deny: true, last: true, rule: d.Rule,
			reason: "Host changed on a kept-alive connection to " + shown + ", which rule " + d.Rule + " denies"}
	case d.Rule != r.lc.rule:
		return verdict{deny: true, last: true, rule: d.Rule,
			reason: "Host changed on a kept-alive connection to " + shown + ", a name decided by another rule (" + d.Rule + ")"}
	}
	r.name = name
	return verdict{}
}

// checkGuard calls Check; a panic denies (the guardrail could not say).
func checkGuard(g Guard, req *l7.Request) (deny bool, reason string) {
	defer func() {
		if rec := recover(); rec != nil {
			deny, reason = true, "the guardrail failed"
		}
	}()
	return g.Check(req)
}

// refuse answers a denied request with the protocol's error, in its turn
// among the responses the client waits for, and records it. false if the
// session ended (a protocol that cannot refuse one request and go on, or
// a plaintext session where TLS is required).
func (r *l7relay) refuse(req *l7.Request, v verdict) bool {
	e := r.entry(req)
	r.denyEntry(&e, v.reason)
	if v.rule != "" {
		e.Rule = v.rule
	}
	var answer []byte
	if v.last {
		answer = safeDenyLast(r.parser, req, v.reason)
	} else {
		answer = safeDeny(r.parser, req, v.reason)
	}
	r.mu.Lock()
	r.lc.stats.denied++
	r.mu.Unlock()
	r.p.stats.l7Denied.Add(1)
	r.p.appendLazy(r.ctx, e)
	r.p.log.Debug("request denied", "src", e.Src, "dst", e.Dst, "protocol", req.Protocol, "kind", req.Kind, "rule", e.Rule, "reason", v.reason)
	if answer == nil || v.plaintext {
		reason := reasonL7Denied
		if v.plaintext {
			reason = reasonTLSRequired
		}
		if answer != nil {
			r.clientMu.Lock()
			_, _ = r.s.client.Write(answer)
			r.clientMu.Unlock()
		}
		r.s.stop(reason, false)
		return false
	}
	// Only this goroutine adds requests, so with none waiting every
	// response before this one has been written: the error can go now.
	// Otherwise it waits its turn, and complete sends it. (stop sets plain
	// before it takes the queue, so an error queued here is never lost.)
	r.mu.Lock()
	queued := false
	if !r.plain.Load() {
		for _, pe := range r.pending {
			if !pe.denied {
				queued = true
				break
			}
		}
	}
	full := queued && len(r.pending) >= maxPending
	if queued && !full {
		// Denials count against maxPending like forwarded requests: a
		// client that pipelines behind a request never answered (BLPOP k
		// 0) must not grow the queue without end.
		r.pending = append(r.pending, &l7pending{denied: true, deny: answer, recorded: true, last: v.last})
	}
	r.mu.Unlock()
	if full {
		// The error cannot wait its turn: parsing stops, and a connection
		// with denials is strict, so it is reset.
		r.stop(l7.FromClient, errTooManyPending)
		r.s.stop(reasonL7Unparsed, true)
		return false
	}
	if queued {
		// After a last answer nothing more of the client's is read: the
		// answer goes in its turn, then the connection closes.
		return !v.last
	}
	r.clientMu.Lock()
	ok := r.writeLocked(r.s.client, answer, nil)
	r.clientMu.Unlock()
	if ok && v.last {
		r.s.stop(reasonHostChanged, false)
		return false
	}
	return ok
}

// replace forwards rp.Send in place of req, which is recorded as denied,
// and queues rp.Answer to go to the client in place of the server's reply
// to it. false if the session ended.
func (r *l7relay) replace(dst *net.TCPConn, req *l7.Request, rp *l7.Replacement, n *int64) bool {
	e := r.entry(req)
	r.denyEntry(&e, rp.Reason)
	r.mu.Lock()
	full := len(r.pending) >= maxPending
	if !full && rp.Answer != nil {
		// Queued before Send goes, so the reply cannot come first.
		r.pending = append(r.pending, &l7pending{e: e, start: time.Now(), deny: rp.Answer, recorded: true})
	}
	if !full {
		r.lc.stats.denied++
	}
	r.mu.Unlock()
	if full {
		// The reply to Send could not be told apart: neither the request
		// nor its replacement goes, and parsing stops (a connection with
		// denials behind it is strict, so it is reset).
		r.overflow(req)
		r.stop(l7.FromClient, errTooManyPending)
		r.s.stop(reasonL7Unparsed, true)
		return false
	}
	r.p.stats.l7Denied.Add(1)
	r.p.appendLazy(r.ctx, e)
	r.p.log.Debug("request replaced", "src", e.Src, "dst", e.Dst, "protocol", req.Protocol, "kind", req.Kind, "rule", e.Rule, "reason", rp.Reason)
	return r.write(l7.FromClient, dst, rp.Send, n)
}

// track remembers a forwarded request until its response; false if too
// many are waiting. A request the server will not answer is recorded at
// once: waiting in the queue, it would take the next request's response.
func (r *l7relay) track(req *l7.Request) bool {
	pe := &l7pending{e: r.entry(req), start: time.Now()}
	if req.NoReply {
		r.p.appendLazy(r.ctx, pe.e)
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= maxPending {
		return false
	}
	r.pending = append(r.pending, pe)
	pe.timer = time.AfterFunc(r.respWait, func() { r.expire(pe) })
	return true
}

// recordDurable records a request and waits until its entry is durable,
// before the request is forwarded. If it cannot be recorded the session
// is reset: no request goes out unaudited.
func (r *l7relay) recordDurable(req *l7.Request) bool {
	pe := &l7pending{e: r.entry(req), start: time.Now(), recorded: true}
	ack, err := r.p.cfg.Auditor.Append(r.ctx, pe.e)
	if err == nil {
		err = ack.Wait(r.ctx)
	}
	if err != nil {
		r.p.stats.auditFailures.Add(1)
		r.p.log.Error("request refused: l7.request could not be recorded", "src", pe.e.Src, "dst", pe.e.Dst, "err", err)
		r.s.stopWithErr(reasonError, err, true)
		return false
	}
	pe.seq = ack.Seq
	if req.NoReply {
		return true // no response entry will follow
	}
	r.mu.Lock()
	full := len(r.pending) >= maxPending
	if !full {
		r.pending = append(r.pending, pe)
	}
	r.mu.Unlock()
	if full {
		r.stop(l7.FromClient, errTooManyPending)
	}
	return !r.closed.Load()
}

// overflow records a request that found the queue full: it has its own
// entry, though its response will not be told apart.
func (r *l7relay) overflow(req *l7.Request) {
	e := r.entry(req)
	e.Attrs["status"] = "unknown"
	r.p.appendLazy(r.ctx, e)
}

// complete forwards a response message b to the client (or, if the
// request it completes was replaced, the answer that takes its place),
// completes the oldest request waiting for a response, and sends the
// errors of denied requests that were waiting behind it; after a denial
// that ends the connection (last), it closes the session.
func (r *l7relay) complete(client *net.TCPConn, b []byte, resp *l7.Response, n *int64) bool {
	// clientMu is held from before the queue changes until the bytes are
	// written, so refuse, finding the queue empty, writes after them.
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	var done *l7pending
	var due []*l7pending
	r.mu.Lock()
	for i, pe := range r.pending {
		if !pe.denied {
			done = pe
			r.pending = append(r.pending[:i:i], r.pending[i+1:]...)
			break
		}
	}
	for len(r.pending) > 0 && r.pending[0].denied {
		due = append(due, r.pending[0])
		r.pending = r.pending[1:]
	}
	var e auditlog.Entry
	record := false
	if done != nil {
		if done.timer != nil {
			done.timer.Stop()
		}
		switch {
		case !done.recorded:
			done.recorded, record = true, true
			e = done.e
		case done.seq != 0:
			// Recorded before forwarding: the response is an entry of
			// its own.
			e, record = done.e, true
			e.Type = TypeL7Response
			e.Attrs = maps.Clone(e.Attrs)
			for _, k := range []string{"text", "target"} {
				delete(e.Attrs, k)
			}
			e.Attrs["request_seq"] = strconv.FormatUint(done.seq, 10)
		}
	}
	r.mu.Unlock()
	if done != nil && done.deny != nil {
		// A replaced request: its answer goes in place of the reply.
		b, n = done.deny, nil
	}
	ok := r.writeLocked(client, b, n)
	if record {
		// Taken off the queue: recorded even if the client is gone.
		responseAttrs(e.Attrs, resp, done.start)
		r.p.appendLazy(r.ctx, e)
	}
	if !ok {
		return false
	}
	for _, pe := range due {
		if !r.writeLocked(client, pe.deny, nil) {
			return false
		}
		if pe.last {
			r.s.stop(reasonHostChanged, false)
			return false
		}
	}
	return true
}

// responseAttrs adds a response's outcome to a request's attributes.
func responseAttrs(attrs map[string]string, resp *l7.Response, start time.Time) {
	if resp.Status != "" {
		attrs["status"] = resp.Status
	}
	if resp.Error != "" {
		attrs["error"] = resp.Error
	}
	if resp.Bytes > 0 {
		attrs["response_bytes"] = strconv.FormatInt(resp.Bytes, 10)
	}
	end := resp.Time
	if end.IsZero() {
		end = time.Now()
	}
	attrs["duration_us"] = strconv.FormatInt(max(end.Sub(start).Microseconds(), 0), 10)
	for k, v := range resp.Attrs {
		if _, taken := attrs[k]; taken {
			k = "resp_" + k
		}
		attrs[k] = v
	}
}

// expire records a request whose response did not come in time; its
// place in the queue stays, for the order of later denials.
func (r *l7relay) expire(pe *l7pending) {
	r.mu.Lock()
	if pe.recorded {
		r.mu.Unlock()
		return
	}
	pe.recorded = true
	e := pe.e
	r.mu.Unlock()
	e.Attrs["status"] = "no_response"
	e.Attrs["waited_ms"] = strconv.FormatInt(time.Since(pe.start).Milliseconds(), 10)
	r.p.appendLazy(r.ctx, e)
}

// strict reports whether parsing that stops resets the connection: its
// rules need every request seen (L7Rules.strict), or it is HTTP decided
// by its name, whose every request's Host is decided again (redecide),
// which plain bytes would escape.
func (r *l7relay) strict() bool {
	return r.rules.strict() || r.lc.conn != nil && r.lc.stats.proto == "http"
}

// stop ends parsing for the connection, once: both directions forward
// what they hold and relay plain bytes from then on. Why is recorded in
// conn.close (l7_stopped) and, unless the session just became encrypted,
// in an l7.request entry. A strict connection (L7Rules.strict, or HTTP
// decided by name) is reset instead, unless it became encrypted: its
// guardrails fail closed.
func (r *l7relay) stop(d l7.Dir, err error) {
	if !r.stopped.CompareAndSwap(false, true) {
		// The other direction is stopping: wait the few instructions
		// (no lock, no I/O) until it has said whether the connection
		// closes, so no caller acts on the state from before (a strict
		// connection's bytes forwarded because closed was not set yet).
		for !r.plain.Load() {
			runtime.Gosched()
		}
		return
	}
	// closed is set before plain: no direction may read plain as leave
	// to forward bytes on a connection about to be reset.
	closing := r.strict() && !errors.Is(err, errEncrypted)
	if closing {
		r.closed.Store(true)
	}
	r.plain.Store(true)
	reason := "parse_error"
	switch {
	case errors.Is(err, errEncrypted):
		reason = "encrypted"
	case errors.Is(err, l7.ErrTooLarge):
		reason = "too_large"
	case errors.Is(err, l7.ErrProtocol):
		reason = "protocol_error"
	case errors.Is(err, errTooManyPending):
		reason = "too_many_pending"
	}
	// Denials still waiting for their turn are sent now: without the
	// parser, the responses before them can no longer be told apart.
	r.clientMu.Lock()
	r.mu.Lock()
	r.lc.stats.stopped = reason
	left := r.pending
	r.pending = nil
	r.mu.Unlock()
	r.p.stats.l7Stop(reason)
	last := false
	for _, pe := range left {
		if pe.denied && !last {
			_, _ = r.s.client.Write(pe.deny)
			last = pe.last
		}
	}
	r.clientMu.Unlock()
	if last {
		r.s.stop(reasonHostChanged, false)
	}
	r.flush(left, "unknown")
	if reason == "encrypted" {
		return
	}
	e := r.entry(&l7.Request{Protocol: r.lc.stats.proto})
	e.Attrs["l7_stopped"] = reason
	e.Attrs["error"] = truncate(err.Error(), l7.MaxText)
	e.Attrs["direction"] = d.String()
	if closing {
		r.denyEntry(&e, "parsing stopped ("+reason+"), so later requests cannot be checked")
	}
	r.p.log.Debug("parsing stopped", "src", e.Src, "dst", e.Dst, "protocol", r.lc.stats.proto, "reason", reason, "closing", closing, "err", err)
	r.p.appendLazy(r.ctx, e)
	if closing {
		r.s.stop(reasonL7Unparsed, true)
	}
}

// waiting is how many requests wait for their response.
func (r *l7relay) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// finish records the requests still waiting when the connection ends.
func (r *l7relay) finish() {
	r.mu.Lock()
	left := r.pending
	r.pending = nil
	r.mu.Unlock()
	r.flush(left, "unanswered")
}

// flush records the unrecorded requests of left with the given status.
func (r *l7relay) flush(left []*l7pending, status string) {
	var es []auditlog.Entry
	r.mu.Lock()
	for _, pe := range left {
		if pe.timer != nil {
			pe.timer.Stop()
		}
		if pe.recorded {
			continue
		}
		pe.recorded = true
		e := pe.e
		e.Attrs["status"] = status
		es = append(es, e)
	}
	r.mu.Unlock()
	for _, e := range es {
		r.p.appendLazy(r.ctx, e)
	}
}

// reservedAttrs are the attributes the relay sets itself; a parser's
// attribute of the same name is recorded as req_<name>.
var reservedAttrs = map[string]bool{
	"protocol": true, "kind": true, "text": true, "target": true, "open_seq": true, "status": true,
	"error": true, "response_bytes": true, "duration_us": true, "deny_reason": true, "l7_stopped": true,
	"direction": true, "request_seq": true, "waited_ms": true, "name": true,
	"pod_uid": true, "unit": true, "identity": true,
}

// entry makes the l7.request entry of req: the conn.open entry's identity,
// addresses, verdict and rule, and the request.
func (r *l7relay) entry(req *l7.Request) auditlog.Entry {
	e := r.base
	e.Type = auditlog.L7Request
	e.Seq, e.Time = 0, time.Time{}
	attrs := make(map[string]string, len(r.base.Attrs)+len(req.Attrs)+8)
	maps.Copy(attrs, r.base.Attrs)
	for k, v := range req.Attrs {
		if reservedAttrs[k] {
			k = "req_" + k
		}
		attrs[k] = v
	}
	attrs["protocol"] = req.Protocol
	if req.Kind != "" {
		attrs["kind"] = req.Kind
	}
	if req.Text != "" {
		attrs["text"] = req.Text
	}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	attrs["open_seq"] = r.openSeq
	e.Attrs = attrs
	return e
}

// denyEntry marks e as a denied request.
func (r *l7relay) denyEntry(e *auditlog.Entry, reason string) {
	e.Decision = auditlog.Deny
	e.Attrs["deny_reason"] = reason
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
