package agent

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The agent speaks systemd's notify protocol (sd_notify(3)) when started by
// a Type=notify unit: NOTIFY_SOCKET is set then, and every call below is a
// no-op otherwise.

// notifyReady tells systemd the agent serves: the log is open, agent.start
// is durable, the proxy listens and the programs are attached.
func (a *Agent) notifyReady() {
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		a.log.Warn("sd_notify READY=1", "err", err)
	} else if ok {
		a.log.Debug("notified systemd: ready")
	}
}

// notifyStopping tells systemd the agent is draining.
func (a *Agent) notifyStopping() {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
}

// watchdog pings systemd's watchdog at half of WatchdogSec, but only while
// the agent is healthy: a log that cannot be written stops the pings, and
// systemd restarts the agent (Restart=on-failure) instead of leaving a
// daemon that refuses every audited connection running forever.
func (a *Agent) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn("systemd watchdog settings", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	wasHealthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.sdHealth()
		if err != nil {
			if wasHealthy {
				a.log.Error("unhealthy: withholding systemd watchdog pings", "err", err)
			}
			wasHealthy = false
			continue
		}
		if !wasHealthy {
			a.log.Info("healthy again: resuming systemd watchdog pings")
		}
		wasHealthy = true
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}

// sdHealth is what the watchdog checks: the audit log accepts writes.
// (A stopped proxy ends Run by itself.)
func (a *Agent) sdHealth() error {
	return a.audit.Stats().Err
}
