//go:build !linux

package agent

import (
	"context"

	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// workloads serves workload network namespaces; only on Linux.
type workloads struct{}

func (a *Agent) newWorkloads() (*workloads, error) { return nil, nil }

func (a *Agent) runWorkloads(ctx context.Context) {}

func (a *Agent) kickNetns(ev intercept.Event) {}

func (a *Agent) netnsAttr(attrs map[string]string, o intercept.Origin) {}
