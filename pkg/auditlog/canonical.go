package auditlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// canonicalVersion is the first byte of every canonical entry encoding.
const canonicalVersion = 1

// Field tags of the canonical encoding (docs/FORMAT.md, "Canonical entry").
// Tags are written in increasing order; a zero value is never written.
const (
	tagSeq         = 1
	tagTime        = 2
	tagType        = 3
	tagHost        = 4
	tagPID         = 16
	tagTID         = 17
	tagUID         = 18
	tagGID         = 19
	tagComm        = 20
	tagExe         = 21
	tagCmdline     = 22
	tagCgroupPath  = 23
	tagCgroupID    = 24
	tagNetnsCookie = 25
	tagContainerID = 26
	tagRuntime     = 27
	tagPod         = 28
	tagNamespace   = 29
	tagProto       = 32
	tagSrc         = 33
	tagDst         = 34
	tagDecision    = 48
	tagRule        = 49
	tagAttrs       = 64
)

// seqValueOffset is where the seq value sits in every canonical entry:
// after the version byte and the seq field's tag and length. Seq is never
// zero, so the field is always present.
const seqValueOffset = 1 + 2 + 4

// maxFieldLen bounds one field so a corrupt length cannot make a reader
// allocate without limit.
const maxFieldLen = 1 << 20

// field is one tag-length-value item.
type field struct {
	tag   uint16
	value []byte
}

// MalformedError reports bytes that are not a valid canonical encoding.
type MalformedError struct {
	What   string // what was being decoded
	Offset int    // byte offset of the problem
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("auditlog: malformed %s at byte %d: %s", e.What, e.Offset, e.Reason)
}

// encoder appends canonical fields; callers must add them in tag order.
type encoder struct{ b []byte }

func (w *encoder) raw(tag uint16, v []byte) {
	w.b = binary.BigEndian.AppendUint16(w.b, tag)
	w.b = binary.BigEndian.AppendUint32(w.b, uint32(len(v)))
	w.b = append(w.b, v...)
}

func (w *encoder) str(tag uint16, s string) {
	if s == "" {
		return
	}
	w.b = binary.BigEndian.AppendUint16(w.b, tag)
	w.b = binary.BigEndian.AppendUint32(w.b, uint32(len(s)))
	w.b = append(w.b, s...)
}

func (w *encoder) u64(tag uint16, v uint64) {
	if v == 0 {
		return
	}
	w.b = binary.BigEndian.AppendUint16(w.b, tag)
	w.b = binary.BigEndian.AppendUint32(w.b, 8)
	w.b = binary.BigEndian.AppendUint64(w.b, v)
}

// AppendCanonical appends the canonical encoding of e to b. The encoding is a
// pure function of e's fields (docs/FORMAT.md): this is what is hashed and
// signed.
func (e *Entry) AppendCanonical(b []byte) []byte {
	w := encoder{b: append(b, canonicalVersion)}
	unk := e.unknown
	// flush writes unknown fields whose tag sorts before next, keeping order
	// strictly increasing when a newer writer's fields are interleaved.
	flush := func(next uint16) {
		for len(unk) > 0 && unk[0].tag < next {
			w.raw(unk[0].tag, unk[0].value)
			unk = unk[1:]
		}
	}
	flush(tagSeq)
	w.u64(tagSeq, e.Seq)
	flush(tagTime)
	if !e.Time.IsZero() {
		w.u64(tagTime, uint64(e.Time.UnixNano()))
	}
	flush(tagType)
	w.str(tagType, string(e.Type))
	flush(tagHost)
	w.str(tagHost, e.Host)
	id := &e.Identity
	flush(tagPID)
	w.u64(tagPID, id.PID)
	flush(tagTID)
	w.u64(tagTID, id.TID)
	flush(tagUID)
	w.u64(tagUID, id.UID)
	flush(tagGID)
	w.u64(tagGID, id.GID)
	flush(tagComm)
	w.str(tagComm, id.Comm)
	flush(tagExe)
	w.str(tagExe, id.Exe)
	flush(tagCmdline)
	w.str(tagCmdline, id.Cmdline)
	flush(tagCgroupPath)
	w.str(tagCgroupPath, id.CgroupPath)
	flush(tagCgroupID)
	w.u64(tagCgroupID, id.CgroupID)
	flush(tagNetnsCookie)
	w.u64(tagNetnsCookie, id.NetnsCookie)
	flush(tagContainerID)
	w.str(tagContainerID, id.ContainerID)
	flush(tagRuntime)
	w.str(tagRuntime, id.Runtime)
	flush(tagPod)
	w.str(tagPod, id.Pod)
	flush(tagNamespace)
	w.str(tagNamespace, id.Namespace)
	flush(tagProto)
	w.str(tagProto, e.Proto)
	flush(tagSrc)
	w.str(tagSrc, e.Src)
	flush(tagDst)
	w.str(tagDst, e.Dst)
	flush(tagDecision)
	w.str(tagDecision, string(e.Decision))
	flush(tagRule)
	w.str(tagRule, e.Rule)
	flush(tagAttrs)
	if len(e.Attrs) > 0 {
		w.raw(tagAttrs, encodeAttrs(e.Attrs))
	}
	flush(0xFFFF)
	if len(unk) > 0 { // tag 0xFFFF itself
		w.raw(unk[0].tag, unk[0].value)
	}
	return w.b
}

