package agent

import (
	"context"
	"fmt"
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
	lost := a.audit.Stats().Lost
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		lost, err = a.sdHealth(lost)
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

// sdHealth is what the watchdog checks: the audit log accepts writes now
// and lost no entry since the previous check (lostBefore). A log on a full
// disk recovers briefly each time it records a log.gap in its reserved
// space, then fails again: the loss counter catches what a glance at the
// error alone would miss. (A stopped proxy ends Run by itself.)
func (a *Agent) sdHealth(lostBefore uint64) (lost uint64, err error) {
	s := a.audit.Stats()
	if s.Err != nil {
		return s.Lost, s.Err
	}
	if s.Lost > lostBefore {
		return s.Lost, fmt.Errorf("audit log lost %d entries since the last check", s.Lost-lostBefore)
	}
	return s.Lost, nil
}
