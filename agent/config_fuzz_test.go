package agent

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// FuzzParseFile feeds arbitrary bytes as the agent's configuration file
// (`vigil agent --config`): parseFile must return an error that names the
// file, or a configuration whose enumerated fields hold valid values; the
// checks the agent later runs on the values (capture, retention, interval)
// must not panic either.
func FuzzParseFile(f *testing.F) {
	if b, err := os.ReadFile("../deploy/vigil.example.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"data_dir: /d\nkey: /k\ncapture: [\"10.0.0.0/8:5432\"]\nproxy_port: 15002\nfail_mode: closed\n",
		"",
		"---\n...\n",
		"data_dir: /d\nfial_mode: open\n",
		"proxy_port: 65536\n",
		"proxy_port: -1\n",
		"fail_mode: [open]\n",
		"kubernetes: {enabled: TRUE, node_name: n1}\n",
		"kubernetes: {enabled: sometimes}\n",
		"ship:\n  interval: 2s\n  retention: {max_bytes: 10GiB, drop_unshipped: true}\n  s3:\n    - {name: a, bucket: b, retention: 400d, mode: compliance}\n  jsonl:\n    - {path: /var/log/x.jsonl}\n",
		"ship: {retention: {max_bytes: 99999999999999999999EiB}}\n",
		"a: &a [*a, *a]\nb: *a\n",
		"capture: &c [\"::/0\", *c]\n",
		"data_dir: !!binary aGVsbG8=\n",
		"{data_dir: \"\\uD800\"}\n",
		"\t- tab\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fc, err := parseFile("vigil.yaml", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "agent: config vigil.yaml: ") {
				t.Fatalf("parseFile error %q does not name the file", err)
			}
			return
		}
		if fc.FailMode != "" && fc.FailMode != FailOpen && fc.FailMode != FailClosed {
			t.Fatalf("accepted fail_mode %q", fc.FailMode)
		}
		switch fc.Kubernetes.Enabled {
		case KubernetesAuto, KubernetesOn, KubernetesOff:
		default:
			t.Fatalf("accepted kubernetes.enabled %q", fc.Kubernetes.Enabled)
		}
		if len(fc.Capture) > 0 {
			_, _ = intercept.ParseCapture(strings.Join(fc.Capture, ","))
		}
		if n, err := fc.Ship.Retention.parse(); err == nil && n < 0 {
			t.Fatalf("retention max_bytes %q parsed to %d", fc.Ship.Retention.MaxBytes, n)
		}
		_, _ = time.ParseDuration(fc.Ship.Interval)
		for _, s := range fc.Ship.S3 {
			if d, err := ship.ParseRetention(s.Retention); err == nil && d <= 0 {
				t.Fatalf("s3 retention %q parsed to %v", s.Retention, d)
			}
		}
	})
}
