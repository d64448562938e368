package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// FileConfig is the YAML configuration file (`vigil agent --config FILE`).
// Every field is optional; flags and VIGIL_* environment variables win over
// the file, and the file wins over defaults.
type FileConfig struct {
	DataDir   string   `yaml:"data_dir"`
	Key       string   `yaml:"key"`
	Host      string   `yaml:"host"`
	Cgroup    string   `yaml:"cgroup"`
	Capture   []string `yaml:"capture"`
	ProxyPort uint16   `yaml:"proxy_port"`
	FailMode  string   `yaml:"fail_mode"`
	PinPath   string   `yaml:"pin_path"`
	LogLevel  string   `yaml:"log_level"`
	Policy    string   `yaml:"policy"`
	Socket    string   `yaml:"socket"`

	Ship        ShipConfig     `yaml:"ship"` // off-host sinks (docs/SHIPPING.md)
	MetricsAddr string         `yaml:"metrics_addr"`
	Kubernetes  FileKubernetes `yaml:"kubernetes"`
}

// FileKubernetes is the kubernetes: section of the configuration file.
type FileKubernetes struct {
	Enabled    string `yaml:"enabled"`    // auto (default), true or false
	NodeName   string `yaml:"node_name"`  // default: $NODE_NAME
	Kubeconfig string `yaml:"kubeconfig"` // default: in-cluster service account
}

// LoadFile reads and strictly decodes a configuration file: unknown keys
// and wrong types are errors with the line they are on.
func LoadFile(path string) (FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("agent: read config: %w", err)
	}
	return parseFile(path, b)
}

// Bounds on a configuration file. A real one is a few kilobytes with
// mappings of a dozen keys; the YAML decoder compares every pair of keys
// of a mapping and reports every repeated pair, so without these a
// file of a few hundred kilobytes would take minutes and gigabytes.
const (
	maxConfigBytes = 1 << 20
	maxMappingKeys = 256
)

// parseFile decodes and checks the bytes of the configuration file named
// path (the name only labels errors).
func parseFile(path string, b []byte) (FileConfig, error) {
	var fc FileConfig
	var err error
	if len(b) > maxConfigBytes {
		return fc, fmt.Errorf("agent: config %s: %d bytes is more than the 1 MiB a configuration file may have: check that --config names the vigil configuration", path, len(b))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fc, fmt.Errorf("agent: config %s: %w", path, err)
	}
	if err := checkMappings(&doc); err != nil {
		return fc, fmt.Errorf("agent: config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fc, fmt.Errorf("agent: config %s: %w", path, err)
	}
	if fc.FailMode != "" && fc.FailMode != FailOpen && fc.FailMode != FailClosed {
		return fc, fmt.Errorf("agent: config %s: fail_mode %q: want %q or %q", path, fc.FailMode, FailOpen, FailClosed)
	}
	if fc.Kubernetes.Enabled, err = parseKubernetesEnabled(fc.Kubernetes.Enabled); err != nil {
		return fc, fmt.Errorf("agent: config %s: %w", path, err)
	}
	return fc, nil
}

// checkMappings refuses a mapping with a repeated key or more keys than
// any configuration needs, naming the line, before the decoder's pairwise
// checks run on it.
func checkMappings(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		type key struct {
			kind  yaml.Kind
			value string
		}
		seen := make(map[key]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if first, ok := seen[key{k.Kind, k.Value}]; ok {
				return fmt.Errorf("line %d: key %q is already set on line %d: keep one of them", k.Line, k.Value, first)
			}
			seen[key{k.Kind, k.Value}] = k.Line
		}
		if len(seen) > maxMappingKeys {
			return fmt.Errorf("line %d: a mapping of %d keys, more than the %d any part of the configuration has: check the file's indentation", n.Line, len(seen), maxMappingKeys)
		}
	}
	if n.Kind == yaml.AliasNode {
		return nil // the anchored node is checked where it is defined
	}
	for _, c := range n.Content {
		if err := checkMappings(c); err != nil {
			return err
		}
	}
	return nil
}

// Fail modes: what happens to connections while the agent is not running.
const (
	FailOpen   = "open"   // programs detach with the agent: traffic flows directly, unaudited
	FailClosed = "closed" // programs stay pinned: connections fail until the agent is back
)
