package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// staticBinary builds cmd/vigil the way scripts/image.sh does.
func staticBinary(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "vigil")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/vigil")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := staticBinary(t, dir)
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644)
	o := Options{Binary: bin, CACerts: ca, Tag: "vigil:test", Version: "1.2.3", Revision: "abc", Created: time.Unix(0, 0).UTC()}
	out := filepath.Join(dir, "vigil-image.tar")
	if err := Build(o, out); err != nil {
		t.Fatal(err)
	}

	// Read it back as a consumer would.
	tag, _ := name.NewTag("vigil:test")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read image back: %v", err)
	}
	// The tarball format (docker save) does not keep manifest media types;
	// the image as built is OCI.
	built, err := Image(o)
	if err != nil {
		t.Fatal(err)
	}
	if mt, err := built.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type = %v, %v; want OCI", mt, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{BinaryPath}) || !slices.Equal(cf.Config.Cmd, []string{"agent"}) {
		t.Errorf("entrypoint %q cmd %q; want [%s] [agent]", cf.Config.Entrypoint, cf.Config.Cmd, BinaryPath)
	}
	if cf.Config.User != "0:0" || cf.OS != "linux" || cf.Config.Labels["org.opencontainers.image.version"] != "1.2.3" {
		t.Errorf("user %q os %q labels %v", cf.Config.User, cf.OS, cf.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}

	// Extract the file system; run the binary from it.
	files := map[string]*tar.Header{}
	var vigil []byte
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
		if "/"+h.Name == BinaryPath {
			if vigil, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "var/lib/vigil", "run/vigil", "host/sys/fs/cgroup"} {
		if files[f] == nil {
			t.Errorf("image has no %s", f)
		}
	}
	if h := files["usr/local/bin/vigil"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Fatalf("binary entry = %+v; want an executable owned by root", h)
	}
	extracted := filepath.Join(dir, "extracted-vigil")
	if err := os.WriteFile(extracted, vigil, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(got), "vigil ") {
		t.Errorf("vigil version from the image = %v\n%s", err, got)
	}

	// Same inputs, same digest.
	out2 := filepath.Join(dir, "again.tar")
	if err := Build(o, out2); err != nil {
		t.Fatal(err)
	}
	img2, err := tarball.ImageFromPath(out2, &tag)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same inputs: %s and %s; want one digest", d1, d2)
	}
	t.Logf("image %s, tarball %d bytes", d1, fileSize(t, out))
}

func TestImageRefusesDynamicBinary(t *testing.T) {
	dir := t.TempDir()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to use as a dynamic binary")
	}
	err = Build(Options{Binary: sh, Tag: "vigil:test"}, filepath.Join(dir, "x.tar"))
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("Build with a dynamic binary = %v; want a CGO_ENABLED=0 hint", err)
	}
	err = Build(Options{Binary: filepath.Join(dir, "missing"), Tag: "vigil:test"}, filepath.Join(dir, "x.tar"))
	if err == nil {
		t.Error("Build with a missing binary succeeded")
	}
	os.WriteFile(filepath.Join(dir, "text"), bytes.Repeat([]byte("x"), 100), 0o755)
	err = Build(Options{Binary: filepath.Join(dir, "text"), Tag: "vigil:test"}, filepath.Join(dir, "x.tar"))
	if err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("Build with a text file = %v; want not an ELF binary", err)
	}
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
