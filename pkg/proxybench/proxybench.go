// Package proxybench measures interception end to end on this machine, in
// one run, as ratios of intercepted to direct: real BPF programs attached to
// a throwaway cgroup, the real proxy, and a real signed audit log whose
// conn.open is durable before the first byte is relayed.
//
// The benchmark process moves itself into the throwaway cgroup, so its own
// client connections are redirected; the direct baseline dials the same
// server with the bypass mark, which the kernel never redirects.
package proxybench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"golang.org/x/sys/unix"
)

// Config describes one run.
type Config struct {
	Dir      string // audit log directory (new)
	Signer   signature.SignerVerifier
	Duration time.Duration // per connection-rate measurement; default 3s
	BulkMiB  int           // per bulk measurement; default 512
	Clients  []int         // concurrent clients for the connection rate; default 1 and 32
	// Rounds is how many slices each measurement is cut into, direct and
	// intercepted taking turns; default 4.
	Rounds int
	Logger *slog.Logger
}

// Rate is a connection-rate measurement: connect, 1-byte request, 1-byte
// response, close.
type Rate struct {
	Clients   int     `json:"clients"`
	PerSec    float64 `json:"conns_per_sec"`
	P50Micros float64 `json:"p50_us"` // connect + first response byte
	P99Micros float64 `json:"p99_us"`
	// CPUMicros is the CPU time (user and system) this process spent per
	// connection: client, proxy, audit log and server together. Two
	// vCPUs divided by it is the rate the machine could reach if nothing
	// else ran.
	CPUMicros float64 `json:"cpu_us_per_conn"`
}

// Result compares intercepted with direct.
type Result struct {
	BulkDirectMBps float64 `json:"bulk_direct_mb_per_sec"`
	BulkProxyMBps  float64 `json:"bulk_intercepted_mb_per_sec"`
	BulkRatio      float64 `json:"bulk_ratio"`
	// BulkDirectCPU and BulkProxyCPU are the CPU time this process spent
	// per MiB streamed (client, proxy and sink together), in µs.
	BulkDirectCPU float64    `json:"bulk_direct_cpu_us_per_mib"`
	BulkProxyCPU  float64    `json:"bulk_intercepted_cpu_us_per_mib"`
	Direct        []Rate     `json:"direct"`
	Intercepted   []Rate     `json:"intercepted"`
	RateRatio     []float64  `json:"rate_ratio"`
	Audit         AuditCount `json:"audit"`
}

// AuditCount is what the log recorded during the run.
type AuditCount struct {
	Entries uint64 `json:"entries"`
	Fsyncs  uint64 `json:"fsyncs"`
}

