package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentKubernetesFlags(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("NODE_NAME", "")
	dir := filepath.Join(t.TempDir(), "data")
	code, _, errs := vigil(t, context.Background(), "agent", "--no-intercept", "--data-dir", dir, "--kubernetes", "maybe")
	if code != exitUsage || !strings.Contains(errs, "want auto, true or false") {
		t.Errorf("agent --kubernetes maybe = %d, %q; want a usage error", code, errs)
	}
	code, _, errs = vigil(t, context.Background(), "agent", "--no-intercept", "--data-dir", dir, "--kubernetes", "true")
	if code == 0 || !strings.Contains(errs, "--kubeconfig") {
		t.Errorf("agent --kubernetes true outside a cluster = %d, %q; want an error naming --kubeconfig", code, errs)
	}
	code, _, errs = vigil(t, context.Background(), "agent", "--no-intercept", "--data-dir", dir, "--kubeconfig", filepath.Join(dir, "missing"))
	if code == 0 || !strings.Contains(errs, "kubeconfig") {
		t.Errorf("agent --kubeconfig missing = %d, %q; want an error naming the kubeconfig", code, errs)
	}
}
