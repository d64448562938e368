package netns

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// fileStat identifies plain files as namespaces do: by device and inode,
// so hard links stand for two paths to one namespace.
func fileStat(path string) (ID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return ID{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

func TestScan(t *testing.T) {
	// Each tree maps paths to a namespace name; paths with the same name
	// are hard links of one file. want lists, per namespace name, the path
	// Scan reports it under.
	tests := []struct {
		name string
		tree map[string]string
		pids []int // nil: every numeric directory
		want map[string]string
	}{
		{
			name: "one namespace per process",
			tree: map[string]string{"proc/1/ns/net": "a", "proc/22/ns/net": "b"},
			want: map[string]string{"a": "proc/1/ns/net", "b": "proc/22/ns/net"},
		},
		{
			name: "shared namespace reported once, lowest pid first",
			tree: map[string]string{"proc/1/ns/net": "a", "proc/2/ns/net": "a", "proc/3/ns/net": "b"},
			want: map[string]string{"a": "proc/1/ns/net", "b": "proc/3/ns/net"},
		},
		{
			name: "bind mount preferred over a process path",
			tree: map[string]string{"proc/7/ns/net": "pod", "run/netns/cni-1": "pod"},
			want: map[string]string{"pod": "run/netns/cni-1"},
		},
		{
			name: "bind mount without a process",
			tree: map[string]string{"proc/1/ns/net": "host", "run/netns/idle": "idle"},
			want: map[string]string{"host": "proc/1/ns/net", "idle": "run/netns/idle"},
		},
		{
			name: "non-numeric entries and processes without ns skipped",
			tree: map[string]string{"proc/self/ns/net": "x", "proc/9/status": "", "proc/10/ns/net": "a"},
			want: map[string]string{"a": "proc/10/ns/net"},
		},
		{
			name: "pid list restricts processes",
			tree: map[string]string{"proc/1/ns/net": "a", "proc/2/ns/net": "b", "proc/3/ns/net": "c"},
			pids: []int{2, 99},
			want: map[string]string{"b": "proc/2/ns/net"},
		},
		{
			name: "nothing",
			tree: map[string]string{"proc/README": ""},
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := map[string]string{} // namespace name -> first file made
			ids := map[ID]string{}
			paths := slices.Sorted(func(yield func(string) bool) {
				for p := range tt.tree {
					if !yield(p) {
						return
					}
				}
			})
			for _, p := range paths {
				ns := tt.tree[p]
				full := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if f, ok := first[ns]; ok && ns != "" {
					if err := os.Link(f, full); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(full, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if ns != "" {
					first[ns] = full
					id, _ := fileStat(full)
					ids[id] = ns
				}
			}
			os.MkdirAll(filepath.Join(dir, "run", "netns"), 0o755)
			s := Scanner{ProcRoot: filepath.Join(dir, "proc"), BindDirs: []string{filepath.Join(dir, "run", "netns")}, Stat: fileStat}
			if tt.pids != nil {
				s.Pids = func() ([]int, error) { return tt.pids, nil }
			}
			found, err := s.Scan()
			if err != nil {
				t.Fatalf("Scan() error %v", err)
			}
			got := map[string]string{}
			for _, f := range found {
				rel, _ := filepath.Rel(dir, f.Path)
				got[ids[f.ID]] = rel
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Scan() = %v; want %v", got, tt.want)
			}
			for ns, p := range tt.want {
				if got[ns] != p {
					t.Errorf("Scan() reports %s at %q; want %q (all: %v)", ns, got[ns], p, got)
				}
			}
		})
	}
}

func TestScanMissingProcRoot(t *testing.T) {
	_, err := Scanner{ProcRoot: filepath.Join(t.TempDir(), "nope"), BindDirs: []string{}}.Scan()
	if err == nil {
		t.Fatal("Scan() of a missing proc root = nil error; want one")
	}
}

func TestPlan(t *testing.T) {
	a, b, c, host := ID{1, 10}, ID{1, 11}, ID{1, 12}, ID{1, 1}
	f := func(ids ...ID) []Found {
		out := make([]Found, len(ids))
		for i, id := range ids {
			out[i] = Found{ID: id, Path: id.String()}
		}
		return out
	}
	set := func(ids ...ID) map[ID]bool {
		m := map[ID]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	tests := []struct {
		name        string
		served      map[ID]bool
		found       []Found
		max         int
		wantAdopt   []ID
		wantRelease []ID
		wantSkipped int
	}{
		{"first scan", set(), f(host, a, b), 0, []ID{a, b}, nil, 0},
		{"steady", set(a, b), f(host, a, b), 0, nil, nil, 0},
		{"one gone one new", set(a, b), f(host, a, c), 0, []ID{c}, []ID{b}, 0},
		{"all gone", set(a, b), f(host), 0, nil, []ID{a, b}, 0},
		{"limit", set(), f(a, b, c), 2, []ID{a, b}, nil, 1},
		{"release makes room", set(a, b), f(b, c), 2, []ID{c}, []ID{a}, 0},
		{"excluded never adopted", set(), f(host), 0, nil, nil, 0},
		{"excluded released if served", set(host), f(host), 0, nil, []ID{host}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adopt, release, skipped := plan(tt.served, tt.found, []ID{host}, tt.max)
			var adoptIDs []ID
			for _, x := range adopt {
				adoptIDs = append(adoptIDs, x.ID)
			}
			if !slices.Equal(adoptIDs, tt.wantAdopt) || !slices.Equal(release, tt.wantRelease) || skipped != tt.wantSkipped {
				t.Errorf("plan() = adopt %v, release %v, skipped %d; want %v, %v, %d",
					adoptIDs, release, skipped, tt.wantAdopt, tt.wantRelease, tt.wantSkipped)
			}
		})
	}
}
