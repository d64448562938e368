package identity

import "testing"

const (
	id1 = "4f3c2b1a09e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2"
	id2 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

func TestParseCgroupPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Workload
	}{
		{"docker systemd driver",
			"/system.slice/docker-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimeDocker}},
		{"docker cgroupfs driver",
			"/docker/" + id1,
			Workload{ContainerID: id1, Runtime: RuntimeDocker}},
		{"docker in docker: inner container wins",
			"/docker/" + id1 + "/docker/" + id2,
			Workload{ContainerID: id2, Runtime: RuntimeDocker}},
		{"docker with systemd inside the container",
			"/system.slice/docker-" + id1 + ".scope/init.scope",
			Workload{ContainerID: id1, Runtime: RuntimeDocker}},
		{"containerd CRI systemd driver",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c3b4a1e_2f6d_4b8a_9c0e_1d2f3a4b5c6d.slice/cri-containerd-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimeContainerd, PodUID: "7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d"}},
		{"containerd CRI guaranteed pod",
			"/kubepods.slice/kubepods-pod0b1c2d3e_4f50_6172_8394_a5b6c7d8e9f0.slice/cri-containerd-" + id2 + ".scope",
			Workload{ContainerID: id2, Runtime: RuntimeContainerd, PodUID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}},
		{"cri-o systemd driver",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9e8d7c6b_5a4f_3e2d_1c0b_a9f8e7d6c5b4.slice/crio-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimeCRIO, PodUID: "9e8d7c6b-5a4f-3e2d-1c0b-a9f8e7d6c5b4"}},
		{"cri-o conmon is not the container",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9e8d7c6b_5a4f_3e2d_1c0b_a9f8e7d6c5b4.slice/crio-conmon-" + id1 + ".scope",
			Workload{PodUID: "9e8d7c6b-5a4f-3e2d-1c0b-a9f8e7d6c5b4"}},
		{"kubelet cgroupfs driver",
			"/kubepods/burstable/pod7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d/" + id1,
			Workload{ContainerID: id1, PodUID: "7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d"}},
		{"kubelet cgroupfs guaranteed",
			"/kubepods/pod7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d/" + id2,
			Workload{ContainerID: id2, PodUID: "7c3b4a1e-2f6d-4b8a-9c0e-1d2f3a4b5c6d"}},
		{"static pod uid is a hash",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6b1f0c3e9a2d4c5b8e7f6a5d4c3b2a19.slice/cri-containerd-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimeContainerd, PodUID: "6b1f0c3e9a2d4c5b8e7f6a5d4c3b2a19"}},
		{"kind node: containerd inside a container",
			"/system.slice/containerd.service/kubepods-besteffort-pod3f2e1d0c_b9a8_4765_8432_10fedcba9876.slice:cri-containerd:" + id1,
			Workload{ContainerID: id1, Runtime: RuntimeContainerd, PodUID: "3f2e1d0c-b9a8-4765-8432-10fedcba9876"}},
		{"docker shim under kubepods",
			"/kubepods.slice/kubepods-pod0b1c2d3e_4f50_6172_8394_a5b6c7d8e9f0.slice/docker-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimeDocker, PodUID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}},
		{"podman root",
			"/machine.slice/libpod-" + id1 + ".scope",
			Workload{ContainerID: id1, Runtime: RuntimePodman}},
		{"podman rootless",
			"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id2 + ".scope/container",
			Workload{ContainerID: id2, Runtime: RuntimePodman}},
		{"systemd service",
			"/system.slice/nginx.service",
			Workload{Unit: "nginx.service", Runtime: RuntimeSystemd}},
		{"containerd itself",
			"/system.slice/containerd.service",
			Workload{Unit: "containerd.service", Runtime: RuntimeSystemd}},
		{"user service",
			"/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service",
			Workload{Unit: "syncthing.service", Runtime: RuntimeSystemd}},
		{"login session", "/user.slice/user-1000.slice/session-3.scope", Workload{}},
		{"root cgroup", "/", Workload{}},
		{"empty", "", Workload{}},
		{"removed cgroup",
			"/system.slice/docker-" + id1 + ".scope (deleted)",
			Workload{ContainerID: id1, Runtime: RuntimeDocker}},
		{"outside our cgroup namespace", "/../../..", Workload{}},
		{"short id is not a container", "/docker/4f3c2b1a09e8", Workload{}},
		{"bare id outside docker and kubepods", "/default/" + id1, Workload{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCgroupPath(tt.path); got != tt.want {
				t.Errorf("ParseCgroupPath(%q) = %+v; want %+v", tt.path, got, tt.want)
			}
		})
	}
}
