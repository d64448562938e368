//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/detect"
	l7http "github.com/vigil-ebpf/vigil/pkg/l7/http"
	"github.com/vigil-ebpf/vigil/pkg/l7/redis"
)

// uidDecider inspects connections from uid 1 (with guardrails from uid 2)
// and splices the rest, so one proxy serves every variant of a benchmark.
type uidDecider struct{ guard Guard }

func (d uidDecider) Decide(_ context.Context, c *Conn) Decision {
	switch c.Origin.UID {
	case 1:
		return Decision{Verdict: auditlog.Allow, Rule: "inspect", L7: &L7Rules{Redact: true}}
	case 2:
		return Decision{Verdict: auditlog.Allow, Rule: "guard", L7: &L7Rules{Redact: true, Guard: d.guard}}
	}
	return Decision{Verdict: auditlog.Allow, Rule: "splice"}
}

type kindGuard string

func (g kindGuard) Check(req *l7.Request) (bool, string) { return req.Kind == string(g), "denied" }

// BenchmarkL7RequestResponse runs a request-response loop (Redis GET
// against the real Redis of scripts/e2e-env.sh, HTTP/1.1 keep-alive GET
// against a net/http server) on four connections taking turns: direct,
// through the proxy with splice (a rule without l7), through the L7 relay
// recording each request (a rule with l7: {}), and with a guardrail that
// checks each request too. One op is one round trip on each. The ratios
// compare the L7 relay with splice in the same run, by median round trip.
// A fifth connection goes through a second proxy whose log drops
// l7.request entries, to tell parsing from signing.
func BenchmarkL7RequestResponse(b *testing.B) {
	b.Run("redis", func(b *testing.B) {
		port := 63799
		if v := os.Getenv("VIGIL_E2E_REDIS_PORT"); v != "" {
			port, _ = strconv.Atoi(v)
		}
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		c, err := net.DialTimeout("tcp", dst.String(), time.Second)
		if err != nil {
			testenv.Need(b, "Redis", fmt.Sprintf("not listening on %s: run scripts/e2e-env.sh start", dst))
		}
		fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$15\r\nvigil-bench-key\r\n$5\r\nvalue\r\n")
		io.ReadFull(c, make([]byte, 5)) // +OK\r\n
		c.Close()
		req := []byte("*2\r\n$3\r\nGET\r\n$15\r\nvigil-bench-key\r\n")
		benchL7Loop(b, dst, req, len("$5\r\nvalue\r\n"), "FLUSHALL")
	})
	b.Run("http", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Date"] = nil
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello, world\n")
		})}
		go srv.Serve(ln)
		defer srv.Close()
		dst := addrPort(ln.Addr())
		req := []byte("GET /bench?q=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\n\r\n")
		// Learn the response's length once; it does not change.
		c, err := net.Dial("tcp", dst.String())
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		c.Close()
		n := len("HTTP/1.1 200 OK\r\n") + len("Content-Length: 13\r\n") + len("Content-Type: text/plain\r\n") + len("\r\n") + 13
		benchL7Loop(b, dst, req, n, "DELETE")
	})
}

// unrecordedL7 is the real log, except that l7.request entries are
// dropped: it separates what parsing costs from what signing costs.
type unrecordedL7 struct{ *auditlog.Log }

func (a unrecordedL7) AppendLazy(ctx context.Context, e auditlog.Entry) (*auditlog.Ack, error) {
	if e.Type == auditlog.L7Request {
		return nil, nil
	}
	return a.Log.AppendLazy(ctx, e)
}

func benchL7Loop(b *testing.B, dst netip.AddrPort, req []byte, respLen int, denied string) {
	configure := func(unrecorded bool) func(*Config) {
		return func(c *Config) {
			if unrecorded {
				c.Auditor = unrecordedL7{c.Auditor.(*auditlog.Log)}
			}
			c.Decider = uidDecider{guard: kindGuard(denied)}
			c.L7 = L7Config{
				Parsers: map[string]NewParser{
					detect.Redis: func(o l7.Options) l7.Parser { return redis.New(o) },
					detect.HTTP:  func(o l7.Options) l7.Parser { return l7http.New(o) },
				},
				Detect: detect.Detect,
			}
		}
	}
	e := newEnv(b, configure(false))
	direct, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(dst))
	if err != nil {
		b.Fatal(err)
	}
	conns := []*net.TCPConn{direct}
	for uid := range 3 {
		e.self.UID = uint32(uid)
		conns = append(conns, e.dial(b, dst))
	}
	e2 := newEnv(b, configure(true))
	e2.self.UID = 1
	conns = append(conns, e2.dial(b, dst))
	names := []string{"direct", "splice", "l7", "l7-guard", "l7-unrecorded"}
	buf := make([]byte, respLen)
	roundTrip := func(c *net.TCPConn) time.Duration {
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for _, c := range conns { // warm up, and check the lengths
		roundTrip(c)
	}
	took := make([][]time.Duration, len(conns))
	for i := range took {
		took[i] = make([]time.Duration, 0, b.N)
	}
	b.ResetTimer()
	for range b.N {
		for i, c := range conns {
			took[i] = append(took[i], roundTrip(c))
		}
	}
	b.StopTimer()
	for _, c := range conns {
		c.Close()
	}
	// Medians: on a shared machine a few stalls would dominate means.
	us := func(i int) float64 {
		slices.Sort(took[i])
		return float64(took[i][len(took[i])/2].Nanoseconds()) / 1e3
	}
	for i, n := range names {
		b.ReportMetric(us(i), n+"-p50-us")
	}
	b.ReportMetric(us(2)/us(1), "l7/splice")
	b.ReportMetric(us(3)/us(1), "guard/splice")
	b.ReportMetric(us(4)/us(1), "unrecorded/splice")
	b.ReportMetric(us(1)/us(0), "splice/direct")
}
