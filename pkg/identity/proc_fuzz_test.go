package identity

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseStartTime feeds arbitrary bytes as /proc/PID/stat: the start
// time parser must return field 22 counted from the last ')' or
// errStat, never panic. Regression seeds: testdata/fuzz/FuzzParseStartTime.
func FuzzParseStartTime(f *testing.F) {
	for _, s := range []string{
		"42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 0 18446744073709551615\n",
		"42 (a) b (c)) R 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 55 1000 0",
		"42 (bash) S 1 42",
		"42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 18446744073709551616 1",
		"42 (bash)",
		")",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stat []byte) {
		got, err := parseStartTime(stat)
		if err != nil {
			if err != errStat {
				t.Fatalf("parseStartTime(%q) error %v; want errStat", stat, err)
			}
			return
		}
		// Reference: fields after the comm, split on single spaces as the
		// kernel writes them; starttime is the 20th of those (field 22).
		i := bytes.LastIndexByte(stat, ')')
		fields := strings.Split(strings.TrimPrefix(string(stat[i+1:]), " "), " ")
		if len(fields) < 20 {
			t.Fatalf("parseStartTime(%q) = %d from only %d fields", stat, got, len(fields))
		}
		if want, err := strconv.ParseUint(fields[19], 10, 64); err == nil && want != got {
			t.Fatalf("parseStartTime(%q) = %d; field 22 is %d", stat, got, want)
		}
	})
}

// FuzzProcText feeds arbitrary bytes as /proc/PID/cmdline and
// /proc/PID/cgroup: the command line comes out as one line without NULs,
// cut ones end in TruncMark without a broken UTF-8 sequence before it, and
// a cgroup v2 path is one line.
func FuzzProcText(f *testing.F) {
	for _, s := range []string{
		"psql\x00-h\x00db\x00",
		"/usr/bin/python3\x00-c\x00print('é')\x00\x00",
		"\x00\x00\x00",
		"a\xc3",
		"a\xe2\x80",
		"0::/system.slice/nginx.service\n",
		"12:cpu:/x\n0::/kubepods/pod1/abc (deleted)\n",
		"0::",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, truncated bool) {
		in := bytes.Clone(raw)
		s := formatCmdline(raw, truncated)
		if !bytes.Equal(raw, in) {
			t.Fatalf("formatCmdline changed its input %q to %q", in, raw)
		}
		if strings.Contains(s, "\x00") {
			t.Fatalf("formatCmdline(%q) = %q: a NUL is left", raw, s)
		}
		if truncated {
			body, ok := strings.CutSuffix(s, TruncMark)
			if !ok {
				t.Fatalf("formatCmdline(%q, cut) = %q: no %s at the end", raw, s, TruncMark)
			}
			if utf8.Valid(raw) && !utf8.ValidString(body) {
				t.Fatalf("formatCmdline(%q, cut) = %q: the cut broke a UTF-8 sequence", raw, s)
			}
		}
		if p, ok := cgroupV2Path(raw); ok && strings.Contains(p, "\n") {
			t.Fatalf("cgroupV2Path(%q) = %q: more than one line", raw, p)
		}
	})
}
