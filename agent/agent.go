// Package agent is the vigil daemon: it owns the lifecycle of the audit log,
// the kernel interception and the proxy, and wires them together.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/podinfo"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// Defaults.
const (
	DefaultDataDir = "/var/lib/vigil"    // log and, in zero-config mode, the signing key
	DefaultPinPath = "/sys/fs/bpf/vigil" // bpffs directory for fail-closed pins
	drainTimeout   = 10 * time.Second    // how long SIGTERM waits for relays to finish
)

// Config is the agent's configuration.
type Config struct {
	DataDir   string // default DefaultDataDir
	KeyRef    string // private key path or KMS URI; "" means DataDir/signing.key, created on first start
	Password  []byte // password of an encrypted key file
	Host      string // default: hostname
	Log       auditlog.Options
	Logger    *slog.Logger
	Intercept bool // attach the BPF programs and run the proxy; false records only agent events

	CgroupPath string                  // cgroup v2 directory to capture; "" = the whole host
	Capture    []intercept.CaptureRule // default: all TCP except loopback
	ProxyPort  uint16                  // default intercept.DefaultProxyPort
	FailMode   string                  // FailOpen (default) or FailClosed
	PinPath    string                  // bpffs directory for FailClosed; default DefaultPinPath
	Debug      bool                    // verifier logs in BPF load errors
	// MaxNetns bounds the workload network namespaces (pods, containers)
	// served at once; 0 means intercept.DefaultMaxNetns, < 0 serves none
	// (connects from them are only reported, netns.bypass).
	MaxNetns int

	PolicyPath     string // policy file; "" means DefaultPolicyPath
	PolicyExplicit bool   // PolicyPath was given: it must exist and be valid

	Socket string // control API unix socket; "" serves no control API

	Kubernetes  Kubernetes // pod names for identities; see docs/IDENTITY.md
	podCache    *podinfo.Cache
	Ship        ShipConfig // off-host sinks; none by default
	MetricsAddr string     // Prometheus metrics listen address (host:port); "" serves no metrics
}

// Agent is a running vigil daemon.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	audit  *auditlog.Log
	icpt   *intercept.Interceptor
	proxy  *proxy.Proxy
	keyID  string
	pubKey string
	policy *policy.Holder
	// policyFromFile is false while the built-in allow-all is in force.
	policyFromFile bool
	api            *api.Server // nil without Config.Socket
	started        time.Time   // when Run began
	status         statusState // what GET /v1/status reports beyond the parts' own counters

	// kpol remembers the deny tables loaded into the kernel, by generation.
	kpol kernelPolicy

	pods *podinfo.Cache // nil when Kubernetes is off
	ship *ship.Shipper  // nil without Config.Ship

	netns *workloads // served workload network namespaces; nil without interception or with MaxNetns < 0

	metrics        *metricsServer // nil without Config.MetricsAddr
	policyApplied  atomic.Uint64  // policy files put in force (metrics)
	policyRejected atomic.Uint64  // policy files rejected (metrics)
}

