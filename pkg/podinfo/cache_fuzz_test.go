package podinfo

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// FuzzCache plays a fuzzed sequence of pod additions, updates and
// deletions, with container ids as the runtime reports them (with or
// without a scheme, empty, or the fuzzed text), against the cache: after
// each step the indexes point at containers that carry the id they are
// filed under, a pod just added is found by its UID and by each of its
// container ids, and a pod just deleted is not found by its UID.
func FuzzCache(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 2, 0, 1, 1, 0, 2, 0, 3}, "containerd://"+ctrA)
	f.Add([]byte{0, 1, 1, 0, 0, 0, 1, 0, 1, 3, 0, 0, 1}, "docker://")
	f.Add([]byte{0, 2, 2, 2, 5, 0, 2, 2, 3, 4, 1, 2}, "://")
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, ctrB)
	uids := []string{uidAPI, uidDB, uidOff, "u4"}
	mirrors := []string{"", "", "static-hash-1", "static-hash-2"}
	nodes := []string{node, node, node, "node-b"}
	f.Fuzz(func(t *testing.T, script []byte, extraID string) {
		// The cache is filled by hand and never Run: its client is unused.
		c, err := New(fakeClient{}, node, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{"", "containerd://" + ctrA, "docker://" + ctrB, ctrC, "cri-o://" + ctrA, extraID}
		// Each step: op, uid, mirror, node, then two container ids.
		for len(script) >= 6 {
			op, uid, mirror, nd := script[0]%3, uids[script[1]%4], mirrors[script[2]%4], nodes[script[3]%4]
			ctr1, ctr2 := ids[int(script[4])%len(ids)], ids[int(script[5])%len(ids)]
			script = script[6:]
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Name: "p-" + uid, Namespace: "ns"},
				Spec:       corev1.PodSpec{NodeName: nd, Containers: []corev1.Container{{Name: "a", Image: "i"}, {Name: "b"}}},
				Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
					{Name: "a", ContainerID: ctr1}, {Name: "b", ContainerID: ctr2, Image: "j"}}},
			}
			if mirror != "" {
				p.Annotations = map[string]string{mirrorAnnotation: mirror}
			}
			switch op {
			case 0:
				c.upsert(p)
				m := c.Lookup(uid, "")
				if nd != node {
					if m.Status == Found {
						t.Fatalf("pod %s of node %s is in the cache", uid, nd)
					}
					break
				}
				if m.Status != Found || m.Pod.UID != uid {
					t.Fatalf("pod %s just added: Lookup = %+v", uid, m)
				}
				for _, id := range []string{ctr1, ctr2} {
					if id = trimScheme(id); id == "" {
						continue
					}
					if m := c.Lookup("", id); m.Status != Found || m.Pod.UID != uid || m.Container.ID != id {
						t.Fatalf("pod %s just added with container %q: Lookup = %+v", uid, id, m)
					}
				}
			case 1:
				c.remove(p)
				if m := c.Lookup(uid, ""); m.Status == Found && m.Pod.UID == uid {
					t.Fatalf("pod %s just deleted: Lookup = %+v", uid, m)
				}
			case 2:
				m := c.Lookup(uid, trimScheme(ctr1))
				if (m.Status == Found) != (m.Pod != nil) {
					t.Fatalf("Lookup(%s, %q) = %+v", uid, ctr1, m)
				}
			}
			c.mu.RLock()
			for id, r := range c.byCtr {
				if r.idx >= len(r.pod.Containers) || r.pod.Containers[r.idx].ID != id {
					t.Fatalf("container index %q points at %+v", id, r)
				}
			}
			for k, p := range c.byUID {
				if k != p.UID && k != p.MirrorOf {
					t.Fatalf("UID index %q points at pod %s (mirror of %q)", k, p.UID, p.MirrorOf)
				}
			}
			c.mu.RUnlock()
			_ = c.Len()
		}
	})
}
