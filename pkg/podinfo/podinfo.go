// Package podinfo keeps a cache of the Kubernetes pods scheduled on one
// node, so that the identity of a connection can name its pod without
// asking the API server while the connection waits.
//
// A client-go shared informer lists and watches only the node's pods
// (field selector spec.nodeName=<node>) and keeps the cache current; a
// lookup is a map read under a read lock, by pod UID (from the cgroup
// path) or by container id (from pod status). A pod the cache does not
// hold yet is reported as pending, never waited for.
//
// This package is the only one in vigil that uses client-go.
package podinfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Pod is what the cache keeps of one pod. A Pod is never changed once it
// is in the cache (an update replaces it), so callers may keep and read it
// without locking; they must not modify it.
type Pod struct {
	UID            string
	Name           string
	Namespace      string
	ServiceAccount string
	Labels         map[string]string // shared and read-only
	Node           string
	Containers     []Container // from spec and status; ID is empty until the container started
	// MirrorOf is the UID kubelet gave a static pod (the hash in the
	// kubernetes.io/config.mirror annotation), which its cgroup path
	// names; "" for other pods.
	MirrorOf string
}

// mirrorAnnotation marks the API server's copy of a static pod.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// Container is one container of a pod.
type Container struct {
	ID    string // runtime's container id without the "containerd://" scheme; "" before it started
	Name  string
	Image string // image as the pod spec names it
}

// Status says how a lookup went.
type Status int

// Lookup outcomes.
const (
	// NotPod: neither the pod UID nor the container id is known to be a
	// pod's (no pod UID in the cgroup path, and the container id is none
	// of the node's pods' containers): a host process or a container
	// outside Kubernetes.
	NotPod Status = iota
	// Found: the pod is in the cache.
	Found
	// Pending: the cgroup path names a pod the cache does not hold
	// (yet): the informer has not synced, or the pod was created or
	// deleted an instant ago.
	Pending
)

// String names the status as the audit log records it.
func (s Status) String() string {
	switch s {
	case Found:
		return "found"
	case Pending:
		return "pending"
	default:
		return "none"
	}
}

// Match is the answer of a lookup.
type Match struct {
	Pod       *Pod      // nil unless Status is Found
	Container Container // the connecting container, when its id is known; else zero
	Status    Status
}

// Cache is the node's pods, indexed by UID and by container id. Create it
// with New, fill it with Run; Lookup is safe for concurrent use and never
// blocks on the network.
type Cache struct {
	client Client
	node   string
	log    *slog.Logger

	mu    sync.RWMutex
	byUID map[string]*Pod
	byCtr map[string]ctrRef // container id → pod and container

	synced  atomic.Bool
	running atomic.Bool
}

type ctrRef struct {
	pod *Pod
	idx int // index in pod.Containers
}

// Client lists and watches pods of all namespaces. NewClient makes one
// over REST; package podinfotest adapts client-go's fake clientset.
//
// It is this small because client-go's typed clients register every API
// group of Kubernetes at init, which would triple the size of vigil.
type Client interface {
	ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// restClient is a Client over the API server's REST interface, with a
// scheme that knows the core group only.
type restClient struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
}

func (c restClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	var list corev1.PodList
	err := c.rc.Get().Resource("pods").VersionedParams(&opts, c.params).Do(ctx).Into(&list)
	return &list, err
}

func (c restClient) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Resource("pods").VersionedParams(&opts, c.params).Watch(ctx)
}

// coreScheme knows core/v1 and the meta types lists, watches and options
// are made of.
func coreScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s, nil
}

