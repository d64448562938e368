package agent

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/podinfo"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

// Kubernetes says whether and how the agent names the pods of its node.
type Kubernetes struct {
	// Enabled is "auto" (the default: on when KUBERNETES_SERVICE_HOST is
	// set, as in every pod), "true" or "false".
	Enabled    string
	NodeName   string // this node's name, as spec.nodeName says it; required when enabled
	Kubeconfig string // "" uses the pod's service account (in-cluster)
}

// Values of Kubernetes.Enabled.
const (
	KubernetesAuto = "auto"
	KubernetesOn   = "true"
	KubernetesOff  = "false"
)

// on resolves Enabled; getenv reads the environment.
func (k Kubernetes) on(getenv func(string) string) (bool, error) {
	switch k.Enabled {
	case "", KubernetesAuto:
		return getenv("KUBERNETES_SERVICE_HOST") != "" || k.Kubeconfig != "", nil
	case KubernetesOn:
		return true, nil
	case KubernetesOff:
		return false, nil
	}
	return false, fmt.Errorf("agent: kubernetes.enabled %q: want auto, true or false", k.Enabled)
}

// openPods builds the pod cache when Kubernetes is on. Without it the
// agent runs no client-go code at all.
func openPods(cfg Config) (*podinfo.Cache, error) {
	if cfg.podCache != nil {
		return cfg.podCache, nil
	}
	on, err := cfg.Kubernetes.on(os.Getenv)
	if err != nil || !on {
		return nil, err
	}
	client, err := podinfo.NewClient(cfg.Kubernetes.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("agent: kubernetes: %w (or set kubernetes.enabled: false)", err)
	}
	c, err := podinfo.New(client, cfg.Kubernetes.NodeName, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("agent: kubernetes: %w", err)
	}
	return c, nil
}

// runPods fills the pod cache until ctx ends.
func (a *Agent) runPods(ctx context.Context) {
	if a.pods == nil {
		return
	}
	if err := a.pods.Run(ctx); err != nil {
		a.log.Error("kubernetes pod cache stopped", "err", err)
	}
}

// enrichHook is the proxy's Enrich hook: none when Kubernetes is off.
func (a *Agent) enrichHook() func(*proxy.Conn, map[string]string) {
	if a.pods == nil {
		return nil
	}
	return a.enrichConn
}

// enrichConn names the pod of a proxied connection.
func (a *Agent) enrichConn(c *proxy.Conn, attrs map[string]string) {
	enrichIdentity(a.pods, &c.Identity, c.Process.Workload, attrs)
}

// enrichIdentity names the pod of a caller from the cache: a map read,
// never a call to the API server. A pod the cache does not hold yet is
// recorded as pod_info=pending and left unnamed.
func enrichIdentity(pods *podinfo.Cache, id *auditlog.Identity, w identity.Workload, attrs map[string]string) {
	if pods == nil || (w.PodUID == "" && w.ContainerID == "") {
		return
	}
	m := pods.Lookup(w.PodUID, w.ContainerID)
	switch m.Status {
	case podinfo.Found:
		id.Pod, id.Namespace = m.Pod.Name, m.Pod.Namespace
		if attrs != nil {
			attrs["pod_uid"] = m.Pod.UID
			attrs["service_account"] = m.Pod.ServiceAccount
			if m.Container.Name != "" {
				attrs["k8s_container"] = m.Container.Name
				attrs["image"] = m.Container.Image
			}
		}
	case podinfo.Pending:
		if attrs != nil {
			attrs["pod_info"] = m.Status.String()
		}
	}
}

// podInput adds the pod's labels, service account and image to what the
// policy sees.
func podInput(pods *podinfo.Cache, in *policy.Input, w identity.Workload) {
	if pods == nil || (w.PodUID == "" && w.ContainerID == "") {
		return
	}
	m := pods.Lookup(w.PodUID, w.ContainerID)
	if m.Pod == nil {
		return
	}
	in.Namespace, in.Pod = m.Pod.Namespace, m.Pod.Name
	in.Labels, in.ServiceAccount, in.Image = m.Pod.Labels, m.Pod.ServiceAccount, m.Container.Image
}

// kernelIdentity is the identity and attributes of a kernel event's
// caller, enriched like a proxied connection's.
func (a *Agent) kernelIdentity(id *auditlog.Identity, info identity.Info, attrs map[string]string) {
	for k, v := range proxy.IdentityAttrs(info) {
		if _, ok := attrs[k]; !ok {
			attrs[k] = v
		}
	}
	enrichIdentity(a.pods, id, info.Workload, attrs)
}

// podStartAttrs describe the pod cache in the agent.start entry.
func (a *Agent) podStartAttrs(attrs map[string]string) {
	if a.pods == nil {
		attrs["kubernetes"] = "off"
		return
	}
	attrs["kubernetes"] = "on"
	attrs["node"] = a.pods.Node()
}

// parseKubernetesEnabled normalizes a flag or file value of
// kubernetes.enabled.
func parseKubernetesEnabled(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", KubernetesAuto:
		return KubernetesAuto, nil
	case KubernetesOn, KubernetesOff:
		return v, nil
	}
	return "", fmt.Errorf("agent: kubernetes.enabled %q: want auto, true or false", s)
}
