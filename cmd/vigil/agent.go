package main

import (
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the vigil daemon (zero config: captures the host's TCP, key and log under /var/lib/vigil)",
		Description: "Flags win over VIGIL_* environment variables, which win over the --config file,\n" +
			"which wins over the defaults. SIGTERM/SIGINT drain relays, record agent.stop and a\n" +
			"final checkpoint.",
		Before: linuxOnly("agent"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "YAML configuration file (see deploy/vigil.example.yaml)", EnvVars: []string{"VIGIL_CONFIG"}},
			&cli.StringFlag{Name: "data-dir", Value: agent.DefaultDataDir, Usage: "audit log directory", EnvVars: []string{"VIGIL_DATA_DIR"}},
			&cli.StringFlag{Name: "key", Usage: "signing key file or KMS URI (default: DATA_DIR/signing.key, generated on first start)", EnvVars: []string{"VIGIL_KEY"}},
			passwordFileFlag,
			&cli.StringFlag{Name: "host", Usage: "host name recorded in entries (default: hostname)", EnvVars: []string{"VIGIL_HOST"}},
			&cli.StringFlag{Name: "cgroup", Usage: "cgroup v2 directory whose processes are captured (default: the whole host)", EnvVars: []string{"VIGIL_CGROUP"}},
			&cli.StringFlag{Name: "capture", Usage: "destinations to capture, e.g. \"10.0.0.0/8:5432,0.0.0.0/0:443,::/0\" (default: all TCP except loopback)", EnvVars: []string{"VIGIL_CAPTURE"}},
			&cli.UintFlag{Name: "proxy-port", Value: uint(intercept.DefaultProxyPort), Usage: "loopback port of the proxy", EnvVars: []string{"VIGIL_PROXY_PORT"}},
			&cli.IntFlag{Name: "max-netns", Value: intercept.DefaultMaxNetns, Usage: "workload network namespaces (pods, containers) served at once; 0 serves none (their connects are only reported)", EnvVars: []string{"VIGIL_MAX_NETNS"}},
			&cli.StringFlag{Name: "fail-mode", Value: agent.FailOpen, Usage: "open: traffic flows directly if the agent dies; closed: it fails until the agent is back", EnvVars: []string{"VIGIL_FAIL_MODE"}},
			&cli.StringFlag{Name: "pin-path", Value: agent.DefaultPinPath, Usage: "bpffs directory for fail-closed pins", EnvVars: []string{"VIGIL_PIN_PATH"}},
			&cli.StringFlag{Name: "policy", Value: agent.DefaultPolicyPath, Usage: "policy file, reloaded on change and SIGHUP (absent default file: allow and record everything)", EnvVars: []string{"VIGIL_POLICY"}},
			&cli.StringFlag{Name: "socket", Value: api.DefaultSocket, Usage: "control API unix socket (root-only); \"\" disables it", EnvVars: []string{"VIGIL_SOCKET"}},
			&cli.StringFlag{Name: "kubernetes", Value: agent.KubernetesAuto, Usage: "name the pods of this node: auto (when KUBERNETES_SERVICE_HOST is set), true or false", EnvVars: []string{"VIGIL_KUBERNETES"}},
			&cli.StringFlag{Name: "node-name", Usage: "this node's Kubernetes name (the downward API's spec.nodeName)", EnvVars: []string{"VIGIL_NODE_NAME", "NODE_NAME"}},
			&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig file (default: the pod's service account)", EnvVars: []string{"VIGIL_KUBECONFIG"}},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on this host:port, e.g. 127.0.0.1:9464 (default: none)", EnvVars: []string{"VIGIL_METRICS_ADDR"}},
			&cli.BoolFlag{Name: "no-intercept", Hidden: true, Usage: "record agent events only, without BPF or proxy (development)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("agent takes no arguments (got %q)", c.Args().First())
			}
			cfg, err := agentConfig(c)
			if err != nil {
				return err
			}
			a, err := agent.New(c.Context, cfg)
			if err != nil {
				return err
			}
			// SIGHUP re-reads flags, environment and --config; what can
			// change at runtime is applied, a bad file changes nothing.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-c.Context.Done():
						return
					case <-hup:
						next, err := agentConfig(c)
						if err != nil {
							logger(c).Error("configuration reload failed; keeping the running one", "err", err)
							continue
						}
						_ = a.Reload(c.Context, next)
						a.ReloadPolicy(c.Context)
					}
				}
			}()
			return a.Run(c.Context)
		},
	}
}

// agentConfig merges flags, environment and the config file.
func agentConfig(c *cli.Context) (agent.Config, error) {
	var fc agent.FileConfig
	if p := c.String("config"); p != "" {
		var err error
		if fc, err = agent.LoadFile(p); err != nil {
			return agent.Config{}, err
		}
	}
	str := func(flag, file string) string {
		if !c.IsSet(flag) && file != "" {
			return file
		}
		return c.String(flag)
	}
	pw, err := readPassword(c)
	if err != nil {
		return agent.Config{}, err
	}
	cfg := agent.Config{
		DataDir:    str("data-dir", fc.DataDir),
		KeyRef:     str("key", fc.Key),
		Password:   pw,
		Host:       str("host", fc.Host),
		CgroupPath: str("cgroup", fc.Cgroup),
		FailMode:   str("fail-mode", fc.FailMode),
		PinPath:    str("pin-path", fc.PinPath),
		Logger:     logger(c),
		Intercept:  !c.Bool("no-intercept"),
		PolicyPath: str("policy", fc.Policy),
		Socket:     str("socket", fc.Socket),
		Ship:       fc.Ship,
		Debug:      c.String("log-level") == "debug",
	}
	cfg.PolicyExplicit = c.IsSet("policy") || fc.Policy != ""
	cfg.Kubernetes = agent.Kubernetes{Enabled: str("kubernetes", fc.Kubernetes.Enabled),
		NodeName: str("node-name", fc.Kubernetes.NodeName), Kubeconfig: str("kubeconfig", fc.Kubernetes.Kubeconfig)}
	if v := cfg.Kubernetes.Enabled; v != agent.KubernetesAuto && v != agent.KubernetesOn && v != agent.KubernetesOff {
		return cfg, usagef("--kubernetes %q: want auto, true or false", v)
	}
	cfg.MetricsAddr = str("metrics-addr", fc.MetricsAddr)
	if cfg.MaxNetns = c.Int("max-netns"); cfg.MaxNetns <= 0 {
		cfg.MaxNetns = -1
	}
	if cfg.FailMode != agent.FailOpen && cfg.FailMode != agent.FailClosed {
		return cfg, usagef("--fail-mode %q: want open or closed", cfg.FailMode)
	}
	port := c.Uint("proxy-port")
	if !c.IsSet("proxy-port") && fc.ProxyPort != 0 {
		port = uint(fc.ProxyPort)
	}
	if port == 0 || port > 65535 {
		return cfg, usagef("--proxy-port %d: want 1-65535", port)
	}
	cfg.ProxyPort = uint16(port)
	capture := c.String("capture")
	if !c.IsSet("capture") && len(fc.Capture) > 0 {
		capture = strings.Join(fc.Capture, ",")
	}
	if capture != "" {
		rules, err := intercept.ParseCapture(capture)
		if err != nil {
			return cfg, usagef("--capture: %v", err)
		}
		cfg.Capture = rules
	}
	if cfg.Host != "" && strings.ContainsAny(cfg.Host, " +\t") {
		return cfg, usagef("--host %q: no spaces or '+'", cfg.Host)
	}
	return cfg, nil
}
