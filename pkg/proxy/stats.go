package proxy

import "sync/atomic"

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
}

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
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	return Stats{
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
	}
}
