package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestKernelDeny denies one destination with a rule the kernel can decide
// alone and another with a rule that needs the process name. A client of
// the first gets "connection refused" from connect() itself, a client of
// the second connects and is reset. Both are recorded as conn.deny with
// the rule's name and the client's pid and comm; a reload that drops the
// kernel rule lets the next connection through; the log verifies.
func TestKernelDeny(t *testing.T) {
	requireRoot(t)
	requireTool(t, "bash")
	kport, uport := echoServer(t), echoServer(t)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	userRule := fmt.Sprintf(`  - name: no-bash-to-echo
    action: deny
    match:
      dst: { ports: ["%d"] }
      workload: { comm: [bash] }
`, uport)
	replaceFile(t, polPath, fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: kernel-no-echo
    action: deny
    errno: ECONNREFUSED
    match:
      dst: { cidr: ["127.0.0.1", "::1"], ports: ["%d"] }
%s`, kport, userRule))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(kport, uport), "--policy", polPath)

	// bash reports connect()'s error as it is.
	bash := func(script string) (pid int, stderr string, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := cgroupCmd(ctx, cg, "bash", "-c", script)
		var errb strings.Builder
		cmd.Stderr = &errb
		err = cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("bash -c %q hung: %s", script, errb.String())
		}
		return cmd.Process.Pid, errb.String(), err
	}
	kpid, kerr, err := bash(fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", kport))
	if err == nil || !strings.Contains(kerr, "Connection refused") {
		t.Errorf("bash connect under the kernel rule: %v, %q; want connection refused", err, kerr)
	}
	upid, uerr, err := bash(fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo hi >&3 && cat <&3", uport))
	if err == nil || !strings.Contains(uerr, "reset") {
		t.Errorf("bash under the userspace rule: %v, %q; want its connection reset", err, uerr)
	}

	// Without the kernel rule the same destination is allowed.
	replaceFile(t, polPath, "apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n"+userRule)
	client := func() error {
		cmd := cgroupCmd(context.Background(), cg, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=concurrent 127.0.0.1:%d 1", clientEnv, kport))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	waitFor(t, func() bool { return client() == nil })
	a.stop()

	es := entries(t, a.dataDir)
	kdst, udst := fmt.Sprintf("127.0.0.1:%d", kport), fmt.Sprintf("127.0.0.1:%d", uport)
	kd := find(es, auditlog.ConnDeny, "bash", kdst)
	if len(kd) != 1 {
		t.Fatalf("conn.deny from bash to %s: %+v; want one", kdst, kd)
	}
	if e := kd[0]; e.Rule != "kernel-no-echo" || e.Identity.PID != uint64(kpid) || e.Decision != auditlog.Deny ||
		e.Attr("path") != "kernel" || e.Attr("errno") != "ECONNREFUSED" {
		t.Errorf("kernel conn.deny = %+v; want rule kernel-no-echo, pid %d, path kernel, errno ECONNREFUSED", e, kpid)
	}
	ud := find(es, auditlog.ConnDeny, "bash", udst)
	if len(ud) != 1 || ud[0].Rule != "no-bash-to-echo" || ud[0].Identity.PID != uint64(upid) || ud[0].Attr("path") == "kernel" {
		t.Errorf("userspace conn.deny from bash to %s: %+v; want one by no-bash-to-echo, pid %d, from the proxy", udst, ud, upid)
	}
	var loads []auditlog.Entry
	for _, e := range es {
		if e.Type == auditlog.PolicyLoad && e.Attr("result") == "applied" {
			loads = append(loads, e)
		}
	}
	if len(loads) != 2 || loads[0].Attr("kernel_prefixes") == "0" || loads[1].Attr("kernel_prefixes") != "0" {
		t.Errorf("policy.load entries = %+v; want two, the first with kernel prefixes, the second without", loads)
	}
	verify(t, a.dataDir)
}