// New loads (or, with no key configured, creates) the signing key, opens
// the audit log and, with Intercept, attaches the BPF programs and binds the
// proxy. Nothing is redirected to the proxy before it listens.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FailMode == "" {
		cfg.FailMode = FailOpen
	}
	if cfg.FailMode != FailOpen && cfg.FailMode != FailClosed {
		return nil, fmt.Errorf("agent: fail mode %q: want %q or %q", cfg.FailMode, FailOpen, FailClosed)
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = intercept.DefaultProxyPort
	}
	if cfg.PinPath == "" {
		cfg.PinPath = DefaultPinPath
	}
	if cfg.PolicyPath == "" {
		cfg.PolicyPath = DefaultPolicyPath
	}
	pol, fromFile, err := loadPolicy(cfg.PolicyPath, cfg.PolicyExplicit)
	if err != nil {
		return nil, fmt.Errorf("agent: policy %s: %w", cfg.PolicyPath, err)
	}
	pods, err := openPods(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("agent: cannot create data directory %s: permission denied: run as root or pass --data-dir", cfg.DataDir)
		}
		return nil, fmt.Errorf("agent: create data directory: %w", err)
	}
	sv, pubPath, err := loadKey(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pub, err := keys.PublicKey(sv)
	if err != nil {
		return nil, err
	}
	id, err := keys.ID(pub)
	if err != nil {
		return nil, err
	}
	lo := cfg.Log
	lo.Signer = sv
	lo.Host = cfg.Host
	lo.Logger = cfg.Logger
	audit, err := auditlog.Open(ctx, cfg.DataDir, lo)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, audit: audit, keyID: id, pubKey: pubPath,
		policy: policy.NewHolder(pol), policyFromFile: fromFile, pods: pods}
	if a.ship, err = newShipper(ctx, cfg, audit); err != nil {
		_ = audit.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if cfg.Socket != "" {
		if a.api, err = api.Listen(cfg.Socket, cfg.Logger); err != nil {
			_ = audit.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("agent: control socket: %w", err)
		}
		a.routes(a.api)
	}
	if cfg.Intercept {
		if err := a.startIntercept(ctx); err != nil {
			a.closeAPI()
			_ = audit.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if err := a.listenMetrics(); err != nil {
		a.abort(ctx)
		return nil, err
	}
	return a, nil
}

// startIntercept binds the proxy first and attaches the programs second, so
// no connection is ever redirected to a port nobody listens on.
func (a *Agent) startIntercept(ctx context.Context) error {
	cfg := a.cfg
	if err := checkCaps(cfg.ProxyPort); err != nil {
		return err
	}
	p, err := proxy.New(proxy.Config{
		Listen:   []string{fmt.Sprintf("127.0.0.1:%d", cfg.ProxyPort), fmt.Sprintf("[::1]:%d", cfg.ProxyPort)},
		Resolver: proxy.ResolverFunc(a.lookup),
		Auditor:  a.audit,
		Decider:  decider{a.policy, a.pods},
		DialMark: intercept.DefaultBypassMark,
		Logger:   cfg.Logger,
		Enrich:   a.enrichHook(),
		L7:       l7Config(),
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	ic := intercept.Config{
		CgroupPath: cfg.CgroupPath,
		ProxyPort:  cfg.ProxyPort,
		Capture:    cfg.Capture,
		BypassMark: intercept.DefaultBypassMark,
		ExemptPID:  uint32(os.Getpid()),
		Logger:     cfg.Logger,
		Debug:      cfg.Debug,
		MaxNetns:   max(cfg.MaxNetns, 0),
	}
	if cfg.FailMode == FailClosed {
		ic.PinPath = cfg.PinPath
	}
	icpt, err := intercept.Open(ctx, ic)
	if err != nil {
		_ = p.Shutdown(context.WithoutCancel(ctx))
		return err
	}
	a.proxy, a.icpt = p, icpt
	if a.netns, err = a.newWorkloads(); err != nil {
		_ = icpt.Close()
		_ = p.Shutdown(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// lookup resolves through the agent because the proxy is built before the
// interceptor exists (it must listen before anything is redirected to it).
func (a *Agent) lookup(c netip.AddrPort) (intercept.Origin, bool, error) { return a.icpt.Lookup(c) }

// loadKey returns the signer and, when known, the path of its public key.
func loadKey(ctx context.Context, cfg Config) (signature.SignerVerifier, string, error) {
	ref := cfg.KeyRef
	pubPath := ""
	if ref == "" {
		ref = filepath.Join(cfg.DataDir, keys.PrivateKeyFile)
		pubPath = filepath.Join(cfg.DataDir, keys.PublicKeyFile)
		if _, err := os.Stat(ref); errors.Is(err, fs.ErrNotExist) {
			p, err := keys.WritePair(cfg.DataDir, keys.ECDSAP256, cfg.Password)
			if err != nil {
				return nil, "", fmt.Errorf("agent: create signing key: %w", err)
			}
			cfg.Logger.Info("generated a signing key on first start", "private_key", p.PrivatePath, "public_key", p.PublicPath, "fingerprint", p.ID, "encrypted", cfg.Password != nil)
		}
	}
	sv, err := keys.LoadSigner(ctx, ref, func() ([]byte, error) { return cfg.Password, nil })
	if err != nil {
		return nil, "", err
	}
	if err := checkKeyMode(ref); err != nil {
		return nil, "", err
	}
	return sv, pubPath, nil
}

// checkKeyMode refuses a private key file that others can read.
func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil // a KMS URI, not a file
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("agent: signing key %s has mode %04o: others can read it; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}

// Run records agent.start, serves until ctx ends, then drains, records
// agent.stop, writes a final checkpoint and closes the log.
func (a *Agent) Run(ctx context.Context) error {
	// Every background part stops when Run ends, whether the caller
	// cancelled ctx or the proxy stopped on its own; but only when Run
	// says so, after what must happen first (a fail-open detach, so the
	// event reader's last drain gets every event) has happened.
	stop := ctx.Done()
	ctx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	v := version.Get()
	start := time.Now()
	a.started = start
	attrs := map[string]string{
		"version": v.Version, "commit": v.Commit, "key_id": a.keyID, "pid": strconv.Itoa(os.Getpid()),
		"intercept": strconv.FormatBool(a.icpt != nil),
	}
	if a.icpt != nil {
		attrs["cgroup"] = a.cfg.CgroupPath
		if attrs["cgroup"] == "" {
			attrs["cgroup"] = "/"
		}
		attrs["fail_mode"] = a.cfg.FailMode
		attrs["proxy_port"] = strconv.Itoa(int(a.cfg.ProxyPort))
		attrs["capture"] = captureString(a.cfg.Capture)
	}
	a.podStartAttrs(attrs)
	if _, err := a.audit.AppendSync(ctx, auditlog.Entry{Type: auditlog.AgentStart, Attrs: attrs}); err != nil {
		a.abort(ctx)
		return fmt.Errorf("agent: record start: %w", err)
	}
	kernel := a.applyKernelPolicy()
	if a.policyFromFile {
		a.recordPolicy(ctx, a.cfg.PolicyPath, a.policy.Current(), nil, kernel)
	} else {
		a.recordPolicy(ctx, "", nil, nil, kernel)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchPolicy(ctx)
	}()
	wg.Go(func() { a.runPods(ctx) })
	a.startStatus(start)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.sampleRates(ctx)
	}()
	if a.api != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.api.Serve(ctx); err != nil {
				a.log.Error("control API stopped", "err", err)
			}
		}()
	}
	if a.ship != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.ship.Run(ctx)
		}()
	}
	serveErr := make(chan error, 1)
	if a.icpt != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			serveErr <- a.proxy.Serve(ctx)
		}()
		go func() {
			defer wg.Done()
			// Events drained after ctx ends are still recorded: the log
			// closes only after this reader returns.
			err := a.icpt.ReadEvents(ctx, func(ev intercept.Event) { a.kickNetns(ev); a.kernelEvent(context.WithoutCancel(ctx), ev) })
			if err != nil {
				a.log.Error("kernel event reader stopped", "err", err)
			}
			if ctx.Err() == nil {
				noteStopped(&a.status.readerErr, err)
			}
		}()
	}
	if a.icpt != nil {
		wg.Go(func() { a.watchEventLoss(ctx) })
	}
	if a.netns != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runWorkloads(ctx)
		}()
	}
	if a.metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveMetrics(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchdog(ctx)
	}()
	a.log.Info("vigil agent started", "data_dir", a.cfg.DataDir, "fingerprint", a.keyID, "public_key", a.pubKey,
		"version", v.Version, "intercept", a.icpt != nil, "fail_mode", a.cfg.FailMode)
	a.notifyReady()
	var runErr error
	select {
	case <-stop:
	case runErr = <-serveErr:
		a.log.Error("proxy stopped", "err", runErr)
		noteStopped(&a.status.proxyErr, runErr)
	}
	if a.icpt != nil && a.cfg.FailMode == FailOpen {
		// Fail-open: detach first, so new connections go direct while the
		// proxy drains and the programs queue no more events: the event
		// reader, stopped next, drains every event they queued. The maps
		// stay open until the reader and the loss check are done.
		// Fail-closed: the pins keep redirecting (and failing) until an
		// agent is back; what the programs queue meanwhile waits in the
		// pinned ring buffer for it.
		if err := a.icpt.Detach(); err != nil {
			a.log.Warn("detach", "err", err)
		}
	}
	cancelRun()
	if a.icpt != nil && a.cfg.FailMode == FailClosed {
		// The pinned programs keep queueing; a drain could last as long as
		// they do. What is left waits in the pinned ring buffer.
		if err := a.icpt.StopEvents(); err != nil {
			a.log.Warn("stop event reader", "err", err)
		}
	}
	a.notifyStopping()
	stopCtx, cancel := context.WithTimeout(context.Background(), drainTimeout+20*time.Second)
	defer cancel()
	if a.icpt != nil {
		dctx, dcancel := context.WithTimeout(stopCtx, drainTimeout)
		if err := a.proxy.Shutdown(dctx); err != nil {
			a.log.Warn("proxy drain", "err", err)
		}
		dcancel()
	}
	wg.Wait()
	if a.icpt != nil {
		a.closeIntercept()
	}
	_, serr := a.audit.AppendSync(stopCtx, auditlog.Entry{
		Type:  auditlog.AgentStop,
		Attrs: map[string]string{"uptime": time.Since(start).Round(time.Millisecond).String()},
	})
	cerr := a.audit.Close(stopCtx)
	a.stopShip(stopCtx)
	a.log.Info("vigil agent stopped", "next_seq", a.audit.Stats().NextSeq)
	return errors.Join(runErr, serr, cerr)
}

