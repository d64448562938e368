// Command image builds vigil's container image without a container engine
// or a registry: one layer on an empty base (FROM scratch) holding the
// static binary, CA certificates and a minimal /etc/passwd, written as an
// image tarball that `docker load`, `podman load` and
// `ctr -n k8s.io images import` accept. The same inputs give the same
// image digest: timestamps and file owners are fixed.
//
//	go run ./image -binary ../bin/vigil-static -out ../bin/vigil-image.tar -tag vigil:dev
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinaryPath is where the binary sits in the image; the DaemonSet's probes
// name it.
const BinaryPath = "/usr/local/bin/vigil"

// passwd and group name root (the agent runs as root with a few
// capabilities) and nobody, for tools that resolve ids.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group  = "root:x:0:\nnogroup:x:65534:\n"
)

// Options say what to build.
type Options struct {
	Binary   string // static vigil binary (CGO_ENABLED=0)
	CACerts  string // PEM bundle for TLS to KMS and object storage; "" leaves it out
	Tag      string // image reference written into the tarball, e.g. vigil:1.2.3
	Version  string // org.opencontainers.image.version label
	Revision string // org.opencontainers.image.revision label
	Created  time.Time
}

func main() {
	var o Options
	var out string
	var epoch int64
	flag.StringVar(&o.Binary, "binary", "", "static vigil binary to put in the image (required)")
	flag.StringVar(&o.CACerts, "ca", "", "CA certificate bundle to put at /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&o.Tag, "tag", "vigil:dev", "image name and tag recorded in the tarball")
	flag.StringVar(&o.Version, "version", "dev", "version label")
	flag.StringVar(&o.Revision, "revision", "unknown", "source revision label")
	flag.Int64Var(&epoch, "created", 0, "image creation time, Unix seconds (reproducible builds: SOURCE_DATE_EPOCH)")
	flag.StringVar(&out, "out", "", "image tarball to write (required)")
	flag.Parse()
	if o.Binary == "" || out == "" {
		fmt.Fprintln(os.Stderr, "image: -binary and -out are required (see -h)")
		os.Exit(2)
	}
	o.Created = time.Unix(epoch, 0).UTC()
	if err := Build(o, out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "image: wrote %s (%s)\n", out, o.Tag)
}

// Build writes the image tarball for o to out.
func Build(o Options, out string) error {
	ref, err := name.NewTag(o.Tag)
	if err != nil {
		return fmt.Errorf("image: tag %q: %w", o.Tag, err)
	}
	img, err := Image(o)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("image: write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// Image assembles the image in memory.
func Image(o Options) (v1.Image, error) {
	layerTar, err := rootfs(o)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = []string{"agent"}
	// Root inside the container: the agent needs CAP_BPF and friends,
	// which the DaemonSet grants one by one instead of privileged mode.
	cf.Config.User = "0:0"
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "vigil",
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   "https://github.com/vigil-ebpf/vigil",
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// rootfs is the layer: fixed owners, modes and times, so that its digest
// depends on the inputs only.
func rootfs(o Options) ([]byte, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: binary: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("image: %s: %w", o.Binary, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: o.Created, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: o.Created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/vigil", 0o755) },
		func() error { return dir("etc/vigil-key", 0o700) },
		// Mount points of the DaemonSet's volumes, so a read-only root
		// file system needs nothing created at start.
		func() error { return dir("host", 0o755) },
		func() error { return dir("host/sys", 0o755) },
		func() error { return dir("host/sys/fs", 0o755) },
		func() error { return dir("host/sys/fs/cgroup", 0o755) },
		func() error { return dir("run", 0o755) },
		func() error { return dir("run/vigil", 0o700) },
		func() error { return dir("tmp", 0o1777) },
		func() error { return dir("usr", 0o755) },
		func() error { return dir("usr/local", 0o755) },
		func() error { return dir("usr/local/bin", 0o755) },
		func() error { return file("usr/local/bin/vigil", 0o755, bin) },
		func() error { return dir("var", 0o755) },
		func() error { return dir("var/lib", 0o755) },
		func() error { return dir("var/lib/vigil", 0o700) },
	}
	if o.CACerts != "" {
		ca, err := os.ReadFile(o.CACerts)
		if err != nil {
			return nil, fmt.Errorf("image: CA certificates: %w", err)
		}
		steps = append(steps,
			func() error { return dir("etc/ssl", 0o755) },
			func() error { return dir("etc/ssl/certs", 0o755) },
			func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, ca) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// checkStatic refuses a dynamically linked binary: FROM scratch has no
// libc or loader, and the container would fail with a bare "no such file".
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: build it with CGO_ENABLED=0 (scripts/image.sh does)")
		}
	}
	return nil
}
