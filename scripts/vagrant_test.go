// Package scripts_test checks the development VM (the Vagrantfile at the
// repository root) against the scripts it provisions with. The VM cannot
// boot here; what can be checked without it is: the file is valid Ruby,
// it declares the box and provisioners the README promises, each
// provisioner is valid shell that uses scripts which exist, and its kernel
// check accepts this machine (which runs the tests) and rejects an old
// kernel with one clear sentence.
package scripts_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
)

// vagrantfile is the file under test, one level up from scripts/.
const vagrantfile = "../Vagrantfile"

// vagrantStub evaluates a Vagrantfile without Vagrant: Vagrant.configure
// hands it a config object that records the box, synced folders and
// provisioners, and prints them as JSON. config.vm accepts only the
// settings listed here, so a misspelt one fails the test; provider blocks
// accept anything (their settings are the providers' own).
const vagrantStub = `
require "json"
OUT = {"box" => nil, "synced" => [], "provisioners" => [], "constants" => {}}
class AnySettings
  def method_missing(*)
    self
  end

  def respond_to_missing?(*)
    true
  end
end
class VM
  def box=(v)
    OUT["box"] = v
  end

  def hostname=(v)
    OUT["hostname"] = v
  end

  def synced_folder(src, dst, **opts)
    OUT["synced"] << {"src" => src, "dst" => dst, "opts" => opts}
  end

  def provider(_name)
    yield AnySettings.new
  end

  def provision(name, **opts)
    OUT["provisioners"] << {"name" => name}.merge(opts.transform_keys(&:to_s))
  end
end
class Config
  def vm
    @vm ||= VM.new
  end
end
module Vagrant
  def self.configure(version)
    raise "Vagrant.configure(#{version.inspect}): want \"2\"" unless version == "2"
    yield Config.new
  end
end
load ARGV[0]
Object.constants.each { |c| v = Object.const_get(c); OUT["constants"][c.to_s] = v if v.is_a?(String) }
puts JSON.generate(OUT)
`

// vagrantConfig is what vagrantStub prints.
type vagrantConfig struct {
	Box    string `json:"box"`
	Synced []struct {
		Src, Dst string
		Opts     map[string]any
	} `json:"synced"`
	Provisioners []struct {
		Name   string `json:"name"`
		Type   string `json:"type"`
		Inline string `json:"inline"`
		Reboot bool   `json:"reboot"`
		Run    string `json:"run"`
	} `json:"provisioners"`
	Constants map[string]string `json:"constants"`
}

// needRuby fails when ruby is missing: scripts/install-deps.sh installs
// it, so `make test` always has it, and a syntax check that skips would
// let a broken Vagrantfile through.
func needRuby(t *testing.T) string {
	t.Helper()
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Fatal("ruby not found: run scripts/install-deps.sh (it installs ruby) to check the Vagrantfile")
	}
	return ruby
}

// loadVagrantfile evaluates the Vagrantfile with vagrantStub.
func loadVagrantfile(t *testing.T) vagrantConfig {
	t.Helper()
	ruby := needRuby(t)
	stub := filepath.Join(t.TempDir(), "stub.rb")
	if err := os.WriteFile(stub, []byte(vagrantStub), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ruby, stub, vagrantfile).Output()
	if err != nil {
		t.Fatalf("evaluate the Vagrantfile: %v\n%s", err, stderrOf(err))
	}
	var c vagrantConfig
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("stub output: %v\n%s", err, out)
	}
	return c
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

func TestVagrantfileSyntax(t *testing.T) {
	out, err := exec.Command(needRuby(t), "-c", vagrantfile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Syntax OK") {
		t.Fatalf("ruby -c Vagrantfile: %v\n%s", err, out)
	}
}

