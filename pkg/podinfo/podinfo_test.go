package podinfo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	node   = "node-a"
	ctrA   = "4f3c2b1a09e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2"
	ctrB   = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	ctrC   = "0000000000000000000000000000000000000000000000000000000000000c0c"
	uidAPI = "7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d"
	uidDB  = "9e8d7c6b-5a4f-3e2d-1c0b-a9f8e7d6c5b4"
	uidOff = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
)

// fakeClient adapts the fake clientset (package podinfotest does the same
// for other packages; it cannot be imported here).
type fakeClient struct{ cs *fake.Clientset }

func (c fakeClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return c.cs.CoreV1().Pods("").List(ctx, opts)
}

func (c fakeClient) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.cs.CoreV1().Pods("").Watch(ctx, opts)
}

// testPod is a pod as the API server returns it once its containers run.
func testPod(uid, name, ns, nodeName, sa string, labels map[string]string, ctrs ...[3]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(uid), Labels: labels,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.PodSpec{NodeName: nodeName, ServiceAccountName: sa},
	}
	for _, c := range ctrs { // {name, image, containerID}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c[0], Image: c[1]})
		if c[2] != "" {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c[0], Image: "docker.io/library/" + c[1], ContainerID: "containerd://" + c[2]})
		}
	}
	return p
}

// startCache runs a cache over client until the test ends, and waits for
// its first sync.
func startCache(t *testing.T, client *fake.Clientset) *Cache {
	t.Helper()
	c, err := New(fakeClient{client}, node, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
	})
	eventually(t, "first sync", c.Synced)
	return c
}

// eventually polls cond for up to 10 s: the informer applies changes on
// its own goroutine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within 10s", what)
}