// encodeAttrs encodes a map as its pairs sorted by key:
// klen u32 | key | vlen u32 | value, repeated.
func encodeAttrs(m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	n := 0
	for k, v := range m {
		keys = append(keys, k)
		n += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

// DecodeEntry decodes a canonical entry. It accepts exactly the bytes that
// AppendCanonical produces: DecodeEntry(b).AppendCanonical(nil) == b for every
// b it accepts. Unknown tags are kept, so newer logs stay verifiable.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	bad := func(off int, format string, a ...any) (Entry, error) {
		return Entry{}, &MalformedError{What: "entry", Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if len(b) == 0 {
		return bad(0, "empty")
	}
	if b[0] != canonicalVersion {
		return bad(0, "unsupported encoding version %d (this vigil reads version %d)", b[0], canonicalVersion)
	}
	off := 1
	last := -1
	for off < len(b) {
		if len(b)-off < 6 {
			return bad(off, "truncated field header")
		}
		tag := binary.BigEndian.Uint16(b[off:])
		n := binary.BigEndian.Uint32(b[off+2:])
		start := off
		off += 6
		if int(tag) <= last {
			return bad(start, "tag %d out of order after %d", tag, last)
		}
		last = int(tag)
		if n > maxFieldLen || int(n) > len(b)-off {
			return bad(start, "field %d length %d exceeds the data", tag, n)
		}
		v := b[off : off+int(n)]
		off += int(n)
		if err := e.setField(tag, v); err != nil {
			return bad(start, "field %d: %v", tag, err)
		}
	}
	return e, nil
}

func (e *Entry) setField(tag uint16, v []byte) error {
	id := &e.Identity
	switch tag {
	case tagSeq:
		return setU64(&e.Seq, v)
	case tagTime:
		var ns uint64
		if err := setU64(&ns, v); err != nil {
			return err
		}
		e.Time = time.Unix(0, int64(ns)).UTC()
		return nil
	case tagType:
		return setStr((*string)(&e.Type), v)
	case tagHost:
		return setStr(&e.Host, v)
	case tagPID:
		return setU64(&id.PID, v)
	case tagTID:
		return setU64(&id.TID, v)
	case tagUID:
		return setU64(&id.UID, v)
	case tagGID:
		return setU64(&id.GID, v)
	case tagComm:
		return setStr(&id.Comm, v)
	case tagExe:
		return setStr(&id.Exe, v)
	case tagCmdline:
		return setStr(&id.Cmdline, v)
	case tagCgroupPath:
		return setStr(&id.CgroupPath, v)
	case tagCgroupID:
		return setU64(&id.CgroupID, v)
	case tagNetnsCookie:
		return setU64(&id.NetnsCookie, v)
	case tagContainerID:
		return setStr(&id.ContainerID, v)
	case tagRuntime:
		return setStr(&id.Runtime, v)
	case tagPod:
		return setStr(&id.Pod, v)
	case tagNamespace:
		return setStr(&id.Namespace, v)
	case tagProto:
		return setStr(&e.Proto, v)
	case tagSrc:
		return setStr(&e.Src, v)
	case tagDst:
		return setStr(&e.Dst, v)
	case tagDecision:
		return setStr((*string)(&e.Decision), v)
	case tagRule:
		return setStr(&e.Rule, v)
	case tagAttrs:
		m, err := decodeAttrs(v)
		if err != nil {
			return err
		}
		e.Attrs = m
		return nil
	default:
		e.unknown = append(e.unknown, field{tag: tag, value: bytes.Clone(v)})
		return nil
	}
}

func setU64(dst *uint64, v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("integer of %d bytes, want 8", len(v))
	}
	x := binary.BigEndian.Uint64(v)
	if x == 0 {
		return fmt.Errorf("zero value must be omitted")
	}
	*dst = x
	return nil
}

func setStr(dst *string, v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("empty string must be omitted")
	}
	if !utf8.Valid(v) {
		return fmt.Errorf("invalid UTF-8")
	}
	*dst = string(v)
	return nil
}

func decodeAttrs(v []byte) (map[string]string, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("empty attribute map must be omitted")
	}
	m := make(map[string]string)
	prev := ""
	for off := 0; off < len(v); {
		k, n, err := lenPrefixed(v[off:])
		if err != nil {
			return nil, fmt.Errorf("attribute key at %d: %w", off, err)
		}
		off += n
		val, n, err := lenPrefixed(v[off:])
		if err != nil {
			return nil, fmt.Errorf("attribute %q value: %w", k, err)
		}
		off += n
		if len(m) > 0 && k <= prev {
			return nil, fmt.Errorf("attribute %q out of order or repeated", k)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(val) {
			return nil, fmt.Errorf("attribute %q: invalid UTF-8", k)
		}
		m[k] = val
		prev = k
	}
	return m, nil
}

func lenPrefixed(b []byte) (string, int, error) {
	if len(b) < 4 {
		return "", 0, fmt.Errorf("truncated length")
	}
	n := binary.BigEndian.Uint32(b)
	if n > uint32(len(b)-4) {
		return "", 0, fmt.Errorf("length %d exceeds the data", n)
	}
	return string(b[4 : 4+n]), 4 + int(n), nil
}
