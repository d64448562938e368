// Package kubernetes_test checks the manifests in this directory: each
// decodes strictly into the Kubernetes API types (an unknown or misspelt
// field fails), the kustomization builds, and the DaemonSet grants what the
// agent needs and no more.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests are the files applied as Kubernetes objects; vigil.yaml and
// policy.yaml are the agent's own files, carried by the generated ConfigMap.
var manifests = []string{"namespace.yaml", "rbac.yaml", "daemonset.yaml"}

// object is one decoded manifest document.
type object struct {
	kind, name, namespace string
	obj                   any
}

// decodeStrict decodes each YAML document of data into the API type its
// apiVersion and kind name, rejecting unknown and duplicate fields.
func decodeStrict(t *testing.T, file string, data []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s document %d: %v", file, i+1, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			obj = &corev1.Namespace{}
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1/ConfigMap":
			obj = &corev1.ConfigMap{}
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "apps/v1/DaemonSet":
			obj = &appsv1.DaemonSet{}
		default:
			t.Fatalf("%s document %d: unexpected %s %s: add it to this test", file, i+1, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", file, i+1, tm.Kind, err)
		}
		meta := metaOf(obj)
		out = append(out, object{kind: tm.Kind, name: meta[0], namespace: meta[1], obj: obj})
	}
	return out
}

func metaOf(obj any) [2]string {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return [2]string{o.Name, o.Namespace}
	case *corev1.ServiceAccount:
		return [2]string{o.Name, o.Namespace}
	case *corev1.ConfigMap:
		return [2]string{o.Name, o.Namespace}
	case *rbacv1.ClusterRole:
		return [2]string{o.Name, o.Namespace}
	case *rbacv1.ClusterRoleBinding:
		return [2]string{o.Name, o.Namespace}
	case *appsv1.DaemonSet:
		return [2]string{o.Name, o.Namespace}
	}
	panic(fmt.Sprintf("metaOf(%T)", obj))
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if objs := decodeStrict(t, f, b); len(objs) == 0 {
			t.Errorf("%s holds no object", f)
		}
	}
	// The strict decoder is the test: a misspelt field must fail it.
	bad := []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  lables: {a: b}\n")
	var ns corev1.Namespace
	if err := yaml.UnmarshalStrict(bad, &ns); err == nil {
		t.Error("UnmarshalStrict accepted an unknown field")
	}
}

// build runs kustomize on this directory, as `kubectl apply -k` would.
func build(t *testing.T) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeStrict(t, "kustomize build", out)
}

func TestKustomizeBuild(t *testing.T) {
	objs := build(t)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.kind+"/"+o.name)
		if o.kind != "Namespace" && !strings.HasPrefix(o.kind, "Cluster") && o.namespace != "vigil-system" {
			t.Errorf("%s/%s in namespace %q; want vigil-system", o.kind, o.name, o.namespace)
		}
	}
	slices.Sort(kinds)
	want := []string{"ClusterRole/vigil-pod-reader", "ClusterRoleBinding/vigil-pod-reader", "ConfigMap/vigil-config",
		"DaemonSet/vigil", "Namespace/vigil-system", "ServiceAccount/vigil"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kustomize build = %v; want %v", kinds, want)
	}
	for _, o := range objs {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok {
			for _, k := range []string{"vigil.yaml", "policy.yaml"} {
				if cm.Data[k] == "" {
					t.Errorf("ConfigMap vigil-config has no %s", k)
				}
			}
		}
		if ds, ok := o.obj.(*appsv1.DaemonSet); ok {
			if img := ds.Spec.Template.Spec.Containers[0].Image; img != "vigil:dev" {
				t.Errorf("image = %q; want vigil:dev from the kustomization", img)
			}
		}
	}
}

func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	b, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return decodeStrict(t, "daemonset.yaml", b)[0].obj.(*appsv1.DaemonSet)
}

// unitCaps reads CapabilityBoundingSet from the systemd unit, as
// Kubernetes names (CAP_NET_ADMIN -> NET_ADMIN).
func unitCaps(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "systemd", "vigil.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			caps = nil
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.TrimPrefix(c, "CAP_"))
			}
		}
	}
	slices.Sort(caps)
	return caps
}

func TestDaemonSetSecurity(t *testing.T) {
	ds := daemonSet(t)
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true; capabilities are enough")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop = %v; want [ALL]", sc.Capabilities.Drop)
	}
	var add []string
	for _, a := range sc.Capabilities.Add {
		add = append(add, string(a))
	}
	slices.Sort(add)
	if want := unitCaps(t); !slices.Equal(add, want) {
		t.Errorf("capabilities add = %v; want the systemd unit's set %v", add, want)
	}
	if !spec.HostPID || !spec.HostNetwork {
		t.Error("hostPID and hostNetwork are needed: host pids from BPF, the proxy on the node's loopback")
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations = %+v; want one {operator: Exists} for every node", spec.Tolerations)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.Exec == nil || len(p.Exec.Command) < 2 || p.Exec.Command[1] != "status" {
			t.Errorf("%s probe = %+v; want exec vigil status", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v; want cpu and memory requests and a memory limit", c.Resources)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("volumeMount %s has no volume", m.Name)
		}
	}
	if k := vols["signing-key"].Secret; k == nil || k.Optional == nil || !*k.Optional || k.DefaultMode == nil || *k.DefaultMode&0o077 != 0 {
		t.Errorf("signing-key volume = %+v; want an optional Secret readable by its owner only", k)
	}
	if spec.ServiceAccountName != "vigil" {
		t.Errorf("serviceAccountName = %q; want vigil", spec.ServiceAccountName)
	}
}

func TestRBACReadsPodsOnly(t *testing.T) {
	b, err := os.ReadFile("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeStrict(t, "rbac.yaml", b) {
		cr, ok := o.obj.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		if len(cr.Rules) != 1 {
			t.Fatalf("ClusterRole has %d rules; want 1", len(cr.Rules))
		}
		r := cr.Rules[0]
		if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods"}) ||
			!slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("ClusterRole rule = %+v; want pods get/list/watch in the core group", r)
		}
	}
}