// Measure runs the benchmark. It needs root (BPF, cgroups, SO_MARK).
func Measure(ctx context.Context, cfg Config) (res Result, err error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.BulkMiB <= 0 {
		cfg.BulkMiB = 512
	}
	if len(cfg.Clients) == 0 {
		cfg.Clients = []int{1, 32}
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return res, errors.New("proxybench: needs root (BPF programs, cgroups, SO_MARK): run with sudo")
	}
	srv, err := startServers()
	if err != nil {
		return res, err
	}
	defer srv.close()

	leave, cg, err := enterCgroup()
	if err != nil {
		return res, err
	}
	defer func() {
		if lerr := leave(); lerr != nil && err == nil {
			err = lerr
		}
	}()

	log, err := auditlog.Open(ctx, cfg.Dir, auditlog.Options{Signer: cfg.Signer, Logger: cfg.Logger})
	if err != nil {
		return res, err
	}
	defer log.Close(context.WithoutCancel(ctx))
	var icpt *intercept.Interceptor
	p, err := proxy.New(proxy.Config{
		Listen:   []string{"127.0.0.1:0"},
		Resolver: proxy.ResolverFunc(func(c netip.AddrPort) (intercept.Origin, bool, error) { return icpt.Lookup(c) }),
		Auditor:  log,
		Logger:   cfg.Logger,
	})
	if err != nil {
		return res, err
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Serve(pctx)
	defer p.Shutdown(context.WithoutCancel(ctx))
	icpt, err = intercept.Open(ctx, intercept.Config{
		CgroupPath: cg,
		ProxyPort:  p.Addrs()[0].Port(),
		Capture: []intercept.CaptureRule{
			{Prefix: netip.MustParsePrefix("127.0.0.1/32"), PortLow: srv.sink, PortHigh: srv.sink},
			{Prefix: netip.MustParsePrefix("127.0.0.1/32"), PortLow: srv.pong, PortHigh: srv.pong},
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return res, err
	}
	defer icpt.Close()

	direct := dialer{mark: intercept.DefaultBypassMark}
	proxied := dialer{}
	// Direct and intercepted alternate in cfg.Rounds slices each, so that
	// both see the same machine even when other work comes and goes.
	var bd, bp usage
	mib := max(cfg.BulkMiB/cfg.Rounds, 1)
	for range cfg.Rounds {
		u, err := bulk(direct, srv.sink, mib)
		if err != nil {
			return res, fmt.Errorf("proxybench: direct bulk: %w", err)
		}
		bd.add(u)
		if u, err = bulk(proxied, srv.sink, mib); err != nil {
			return res, fmt.Errorf("proxybench: intercepted bulk: %w", err)
		}
		bp.add(u)
	}
	total := float64(mib * cfg.Rounds)
	res.BulkDirectMBps = total * (1 << 20) / bd.elapsed.Seconds() / 1e6
	res.BulkProxyMBps = total * (1 << 20) / bp.elapsed.Seconds() / 1e6
	res.BulkDirectCPU = float64(bd.cpu.Microseconds()) / total
	res.BulkProxyCPU = float64(bp.cpu.Microseconds()) / total
	res.BulkRatio = res.BulkProxyMBps / res.BulkDirectMBps
	slice := max(cfg.Duration/time.Duration(cfg.Rounds), 10*time.Millisecond)
	for _, n := range cfg.Clients {
		var d, i usage
		for range cfg.Rounds {
			u, err := rate(ctx, direct, srv.pong, n, slice)
			if err != nil {
				return res, fmt.Errorf("proxybench: direct rate: %w", err)
			}
			d.add(u)
			if u, err = rate(ctx, proxied, srv.pong, n, slice); err != nil {
				return res, fmt.Errorf("proxybench: intercepted rate: %w", err)
			}
			i.add(u)
		}
		dr, err := d.rate(n)
		if err != nil {
			return res, fmt.Errorf("proxybench: direct rate: %w", err)
		}
		ir, err := i.rate(n)
		if err != nil {
			return res, fmt.Errorf("proxybench: intercepted rate: %w", err)
		}
		res.Direct = append(res.Direct, dr)
		res.Intercepted = append(res.Intercepted, ir)
		res.RateRatio = append(res.RateRatio, ir.PerSec/dr.PerSec)
	}
	st := log.Stats()
	res.Audit = AuditCount{Entries: st.NextSeq - 1, Fsyncs: st.Fsyncs}
	return res, nil
}

// servers are the benchmark's destinations, on loopback.
type servers struct {
	lns        []net.Listener
	sink, pong uint16
}

func (s *servers) close() {
	for _, l := range s.lns {
		l.Close()
	}
}

func startServers() (*servers, error) {
	s := &servers{}
	listen := func(handle func(net.Conn)) (uint16, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("proxybench: listen: %w", err)
		}
		s.lns = append(s.lns, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					handle(c)
				}()
			}
		}()
		return uint16(l.Addr().(*net.TCPAddr).Port), nil
	}
	var err error
	// sink reads everything and answers one byte per MiB-aligned end.
	if s.sink, err = listen(func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte{byte(n)})
	}); err != nil {
		return nil, err
	}
	if s.pong, err = listen(func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err == nil {
			c.Write(b)
		}
	}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// enterCgroup moves this process into a new child of the cgroup2 root and
