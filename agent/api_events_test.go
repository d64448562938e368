package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/eventquery"
)

func TestEventsRoute(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := auditlog.Open(ctx, dir, auditlog.Options{Signer: testenv.Signer(t), Host: "node-1", SegmentMaxBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	t0 := time.Now().Add(-time.Hour)
	for i := range 200 {
		if _, err := l.AppendSync(ctx, eventquery.SyntheticEntry(i, t0, time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "vigil.sock")
	s, err := api.Listen(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &eventquery.Source{Dir: dir, Poll: 10 * time.Millisecond, IndexDir: filepath.Join(t.TempDir(), "idx")}
	s.HandleFunc("GET "+api.Prefix+"/events", func(w http.ResponseWriter, r *http.Request) { serveEvents(w, r, src) })
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c := api.NewClient(sock)

	read := func(q url.Values, n int) []auditlog.Entry {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		body, err := c.Stream(rctx, api.Prefix+"/events", q)
		if err != nil {
			t.Fatalf("GET /v1/events?%s: %v", q.Encode(), err)
		}
		defer body.Close()
		var out []auditlog.Entry
		sc := bufio.NewScanner(body)
		for (n < 0 || len(out) < n) && sc.Scan() {
			var e auditlog.Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			out = append(out, e)
		}
		return out
	}
	got := read(url.Values{"type": {"conn.deny"}, "namespace": {"payments"}}, -1)
	if len(got) == 0 {
		t.Fatal("no conn.deny entries in payments")
	}
	for _, e := range got {
		if e.Type != auditlog.ConnDeny || e.Identity.Namespace != "payments" {
			t.Errorf("filter let through %+v", e)
		}
	}
	if got := read(url.Values{"limit": {"3"}, "reverse": {"1"}}, -1); len(got) != 3 || got[0].Seq != 200 {
		t.Errorf("limit=3&reverse=1 returned %d entries starting at %v", len(got), got)
	}
	// Bad filters are a 400 with the reason.
	var se *api.StatusError
	if _, err := c.Stream(ctx, api.Prefix+"/events", url.Values{"pid": {"x"}}); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("pid=x: %v, want a 400", err)
	}
	if _, err := c.Stream(ctx, api.Prefix+"/events", url.Values{"follow": {"1"}, "reverse": {"1"}}); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("follow with reverse: %v, want a 400", err)
	}
	// follow=1: history, then what is appended, until the client leaves.
	fctx, cancel := context.WithCancel(ctx)
	body, err := c.Stream(fctx, api.Prefix+"/events", url.Values{"follow": {"1"}, "type": {"conn.open"}})
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan auditlog.Entry, 100)
	go func() {
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			var e auditlog.Entry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				lines <- e
			}
		}
		close(lines)
	}()
	for i := range eventquery.DefaultFollowHistory {
		select {
		case <-lines:
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d history lines", i)
		}
	}
	seq, err := l.AppendSync(ctx, auditlog.Entry{Type: auditlog.ConnOpen, Dst: "10.9.9.9:5432"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-lines:
		if e.Seq != seq || e.Dst != "10.9.9.9:5432" {
			t.Errorf("followed %+v, want seq %d", e, seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the appended entry was not streamed")
	}
	cancel()
	body.Close()
	for range lines {
	}
}