func TestVagrantfileProvisioning(t *testing.T) {
	c := loadVagrantfile(t)
	if c.Box != "debian/bookworm64" && !strings.Contains(c.Box, "ubuntu-24.04") {
		t.Errorf("box %q: want Debian 12 (debian/bookworm64) or Ubuntu 24.04, what scripts/install-deps.sh supports", c.Box)
	}
	if len(c.Synced) != 1 || c.Synced[0].Dst != "/vigil" {
		t.Fatalf("synced folders %+v: want the repository at /vigil", c.Synced)
	}
	if ex, _ := c.Synced[0].Opts["rsync__exclude"].([]any); slices.Contains(ex, any(".git/")) {
		t.Error("the VM gets no .git, but scripts/check-generate.sh (run by make test) needs it")
	}

	var names []string
	shell := map[string]string{}
	for i, p := range c.Provisioners {
		names = append(names, p.Name)
		if p.Type != "shell" || p.Inline == "" {
			t.Errorf("provisioner %q: type %q; want an inline shell script", p.Name, p.Type)
			continue
		}
		if p.Reboot && i != 0 {
			t.Errorf("provisioner %q reboots, but only the first (the kernel) should", p.Name)
		}
		shell[p.Name] = p.Inline
		// Every script is valid shell as written (Ruby interpolation done).
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(p.Inline)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("provisioner %q: bash -n: %v\n%s", p.Name, err, out)
		}
	}
	if want := []string{"kernel", "check", "go", "deps", "test"}; !slices.Equal(names, want) {
		t.Fatalf("provisioners %q; want %q in that order (reboot into the kernel, check it, then Go, deps, tests)", names, want)
	}
	if !c.Provisioners[0].Reboot {
		t.Error("the kernel provisioner does not reboot: the checks and tests would run on the box's old kernel")
	}

	// The same scripts the README's `make test` runs, and the test command.
	if url := "go.dev/dl/go" + goVersion(t) + ".linux-"; !strings.Contains(shell["go"], url) {
		t.Errorf("provisioner go does not download %s:\n%s", url, shell["go"])
	}
	for name, want := range map[string][]string{
		"deps": {"scripts/install-deps.sh", "scripts/e2e-env.sh start"},
		"test": {"make test"},
	} {
		for _, w := range want {
			if !runsCommand(shell[name], w) {
				t.Errorf("provisioner %q does not run %q:\n%s", name, w, shell[name])
			}
		}
	}
	for _, script := range []string{"install-deps.sh", "e2e-env.sh", "test.sh"} {
		if fi, err := os.Stat(script); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("scripts/%s: %v; want an executable script the VM runs", script, err)
		}
	}
	if c.Constants["CHECK_KERNEL"] != shell["check"] {
		t.Error("the check provisioner does not run CHECK_KERNEL")
	}
}

// runsCommand reports whether a line of script starts with the words of cmd.
func runsCommand(script, cmd string) bool {
	want := strings.Fields(cmd)
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(want) && slices.Equal(f[:len(want)], want) {
			return true
		}
	}
	return false
}

// goVersion is the version go.mod names, which the VM downloads.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

// TestInstallDepsHasRuby keeps ruby in the default package set: without
// it the tests above cannot run.
func TestInstallDepsHasRuby(t *testing.T) {
	b, err := os.ReadFile("install-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "DEFAULT_PACKAGES=(")
	list, _, _ := strings.Cut(rest, ")")
	if !slices.Contains(strings.Fields(list), "ruby") {
		t.Errorf("scripts/install-deps.sh DEFAULT_PACKAGES = %q; want ruby in it", strings.Fields(list))
	}
}

// TestVagrantKernelCheck runs the VM's kernel check with a fake uname:
// an old kernel is refused with one sentence saying what to do.
func TestVagrantKernelCheck(t *testing.T) {
	check := loadVagrantfile(t).Constants["CHECK_KERNEL"]
	if check == "" {
		t.Fatal("the Vagrantfile has no CHECK_KERNEL")
	}
	tests := []struct {
		release string
		ok      bool
	}{
		{"4.19.0-27-amd64", false},
		{"5.10.0-30-amd64", false},
		{"5.14.21", false},
		{"5.15.0-1-generic", true},
		{"6.1.0-28-amd64", true},
		{"6.12.12+bpo-amd64", true},
	}
	for _, tt := range tests {
		t.Run(tt.release, func(t *testing.T) {
			bin := t.TempDir()
			if err := os.WriteFile(filepath.Join(bin, "uname"), []byte("#!/bin/sh\necho "+tt.release+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := runCheck(check, "PATH="+bin+":"+os.Getenv("PATH"))
			tooOld := strings.Contains(out, "too old: vigil needs 5.15 or newer")
			if tt.ok == tooOld || !tt.ok && err == nil {
				t.Errorf("check on kernel %s: %v\n%s; want ok = %v", tt.release, err, out, tt.ok)
			}
		})
	}
}

// TestVagrantKernelCheckHere runs the VM's kernel check on this machine,
// which can run the tests, so the check must accept it.
func TestVagrantKernelCheckHere(t *testing.T) {
	reason := ""
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		reason = "no BTF on this kernel"
	} else if b, _ := os.ReadFile("/proc/mounts"); !strings.Contains(string(b), " cgroup2 ") {
		reason = "no cgroup v2 mounted"
	}
	testenv.Need(t, "cgroup v2 and BTF", reason)
	out, err := runCheck(loadVagrantfile(t).Constants["CHECK_KERNEL"])
	if err != nil {
		t.Fatalf("the VM's kernel check refuses the machine that runs the tests: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
}

func runCheck(script string, env ...string) (string, error) {
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