func (a *Agent) closeIntercept() {
	if err := a.icpt.Close(); err != nil {
		a.log.Warn("detach", "err", err)
	}
}

// abort releases everything without recording a stop.
func (a *Agent) abort(ctx context.Context) {
	if a.ship != nil {
		_ = a.ship.Close()
	}
	a.closeAPI()
	a.closeMetrics()
	if a.icpt != nil {
		a.closeIntercept()
		_ = a.proxy.Shutdown(context.WithoutCancel(ctx))
	}
	_ = a.audit.Close(context.WithoutCancel(ctx))
}

// Close releases the agent without running it; for errors before Run.
func (a *Agent) Close(ctx context.Context) error {
	a.abort(ctx)
	return nil
}

// kernelEvent records what the kernel saw but could not send through the
// proxy. It never blocks the ring buffer reader for long: Append only
// queues, and a full queue is the log's backpressure.
func (a *Agent) kernelEvent(ctx context.Context, ev intercept.Event) {
	if ev.Kind == intercept.EventKernelDeny {
		a.kernelDeny(ctx, ev)
		return
	}
	o := ev.Origin
	info := identity.FromPID(o.PID, "")
	e := auditlog.Entry{
		Type:     auditlog.ConnBypass,
		Identity: proxy.IdentityOf(o, info),
		Proto:    ev.Proto,
		Dst:      addrString(o.Dst),
		Decision: auditlog.Audit,
		Rule:     "kernel-observed",
		Attrs:    map[string]string{"path": string(ev.Kind)},
	}
	a.netnsAttr(e.Attrs, o)
	a.kernelIdentity(&e.Identity, info, e.Attrs)
	if ev.Src.IsValid() {
		e.Src = ev.Src.String()
	}
	if _, err := a.audit.Append(ctx, e); err != nil && ctx.Err() == nil {
		a.log.Error("cannot record kernel event", "kind", ev.Kind, "err", err)
	}
}

func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func captureString(rules []intercept.CaptureRule) string {
	if len(rules) == 0 {
		rules = intercept.DefaultCapture()
	}
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// Reload applies what can change without a restart (today: the capture
// set) and records the outcome as an agent.reload entry. On error the
// running configuration stays as it was.
func (a *Agent) Reload(ctx context.Context, cfg Config) error {
	attrs := map[string]string{"capture": captureString(cfg.Capture)}
	var err error
	if a.icpt != nil {
		err = a.icpt.SetCapture(cfg.Capture)
	}
	if err == nil {
		a.cfg.Capture = cfg.Capture
		a.status.setCapture(attrs["capture"])
		attrs["result"] = "applied"
		a.log.Info("configuration reloaded", "capture", attrs["capture"])
	} else {
		attrs["result"] = "rejected"
		attrs["error"] = err.Error()
		a.log.Error("configuration reload failed; keeping the running one", "err", err)
	}
	if _, aerr := a.audit.Append(ctx, auditlog.Entry{Type: auditlog.AgentReload, Attrs: attrs}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}
