package eventquery

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

const (
	testEntries = 3000
	testStep    = time.Second
)

// testLog writes a multi-segment synthetic log and returns its directory.
func testLog(t testing.TB, sv signature.SignerVerifier, n int) string {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	l, err := auditlog.Open(ctx, dir, auditlog.Options{Signer: sv, Host: "node-1", SegmentMaxBytes: 64 << 10, CheckpointEvery: 500})
	if err != nil {
		t.Fatal(err)
	}
	// Wait every 50 entries: the writer rotates between batches, so small
	// batches give the same segment layout on a busy machine as on an idle one.
	for i := range n {
		a, err := l.AppendLazy(ctx, SyntheticEntry(i, t0, testStep))
		if err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 || i == n-1 {
			if err := a.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return dir
}

// allEntries reads the log with pkg/auditlog's own reader: the reference
// the query results are checked against.
func allEntries(t testing.TB, dir string) []auditlog.Entry {
	t.Helper()
	var out []auditlog.Entry
	if err := auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		out = append(out, r.Entry)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func runQuery(t testing.TB, src *Source, q url.Values) ([]uint64, Stats) {
	t.Helper()
	f, err := ParseValues(q, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatalf("ParseValues(%v): %v", q, err)
	}
	var seqs []uint64
	st, err := src.Query(context.Background(), f, func(e *auditlog.Entry) error {
		seqs = append(seqs, e.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("Query(%v): %v", q, err)
	}
	return seqs, st
}

func TestFilters(t *testing.T) {
	sv := testenv.Signer(t)
	dir := testLog(t, sv, testEntries)
	all := allEntries(t, dir)
	if len(all) < testEntries {
		t.Fatalf("log has %d entries, want ≥ %d", len(all), testEntries)
	}
	dstIP := func(e *auditlog.Entry) netip.Addr {
		ap, err := netip.ParseAddrPort(e.Dst)
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr()
	}
	pick := all[1234]
	tests := []struct {
		name string
		q    url.Values
		want func(e *auditlog.Entry) bool
	}{
		{"all", url.Values{}, func(*auditlog.Entry) bool { return true }},
		{"since-until", url.Values{"since": {t0.Add(100 * time.Second).Format(time.RFC3339)}, "until": {t0.Add(200 * time.Second).Format(time.RFC3339)}},
			func(e *auditlog.Entry) bool {
				return !e.Time.Before(t0.Add(100*time.Second)) && e.Time.Before(t0.Add(200*time.Second))
			}},
		{"since-relative", url.Values{"since": {"1h"}}, func(e *auditlog.Entry) bool { return !e.Time.Before(t0.Add(time.Hour)) }},
		{"type", url.Values{"type": {"conn.deny", "l7.request"}}, func(e *auditlog.Entry) bool {
			return e.Type == auditlog.ConnDeny || e.Type == auditlog.L7Request
		}},
		{"pid", url.Values{"pid": {"1234"}}, func(e *auditlog.Entry) bool { return e.Identity.PID == 1234 }},
		{"uid-root", url.Values{"uid": {"0"}}, func(e *auditlog.Entry) bool { return e.Identity.PID != 0 && e.Identity.UID == 0 }},
		{"comm", url.Values{"comm": {"redis-cli"}}, func(e *auditlog.Entry) bool { return e.Identity.Comm == "redis-cli" }},
		{"exe-glob", url.Values{"exe": {"/usr/bin/py*"}}, func(e *auditlog.Entry) bool { return strings.HasPrefix(e.Identity.Exe, "/usr/bin/py") }},
		{"dst-cidr", url.Values{"dst": {"10.2.0.0/16"}}, func(e *auditlog.Entry) bool {
			return netip.MustParsePrefix("10.2.0.0/16").Contains(dstIP(e))
		}},
		{"dst-ip", url.Values{"dst": {dstIP(&pick).String()}}, func(e *auditlog.Entry) bool { return dstIP(e) == dstIP(&pick) }},
		{"dst-ipport", url.Values{"dst": {pick.Dst}}, func(e *auditlog.Entry) bool { return e.Dst == pick.Dst }},
		{"port", url.Values{"port": {"6379"}}, func(e *auditlog.Entry) bool { return strings.HasSuffix(e.Dst, ":6379") }},
		{"decision", url.Values{"decision": {"deny"}}, func(e *auditlog.Entry) bool { return e.Decision == auditlog.Deny }},
		{"rule", url.Values{"rule": {"no-prod-db"}}, func(e *auditlog.Entry) bool { return e.Rule == "no-prod-db" }},
		{"pod", url.Values{"pod": {"app-7"}}, func(e *auditlog.Entry) bool { return e.Identity.Pod == "app-7" }},
		{"namespace", url.Values{"namespace": {"payments"}}, func(e *auditlog.Entry) bool { return e.Identity.Namespace == "payments" }},
		{"container-prefix", url.Values{"container": {pick.Identity.ContainerID[:12]}}, func(e *auditlog.Entry) bool {
			return e.Identity.ContainerID == pick.Identity.ContainerID
		}},
		{"grep", url.Values{"grep": {"select * from ACCOUNTS where id = 125"}}, func(e *auditlog.Entry) bool {
			return strings.Contains(e.Attrs["statement"], "SELECT * FROM accounts WHERE id = 125")
		}},
		{"from-seq", url.Values{"from-seq": {"2500"}}, func(e *auditlog.Entry) bool { return e.Seq >= 2500 }},
		{"combined", url.Values{"namespace": {"payments"}, "port": {"5432"}, "since": {t0.Add(10 * time.Minute).Format(time.RFC3339)}, "until": {t0.Add(20 * time.Minute).Format(time.RFC3339)}},
			func(e *auditlog.Entry) bool {
				return e.Identity.Namespace == "payments" && strings.HasSuffix(e.Dst, ":5432") &&
					!e.Time.Before(t0.Add(10*time.Minute)) && e.Time.Before(t0.Add(20*time.Minute))
			}},
		{"none", url.Values{"pid": {"999999"}}, func(*auditlog.Entry) bool { return false }},
	}
	scan := &Source{Dir: dir, NoIndex: true}
	idx := &Source{Dir: dir, IndexDir: filepath.Join(t.TempDir(), "idx")}
	// A first unfiltered query builds the indexes of the sealed segments.
	if _, st := runQuery(t, idx, url.Values{}); st.Built == 0 || st.Built != st.Segments-1 {
		t.Fatalf("first query built %d indexes for %d segments, want one per sealed segment", st.Built, st.Segments)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []uint64
			for i := range all {
				if tc.want(&all[i]) {
					want = append(want, all[i].Seq)
				}
			}
			got, _ := runQuery(t, scan, tc.q)
			if !slices.Equal(got, want) {
				t.Errorf("scan %v: got %d entries, want %d", tc.q, len(got), len(want))
			}
			got, st := runQuery(t, idx, tc.q)
			if !slices.Equal(got, want) {
				t.Errorf("indexed %v: got %d entries, want %d (stats %+v)", tc.q, len(got), len(want), st)
			}
			// Reverse and limit.
			rq := url.Values{"reverse": {"1"}, "limit": {"5"}}
			for k, v := range tc.q {
				rq[k] = v
			}
			got, _ = runQuery(t, idx, rq)
			wantRev := slices.Clone(want)
			slices.Reverse(wantRev)
			wantRev = wantRev[:min(5, len(wantRev))]
			if !slices.Equal(got, wantRev) {
				t.Errorf("reverse limit 5 %v: got %v, want %v", tc.q, got, wantRev)
			}
			lq := url.Values{"limit": {"7"}}
			for k, v := range tc.q {
				lq[k] = v
			}
			got, _ = runQuery(t, idx, lq)
			if w := want[:min(7, len(want))]; !slices.Equal(got, w) {
				t.Errorf("limit 7 %v: got %v, want %v", tc.q, got, w)
			}
		})
	}
	// A selective query is answered from the indexes.
	if _, st := runQuery(t, idx, url.Values{"pid": {"1234"}}); st.Indexed+st.Skipped != st.Segments-1 || st.Scanned != 1 {
		t.Errorf("pid query stats %+v: want every sealed segment indexed or skipped and only the live one scanned", st)
	}
}

func TestParseValuesErrors(t *testing.T) {
	bad := []url.Values{
		{"since": {"last tuesday"}},
		{"pid": {"abc"}},
		{"dst": {"not a host"}},
		{"port": {"70000"}},
		{"exe": {"[x"}},
		{"limit": {"-1"}},
		{"bogus": {"1"}},
		{"since": {"1h"}, "until": {"2h"}},
		{"reverse": {"maybe"}},
	}
	for _, q := range bad {
		if _, err := ParseValues(q, t0); err == nil {
			t.Errorf("ParseValues(%v) = nil error, want one", q)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 30, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-03-09T14:00:00Z", time.Date(2026, 3, 9, 14, 0, 0, 0, time.UTC)},
		{"2026-03-09T14:00:00+02:00", time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)},
		{"1h", now.Add(-time.Hour)},
		{"30m", now.Add(-30 * time.Minute)},
		{"2d", now.AddDate(0, 0, -2)},
		{"today", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{"yesterday", time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-03-01 08:15:00", time.Date(2026, 3, 1, 8, 15, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		got, err := ParseTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	// --until DAY covers all of that day, however it is spaced.
	until := []struct {
		in   string
		want time.Time
	}{
		{"yesterday", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{" yesterday\t", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{"today ", time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)},
		{" 2026-03-01", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
		{" 1h ", now.Add(-time.Hour)},
	}
	for _, tc := range until {
		f, err := ParseValues(url.Values{"since": {"2026-02-01"}, "until": {tc.in}}, now)
		if err != nil {
			t.Errorf("until %q: %v", tc.in, err)
		} else if !f.Until.Equal(tc.want) {
			t.Errorf("until %q = %v; want %v", tc.in, f.Until, tc.want)
		}
	}
}

func TestVerify(t *testing.T) {
	sv := testenv.Signer(t)
	dir := testLog(t, sv, 1500)
	for _, noIndex := range []bool{true, false} {
		src := &Source{Dir: dir, NoIndex: noIndex, IndexDir: filepath.Join(t.TempDir(), "i"), Verifier: sv}
		pid := url.Values{"pid": {"3919"}} // SyntheticEntry(1)
		got, _ := runQuery(t, src, pid)
		got2, _ := runQuery(t, src, pid) // second run: through the index
		if len(got) == 0 || !slices.Equal(got, got2) {
			t.Errorf("verified query returned %v then %v", got, got2)
		}
	}
	other := testenv.Signer(t)
	src := &Source{Dir: dir, NoIndex: true, Verifier: other}
	f, _ := ParseValues(url.Values{"limit": {"3"}}, t0)
	_, err := src.Query(context.Background(), f, func(*auditlog.Entry) error { return nil })
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != 1 || !strings.Contains(err.Error(), "signature") {
		t.Errorf("query with the wrong key = %v, want a VerifyError at seq 1", err)
	}
}

func TestEmptyAndMissing(t *testing.T) {
	if _, err := (&Source{Dir: t.TempDir()}).Query(context.Background(), &Filter{}, func(*auditlog.Entry) error { return nil }); !errors.Is(err, ErrNoLog) {
		t.Errorf("empty directory: %v, want ErrNoLog", err)
	}
	if _, err := (&Source{Dir: filepath.Join(t.TempDir(), "nope")}).Query(context.Background(), &Filter{}, func(*auditlog.Entry) error { return nil }); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

func TestIndexBesideWritableLog(t *testing.T) {
	dir := testLog(t, testenv.Signer(t), 1500)
	_, st := runQuery(t, &Source{Dir: dir}, url.Values{})
	found, _ := filepath.Glob(filepath.Join(dir, "index", "segment-*"+idxSuffix))
	if st.Built == 0 || len(found) != st.Built {
		t.Errorf("built %d, found %d index files in DIR/index", st.Built, len(found))
	}
	// The log readers do not mind the index directory.
	if got := allEntries(t, dir); len(got) != 1500 {
		t.Errorf("auditlog.Scan after indexing: %d entries", len(got))
	}
}