// New returns an empty cache of node's pods that Run fills from client.
func New(client Client, node string, logger *slog.Logger) (*Cache, error) {
	if client == nil {
		return nil, errors.New("podinfo: no Kubernetes client")
	}
	if node == "" {
		return nil, errors.New("podinfo: no node name: pass --node-name or set NODE_NAME (the downward API's spec.nodeName)")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Cache{client: client, node: node, log: logger,
		byUID: make(map[string]*Pod), byCtr: make(map[string]ctrRef)}, nil
}

// NewClient builds a client of the core API group from a kubeconfig file, or from the pod's
// service account when kubeconfig is "" (in-cluster: KUBERNETES_SERVICE_HOST
// and the mounted token).
func NewClient(kubeconfig string) (Client, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("podinfo: in-cluster config: %w: run in a pod with a service account or pass --kubeconfig", err)
		}
		return nil, fmt.Errorf("podinfo: kubeconfig %s: %w", kubeconfig, err)
	}
	sch, err := coreScheme()
	if err != nil {
		return nil, fmt.Errorf("podinfo: scheme: %w", err)
	}
	cfg.UserAgent = "vigil-agent"
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(sch).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("podinfo: client: %w", err)
	}
	return restClient{rc: rc, params: runtime.NewParameterCodec(sch)}, nil
}

// Node is the node whose pods the cache holds.
func (c *Cache) Node() string { return c.node }

// Synced reports whether the first list of the node's pods has been read.
// Before that, every pod is Pending.
func (c *Cache) Synced() bool { return c.synced.Load() }

// Len is the number of pods in the cache.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for k, p := range c.byUID {
		if k == p.UID {
			n++
		}
	}
	return n
}

// Lookup finds the pod of a process by the pod UID and the container id
// its cgroup path names (either may be ""). The pod UID decides the pod
// when it is known; the container id then only picks the container.
// Otherwise the container id alone can name the pod.
func (c *Cache) Lookup(podUID, containerID string) Match {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var m Match
	if podUID != "" {
		m.Pod = c.byUID[podUID]
	}
	if containerID != "" {
		if r, ok := c.byCtr[containerID]; ok && (m.Pod == nil || m.Pod == r.pod) {
			m.Pod, m.Container = r.pod, r.pod.Containers[r.idx]
		}
	}
	switch {
	case m.Pod != nil:
		m.Status = Found
	case podUID != "":
		m.Status = Pending
	}
	return m
}

// Run lists and watches the node's pods until ctx ends, then stops the
// informer and returns once its goroutines have. It returns an error only
// when the cache could not start; a watch that breaks is retried by the
// informer with backoff.
func (c *Cache) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("podinfo: cache already running")
	}
	selector := fields.OneTermEqualSelector("spec.nodeName", c.node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return c.client.ListPods(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return c.client.WatchPods(ctx, o)
		},
	}
	// A plain list then watch, not a streamed initial list: every API
	// server version serves it, and it is the path the tests run (the fake
	// clientset cannot stream).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, listThenWatch{}),
		&corev1.Pod{}, 0, cache.Indexers{})
	// Keep only what the cache reads: managed fields and most of the spec
	// are dropped before the informer's own store holds them.
	if err := inf.SetTransform(slim); err != nil {
		return fmt.Errorf("podinfo: informer transform: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.upsert(obj) },
		UpdateFunc: func(_, obj any) { c.upsert(obj) },
		DeleteFunc: c.remove,
	}); err != nil {
		return fmt.Errorf("podinfo: informer handler: %w", err)
	}
	// client-go logs through the logger in the context (watch errors,
	// relists), so its messages reach the agent's log and not stderr.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(c.log.With("component", "kubernetes").Handler()))
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) }) // returns once its goroutines have
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		c.synced.Store(true)
		c.log.Info("kubernetes pod cache synced", "node", c.node, "pods", c.Len(), "took", time.Since(start).Round(time.Millisecond))
	}
	wg.Wait()
	return nil
}

