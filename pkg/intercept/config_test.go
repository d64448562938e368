package intercept

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseCapture(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		in   string
		want []CaptureRule
	}{
		{"10.0.0.0/8:5432", []CaptureRule{{pfx("10.0.0.0/8"), 5432, 5432}}},
		{"0.0.0.0/0:1-65535", []CaptureRule{{pfx("0.0.0.0/0"), 1, 65535}}},
		{"::/0", []CaptureRule{{Prefix: pfx("::/0")}}},
		{"fd00::/8:443", []CaptureRule{{pfx("fd00::/8"), 443, 443}}},
		{"10.1.2.3/8", []CaptureRule{{Prefix: pfx("10.0.0.0/8")}}},
		{"::ffff:10.0.0.0/104:80", []CaptureRule{{pfx("10.0.0.0/8"), 80, 80}}},
		{"10.0.0.0/8:5432, 0.0.0.0/0:1-65535 ,::/0,", []CaptureRule{
			{pfx("10.0.0.0/8"), 5432, 5432}, {pfx("0.0.0.0/0"), 1, 65535}, {Prefix: pfx("::/0")},
		}},
	}
	for _, tt := range tests {
		got, err := ParseCapture(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCapture(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}

	bad := []struct{ in, mention string }{
		{"", "no rules"},
		{" , ", "no rules"},
		{"10.0.0.1", "missing prefix length"},
		{"::1", "missing prefix length"},
		{"10.0.0.0/33", "bad prefix"},
		{"example.com/8", "bad prefix"},
		{"10.0.0.0/8:0", "bad port"},
		{"10.0.0.0/8:70000", "bad port"},
		{"10.0.0.0/8:http", "bad port"},
		{"fd00::/8:", "bad port"},
		{"10.0.0.0/8:20-10", "backwards"},
		{"10.0.0.0/8:1-", "bad port"},
	}
	for _, tt := range bad {
		got, err := ParseCapture(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.mention) || !strings.HasPrefix(err.Error(), "intercept: ") {
			t.Errorf("ParseCapture(%q) = %v, %v; want an error mentioning %q", tt.in, got, err, tt.mention)
		}
	}
}

func TestCaptureRuleString(t *testing.T) {
	for _, s := range []string{"10.0.0.0/8:5432", "0.0.0.0/0:1-65535", "::/0", "fd00::/8:443"} {
		rules, err := ParseCapture(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := rules[0].String(); got != s {
			t.Errorf("ParseCapture(%q)[0].String() = %q; want %q", s, got, s)
		}
	}
}

// capturedBy models the kernel's decision: the longest prefix containing
// dst (IPv4-mapped matched as IPv4) and its port ranges.
func capturedBy(entries map[netip.Prefix][]portRange, dst netip.AddrPort) bool {
	addr := dst.Addr().Unmap()
	best, found := netip.Prefix{}, false
	for p := range entries {
		if p.Addr().BitLen() == addr.BitLen() && p.Contains(addr) && (!found || p.Bits() > best.Bits()) {
			best, found = p, true
		}
	}
	if !found {
		return false
	}
	for _, r := range entries[best] {
		if dst.Port() >= r.lo && dst.Port() <= r.hi {
			return true
		}
	}
	return false
}

func TestCompileCapture(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		rules string // "" for DefaultCapture
		dst   string
		want  bool
	}{
		{"", "10.1.2.3:5432", true},
		{"", "[2001:db8::1]:443", true},
		{"", "127.0.0.1:80", false},
		{"", "127.1.2.3:80", false},
		{"", "0.0.0.0:80", false},
		{"", "[::1]:80", false},
		{"", "[::]:80", false},
		{"", "[::ffff:127.0.0.1]:80", false},
		{"", "[::ffff:10.1.2.3]:80", true},
		{"10.0.0.0/8:5432", "10.1.2.3:5432", true},
		{"10.0.0.0/8:5432", "10.1.2.3:5433", false},
		{"10.0.0.0/8:5432", "11.1.2.3:5432", false},
		{"10.0.0.0/8:5432", "[fd00::1]:5432", false},
		// A more specific rule does not hide a broader one's ports.
		{"10.0.0.0/8:5432,10.1.0.0/16:80", "10.1.2.3:5432", true},
		{"10.0.0.0/8:5432,10.1.0.0/16:80", "10.1.2.3:80", true},
		{"10.0.0.0/8:5432,10.1.0.0/16:80", "10.2.2.3:80", false},
		// Loopback only by rules inside it.
		{"0.0.0.0/0,127.0.0.1/32:8080", "127.0.0.1:8080", true},
		{"0.0.0.0/0,127.0.0.1/32:8080", "127.0.0.1:8081", false},
		{"0.0.0.0/0,127.0.0.1/32:8080", "127.0.0.2:8080", false},
		{"127.0.0.0/8", "127.9.9.9:1", true},
		{"::/0,::1/128:443", "[::1]:443", true},
		{"fd00::/8:1-1000", "[fd00::1]:1000", true},
		{"fd00::/8:1-1000", "[fd00::1]:1001", false},
		{"::ffff:10.0.0.0/104", "[::ffff:10.9.9.9]:1", true},
		{"::ffff:10.0.0.0/104", "10.9.9.9:1", true},
	}
	for _, tt := range tests {
		rules := DefaultCapture()
		if tt.rules != "" {
			var err error
			if rules, err = ParseCapture(tt.rules); err != nil {
				t.Fatal(err)
			}
		}
		entries, err := compileCapture(rules)
		if err != nil {
			t.Fatalf("compileCapture(%v): %v", rules, err)
		}
		if got := capturedBy(entries, ap(tt.dst)); got != tt.want {
			t.Errorf("capture %q covers %s = %v; want %v (entries %v)", tt.rules, tt.dst, got, tt.want, entries)
		}
	}
}

func TestCompileCaptureLimits(t *testing.T) {
	var rules []CaptureRule
	for p := uint16(1); p <= 2*maxPortRanges; p += 2 {
		rules = append(rules, CaptureRule{netip.MustParsePrefix("10.0.0.0/8"), p, p})
	}
	if _, err := compileCapture(rules[:maxPortRanges]); err != nil {
		t.Errorf("compileCapture(%d ranges) = %v; want success", maxPortRanges, err)
	}
	rules = append(rules, CaptureRule{netip.MustParsePrefix("10.0.0.0/8"), 1000, 1000})
	if _, err := compileCapture(rules); err == nil || !strings.Contains(err.Error(), "port ranges") {
		t.Errorf("compileCapture(%d ranges) = %v; want a port range limit error", len(rules), err)
	}
	backwards := []CaptureRule{{netip.MustParsePrefix("10.0.0.0/8"), 9, 1}}
	if _, err := compileCapture(backwards); err == nil {
		t.Error("compileCapture(backwards range) succeeded")
	}
}

func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]portRange{{80, 80}, {10, 20}, {21, 30}, {25, 40}, {443, 443}, {81, 81}})
	want := []portRange{{10, 40}, {80, 81}, {443, 443}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeRanges = %v; want %v", got, want)
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.ProxyPort != 1015 || c.BypassMark != 0x7669 || !reflect.DeepEqual(c.Capture, DefaultCapture()) || c.Logger == nil {
		t.Errorf("Config{}.withDefaults() = %+v; want port 1015, mark 0x7669, default capture, a logger", c)
	}
}

func TestError(t *testing.T) {
	cause := errors.New("operation not permitted")
	err := error(&Error{Kind: ErrPermission, Msg: "load BPF programs", Err: cause, Hint: hintPermission})
	want := "intercept: load BPF programs: operation not permitted: run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"
	if err.Error() != want {
		t.Errorf("Error() = %q; want %q", err.Error(), want)
	}
	if !errors.Is(err, ErrPermission) || errors.Is(err, ErrVerifier) || !errors.Is(err, cause) {
		t.Errorf("errors.Is(%v): ErrPermission %v, ErrVerifier %v, cause %v; want true, false, true",
			err, errors.Is(err, ErrPermission), errors.Is(err, ErrVerifier), errors.Is(err, cause))
	}
	plain := &Error{Msg: "x"}
	if errors.Is(plain, ErrPermission) || plain.Error() != "intercept: x" {
		t.Errorf("plain Error = %q, Is(ErrPermission) %v", plain.Error(), errors.Is(plain, ErrPermission))
	}
}
