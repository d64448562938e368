// Package auditlog is vigil's tamper-evident audit log: entries are encoded
// canonically, SHA-256 hash-chained, signed through sigstore, framed into
// append-only segment files with group commit, and covered by signed C2SP
// checkpoints over an RFC 6962 Merkle tree. docs/FORMAT.md specifies every
// byte.
package auditlog

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Type is an entry's event type.
type Type string

// Event types. New types may be added without a format change: readers treat
// the type as an opaque string.
const (
	ConnOpen    Type = "conn.open"    // a connection was accepted and relayed
	ConnDeny    Type = "conn.deny"    // a connection was refused by policy
	ConnClose   Type = "conn.close"   // a relayed connection ended
	L7Request   Type = "l7.request"   // one application-level request
	AgentStart  Type = "agent.start"  // the agent started
	AgentStop   Type = "agent.stop"   // the agent stopped cleanly
	AgentReload Type = "agent.reload" // the agent reloaded its configuration (SIGHUP)
	PolicyLoad  Type = "policy.load"  // a policy was loaded or rejected
	LogGap      Type = "log.gap"      // events that could not be recorded, said out loud
	LogRecovery Type = "log.recovery" // the log recovered from an unclean stop
	ConnBypass  Type = "conn.bypass"  // traffic the kernel saw but could not send through the proxy (UDP, other netns, ...)
)

// Decision is the verdict recorded for a connection or request.
type Decision string

// Decisions.
const (
	Allow Decision = "allow"
	Deny  Decision = "deny"
	Audit Decision = "audit" // allowed and flagged
)

// Identity is who acted: the kernel's view of the calling process, enriched
// from /proc and the container runtime when known. Zero fields are unknown.
type Identity struct {
	PID         uint64 `json:"pid,omitempty"` // thread-group id of the caller
	TID         uint64 `json:"tid,omitempty"` // thread id of the caller
	UID         uint64 `json:"uid,omitempty"`
	GID         uint64 `json:"gid,omitempty"`
	Comm        string `json:"comm,omitempty"`        // kernel task name (≤ 15 bytes)
	Exe         string `json:"exe,omitempty"`         // executable path from /proc/PID/exe
	Cmdline     string `json:"cmdline,omitempty"`     // bounded command line, NUL bytes replaced by spaces
	CgroupPath  string `json:"cgroup_path,omitempty"` // cgroup v2 path relative to the cgroup root
	CgroupID    uint64 `json:"cgroup_id,omitempty"`
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Runtime     string `json:"runtime,omitempty"` // container runtime (containerd, cri-o, docker, systemd)
	Pod         string `json:"pod,omitempty"`
	Namespace   string `json:"namespace,omitempty"` // Kubernetes namespace of Pod
}

// Entry is one audit event. Seq, Time and Host are assigned by the log when
// the entry is appended, unless set by the caller (Time and Host only).
type Entry struct {
	Seq      uint64            `json:"seq"` // position in the log, 1-based, no gaps
	Time     time.Time         `json:"time"`
	Type     Type              `json:"type"`
	Host     string            `json:"host,omitempty"`
	Identity Identity          `json:"identity,omitzero"`
	Proto    string            `json:"proto,omitempty"` // transport, e.g. "tcp", "udp"
	Src      string            `json:"src,omitempty"`   // client address "ip:port"
	Dst      string            `json:"dst,omitempty"`   // original destination "ip:port"
	Decision Decision          `json:"decision,omitempty"`
	Rule     string            `json:"rule,omitempty"`  // name of the policy rule that decided
	Attrs    map[string]string `json:"attrs,omitempty"` // type-specific details (bytes, durations, L7 fields, reasons)

	// unknown holds fields written by a newer vigil, kept verbatim so that
	// re-encoding reproduces the canonical bytes.
	unknown []field
}

// Attr returns the attribute k, or "".
func (e *Entry) Attr(k string) string { return e.Attrs[k] }

// maxStringLen bounds each string field of an entry; longer values are cut
// and marked, so one huge command line can never make an entry unwritable.
const maxStringLen = 64 << 10

// truncMark ends a string that sanitize cut.
const truncMark = "…[truncated]"

// sanitize makes every string valid UTF-8 and bounded, so whatever the
// kernel or /proc hands over, the entry can be encoded, written and read
// back. Invalid bytes become U+FFFD.
func (e *Entry) sanitize() {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
		if len(*s) > maxStringLen {
			cut := maxStringLen - len(truncMark)
			for cut > 0 && !utf8.RuneStart((*s)[cut]) {
				cut--
			}
			*s = (*s)[:cut] + truncMark
		}
	}
	fix((*string)(&e.Type))
	fix(&e.Host)
	id := &e.Identity
	for _, p := range []*string{&id.Comm, &id.Exe, &id.Cmdline, &id.CgroupPath, &id.ContainerID, &id.Runtime, &id.Pod, &id.Namespace, &e.Proto, &e.Src, &e.Dst, (*string)(&e.Decision), &e.Rule} {
		fix(p)
	}
	if len(e.Attrs) == 0 {
		return
	}
	clean := true
	for k, v := range e.Attrs {
		if !utf8.ValidString(k) || !utf8.ValidString(v) || len(k) > maxStringLen || len(v) > maxStringLen {
			clean = false
			break
		}
	}
	if clean {
		return
	}
	m := make(map[string]string, len(e.Attrs))
	for k, v := range e.Attrs {
		fix(&k)
		fix(&v)
		m[k] = v
	}
	e.Attrs = m // a copy: the caller's map is not changed
}
