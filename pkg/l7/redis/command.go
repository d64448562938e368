package redis

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// command is what the parser learned about one client command: the
// arguments it has seen (all of them, unless the command streams through
// because it is larger than the buffer) and how many there are.
type command struct {
	args [][]byte
	argc int64 // number of arguments the command declares
}

// hasSubcommand reports the commands whose second word picks what they do;
// the audit needs "CONFIG SET", not just "CONFIG".
func hasSubcommand(name string) bool {
	switch name {
	case "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO":
		return true
	}
	return false
}

// allKeys reports commands whose arguments are all keys, shown in full.
func allKeys(name string) bool {
	switch name {
	case "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER", "SUNION", "SDIFF", "PFCOUNT":
		return true
	}
	return false
}

// isKeyless reports commands whose first argument is not a key (or that have
// none), so Target stays empty.
func isKeyless(name string) bool {
	switch name {
	case "AUTH", "BGREWRITEAOF", "BGSAVE", "DBSIZE", "DISCARD", "ECHO", "EXEC", "FAILOVER", "FLUSHALL", "FLUSHDB", "HELLO", "INFO", "LASTSAVE", "LOLWUT", "MONITOR", "MULTI", "PING", "PSYNC", "QUIT", "READONLY", "READWRITE", "REPLICAOF", "RESET", "ROLE", "SAVE", "SCAN", "SELECT", "SHUTDOWN", "SLAVEOF", "SWAPDB", "SYNC", "TIME", "UNWATCH", "WAIT", "WAITAOF", "RANDOMKEY":
		return true
	}
	return false
}

// keyAt returns the index of the first key in args, or -1.
func keyAt(name string, args [][]byte) int {
	switch {
	case isKeyless(name):
		return -1
	case hasSubcommand(name):
		if len(args) > 1 {
			sub := strings.ToUpper(string(clipBytes(args[1])))
			switch {
			case name == "OBJECT" && sub != "HELP", name == "XINFO" && sub != "HELP",
				name == "XGROUP" && sub != "HELP", name == "MEMORY" && sub == "USAGE":
				return 2
			}
		}
		return -1
	}
	switch name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		if len(args) > 2 {
			if n, ok := parseInt(args[2]); ok && n > 0 {
				return 3
			}
		}
		return -1
	case "ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD", "SINTERCARD", "LMPOP", "ZMPOP":
		return 2
	case "BLMPOP", "BZMPOP":
		return 3
	case "XREAD", "XREADGROUP":
		for i := 1; i+1 < len(args); i++ {
			if strings.EqualFold(string(args[i]), "STREAMS") {
				return i + 1
			}
		}
		return -1
	}
	return 1
}

// secret reports arguments that are credentials, masked even when the
// options ask for values in clear.
func secret(name, sub string, args [][]byte, i int) bool {
	switch name {
	case "AUTH":
		return true
	case "HELLO", "MIGRATE":
		// HELLO 3 AUTH user pass; MIGRATE ... AUTH pass | AUTH2 user pass
		for j := i - 1; j >= 1 && j >= i-2; j-- {
			w := strings.ToUpper(string(clipBytes(args[j])))
			if w == "AUTH" || w == "AUTH2" {
				return true
			}
		}
	case "CONFIG":
		if sub == "SET" && i >= 3 {
			p := strings.ToLower(string(clipBytes(args[i-1])))
			return p == "requirepass" || p == "masterauth" || p == "masteruser"
		}
	case "ACL":
		if sub == "SETUSER" && i >= 3 && len(args[i]) > 0 {
			c := args[i][0]
			return c == '>' || c == '<' || c == '#' || c == '!'
		}
	}
	return false
}

// request turns a command into the audit's view of it.
func (c *command) request(redact bool, multi bool) *l7.Request {
	name := upperWord(c.args[0])
	req := &l7.Request{Protocol: "redis", Kind: name}
	var sub string
	if hasSubcommand(name) && len(c.args) > 1 {
		sub = strings.ToUpper(word(c.args[1], 64))
		setAttr(req, "subcommand", sub)
	}
	key := keyAt(name, c.args)
	if key >= 0 && key < len(c.args) {
		req.Target = clip(strings.ToValidUTF8(string(clipBytes64k(c.args[key])), "\uFFFD"))
	}
	if multi {
		setAttr(req, "multi", "true")
	}
	if c.argc > int64(len(c.args)) {
		setAttr(req, "streamed", "true")
	}
	var t strings.Builder
	t.Grow(min(l7.MaxText, len(name)+int(c.argc)*2+len(req.Target)))
	t.WriteString(name)
	for i := int64(1); i < c.argc && t.Len() < l7.MaxText; i++ {
		t.WriteByte(' ')
		switch {
		case i >= int64(len(c.args)):
			t.WriteByte('?')
		case int(i) == key || (i == 1 && sub != "") || configName(name, sub, i) || allKeys(name) || (name == "HELLO" && i == 1):
			t.WriteString(quote(c.args[i]))
		case secret(name, sub, c.args, int(i)), redact:
			t.WriteByte('?')
		default:
			t.WriteString(quote(c.args[i]))
		}
	}
	req.Text = clip(t.String())
	return req
}

// setAttr sets one attribute, making the map only for requests that
// have any.
func setAttr(req *l7.Request, k, v string) {
	if req.Attrs == nil {
		req.Attrs = make(map[string]string, 2)
	}
	req.Attrs[k] = v
}

// word returns up to n bytes of b as valid UTF-8.
func word(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// quote writes an argument bare if it is plain printable text without
// spaces, and Go-quoted otherwise, so the log line splits unambiguously.
func quote(b []byte) string {
	b = clipBytes64k(b)
	plain := len(b) > 0
	for _, c := range b {
		if c <= ' ' || c == '"' || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return string(b) // the common case: printable ASCII
	}
	if len(b) > 0 && utf8.Valid(b) && bytes.IndexFunc(b, func(r rune) bool {
		return r <= ' ' || r == '"' || r == 0x7f || r == utf8.RuneError
	}) < 0 {
		return string(b)
	}
	return strconv.Quote(string(b))
}

func clipBytes64k(b []byte) []byte {
	if len(b) > l7.MaxText {
		return b[:l7.MaxText]
	}
	return b
}

// clip bounds s to l7.MaxText bytes without splitting a UTF-8 sequence.
func clip(s string) string {
	if len(s) <= l7.MaxText {
		return s
	}
	return strings.ToValidUTF8(s[:l7.MaxText], "")
}

// configName reports the parameter names of CONFIG GET and CONFIG SET,
// which say what changes and are not values.
func configName(name, sub string, i int64) bool {
	return name == "CONFIG" && (sub == "GET" || sub == "SET" && i%2 == 0)
}

// upperWord is the command name in upper case, converted once.
func upperWord(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 0x80 {
			return strings.ToUpper(strings.ToValidUTF8(string(b), "\uFFFD"))
		}
	}
	return string(b)
}
