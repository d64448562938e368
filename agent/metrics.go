package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/metrics"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// metricsServer serves Prometheus metrics on Config.MetricsAddr. It binds
// in New, so a taken or invalid address fails the start with one clear
// error instead of a silent gap in monitoring.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenMetrics binds Config.MetricsAddr; nothing when it is empty.
func (a *Agent) listenMetrics() error {
	if a.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("agent: metrics: listen on %s: %w: choose another --metrics-addr, or \"\" to serve no metrics", a.cfg.MetricsAddr, err)
	}
	src := metrics.Sources{
		Log:    a.audit.Stats,
		Policy: a.policyStats,
	}
	if a.proxy != nil {
		src.Proxy = func() proxy.Stats { return a.proxy.Stats() }
		src.Kernel = func() (intercept.Stats, error) { return a.icpt.Stats() }
	}
	reg := metrics.NewRegistry(metrics.New(src), version.Get())
	a.metrics = &metricsServer{ln: ln, srv: &http.Server{
		Handler:           metrics.Handler(reg),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
	}}
	return nil
}

// serveMetrics serves until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context) {
	m := a.metrics
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = m.srv.Shutdown(sctx)
	}()
	a.log.Info("serving metrics", "addr", m.ln.Addr().String(), "path", metrics.Path)
	if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("metrics server stopped", "err", err)
	}
}

// closeMetrics releases the listener of an agent that never ran.
func (a *Agent) closeMetrics() {
	if a.metrics != nil {
		_ = a.metrics.srv.Close()
		_ = a.metrics.ln.Close()
	}
}

// MetricsAddr returns the address metrics are served on, or "" (for
// tests that ask for port 0).
func (a *Agent) MetricsAddr() string {
	if a.metrics == nil {
		return ""
	}
	return a.metrics.ln.Addr().String()
}

// policyStats counts policy loads for metrics.
func (a *Agent) policyStats() metrics.PolicyStats {
	return metrics.PolicyStats{
		Applied:  a.policyApplied.Load(),
		Rejected: a.policyRejected.Load(),
		Rules:    len(a.policy.Current().Rules()),
	}
}