func TestCacheLifecycle(t *testing.T) {
	ctx := context.Background()
	api := testPod(uidAPI, "api-7d9f", "payments", node, "api-sa", map[string]string{"app": "api"},
		[3]string{"api", "registry.example/api:1.4", ctrA}, [3]string{"sidecar", "envoy:1.30", ctrB})
	client := fake.NewClientset(api)
	c := startCache(t, client)

	m := c.Lookup(uidAPI, ctrA)
	if m.Status != Found || m.Pod.Name != "api-7d9f" || m.Pod.Namespace != "payments" || m.Pod.ServiceAccount != "api-sa" ||
		m.Pod.Labels["app"] != "api" || m.Container.Name != "api" || m.Container.Image != "registry.example/api:1.4" {
		t.Fatalf("Lookup(api pod, ctrA) = %+v (pod %+v); want api-7d9f/api", m, m.Pod)
	}
	if m := c.Lookup("", ctrB); m.Status != Found || m.Pod.UID != uidAPI || m.Container.Name != "sidecar" {
		t.Errorf("Lookup(\"\", ctrB) = %+v; want the sidecar of api-7d9f", m)
	}
	if m := c.Lookup(uidAPI, ""); m.Status != Found || m.Container != (Container{}) {
		t.Errorf("Lookup(api pod, \"\") = %+v; want the pod, no container", m)
	}
	if m := c.Lookup(uidDB, ""); m.Status != Pending || m.Pod != nil {
		t.Errorf("Lookup(unknown pod) = %+v; want Pending", m)
	}
	if m := c.Lookup("", ctrC); m.Status != NotPod {
		t.Errorf("Lookup(\"\", unknown container) = %+v; want NotPod", m)
	}
	if m := c.Lookup("", ""); m.Status != NotPod {
		t.Errorf("Lookup(\"\", \"\") = %+v; want NotPod", m)
	}

	// Add: a pod whose container has not started yet is found by UID.
	db := testPod(uidDB, "db-0", "payments", node, "", nil, [3]string{"postgres", "postgres:17", ""})
	if _, err := client.CoreV1().Pods("payments").Create(ctx, db, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "db-0 added", func() bool { return c.Lookup(uidDB, "").Status == Found })
	if m := c.Lookup(uidDB, ctrC); m.Pod.ServiceAccount != "default" || m.Container != (Container{}) {
		t.Errorf("Lookup(db-0, not started) = %+v, pod %+v; want service account default, no container", m, m.Pod)
	}

	// Update: the container starts (status gets its id), labels change.
	db = testPod(uidDB, "db-0", "payments", node, "", map[string]string{"role": "primary"}, [3]string{"postgres", "postgres:17", ctrC})
	if _, err := client.CoreV1().Pods("payments").Update(ctx, db, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "db-0 updated", func() bool { return c.Lookup("", ctrC).Status == Found })
	if m := c.Lookup(uidDB, ctrC); m.Pod.Labels["role"] != "primary" || m.Container.Image != "postgres:17" {
		t.Errorf("Lookup(db-0 updated) = %+v, pod %+v; want role=primary, image postgres:17", m, m.Pod)
	}
	// A container id of another pod does not name a container of this one.
	if m := c.Lookup(uidDB, ctrA); m.Pod.UID != uidDB || m.Container != (Container{}) {
		t.Errorf("Lookup(db-0, api's container) = %+v; want db-0 and no container", m)
	}

	// A UID the cache does not know, with a known container: the
	// container names the pod.
	if m := c.Lookup(uidOff, ctrA); m.Status != Found || m.Pod.UID != uidAPI {
		t.Errorf("Lookup(unknown uid, api's container) = %+v; want api-7d9f", m)
	}

	// A static pod: its cgroup names kubelet's hash, not the mirror
	// pod's UID.
	const hash = "6b1f0c3e9a2d4c5b8e7f6a5d4c3b2a19"
	static := testPod("0d0d0d0d-0000-4000-8000-000000000001", "etcd-node-a", "kube-system", node, "", nil, [3]string{"etcd", "etcd:3.5", ""})
	static.Annotations = map[string]string{mirrorAnnotation: hash, "other": "dropped"}
	if _, err := client.CoreV1().Pods("kube-system").Create(ctx, static, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "static pod added", func() bool { return c.Lookup(hash, "").Status == Found })
	if m := c.Lookup(hash, ""); m.Pod.Name != "etcd-node-a" || c.Len() != 3 {
		t.Errorf("Lookup(static pod hash) = %+v, Len %d; want etcd-node-a, 3 pods", m, c.Len())
	}
	if err := client.CoreV1().Pods("kube-system").Delete(ctx, "etcd-node-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "static pod deleted", func() bool { return c.Lookup(hash, "").Status == Pending })

	// Delete frees the pod and its containers.
	if err := client.CoreV1().Pods("payments").Delete(ctx, "api-7d9f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "api-7d9f deleted", func() bool { return c.Len() == 1 })
	if m := c.Lookup(uidAPI, ctrA); m.Status != Pending {
		t.Errorf("Lookup(deleted pod) = %+v; want Pending", m)
	}
	if m := c.Lookup("", ctrB); m.Status != NotPod {
		t.Errorf("Lookup(deleted pod's container) = %+v; want NotPod", m)
	}
	c.mu.RLock()
	n, u := len(c.byCtr), len(c.byUID)
	c.mu.RUnlock()
	if n != 1 || u != 1 {
		t.Errorf("indexes hold %d containers and %d uids after the deletes; want 1 and 1", n, u)
	}
}

// TestCacheNodeScope checks that the informer asks the API server for the
// node's pods only, and that pods of other nodes stay out even when the
// server (here the fake, which ignores field selectors) sends them.
func TestCacheNodeScope(t *testing.T) {
	ctx := context.Background()
	other := testPod(uidOff, "web-1", "shop", "node-b", "", nil, [3]string{"web", "nginx:1.27", ctrC})
	client := fake.NewClientset(other)
	c := startCache(t, client)

	var list, watch bool
	for _, a := range client.Actions() {
		var sel string
		switch a := a.(type) {
		case k8stesting.ListAction:
			sel, list = a.GetListRestrictions().Fields.String(), true
		case k8stesting.WatchAction:
			sel, watch = a.GetWatchRestrictions().Fields.String(), true
		default:
			continue
		}
		if sel != "spec.nodeName="+node {
			t.Errorf("%s %s with field selector %q; want spec.nodeName=%s", a.GetVerb(), a.GetResource().Resource, sel, node)
		}
	}
	if !list || !watch {
		t.Errorf("actions %v: want a list and a watch of pods", client.Actions())
	}

	if m := c.Lookup(uidOff, ctrC); m.Status != Pending || c.Len() != 0 {
		t.Errorf("Lookup(pod of node-b) = %+v, cache holds %d; want Pending and an empty cache", m, c.Len())
	}
	// A pod of ours that moves away (a server that reports it so) is dropped.
	mine := testPod(uidAPI, "api-1", "shop", node, "", nil, [3]string{"api", "api:1", ctrA})
	if _, err := client.CoreV1().Pods("shop").Create(ctx, mine, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "api-1 added", func() bool { return c.Lookup(uidAPI, "").Status == Found })
	mine.Spec.NodeName = "node-b"
	if _, err := client.CoreV1().Pods("shop").Update(ctx, mine, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "api-1 dropped", func() bool { return c.Len() == 0 })
	if m := c.Lookup("", ctrA); m.Status != NotPod {
		t.Errorf("Lookup(container of a pod that left) = %+v; want NotPod", m)
	}
}

// TestCacheStopLeaksNoGoroutines runs and stops caches and checks that the
// goroutine count returns to where it was.
func TestCacheStopLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		client := fake.NewClientset(testPod(uidAPI, "api-1", "shop", node, "", nil, [3]string{"api", "api:1", ctrA}))
		c, err := New(fakeClient{client}, node, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		eventually(t, "sync", c.Synced)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run = %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context ending")
		}
	}
	var after int
	for range 500 {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after stop; %d before\n%s", after, before, buf[:runtime.Stack(buf, true)])
}

func TestCacheRunTwice(t *testing.T) {
	c := startCache(t, fake.NewClientset())
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run = nil; want an error")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(nil, node, nil); err == nil {
		t.Error("New(nil client) = nil error")
	}
	if _, err := New(fakeClient{fake.NewClientset()}, "", nil); err == nil {
		t.Error("New(no node) = nil error")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := NewClient(""); err == nil {
		t.Error("NewClient outside a cluster = nil error")
	}
	if _, err := NewClient(t.TempDir() + "/missing"); err == nil {
		t.Error("NewClient(missing kubeconfig) = nil error")
	}
}

func TestSlim(t *testing.T) {
	p := testPod(uidAPI, "api-1", "shop", node, "sa", map[string]string{"a": "b"}, [3]string{"api", "api:1", ctrA})
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "SECRET", Value: "x"}}
	obj, err := slim(p)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*corev1.Pod)
	if len(s.ManagedFields) != 0 || len(s.Spec.Containers[0].Env) != 0 {
		t.Errorf("slim kept managed fields or env: %+v", s)
	}
	if got, want := podOf(s), podOf(p); got.Name != want.Name || got.Containers[0] != want.Containers[0] || got.ServiceAccount != "sa" {
		t.Errorf("podOf(slim(p)) = %+v; want %+v", got, want)
	}
	if got, _ := slim("tombstone"); got != "tombstone" {
		t.Errorf("slim(non-pod) = %v; want it unchanged", got)
	}
}

// deniedClient answers as an API server does to a service account without
// the RBAC to list pods.
type deniedClient struct{}

func (deniedClient) ListPods(context.Context, metav1.ListOptions) (*corev1.PodList, error) {
	return nil, errors.New(`pods is forbidden: User "system:serviceaccount:vigil-system:vigil" cannot list resource "pods"`)
}

func (deniedClient) WatchPods(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return nil, errors.New("forbidden")
}

// TestCacheLogsRefusal checks that client-go's errors reach the cache's
// logger, and that lookups stay pending rather than waiting.
func TestCacheLogsRefusal(t *testing.T) {
	var buf syncBuffer
	c, err := New(deniedClient{}, node, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "the refusal logged", func() bool { return strings.Contains(buf.String(), "cannot list resource") })
	if m := c.Lookup(uidAPI, ctrA); m.Status != Pending || c.Synced() {
		t.Errorf("Lookup while refused = %+v, synced %v; want Pending, not synced", m, c.Synced())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
