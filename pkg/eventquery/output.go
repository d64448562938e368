package eventquery

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Formats lists the output formats NewEncoder accepts.
var Formats = []string{"table", "json", "csv"}

// Encoder writes entries in one output format. Call Flush at the end (and
// after each entry when following, so lines appear at once).
type Encoder interface {
	Encode(e *auditlog.Entry) error
	Flush() error
}

// NewEncoder returns an encoder for format: "table" (aligned, local times,
// at most 100 columns), "json" (one auditlog.Entry object per line) or
// "csv" (a header row, then one row per entry). loc is the time zone of
// the table (nil: local).
func NewEncoder(w io.Writer, format string, loc *time.Location) (Encoder, error) {
	if loc == nil {
		loc = time.Local
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case "table", "":
		return &tableEncoder{w: bw, loc: loc}, nil
	case "json":
		return &jsonEncoder{w: bw, enc: json.NewEncoder(bw)}, nil
	case "csv":
		return &csvEncoder{w: csv.NewWriter(bw), bw: bw}, nil
	}
	return nil, fmt.Errorf("eventquery: unknown output format %q: use %s", format, strings.Join(Formats, ", "))
}

type jsonEncoder struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func (j *jsonEncoder) Encode(e *auditlog.Entry) error { return j.enc.Encode(e) }
func (j *jsonEncoder) Flush() error                   { return j.w.Flush() }

// CSVHeader is the first row of -o csv.
var CSVHeader = []string{"seq", "time", "type", "host", "pid", "uid", "gid", "comm", "exe", "cgroup",
	"container_id", "pod", "namespace", "proto", "src", "dst", "decision", "rule", "attrs"}

type csvEncoder struct {
	w      *csv.Writer
	bw     *bufio.Writer
	header bool
}

func (c *csvEncoder) Encode(e *auditlog.Entry) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	id := &e.Identity
	attrs := ""
	if len(e.Attrs) > 0 {
		b, err := json.Marshal(e.Attrs) // sorted keys
		if err != nil {
			return err
		}
		attrs = string(b)
	}
	num := func(n uint64) string {
		if id.PID == 0 && n == 0 {
			return ""
		}
		return strconv.FormatUint(n, 10)
	}
	return c.w.Write([]string{
		strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), string(e.Type), e.Host,
		num(id.PID), num(id.UID), num(id.GID), id.Comm, id.Exe, id.CgroupPath, id.ContainerID,
		fieldValue(e, fPod), fieldValue(e, fNamespace), e.Proto, e.Src, e.Dst, string(e.Decision), e.Rule, attrs,
	})
}

func (c *csvEncoder) Flush() error {
	if !c.header { // an empty result still gets its header, so parsers see the columns
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// Table column widths; with single spaces between them a row is at most
// 100 columns. Long values are cut with "…".
const (
	wSeq    = 8
	wTime   = 14 // 01-02 15:04:05
	wType   = 11
	wWho    = 20
	wDst    = 21 // 255.255.255.255:65535
	wDetail = 100 - (wSeq + wTime + wType + wWho + wDst + 5)
)

type tableEncoder struct {
	w      *bufio.Writer
	loc    *time.Location
	header bool
}

func (t *tableEncoder) row(cols ...string) error {
	widths := []int{wSeq, wTime, wType, wWho, wDst, wDetail}
	var b strings.Builder
	for i, c := range cols {
		c = fit(c, widths[i])
		if i == len(cols)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+1))
	}
	_, err := t.w.WriteString(strings.TrimRight(b.String(), " ") + "\n")
	return err
}

// fit cuts s to n runes, marking the cut, and makes it one line.
func fit(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func (t *tableEncoder) Encode(e *auditlog.Entry) error {
	if !t.header {
		t.header = true
		if err := t.row("SEQ", "TIME", "TYPE", "WHO", "DST", "DETAIL"); err != nil {
			return err
		}
	}
	return t.row(strconv.FormatUint(e.Seq, 10), e.Time.In(t.loc).Format("01-02 15:04:05"), string(e.Type),
		who(e), e.Dst, detail(e))
}

func (t *tableEncoder) Flush() error { return t.w.Flush() }

// who is the actor: pod (namespace/pod) when known, then comm[pid] and uid.
func who(e *auditlog.Entry) string {
	id := &e.Identity
	var parts []string
	if pod := fieldValue(e, fPod); pod != "" {
		if ns := fieldValue(e, fNamespace); ns != "" {
			pod = ns + "/" + pod
		}
		parts = append(parts, pod)
	}
	if id.PID != 0 {
		parts = append(parts, fmt.Sprintf("%s[%d]", id.Comm, id.PID))
		if len(parts) == 1 {
			parts = append(parts, "uid="+strconv.FormatUint(id.UID, 10))
		}
	}
	return strings.Join(parts, " ")
}

// detailKeys are the attributes worth a glance, most telling first.
var detailKeys = []string{"statement", "query", "command", "method", "path", "sni", "host", "reason", "error"}

// detail is what is unusual about the verdict (a deny or audit and its
// rule; allow by the default rule says nothing) and the most telling
// attributes.
func detail(e *auditlog.Entry) string {
	var parts []string
	if e.Decision != "" && e.Decision != auditlog.Allow {
		parts = append(parts, strings.ToUpper(string(e.Decision)))
	}
	if e.Rule != "" && (e.Rule != "default" || len(parts) > 0) {
		parts = append(parts, e.Rule+":")
	}
	seen := 0
	for _, k := range detailKeys {
		if v := e.Attrs[k]; v != "" {
			parts = append(parts, v)
			seen++
		}
	}
	if seen == 0 && len(e.Attrs) > 0 {
		for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
			parts = append(parts, k+"="+e.Attrs[k])
		}
	}
	return strings.TrimSuffix(strings.Join(parts, " "), ":")
}
