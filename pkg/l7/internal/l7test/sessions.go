package l7test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// CaptureEnv names the variable that, set to 1, makes session tests
// record real client sessions again (and rewrite their golden files)
// before replaying them.
const CaptureEnv = "VIGIL_L7_CAPTURE"

// Capturing reports whether CaptureEnv asks for new recordings.
func Capturing() bool { return os.Getenv(CaptureEnv) == "1" }

// SaveSession writes a recorded session as testdata/sessions/NAME.session
// and, unless a side sent more than 16 KiB (which slows fuzzing down more
// than it teaches it), as the fuzz seed testdata/fuzz/FuzzParse/NAME.
// seed, when not nil, is what to use as the fuzz seed instead of steps.
func SaveSession(t testing.TB, name string, steps, seed []Step) {
	t.Helper()
	if len(steps) == 0 {
		t.Fatalf("session %s recorded nothing", name)
	}
	for _, dir := range []string{"testdata/sessions", "testdata/fuzz/FuzzParse"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSession(filepath.Join("testdata/sessions", name+".session"), steps); err != nil {
		t.Fatal(err)
	}
	if seed == nil {
		seed = steps
	}
	client, server := Join(seed)
	if len(client) > 16<<10 || len(server) > 16<<10 {
		return
	}
	if err := WriteFuzzSeed(filepath.Join("testdata/fuzz/FuzzParse", name), client, server); err != nil {
		t.Fatal(err)
	}
}

// ReplaySessions runs every testdata/sessions/*.session through fresh
// parsers at every split point and compares what they report with
// NAME.golden beside it; with update it writes the golden files instead.
// It fails if there are no sessions, so recordings stay committed.
func ReplaySessions(t *testing.T, newParser func() l7.Parser, update bool) {
	files, err := filepath.Glob("testdata/sessions/*.session")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded sessions in testdata/sessions (run with %s=1): %v", CaptureEnv, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".session")
		t.Run(name, func(t *testing.T) {
			steps, err := ReadSession(f)
			if err != nil {
				t.Fatal(err)
			}
			got := CheckSplits(t, newParser, steps)
			if got.Left != [2]int{} {
				t.Errorf("%v bytes left unconsumed", got.Left)
			}
			text := got.String() + "\n"
			golden := strings.TrimSuffix(f, ".session") + ".golden"
			if update {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if text != string(want) {
				t.Errorf("events:\n%s\nwant (%s):\n%s", text, golden, want)
			}
		})
	}
}
