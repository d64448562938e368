package agent

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/podinfo"
	"github.com/vigil-ebpf/vigil/pkg/podinfo/podinfotest"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

func TestKubernetesOn(t *testing.T) {
	inPod := func(k string) string {
		if k == "KUBERNETES_SERVICE_HOST" {
			return "10.96.0.1"
		}
		return ""
	}
	onHost := func(string) string { return "" }
	tests := []struct {
		k       Kubernetes
		getenv  func(string) string
		want    bool
		wantErr bool
	}{
		{Kubernetes{}, onHost, false, false},
		{Kubernetes{}, inPod, true, false},
		{Kubernetes{Enabled: KubernetesAuto, Kubeconfig: "/etc/kubeconfig"}, onHost, true, false},
		{Kubernetes{Enabled: KubernetesOff}, inPod, false, false},
		{Kubernetes{Enabled: KubernetesOn}, onHost, true, false},
		{Kubernetes{Enabled: "yes"}, onHost, false, true},
	}
	for _, tt := range tests {
		got, err := tt.k.on(tt.getenv)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%+v.on() = %v, %v; want %v, error %v", tt.k, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestOpenPodsErrors(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if c, err := openPods(Config{}); c != nil || err != nil {
		t.Errorf("openPods(off) = %v, %v; want nil, nil", c, err)
	}
	_, err := openPods(Config{Kubernetes: Kubernetes{Enabled: KubernetesOn}})
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("openPods(on, outside a cluster) = %v; want a hint to pass --kubeconfig", err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	_, err = openPods(Config{Kubernetes: Kubernetes{Kubeconfig: kc}})
	if err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("openPods(no node name) = %v; want a hint to set NODE_NAME", err)
	}
	if c, err := openPods(Config{Kubernetes: Kubernetes{Kubeconfig: kc, NodeName: "n1"}}); c == nil || err != nil {
		t.Errorf("openPods(kubeconfig, node) = %v, %v; want a cache", c, err)
	}
}

const (
	podUID  = "7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d"
	podCtr  = "4f3c2b1a09e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2"
	podNode = "node-a"
)

const podPolicy = `apiVersion: vigil.dev/v1
default: allow
rules:
  - name: api-image
    action: audit
    match:
      workload:
        namespaces: [payments]
        labels: {app: api}
        serviceAccounts: [api-sa]
        images: ["registry.example/api:*"]
`

