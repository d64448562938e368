package identity

import (
	"regexp"
	"strings"
)

// Workload is what a cgroup v2 path says about the process in it. Fields
// that the path does not tell are empty.
type Workload struct {
	ContainerID string // 64 hex digits
	Runtime     string // "docker", "containerd", "cri-o", "podman" or "systemd"; "" when not known
	PodUID      string // Kubernetes pod UID, dashed form, when the path is under kubepods
	Unit        string // systemd unit ("nginx.service", "session-3.scope") of a process that is not in a container
	Session     string // login session id ("3" for session-3.scope)
	UserUID     string // uid of the user slice ("1000" for user-1000.slice): a login session, a user service or a rootless container
}

// Container runtimes as Workload.Runtime names them.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
	RuntimeSystemd    = "systemd"
)

var (
	// systemd cgroup driver: "<prefix>-<id>.scope".
	// cgroupfs driver of CRI-O and podman: the same without ".scope".
	scopeRE = regexp.MustCompile(`^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(\.scope)?$`)
	// containerd with the systemd driver inside a container (kind, nested
	// nodes): "kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>".
	colonRE = regexp.MustCompile(`^[^:]*:(docker|cri-containerd|crio):([0-9a-f]{64})$`)
	// cgroupfs driver: a bare id under /docker/ or under kubepods.
	bareIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// Pod UIDs: a UUID, dashed (cgroupfs) or underscored (systemd), or the
	// 32-hex-digit hash kubelet gives static pods.
	// systemd's per-user slice and logind's session scope.
	userSliceRE = regexp.MustCompile(`^user-([0-9]+)\.slice$`)
	sessionRE   = regexp.MustCompile(`^session-([0-9A-Za-z]+)\.scope$`)
	podRE       = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(\.slice)?(:|$)`)
)

var runtimeByPrefix = map[string]string{
	"docker":         RuntimeDocker,
	"cri-containerd": RuntimeContainerd,
	"crio":           RuntimeCRIO,
	"libpod":         RuntimePodman,
}

// ParseCgroupPath reads the container, pod and unit out of a cgroup v2 path
// for the layouts that docker, containerd (CRI), CRI-O, podman, kubelet and
// systemd create, with either the systemd or the cgroupfs cgroup driver:
//
//	/system.slice/docker-<id>.scope                                   docker
//	/docker/<id>                                                      docker
//	/kubepods.slice/kubepods-burstable.slice/
//	    kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope containerd, pod
//	/kubepods.slice/…-pod<uid_>.slice/crio-<id>.scope                 cri-o, pod
//	/kubepods/besteffort/pod<uid>/<id>                                runtime unknown, pod
//	/system.slice/containerd.service/
//	    kubepods-…-pod<uid_>.slice:cri-containerd:<id>                containerd, pod (kind)
//	/machine.slice/libpod-<id>.scope                                  podman
//	/libpod_parent/libpod-<id>                                        podman (cgroupfs)
//	/kubepods/burstable/pod<uid>/crio-<id>                            cri-o (cgroupfs), pod
//	/system.slice/nginx.service                                       systemd unit
//	/user.slice/user-1000.slice/session-3.scope                       login session 3 of uid 1000
//
// The deepest container component wins (docker-in-docker names the inner
// container). A conmon or other helper scope next to a container is not the
// container and yields no ID.
func ParseCgroupPath(path string) Workload {
	path = strings.TrimSuffix(path, " (deleted)")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var w Workload
	kube := false
	for _, p := range parts {
		// "kubepods" or, on kind nodes with a cgroup namespace,
		// "kubelet-kubepods.slice".
		if strings.Contains(p, "kubepods") {
			kube = true
			break
		}
	}
	for i := len(parts) - 1; i >= 0 && w.ContainerID == ""; i-- {
		p := parts[i]
		if m := scopeRE.FindStringSubmatch(p); m != nil {
			w.ContainerID, w.Runtime = m[2], runtimeByPrefix[m[1]]
		} else if m := colonRE.FindStringSubmatch(p); m != nil {
			w.ContainerID, w.Runtime = m[2], runtimeByPrefix[m[1]]
			kube = kube || strings.Contains(p, "kubepods")
		} else if bareIDRE.MatchString(p) && i > 0 {
			switch {
			case parts[i-1] == "docker":
				w.ContainerID, w.Runtime = p, RuntimeDocker
			case kube:
				w.ContainerID = p // kubelet's cgroupfs layout does not name the runtime
			}
		}
	}
	if kube {
		for i := len(parts) - 1; i >= 0; i-- {
			if m := podRE.FindStringSubmatch(parts[i]); m != nil {
				w.PodUID = strings.ReplaceAll(m[1], "_", "-")
				break
			}
		}
	}
	for _, p := range parts {
		if m := userSliceRE.FindStringSubmatch(p); m != nil {
			w.UserUID = m[1]
			break
		}
	}
	if w.ContainerID == "" && w.PodUID == "" {
		// The deepest unit names the process: a service, a login session,
		// or a scope a desktop or systemd-run started.
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			if !strings.HasSuffix(p, ".service") && !strings.HasSuffix(p, ".scope") {
				continue
			}
			if strings.HasPrefix(p, "user@") && i < len(parts)-1 {
				continue // the user manager itself, above the unit that matters
			}
			w.Unit, w.Runtime = p, RuntimeSystemd
			if m := sessionRE.FindStringSubmatch(p); m != nil {
				w.Session = m[1]
			}
			break
		}
	}
	return w
}
