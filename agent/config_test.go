package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFile(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"full", "data_dir: /d\nkey: /k\ncapture: [\"10.0.0.0/8:5432\"]\nproxy_port: 15002\nfail_mode: closed\n", ""},
		{"empty", "", ""},
		{"unknown key", "data_dir: /d\nfial_mode: open\n", "line 2: field fial_mode not found"},
		{"bad type", "proxy_port: lots\n", "line 1"},
		{"bad fail mode", "fail_mode: maybe\n", "want \"open\" or \"closed\""},
		{"kubernetes", "kubernetes: {enabled: true, node_name: n1, kubeconfig: /k}\n", ""},
		{"kubernetes auto", "kubernetes: {enabled: auto}\n", ""},
		{"kubernetes bad enabled", "kubernetes: {enabled: sometimes}\n", "want auto, true or false"},
		{"kubernetes unknown key", "kubernetes: {node: n1}\n", "field node not found"},
		{"repeated key", "data_dir: /a\ndata_dir: /b\n", `line 2: key "data_dir" is already set on line 1: keep one`},
		{"repeated key in a sink", "ship:\n  s3:\n    - {bucket: a,\n       bucket: b}\n", `line 4: key "bucket" is already set on line 3`},
		{"thousands of repeated keys", strings.Repeat("data_dir: x\n", 5000), `line 2: key "data_dir" is already set on line 1`},
		{"huge mapping", manyKeys(300), "line 1: a mapping of 300 keys, more than the 256"},
		{"too large", "data_dir: " + strings.Repeat("x", 1<<20), "more than the 1 MiB a configuration file may have"},
		{"not yaml", "data_dir: [\n", "did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vigil.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o600)
			fc, err := LoadFile(p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadFile = %v", err)
				}
				if tt.name == "kubernetes" && (fc.Kubernetes != FileKubernetes{Enabled: KubernetesOn, NodeName: "n1", Kubeconfig: "/k"}) {
					t.Errorf("LoadFile = %+v", fc.Kubernetes)
				}
				if tt.name == "full" && (fc.ProxyPort != 15002 || fc.FailMode != FailClosed || len(fc.Capture) != 1) {
					t.Errorf("LoadFile = %+v", fc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadFile = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := LoadFile("/nonexistent/vigil.yaml"); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// manyKeys returns a mapping of n distinct keys.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: v\n", i)
	}
	return b.String()
}