// returns how to move back and remove it.
func enterCgroup() (func() error, string, error) {
	root, err := intercept.CgroupRoot()
	if err != nil {
		return nil, "", err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, "", fmt.Errorf("proxybench: %w", err)
	}
	orig := ""
	for _, l := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			orig = filepath.Join(root, p)
		}
	}
	if orig == "" {
		return nil, "", errors.New("proxybench: this process is in no cgroup v2 group")
	}
	cg := filepath.Join(root, "vigil-bench-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		return nil, "", fmt.Errorf("proxybench: create cgroup: %w", err)
	}
	move := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	}
	if err := move(cg); err != nil {
		os.Remove(cg)
		return nil, "", fmt.Errorf("proxybench: enter cgroup: %w", err)
	}
	leave := func() error {
		if err := move(orig); err != nil {
			return fmt.Errorf("proxybench: leave cgroup: %w", err)
		}
		return os.Remove(cg)
	}
	return leave, cg, nil
}

// dialer dials loopback, optionally with SO_MARK (which bypasses interception).
type dialer struct{ mark uint32 }

func (d dialer) dial(port uint16) (*net.TCPConn, error) {
	nd := net.Dialer{}
	if d.mark != 0 {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = setMark(fd, d.mark) }); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := nd.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// usage is what one or more slices of a measurement took.
type usage struct {
	n       int64           // connections completed
	elapsed time.Duration   // wall time
	cpu     time.Duration   // CPU time of this process
	lats    []time.Duration // connect + first response byte, per connection
}

func (u *usage) add(v usage) {
	u.n += v.n
	u.elapsed += v.elapsed
	u.cpu += v.cpu
	u.lats = append(u.lats, v.lats...)
}

// rate summarizes the connection-rate slices in u.
func (u *usage) rate(clients int) (Rate, error) {
	if len(u.lats) == 0 || u.n == 0 {
		return Rate{}, errors.New("no connection completed")
	}
	slices.Sort(u.lats)
	pct := func(p float64) float64 { return float64(u.lats[int(p*float64(len(u.lats)-1))]) / 1e3 }
	n := float64(u.n)
	return Rate{Clients: clients, PerSec: n / u.elapsed.Seconds(), P50Micros: pct(0.5), P99Micros: pct(0.99),
		CPUMicros: float64(u.cpu.Microseconds()) / n}, nil
}

// bulk streams mib MiB over one new connection; the time and CPU to set
// the connection up are not counted.
func bulk(d dialer, port uint16, mib int) (usage, error) {
	c, err := d.dial(port)
	if err != nil {
		return usage{}, err
	}
	defer c.Close()
	cpu0 := cpuTime()
	start := time.Now()
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := c.Write(chunk); err != nil {
			return usage{}, err
		}
	}
	if err := c.CloseWrite(); err != nil {
		return usage{}, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return usage{}, fmt.Errorf("no acknowledgement from the sink: %w", err)
	}
	return usage{elapsed: time.Since(start), cpu: cpuTime() - cpu0}, nil
}

// rate runs clients loops of connect, 1-byte request, 1-byte response,
// close, for dur.
func rate(ctx context.Context, d dialer, port uint16, clients int, dur time.Duration) (usage, error) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var wg sync.WaitGroup
	var total atomic.Int64
	lats := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []byte{7}
			for ctx.Err() == nil {
				t := time.Now()
				c, err := d.dial(port)
				if err != nil {
					errs <- err
					return
				}
				_, err = c.Write(b)
				if err == nil {
					_, err = io.ReadFull(c, b)
				}
				lats[w] = append(lats[w], time.Since(t))
				c.Close()
				if err != nil {
					errs <- err
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	u := usage{n: total.Load(), elapsed: time.Since(start), cpu: cpuTime() - cpu0, lats: slices.Concat(lats...)}
	close(errs)
	if err := <-errs; err != nil {
		return usage{}, err
	}
	return u, nil
}

// cpuTime is the CPU time this process used so far, user and system.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