// slim drops what the cache does not use from a pod before the informer
// stores it, so the informer's memory grows with the pods' identities, not
// with their full specs.
func slim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: handled by remove
	}
	s := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
			ResourceVersion: p.ResourceVersion,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, ServiceAccountName: p.Spec.ServiceAccountName},
		Status: corev1.PodStatus{
			Phase:                      p.Status.Phase,
			ContainerStatuses:          p.Status.ContainerStatuses,
			InitContainerStatuses:      p.Status.InitContainerStatuses,
			EphemeralContainerStatuses: p.Status.EphemeralContainerStatuses,
		},
	}
	if h, ok := p.Annotations[mirrorAnnotation]; ok {
		s.Annotations = map[string]string{mirrorAnnotation: h}
	}
	for _, ctr := range p.Spec.Containers {
		s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: ctr.Name, Image: ctr.Image})
	}
	for _, ctr := range p.Spec.InitContainers {
		s.Spec.InitContainers = append(s.Spec.InitContainers, corev1.Container{Name: ctr.Name, Image: ctr.Image})
	}
	return s, nil
}

// podOf turns an API pod into the cache's Pod.
func podOf(p *corev1.Pod) *Pod {
	out := &Pod{
		UID: string(p.UID), Name: p.Name, Namespace: p.Namespace,
		ServiceAccount: p.Spec.ServiceAccountName, Node: p.Spec.NodeName,
		Labels: maps.Clone(p.Labels), MirrorOf: p.Annotations[mirrorAnnotation],
	}
	if out.MirrorOf == out.UID {
		out.MirrorOf = ""
	}
	if out.ServiceAccount == "" {
		out.ServiceAccount = "default" // what the API server fills in when a pod names none
	}
	images := make(map[string]string, len(p.Spec.Containers)+len(p.Spec.InitContainers))
	for _, ctr := range p.Spec.InitContainers {
		images[ctr.Name] = ctr.Image
	}
	for _, ctr := range p.Spec.Containers {
		images[ctr.Name] = ctr.Image
	}
	seen := make(map[string]bool, len(images))
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			img := images[st.Name]
			if img == "" {
				img = st.Image
			}
			out.Containers = append(out.Containers, Container{ID: trimScheme(st.ContainerID), Name: st.Name, Image: img})
			seen[st.Name] = true
		}
	}
	for _, ctr := range p.Spec.Containers {
		if !seen[ctr.Name] {
			out.Containers = append(out.Containers, Container{Name: ctr.Name, Image: ctr.Image})
		}
	}
	return out
}

// trimScheme turns "containerd://<id>" into "<id>".
func trimScheme(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		return after
	}
	return id
}

// upsert adds or replaces a pod. Pods of other nodes are ignored: the
// field selector keeps them out already, and this keeps a pod that moved
// (or a server that ignores the selector) from naming our processes.
func (c *Cache) upsert(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if p.Spec.NodeName != c.node {
		c.removeUID(string(p.UID))
		return
	}
	np := podOf(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byUID[np.UID]; old != nil {
		c.drop(old)
	}
	c.byUID[np.UID] = np
	if np.MirrorOf != "" {
		c.byUID[np.MirrorOf] = np
	}
	for i, ctr := range np.Containers {
		if ctr.ID != "" {
			c.byCtr[ctr.ID] = ctrRef{pod: np, idx: i}
		}
	}
}

// remove drops a deleted pod, also when the informer only saw its
// tombstone.
func (c *Cache) remove(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if p, ok := obj.(*corev1.Pod); ok {
		c.removeUID(string(p.UID))
	}
}

func (c *Cache) removeUID(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byUID[uid]; old != nil {
		c.drop(old)
	}
}

// drop removes p and the index entries that point at it; c.mu is held.
func (c *Cache) drop(p *Pod) {
	for _, k := range []string{p.UID, p.MirrorOf} {
		if c.byUID[k] == p {
			delete(c.byUID, k)
		}
	}
	for _, ctr := range p.Containers {
		if r, ok := c.byCtr[ctr.ID]; ok && r.pod == p {
			delete(c.byCtr, ctr.ID)
		}
	}
}

// listThenWatch tells the reflector not to use the WatchList protocol.
type listThenWatch struct{}

// IsWatchListSemanticsUnSupported is the optional method client-go's
// reflector looks for.
func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }
