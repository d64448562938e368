package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// benchEnv turns TestL7Bench on; scripts/bench.sh (make bench) sets it.
const benchEnv = "VIGIL_BENCH"

// Bounds of TestL7Bench: rounds × modes × (pgbench seconds + one
// redis-benchmark run) is about two minutes on two busy cores.
const (
	benchRounds       = 3
	benchPgSeconds    = 5
	benchRedisN       = 10000
	benchRedisClients = 4
	benchPgClients    = 2
	// statements of one pgbench TPC-B-like transaction: BEGIN, three
	// UPDATE, SELECT, INSERT, END.
	pgbenchStatements = 7
)

// benchMode is one way the benchmark clients reach their servers.
type benchMode struct {
	name  string
	cg    string     // cgroup the clients run in
	agent *agentProc // nil for direct
}

// benchResult is one client run: throughput per test ("tps" for pgbench,
// "SET"/"GET" for redis-benchmark) and the agent's CPU per request.
type benchResult struct {
	rate     map[string]float64
	cpuPerRq float64 // µs of agent CPU (user+system) per request; 0 for direct
}

// TestL7Bench measures pgbench and redis-benchmark directly, through the
// proxy without L7 (splice), and through the L7 relay signing with ECDSA
// P-256 and with Ed25519, in alternating rounds, and prints each mode's
// median throughput and its median ratio to direct in the same round. It
// asserts nothing about speed. Run by make bench (VIGIL_BENCH=1).
func TestL7Bench(t *testing.T) {
	if os.Getenv(benchEnv) == "" {
		t.Skip("benchmark: set " + benchEnv + "=1 (make bench)")
	}
	requireRoot(t)
	requireTool(t, "psql")
	requireTool(t, "redis-benchmark")
	pgbench := pgbenchPath(t)
	pg := envPort(t, "VIGIL_E2E_PG_PORT", 54329)
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	requireServer(t, "PostgreSQL", pg)
	requireServer(t, "Redis", rd)

	db := strings.ReplaceAll(randName("vigil_bench_"), "-", "_")
	psql := func(sql string) *exec.Cmd {
		return exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", sql)
	}
	run(t, psql("create database "+db))
	t.Cleanup(func() { psql("drop database if exists " + db).Run() })
	pgArgs := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres"}
	run(t, exec.Command(pgbench, append(append([]string{"-i", "-s", "1", "-q"}, pgArgs...), db)...))

	edDir := t.TempDir()
	run(t, exec.Command(vigilBin, "keys", "generate", "--out-dir", edDir, "--type", string(keys.Ed25519), "--no-password"))
	plain := l7Policy(t, l7Rule("bench", "", pg, rd))
	inspect := l7Policy(t, l7Rule("bench", "{}", pg, rd))
	capt := capture(pg, rd)
	modes := []benchMode{{name: "direct", cg: testCgroup(t)}}
	for _, m := range []struct {
		name  string
		extra []string
	}{
		{"splice (no l7)", []string{"--policy", plain}},
		{"L7, ECDSA P-256", []string{"--policy", inspect}},
		{"L7, Ed25519", []string{"--policy", inspect, "--key", filepath.Join(edDir, keys.PrivateKeyFile)}},
	} {
		cg := testCgroup(t)
		a := startAgent(t, cg, "", 0, append([]string{"--capture", capt}, m.extra...)...)
		modes = append(modes, benchMode{name: m.name, cg: cg, agent: a})
	}

	pgRun := func(m benchMode) benchResult {
		args := append(append([]string{"-T", strconv.Itoa(benchPgSeconds), "-c", strconv.Itoa(benchPgClients), "-n"}, pgArgs...), db)
		before := agentCPU(t, m.agent)
		out := string(run(t, cgroupCmd(t.Context(), m.cg, pgbench, args...)))
		cpu := agentCPU(t, m.agent) - before
		tps := matchFloat(t, out, `tps = ([0-9.]+) \(without initial connection time\)`)
		tx := matchFloat(t, out, `number of transactions actually processed: ([0-9]+)`)
		r := benchResult{rate: map[string]float64{"tps": tps}}
		if m.agent != nil && tx > 0 {
			r.cpuPerRq = cpu / (tx * pgbenchStatements)
		}
		return r
	}
	redisRun := func(m benchMode) benchResult {
		before := agentCPU(t, m.agent)
		out := string(run(t, cgroupCmd(t.Context(), m.cg, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(rd),
			"-n", strconv.Itoa(benchRedisN), "-c", strconv.Itoa(benchRedisClients), "-t", "set,get", "-q", "--csv")))
		cpu := agentCPU(t, m.agent) - before
		r := benchResult{rate: map[string]float64{}}
		for _, test := range []string{"SET", "GET"} {
			r.rate[test] = matchFloat(t, out, `"`+test+`","([0-9.]+)"`)
		}
		if m.agent != nil {
			r.cpuPerRq = cpu / (2 * benchRedisN)
		}
		return r
	}

	// results[client][mode][round]
	results := map[string][][]benchResult{}
	clients := []struct {
		name string
		run  func(benchMode) benchResult
	}{{"pgbench", pgRun}, {"redis-benchmark", redisRun}}
	for _, c := range clients {
		results[c.name] = make([][]benchResult, len(modes))
	}
	for round := range benchRounds {
		for _, c := range clients {
			// Each round starts with another mode, so no mode always
			// follows the same one.
			for k := range modes {
				i := (k + round) % len(modes)
				r := c.run(modes[i])
				results[c.name][i] = append(results[c.name][i], r)
				t.Logf("round %d %s %s: %v, agent CPU %.1f µs/request", round+1, c.name, modes[i].name, r.rate, r.cpuPerRq)
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "L7 benchmark: median of %d alternating rounds; ratio = median over rounds of (mode / direct in the same round)\n", benchRounds)
	fmt.Fprintf(&b, "%-16s %-5s %-18s %12s %8s %16s\n", "client", "test", "mode", "median/s", "ratio", "agent µs/request")
	for _, c := range clients {
		var tests []string
		for k := range results[c.name][0][0].rate {
			tests = append(tests, k)
		}
		slices.Sort(tests)
		for _, test := range tests {
			for i, m := range modes {
				var rates, ratios, cpus []float64
				for round, r := range results[c.name][i] {
					rates = append(rates, r.rate[test])
					if d := results[c.name][0][round].rate[test]; d > 0 {
						ratios = append(ratios, r.rate[test]/d)
					}
					cpus = append(cpus, r.cpuPerRq)
				}
				cpu := "-"
				if m.agent != nil {
					cpu = fmt.Sprintf("%.1f", median(cpus))
				}
				fmt.Fprintf(&b, "%-16s %-5s %-18s %12.0f %8.2f %16s\n", c.name, test, m.name, median(rates), median(ratios), cpu)
			}
		}
	}
	t.Log("\n" + b.String())
	fmt.Print(b.String())
	for _, m := range modes[1:] {
		m.agent.stop()
	}
}

// agentCPU returns the user+system CPU time a's process has used, in
// microseconds; 0 for nil (direct).
func agentCPU(t *testing.T, a *agentProc) float64 {
	t.Helper()
	if a == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised comm: state is field 3, utime 14,
	// stime 15, in clock ticks (USER_HZ, 100 on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) * 1e6 / 100
}

// matchFloat returns the number the first group of re captures in out.
func matchFloat(t *testing.T, out, re string) float64 {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in:\n%s", re, out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%q in %q: %v", m[1], re, err)
	}
	return v
}

// median returns the median of xs (0 if empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
