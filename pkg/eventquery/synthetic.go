package eventquery

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

var (
	synComms = []string{"psql", "curl", "java", "python3", "redis-cli", "node", "mysql"}
	synPorts = []string{"5432", "443", "6379", "3306", "80"}
	synNS    = []string{"payments", "web", "batch"}
)

// SyntheticEntry returns the i-th entry of a realistic, deterministic
// workload (about 5000 processes, 60 pods, thousands of destinations),
// stamped t0 + i*step. Tests and `vigil bench query` use it.
func SyntheticEntry(i int, t0 time.Time, step time.Duration) auditlog.Entry {
	comm := synComms[i%len(synComms)]
	e := auditlog.Entry{
		Time: t0.Add(time.Duration(i) * step),
		Type: auditlog.ConnOpen,
		Identity: auditlog.Identity{
			PID: uint64(1000 + (i*7919)%5000), UID: []uint64{0, 1000, 33, 999}[i%4], GID: 1000,
			Comm: comm, Exe: "/usr/bin/" + comm,
			CgroupPath:  "/kubepods/pod" + strconv.Itoa(i%60),
			ContainerID: fmt.Sprintf("%016x%048x", uint64(i%60+1)*0x9e3779b97f4a7c15, i%60),
			Pod:         "app-" + strconv.Itoa(i%60), Namespace: synNS[i%len(synNS)],
		},
		Proto:    "tcp",
		Src:      "10.0.0." + strconv.Itoa(i%200+1) + ":" + strconv.Itoa(30000+i%30000),
		Dst:      fmt.Sprintf("10.%d.%d.%d:%s", i%4, (i/7)%256, i%250+1, synPorts[i%len(synPorts)]),
		Decision: auditlog.Allow,
		Rule:     "default",
	}
	switch i % 20 {
	case 1, 2, 3, 4:
		e.Type = auditlog.ConnClose
		e.Attrs = map[string]string{"bytes_in": strconv.Itoa(i * 13 % 100000), "bytes_out": strconv.Itoa(i * 7 % 100000)}
	case 5:
		e.Type = auditlog.L7Request
		e.Attrs = map[string]string{"protocol": "postgres", "statement": "SELECT * FROM accounts WHERE id = " + strconv.Itoa(i)}
	case 6:
		e.Type = auditlog.ConnDeny
		e.Decision = auditlog.Deny
		e.Rule = "no-prod-db"
	}
	return e
}

// WriteSynthetic appends n synthetic entries spread over span before now
// to a new log in dir through the real writer, and closes it.
func WriteSynthetic(ctx context.Context, dir string, opts auditlog.Options, n int, t0 time.Time, span time.Duration) error {
	l, err := auditlog.Open(ctx, dir, opts)
	if err != nil {
		return err
	}
	step := span / time.Duration(max(n, 1))
	var last *auditlog.Ack
	for i := range n {
		a, err := l.AppendLazy(ctx, SyntheticEntry(i, t0, step))
		if err != nil {
			l.Close(ctx)
			return err
		}
		last = a
		// The writer rotates between batches: bounded batches keep the
		// segment sizes near SegmentMaxBytes however busy the machine is.
		if i%256 == 255 {
			if err := a.Wait(ctx); err != nil {
				l.Close(ctx)
				return err
			}
		}
	}
	if last != nil {
		if err := last.Wait(ctx); err != nil {
			l.Close(ctx)
			return err
		}
	}
	return l.Close(ctx)
}