// TestAgentPodEnrichment runs an agent over a fake clientset and checks
// that proxied connections and kernel events name their pod, that the
// policy sees its labels, service account and image, and that a pod not
// yet known is marked pending instead of waited for.
func TestAgentPodEnrichment(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-7d9f", Namespace: "payments", UID: podUID, Labels: map[string]string{"app": "api"}},
		Spec: corev1.PodSpec{NodeName: podNode, ServiceAccountName: "api-sa",
			Containers: []corev1.Container{{Name: "api", Image: "registry.example/api:1.4"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "api", ContainerID: "cri-o://" + podCtr}}},
	}
	cache, err := podinfo.New(podinfotest.Client(fake.NewClientset(pod)), podNode, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(polFile, []byte(podPolicy), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Config{DataDir: filepath.Join(dir, "log"), PolicyPath: polFile, PolicyExplicit: true, podCache: cache})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	for i := 0; !cache.Synced(); i++ {
		if i == 1000 {
			t.Fatal("pod cache not synced within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.enrichHook() == nil {
		t.Fatal("enrichHook() = nil with Kubernetes on")
	}

	w := identity.Workload{ContainerID: podCtr, Runtime: identity.RuntimeCRIO, PodUID: podUID}
	conn := &proxy.Conn{
		Origin:   intercept.Origin{Dst: netip.MustParseAddrPort("10.1.2.3:5432"), PID: 42, Comm: "api"},
		Identity: auditlog.Identity{PID: 42, ContainerID: podCtr},
		Process:  identity.Info{PID: 42, Workload: w},
	}
	attrs := map[string]string{}
	a.enrichConn(conn, attrs)
	if conn.Identity.Pod != "api-7d9f" || conn.Identity.Namespace != "payments" {
		t.Errorf("enriched identity = %+v; want pod payments/api-7d9f", conn.Identity)
	}
	for k, v := range map[string]string{"pod_uid": podUID, "service_account": "api-sa", "k8s_container": "api", "image": "registry.example/api:1.4"} {
		if attrs[k] != v {
			t.Errorf("attrs[%s] = %q; want %q (attrs %v)", k, attrs[k], v, attrs)
		}
	}
	d := decider{a.policy, a.pods}
	if got := d.Decide(ctx, conn); got.Rule != "api-image" || got.Verdict != auditlog.Audit {
		t.Errorf("Decide(api pod) = %+v; want audit by api-image", got)
	}
	// Without the pod cache the policy cannot see labels, account or image.
	if got := (decider{a.policy, nil}).Decide(ctx, conn); got.Rule == "api-image" {
		t.Errorf("Decide without the pod cache = %+v; want the default", got)
	}

	// A pod the cache does not hold yet: decided at once, marked pending.
	other := &proxy.Conn{Origin: conn.Origin, Process: identity.Info{Workload: identity.Workload{PodUID: "9e8d7c6b-5a4f-3e2d-1c0b-a9f8e7d6c5b4"}}}
	attrs = map[string]string{}
	a.enrichConn(other, attrs)
	if other.Identity.Pod != "" || attrs["pod_info"] != "pending" {
		t.Errorf("unknown pod: identity %+v, attrs %v; want no pod and pod_info=pending", other.Identity, attrs)
	}
	if got := d.Decide(ctx, other); got.Rule == "api-image" {
		t.Errorf("Decide(unknown pod) = %+v; want the default", got)
	}

	// Kernel events get the same identity.
	var id auditlog.Identity
	kattrs := map[string]string{"path": "kernel"}
	a.kernelIdentity(&id, identity.Info{PID: 42, Workload: w}, kattrs)
	if id.Pod != "api-7d9f" || id.Namespace != "payments" || kattrs["image"] != "registry.example/api:1.4" || kattrs["path"] != "kernel" {
		t.Errorf("kernel identity = %+v, attrs %v; want pod payments/api-7d9f", id, kattrs)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	var start auditlog.Entry
	if err := auditlog.Scan(context.Background(), filepath.Join(dir, "log"), 1, func(r auditlog.Record) error {
		if r.Entry.Type == auditlog.AgentStart {
			start = r.Entry
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if start.Attr("kubernetes") != "on" || start.Attr("node") != podNode {
		t.Errorf("agent.start attrs = %v; want kubernetes=on node=%s", start.Attrs, podNode)
	}
}

// TestKernelIdentityWithoutKubernetes: with Kubernetes off, a kernel
// event still names its systemd unit and session, and no pod.
func TestKernelIdentityWithoutKubernetes(t *testing.T) {
	a := &Agent{}
	if a.enrichHook() != nil {
		t.Error("enrichHook() != nil with Kubernetes off")
	}
	var id auditlog.Identity
	attrs := map[string]string{}
	info := identity.Info{PID: 1, Complete: true, Workload: identity.ParseCgroupPath("/user.slice/user-1000.slice/session-3.scope")}
	a.kernelIdentity(&id, info, attrs)
	if attrs["unit"] != "session-3.scope" || attrs["session"] != "3" || attrs["user_slice"] != "1000" || id.Pod != "" {
		t.Errorf("kernel identity %+v, attrs %v; want unit, session and user slice, no pod", id, attrs)
	}
	attrs = map[string]string{}
	a.podStartAttrs(attrs)
	if attrs["kubernetes"] != "off" {
		t.Errorf("agent.start kubernetes = %q; want off", attrs["kubernetes"])
	}
}
