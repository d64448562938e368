package eventquery

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestReadOnlyArchive queries a log on a read-only mount: nothing can be
// written beside it, so the index goes to the user's cache directory and
// is used from there by the next query.
func TestReadOnlyArchive(t *testing.T) {
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not root"
	}
	testenv.Need(t, "root (bind mounts)", reason)
	src := testLog(t, testenv.Signer(t), 2000)
	ro := t.TempDir()
	if err := unix.Mount(src, ro, "", unix.MS_BIND, ""); err != nil {
		testenv.Need(t, "bind mounts", err.Error())
	}
	t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		testenv.Need(t, "read-only remounts", err.Error())
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	s := &Source{Dir: ro}
	_, st := runQuery(t, s, url.Values{"pid": {"3919"}})
	if st.Built != st.Segments-1 {
		t.Errorf("built %d indexes on a read-only archive, want %d in the cache", st.Built, st.Segments-1)
	}
	if _, err := os.Stat(filepath.Join(ro, "index")); err == nil {
		t.Error("an index directory appeared inside the read-only archive")
	}
	found, _ := filepath.Glob(filepath.Join(cache, "vigil", "index", "*", "*"+idxSuffix))
	if len(found) != st.Segments-1 {
		t.Errorf("%d index files in the cache, want %d", len(found), st.Segments-1)
	}
	_, st = runQuery(t, s, url.Values{"pid": {"3919"}})
	if st.Built != 0 || st.Indexed+st.Skipped != st.Segments-1 {
		t.Errorf("second query %+v: want the cached indexes used", st)
	}
}
