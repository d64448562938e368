package redis

import (
	"slices"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// TestReplace: the EXEC of a transaction in which a command was denied
// goes as DISCARD and is answered EXECABORT; the state follows the
// commands in the order the proxy handles them, whole pipelines parsed
// before any is decided.
func TestReplace(t *testing.T) {
	tests := []struct {
		name string
		cmds string // inline commands, one per line, all parsed first
		deny string // the kinds the proxy denies
		want string // the last EXEC replaced: the reason's kind; "" not replaced
	}{
		{name: "denied inside", cmds: "MULTI\nSET k v\nFLUSHALL\nSET k2 v\nEXEC\n", deny: "FLUSHALL", want: "FLUSHALL"},
		{name: "first denial named", cmds: "MULTI\nCONFIG GET x\nFLUSHALL\nEXEC\n", deny: "FLUSHALL CONFIG", want: "CONFIG"},
		{name: "none denied", cmds: "MULTI\nSET k v\nEXEC\n", deny: "FLUSHALL"},
		{name: "denied before MULTI", cmds: "FLUSHALL\nMULTI\nSET k v\nEXEC\n", deny: "FLUSHALL"},
		{name: "denied after DISCARD", cmds: "MULTI\nDISCARD\nFLUSHALL\nEXEC\n", deny: "FLUSHALL"},
		{name: "denied in an earlier transaction", cmds: "MULTI\nFLUSHALL\nEXEC\nMULTI\nSET k v\nEXEC\n", deny: "FLUSHALL"},
		{name: "RESET ends it", cmds: "MULTI\nFLUSHALL\nRESET\nEXEC\n", deny: "FLUSHALL"},
		{name: "nested MULTI left to the server", cmds: "MULTI\nFLUSHALL\nMULTI\nEXEC\n", deny: "FLUSHALL", want: "FLUSHALL"},
		{name: "denied MULTI opens nothing", cmds: "MULTI\nFLUSHALL\nEXEC\n", deny: "MULTI FLUSHALL"},
		{name: "denied EXEC keeps it open", cmds: "MULTI\nSET k v\nEXEC\nEXEC\n", deny: "EXEC", want: "EXEC"},
		{name: "MULTI with arguments opens nothing", cmds: "MULTI x\nFLUSHALL\nMULTI\nSET k v\nEXEC\n", deny: "FLUSHALL"},
		// Whether the server is in subscribed mode is not known when MULTI
		// is parsed (an UNSUBSCRIBE, HELLO or RESET before it may not be
		// answered yet): the MULTI counts as opening a transaction, which
		// errs safe.
		{name: "MULTI while perhaps subscribed", cmds: "SUBSCRIBE ch\nMULTI\nFLUSHALL\nEXEC\n", deny: "FLUSHALL", want: "FLUSHALL"},
		{name: "MULTI after SUBSCRIBE and RESET", cmds: "SUBSCRIBE ch\nRESET\nMULTI\nECHO a\nFLUSHALL\nEXEC\n", deny: "FLUSHALL", want: "FLUSHALL"},
		{name: "MULTI after SUBSCRIBE and UNSUBSCRIBE", cmds: "SUBSCRIBE ch\nUNSUBSCRIBE\nMULTI\nECHO a\nFLUSHALL\nEXEC\n", deny: "FLUSHALL", want: "FLUSHALL"},
		{name: "denied MULTI with arguments", cmds: "MULTI x\nFLUSHALL\nMULTI\nSET k v\nEXEC\n", deny: "MULTI FLUSHALL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(l7.DefaultOptions())
			msgs, err := p.Parse(l7.FromClient, []byte(strings.ReplaceAll(tt.cmds, "\n", "\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			denied := strings.Fields(tt.deny)
			var last *l7.Replacement
			for i, m := range msgs {
				if m.Request == nil {
					continue
				}
				var rp *l7.Replacement
				if slices.Contains(denied, m.Request.Kind) && (m.Request.Kind != "EXEC" || i < len(msgs)-1) {
					p.Deny(m.Request, "test")
				} else {
					rp = p.Replace(m.Request)
				}
				if rp != nil && m.Request.Kind != "EXEC" {
					t.Errorf("%s (command %d) replaced: %+v", m.Request.Kind, i, rp)
				}
				last = rp
			}
			switch {
			case tt.want == "" && last != nil:
				t.Errorf("EXEC replaced by %+v; want forwarded", last)
			case tt.want != "" && last == nil:
				t.Errorf("EXEC forwarded; want it replaced")
			case last != nil:
				if string(last.Send) != "*1\r\n$7\r\nDISCARD\r\n" || !strings.Contains(last.Reason, tt.want+" was denied") {
					t.Errorf("replacement = %q, reason %q; want DISCARD, naming %s", last.Send, last.Reason, tt.want)
				}
				if want := "-EXECABORT Transaction discarded because of previous errors.\r\n"; string(last.Answer) != want {
					t.Errorf("answer = %q; want %q", last.Answer, want)
				}
			}
		})
	}
}

// TestPushOwnMessage: a push before a reply is a message of its own, so
// the reply's message holds the reply alone.
func TestPushOwnMessage(t *testing.T) {
	p := New(l7.DefaultOptions())
	if _, err := p.Parse(l7.FromClient, []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(l7.FromServer, []byte("%1\r\n+server\r\n+redis\r\n")); err != nil {
		t.Fatal(err)
	}
	push := ">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n"
	msgs, err := p.Parse(l7.FromServer, []byte(push+"+PONG\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Response != nil || msgs[0].Len != len(push) || msgs[1].Response == nil || msgs[1].Len != len("+PONG\r\n") {
		t.Errorf("messages = %+v; want the push, then the reply alone", msgs)
	}
}
