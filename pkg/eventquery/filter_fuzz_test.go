package eventquery

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// fuzzEntries are the entries an accepted filter is matched against:
// synthetic ones of each type plus a few with the odd values real logs
// hold (IPv6 and IPv4-mapped destinations, no port, unknown identity, L7
// host attributes).
func fuzzEntries() []auditlog.Entry {
	var es []auditlog.Entry
	for i := range 8 {
		e := SyntheticEntry(i, t0, time.Minute)
		e.Seq = uint64(i + 1)
		es = append(es, e)
	}
	odd := []auditlog.Entry{
		{Seq: 9, Time: t0.Add(-time.Hour), Type: auditlog.ConnOpen, Dst: "[::ffff:10.0.0.1]:5432"},
		{Seq: 10, Time: t0, Type: auditlog.L7Request, Dst: "[fd00::1]:443", Attrs: map[string]string{"sni": "DB.internal", "host": "x"}},
		{Seq: 11, Time: time.Time{}, Dst: "not an address"},
		{Seq: 1 << 63, Time: t0.Add(1000 * time.Hour), Dst: ":"},
	}
	return append(es, odd...)
}

// FuzzParseValues builds `vigil events` / GET /v1/events queries from
// fuzzed parameter values: ParseValues must reject them with an error that
// names the parameter, or return a filter whose matching never panics.
func FuzzParseValues(f *testing.F) {
	type seed struct{ raw, since, until, ids, glob, dst, port, limit, seq string }
	for _, s := range []seed{
		{"type=conn_open&decision=deny", "1h", "now", "1000,1001", "psql", "10.0.0.0/8", "5432", "10", "1"},
		{"", "yesterday", "today", "0", "app-*", "db.internal:5432", "443", "0", "100"},
		{"rule=default&reverse=true&follow=1", "2026-03-10", "2026-03-11T00:00:00Z", " 7 , ,8", "[", "[fd00::1]:443", "65535", "1", "0"},
		{"grep=SELECT&namespace=pay*", "2d", "30m", "x", "*", "::ffff:10.0.0.1", "65536", "-1", "18446744073709551616"},
		{"bogus=1", "1h", "2h", "1", "\\", "host:", "0x10", "9999999999999999999", "-"},
		{"%zz&pid=1&pid=2,3", "2026-03-10 12:00:00", "65536d", "", "", ":5432", "", "", ""},
		{"reverse=maybe", "-1h", "", "18446744073709551615", "a[b-", "10.0.0.1/33", " 80", "", ""},
	} {
		f.Add(s.raw, s.since, s.until, s.ids, s.glob, s.dst, s.port, s.limit, s.seq)
	}
	now := t0.Add(30 * time.Minute)
	entries := fuzzEntries()
	f.Fuzz(func(t *testing.T, raw, since, until, ids, glob, dst, port, limit, seq string) {
		q, _ := url.ParseQuery(raw) // a bad query string still yields the pairs it could read
		if q == nil {
			q = url.Values{}
		}
		set := func(k, v string) {
			if v != "" {
				q.Add(k, v)
			}
		}
		set("since", since)
		set("until", until)
		set("pid", ids)
		set("uid", ids)
		set("comm", glob)
		set("container", glob)
		set("dst", dst)
		set("port", port)
		set("limit", limit)
		set("from-seq", seq)
		flt, err := ParseValues(q, now)
		if _, ferr := ParseFollow(q); ferr != nil && ferr.Error() == "" {
			t.Fatalf("ParseFollow(%v): empty error", q)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "eventquery: ") || len(err.Error()) < len("eventquery: x: y") {
				t.Fatalf("ParseValues(%v) error %q does not say what is wrong", q, err)
			}
			return
		}
		if flt.Limit < 0 {
			t.Fatalf("ParseValues(%v): negative limit %d", q, flt.Limit)
		}
		if !flt.Since.IsZero() && !flt.Until.IsZero() && !flt.Until.After(flt.Since) {
			t.Fatalf("ParseValues(%v): until %v not after since %v", q, flt.Until, flt.Since)
		}
		_ = flt.selective()
		_ = flt.timeOverlaps(t0.UnixNano(), t0.Add(time.Hour).UnixNano())
		for i := range entries {
			flt.Match(&entries[i])
		}
	})
}

// FuzzParseTime feeds arbitrary text to the time parser behind --since and
// --until: it must return a time or an error that quotes the input and
// shows the accepted forms; a relative time ("1h", "2d") is never after now;
// spaces around it change nothing (--until " yesterday" still covers all
// of yesterday).
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"now", "today", "yesterday", " yesterday ", "1h", "90s", "1h30m", "2d", "0d", "65535d", "65536d",
		"-1h", "1.5h", "2026-03-10", "2026-03-10T12:00:00Z", "2026-03-10T12:00:00.123456789+05:30",
		"2026-03-10 12:00:00", "2026-02-30", "d", "", "9999999999h", "1e3s", "Yesterday",
	} {
		f.Add(s)
	}
	now := t0
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s, now)
		if err != nil {
			if !strings.Contains(err.Error(), "is not a time") {
				t.Fatalf("ParseTime(%q) error %q does not say what is wrong", s, err)
			}
			return
		}
		trimmed := strings.TrimSpace(s)
		if _, derr := time.ParseDuration(trimmed); derr == nil || strings.HasSuffix(trimmed, "d") {
			if _, perr := time.Parse(time.DateOnly, trimmed); perr != nil && got.After(now) {
				t.Fatalf("ParseTime(%q) = %v: a relative time after now (%v)", s, got, now)
			}
		}
		// Spaces around a time never change what --until means.
		a, errA := ParseValues(url.Values{"until": {trimmed}}, now)
		b, errB := ParseValues(url.Values{"until": {" " + trimmed + "\t"}}, now)
		if (errA == nil) != (errB == nil) || (errA == nil && !a.Until.Equal(b.Until)) {
			t.Fatalf("until %q = %v, %v; with spaces around it = %v, %v", trimmed, a, errA, b, errB)
		}
	})
}
