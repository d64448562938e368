package l7

// Emitter collects the Messages of one Parse call for a parser that walks
// its input front to back (the SQL parsers). It counts the bytes covered
// so far and merges runs of bytes that carry nothing into one Message, so
// the proxy handles a few Messages per read rather than one per protocol
// message. The zero value is ready to use.
type Emitter struct {
	msgs []Message
	off  int
}

// Off is the number of bytes the Messages so far cover: where the parser
// reads next.
func (e *Emitter) Off() int { return e.off }

// Messages returns what was emitted, for Parse to return.
func (e *Emitter) Messages() []Message { return e.msgs }

// Plain covers n bytes that carry no request or response. They join the
// previous Message when that one carries nothing either; never a Part
// message, since plain bytes stand alone and must not be dropped with a
// denied request.
func (e *Emitter) Plain(n int) {
	if n <= 0 {
		return
	}
	e.off += n
	if m := e.bare(); m != nil {
		m.Len += n
		return
	}
	e.msgs = append(e.msgs, Message{Len: n})
}

// Request covers n bytes that carry r, in a Message of its own so that a
// deny drops exactly these bytes.
func (e *Emitter) Request(n int, r *Request) {
	e.off += n
	e.msgs = append(e.msgs, Message{Len: n, Request: r})
}

// Response covers n bytes (possibly 0) that complete r. Plain bytes just
// before it join its Message: they are the earlier parts of the answer.
func (e *Emitter) Response(n int, r *Response) {
	e.off += n
	if m := e.bare(); m != nil {
		m.Len += n
		m.Response = r
		return
	}
	e.msgs = append(e.msgs, Message{Len: n, Response: r})
}

// bare returns the last Message if it carries nothing (no request, no
// response, not part of a request), else nil.
func (e *Emitter) bare() *Message {
	if k := len(e.msgs); k > 0 {
		if m := &e.msgs[k-1]; m.Request == nil && m.Response == nil && !m.Part {
			return m
		}
	}
	return nil
}

// AppendPart covers k more bytes of the request being streamed (the rest
// of a body or a large value): they join the last message when it is that
// request's own or an earlier Part of it, or start a new Part message, so
// a deny of the request drops them with it.
func AppendPart(msgs []Message, k int) []Message {
	if i := len(msgs) - 1; i >= 0 && msgs[i].Response == nil && (msgs[i].Request != nil || msgs[i].Part) {
		msgs[i].Len += k
		return msgs
	}
	return append(msgs, Message{Len: k, Part: true})
}
