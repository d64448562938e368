package ship

import (
	"encoding/hex"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Message kinds on streaming sinks.
const (
	KindEntry      = "entry"
	KindCheckpoint = "checkpoint"
)

// Message is what streaming sinks (NATS JetStream, JSON lines) carry: one
// entry with everything needed to check it (canonical bytes, chain hash,
// signature), or one signed checkpoint. Consumers de-duplicate on
// (host, kind, seq or size): delivery is at least once.
type Message struct {
	Kind      string          `json:"kind"` // KindEntry or KindCheckpoint
	Host      string          `json:"host"`
	Seq       uint64          `json:"seq,omitempty"`       // entry seq
	Entry     *auditlog.Entry `json:"entry,omitempty"`     // decoded entry, for reading
	Hash      string          `json:"hash,omitempty"`      // chain hash, hex
	Signature []byte          `json:"signature,omitempty"` // entry signature (base64 in JSON)
	Canonical []byte          `json:"canonical,omitempty"` // canonical encoding (base64 in JSON): what is hashed and signed
	Size      uint64          `json:"size,omitempty"`      // checkpoint tree size
	Note      string          `json:"note,omitempty"`      // signed checkpoint note
}

// ID is a stable identifier for de-duplication, e.g. "host/entry/42".
func (m Message) ID() string {
	n := m.Seq
	if m.Kind == KindCheckpoint {
		n = m.Size
	}
	return m.Host + "/" + m.Kind + "/" + uitoa(n)
}

func entryMessage(host string, r auditlog.Record) Message {
	e := r.Entry
	return Message{
		Kind:      KindEntry,
		Host:      host,
		Seq:       e.Seq,
		Entry:     &e,
		Hash:      hex.EncodeToString(r.Hash[:]),
		Signature: append([]byte(nil), r.Signature...),
		Canonical: append([]byte(nil), r.Canonical...),
	}
}

func checkpointMessage(host string, c Checkpoint) Message {
	return Message{Kind: KindCheckpoint, Host: host, Size: c.Size, Note: string(c.Note)}
}

func uitoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
