package eventquery

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

func sampleEntries() []auditlog.Entry {
	var out []auditlog.Entry
	for i := range 40 {
		e := SyntheticEntry(i, t0, time.Second)
		e.Seq = uint64(i + 1)
		e.Host = "node-1"
		out = append(out, e)
	}
	out[3].Attrs = map[string]string{"statement": strings.Repeat("SELECT \"x\",\n", 50), "comma": "a,b"}
	out[4].Identity = auditlog.Identity{} // unknown identity
	out[4].Identity.Comm = "ünïcødé-very-long-name"
	return out
}

func encodeAll(t *testing.T, format string, es []auditlog.Entry) string {
	t.Helper()
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, format, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if err := enc.Encode(&es[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestJSONRoundTrip(t *testing.T) {
	es := sampleEntries()
	out := encodeAll(t, "json", es)
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		var e auditlog.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		want, _ := json.Marshal(es[i])
		got, _ := json.Marshal(e)
		if !bytes.Equal(got, want) {
			t.Errorf("entry %d: got %s, want %s", i, got, want)
		}
		i++
	}
	if i != len(es) {
		t.Errorf("got %d lines, want %d", i, len(es))
	}
}

func TestCSVRoundTrip(t *testing.T) {
	es := sampleEntries()
	rows, err := csv.NewReader(strings.NewReader(encodeAll(t, "csv", es))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(es)+1 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("got %d rows, header %v", len(rows), rows[0])
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for i, r := range rows[1:] {
		e := es[i]
		if r[col["seq"]] != strconv.FormatUint(e.Seq, 10) || r[col["dst"]] != e.Dst || r[col["comm"]] != e.Identity.Comm {
			t.Errorf("row %d = %v", i, r)
		}
		tm, err := time.Parse(time.RFC3339Nano, r[col["time"]])
		if err != nil || !tm.Equal(e.Time) {
			t.Errorf("row %d time %q: %v", i, r[col["time"]], err)
		}
		var attrs map[string]string
		if a := r[col["attrs"]]; a != "" {
			if err := json.Unmarshal([]byte(a), &attrs); err != nil {
				t.Errorf("row %d attrs: %v", i, err)
			}
		}
		if len(attrs) != len(e.Attrs) || attrs["statement"] != e.Attrs["statement"] {
			t.Errorf("row %d attrs = %v, want %v", i, attrs, e.Attrs)
		}
		if e.Identity.PID == 0 && r[col["pid"]] != "" {
			t.Errorf("row %d: unknown pid printed as %q", i, r[col["pid"]])
		}
	}
	// An empty result still has its header.
	if out := encodeAll(t, "csv", nil); strings.TrimSpace(out) != strings.Join(CSVHeader, ",") {
		t.Errorf("empty csv = %q", out)
	}
}

func TestTable(t *testing.T) {
	es := sampleEntries()
	out := encodeAll(t, "table", es)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(es)+1 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("got %d lines, first %q", len(lines), lines[0])
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line %d is %d columns: %q", i, n, l)
		}
	}
	if !strings.Contains(lines[1], "03-10 12:00:00") || !strings.Contains(lines[1], "app-0") {
		t.Errorf("first row %q lacks time or pod", lines[1])
	}
	// Columns line up: DST starts at the same place on every line.
	at := strings.Index(lines[0], "DST")
	for i, l := range lines[1:] {
		if r := []rune(l); len(r) > at && r[at-1] != ' ' {
			t.Errorf("line %d: no column break before DST: %q", i+1, l)
		}
	}
	if _, err := NewEncoder(&bytes.Buffer{}, "yaml", nil); err == nil {
		t.Error("NewEncoder(yaml) succeeded")
	}
}
