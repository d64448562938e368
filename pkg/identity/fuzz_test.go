package identity

import (
	"regexp"
	"strings"
	"testing"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FuzzParseCgroupPath checks that any path parses without a panic and
// that what comes out is well-formed.
func FuzzParseCgroupPath(f *testing.F) {
	for _, p := range []string{
		"/system.slice/docker-" + id1 + ".scope",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c3b4a1e_2f6d_4b8a_9c0e_1d2f3a4b5c6d.slice/cri-containerd-" + id1 + ".scope",
		"/kubepods/besteffort/pod0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/" + id2,
		"/system.slice/containerd.service/kubepods-besteffort-pod3f2e1d0c_b9a8_4765_8432_10fedcba9876.slice:cri-containerd:" + id1,
		"/user.slice/user-1000.slice/session-3.scope",
		"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id2 + ".scope/container",
		"/../..", "", "/", "//", "user-.slice/session-.scope",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		w := ParseCgroupPath(path)
		if w.ContainerID != "" && !hex64.MatchString(w.ContainerID) {
			t.Errorf("ParseCgroupPath(%q).ContainerID = %q; want 64 hex digits", path, w.ContainerID)
		}
		if strings.Contains(w.PodUID, "_") {
			t.Errorf("ParseCgroupPath(%q).PodUID = %q; want the dashed form", path, w.PodUID)
		}
		if w.Unit != "" && (w.ContainerID != "" || w.PodUID != "") {
			t.Errorf("ParseCgroupPath(%q) = %+v: a unit and a container or pod", path, w)
		}
		if w.Session != "" && !strings.HasPrefix(w.Unit, "session-") {
			t.Errorf("ParseCgroupPath(%q) = %+v: a session outside a session unit", path, w)
		}
		if !strings.Contains(path, w.UserUID) || !strings.Contains(path, w.Unit) {
			t.Errorf("ParseCgroupPath(%q) = %+v: a uid or unit not in the path", path, w)
		}
	})
}
