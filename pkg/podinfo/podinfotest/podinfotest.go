// Package podinfotest adapts client-go's fake clientset to podinfo.Client,
// for tests of the pod cache and of what uses it. Only tests import it, so
// the clientset's API groups stay out of the vigil binary.
package podinfotest

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-ebpf/vigil/pkg/podinfo"
)

// Client returns a podinfo.Client over cs, typically a
// k8s.io/client-go/kubernetes/fake clientset.
func Client(cs kubernetes.Interface) podinfo.Client { return client{cs} }

type client struct{ cs kubernetes.Interface }

func (c client) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return c.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
}

func (c client) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
}
