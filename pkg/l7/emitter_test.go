package l7

import (
	"reflect"
	"testing"
)

func TestEmitter(t *testing.T) {
	req, resp := &Request{Kind: "SELECT"}, &Response{Status: "ok"}
	tests := []struct {
		name string
		emit func(e *Emitter)
		want []Message
		off  int
	}{
		{"plain runs merge", func(e *Emitter) { e.Plain(3); e.Plain(0); e.Plain(4) }, []Message{{Len: 7}}, 7},
		{"request stands alone", func(e *Emitter) { e.Plain(2); e.Request(5, req); e.Plain(1) },
			[]Message{{Len: 2}, {Len: 5, Request: req}, {Len: 1}}, 8},
		{"response takes the plain bytes before it", func(e *Emitter) { e.Plain(2); e.Response(3, resp); e.Plain(1) },
			[]Message{{Len: 5, Response: resp}, {Len: 1}}, 6},
		{"empty response", func(e *Emitter) { e.Response(0, resp) }, []Message{{Len: 0, Response: resp}}, 0},
		{"response after a response", func(e *Emitter) { e.Response(1, resp); e.Response(2, resp) },
			[]Message{{Len: 1, Response: resp}, {Len: 2, Response: resp}}, 3},
		{"plain never joins a part", func(e *Emitter) {
			e.msgs = AppendPart(e.msgs, 2) // the rest of a request from an earlier call
			e.Plain(3)
		}, []Message{{Len: 2, Part: true}, {Len: 3}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Emitter
			tt.emit(&e)
			if !reflect.DeepEqual(e.Messages(), tt.want) || e.Off() != tt.off {
				t.Errorf("messages %+v, off %d; want %+v, off %d", e.Messages(), e.Off(), tt.want, tt.off)
			}
		})
	}
}

func TestAppendPart(t *testing.T) {
	req := &Request{Kind: "POST"}
	tests := []struct {
		name string
		in   []Message
		want []Message
	}{
		{"first in the call", nil, []Message{{Len: 4, Part: true}}},
		{"joins its request", []Message{{Len: 10, Request: req}}, []Message{{Len: 14, Request: req}}},
		{"joins an earlier part", []Message{{Len: 2, Part: true}}, []Message{{Len: 6, Part: true}}},
		{"not a plain message", []Message{{Len: 2}}, []Message{{Len: 2}, {Len: 4, Part: true}}},
	}
	for _, tt := range tests {
		if got := AppendPart(tt.in, 4); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v; want %+v", tt.name, got, tt.want)
		}
	}
}
