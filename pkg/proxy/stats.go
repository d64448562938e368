package proxy

import (
	"slices"
	"sync/atomic"
)

// Stats is a snapshot of the proxy's counters since New.
type Stats struct {
	Active        int64  // connections being handled now
	Accepted      uint64 // connections accepted
	Relayed       uint64 // connections relayed to their destination
	Refused       uint64 // connections closed without relaying: the four below, lookup failures, loops
	Denied        uint64 // … refused by policy
	NotRedirected uint64 // … that did not come through the kernel redirect
	DialFailed    uint64 // … whose destination could not be reached
	AuditRefused  uint64 // … because their conn.open entry could not be made durable
	AuditFailures uint64 // entries that could not be appended or made durable (any type)
	BytesIn       uint64 // bytes relayed from destinations to clients, counted when a relay ends
	BytesOut      uint64 // bytes relayed from clients to destinations, counted when a relay ends

	// Request-level inspection (connections decided by a rule with an l7
	// section).
	L7Parsed   uint64 // connections whose requests were parsed: a parser knew their protocol
	L7Unparsed uint64 // connections relayed untouched (or reset under require_tls): protocol unknown or without a parser
	L7Requests uint64 // requests parsed
	L7Denied   uint64 // requests refused: by a guardrail, or for want of TLS
	// L7Stopped counts connections whose parsing stopped before they
	// ended, by reason, as conn.close records it in l7_stopped: every
	// reason L7StopReasons returns is present, zero or not.
	L7Stopped map[string]uint64
}

// l7StopReasons are the reasons parsing stops for a connection.
var l7StopReasons = [...]string{"encrypted", "parse_error", "protocol_error", "too_large", "too_many_pending"}

// L7StopReasons returns the reasons parsing stops for a connection, the
// keys of Stats.L7Stopped: "encrypted" is the expected end of a TLS
// session's parsing; the others are fallbacks to a plain relay.
func L7StopReasons() []string { return slices.Clone(l7StopReasons[:]) }

type counters struct {
	active        atomic.Int64
	accepted      atomic.Uint64
	relayed       atomic.Uint64
	refused       atomic.Uint64
	denied        atomic.Uint64
	notRedirected atomic.Uint64
	dialFailed    atomic.Uint64
	auditRefused  atomic.Uint64
	auditFailures atomic.Uint64
	bytesIn       atomic.Uint64
	bytesOut      atomic.Uint64
	l7Parsed      atomic.Uint64
	l7Unparsed    atomic.Uint64
	l7Requests    atomic.Uint64
	l7Denied      atomic.Uint64
	l7Stopped     [len(l7StopReasons)]atomic.Uint64 // indexed as l7StopReasons
}

// l7Stop counts a connection whose parsing stopped for reason.
func (c *counters) l7Stop(reason string) {
	for i, r := range l7StopReasons {
		if r == reason {
			c.l7Stopped[i].Add(1)
			return
		}
	}
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	s := Stats{
		Active:        c.active.Load(),
		Accepted:      c.accepted.Load(),
		Relayed:       c.relayed.Load(),
		Refused:       c.refused.Load(),
		Denied:        c.denied.Load(),
		NotRedirected: c.notRedirected.Load(),
		DialFailed:    c.dialFailed.Load(),
		AuditRefused:  c.auditRefused.Load(),
		AuditFailures: c.auditFailures.Load(),
		BytesIn:       c.bytesIn.Load(),
		BytesOut:      c.bytesOut.Load(),
		L7Parsed:      c.l7Parsed.Load(),
		L7Unparsed:    c.l7Unparsed.Load(),
		L7Requests:    c.l7Requests.Load(),
		L7Denied:      c.l7Denied.Load(),
		L7Stopped:     make(map[string]uint64, len(l7StopReasons)),
	}
	for i, r := range l7StopReasons {
		s.L7Stopped[r] = c.l7Stopped[i].Load()
	}
	return s
}
