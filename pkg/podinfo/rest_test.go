package podinfo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestRESTClient runs the cache through NewClient against an HTTP server
// on loopback that answers as the API server does (a list, then a watch
// stream), to check the request the agent sends and that it decodes what
// comes back. It is not an API server: docs/IDENTITY.md says how to try a
// real cluster.
func TestRESTClient(t *testing.T) {
	pod := testPod(uidAPI, "api-1", "shop", node, "api", map[string]string{"app": "api"}, [3]string{"api", "api:1", ctrA})
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.ResourceVersion = "2"
	var mu sync.Mutex
	var selectors []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		selectors = append(selectors, r.URL.Query().Get("fieldSelector"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") != "true" {
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "PodList",
				"metadata": map[string]any{"resourceVersion": "1"}, "items": []any{}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"type": "ADDED", "object": pod})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	client, err := NewClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(client, node, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "pod from the watch stream", func() bool { return c.Lookup("", ctrA).Status == Found })
	m := c.Lookup(uidAPI, ctrA)
	if m.Pod.Name != "api-1" || m.Pod.Labels["app"] != "api" || m.Container.Image != "api:1" {
		t.Errorf("Lookup = %+v, pod %+v; want api-1 with its labels and image", m, m.Pod)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(selectors) < 2 {
		t.Fatalf("requests with selectors %q; want a list and a watch", selectors)
	}
	for _, s := range selectors {
		if s != "spec.nodeName="+node {
			t.Errorf("request with fieldSelector %q; want spec.nodeName=%s", s, node)
		}
	}
}
