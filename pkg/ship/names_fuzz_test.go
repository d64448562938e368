package ship_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// FuzzObjectNames feeds an arbitrary bucket listing (one object name a
// line) to the name parsers `vigil verify --remote` and `vigil archive`
// use, and checks the gap report built from it: every seq from 1 to the
// last one a segment holds is in exactly one of a segment or a gap, and
// a parsed name prints back to the same range.
func FuzzObjectNames(f *testing.F) {
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	seg := func(first, last uint64) string { return ship.SegmentObject("vigil", "host-a", first, last, day) }
	f.Add(strings.Join([]string{seg(1, 10), seg(11, 20), seg(31, 40), ship.CheckpointObject("vigil", "host-a", 40)}, "\n"))
	f.Add(strings.Join([]string{seg(5, 10), seg(11, 10), seg(11, 12), seg(3, 30)}, "\n"))
	f.Add(seg(18446744073709551614, 18446744073709551614))
	f.Add("h/segments/2026/11/27/18446744073709551615-18446744073709551615.seg")
	f.Add("h/segments/2026/11/27/00000000000000000000-00000000000000000001.seg")
	f.Add("h/segments/2026/11/27/+0000000000000000001-00000000000000000001.seg")
	f.Add("h/checkpoints/00000000000000000000.ckpt\nh/checkpoints/99999999999999999999.ckpt\nsegments/x.seg")
	f.Fuzz(func(t *testing.T, listing string) {
		var segs []ship.SegmentRange
		for name := range strings.Lines(listing) {
			name = strings.TrimSuffix(name, "\n")
			if n, ok := ship.ParseCheckpointObject(name); ok {
				if again, ok := ship.ParseCheckpointObject(ship.CheckpointObject("p", "h", n)); !ok || again != n {
					t.Fatalf("checkpoint %q: size %d prints to a name that parses to %d, %v", name, n, again, ok)
				}
			}
			r, ok := ship.ParseSegmentObject(name)
			if !ok {
				continue
			}
			if r.First == 0 || r.Last+1 < r.First {
				t.Fatalf("ParseSegmentObject(%q) = %+v: not a seq range", name, r)
			}
			again, ok := ship.ParseSegmentObject(ship.SegmentObject("p", "h", r.First, r.Last, day))
			if !ok || again.First != r.First || again.Last != r.Last {
				t.Fatalf("segment %q: range %d-%d prints to a name that parses to %+v, %v", name, r.First, r.Last, again, ok)
			}
			segs = append(segs, r)
		}
		slices.SortStableFunc(segs, func(a, b ship.SegmentRange) int { return cmpUint(a.First, b.First) })
		gaps := ship.Gaps(segs)
		// Walk the covered ranges and the gaps together in seq order:
		// they must tile 1..end without overlap.
		type span struct{ lo, hi uint64 }
		var spans []span
		end := uint64(0)
		for _, s := range segs {
			end = max(end, s.Last) // an empty segment (Last = First-1) still marks where the log reached
			if s.Last >= s.First {
				spans = append(spans, span{s.First, s.Last})
			}
		}
		for _, g := range gaps {
			if g[0] == 0 || g[0] > g[1] {
				t.Fatalf("Gaps(%v) holds the bad range %v", segs, g)
			}
			spans = append(spans, span{g[0], g[1]})
		}
		slices.SortFunc(spans, func(a, b span) int { return cmpUint(a.lo, b.lo) })
		next := uint64(1)
		for _, sp := range spans {
			if sp.lo > next {
				t.Fatalf("Gaps(%v) = %v: seqs %d..%d are in neither", segs, gaps, next, sp.lo-1)
			}
			if next = max(next, sp.hi+1); next == 0 {
				break // reached the top of the seq space
			}
		}
		for _, g := range gaps {
			for _, s := range segs {
				if s.Last >= s.First && g[0] <= s.Last && s.First <= g[1] {
					t.Fatalf("gap %v overlaps segment %+v", g, s)
				}
			}
			if g[1] > end {
				t.Fatalf("gap %v ends after the last segment (%d)", g, end)
			}
		}
	})
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// FuzzOpenCheckpoint feeds arbitrary bytes as the newest checkpoint note
// `vigil verify --remote` downloads: OpenCheckpoint must verify it with
// the public key or say why not, and the size reader must not panic.
func FuzzOpenCheckpoint(f *testing.F) {
	seed := sha256.Sum256([]byte("vigil ship fuzz key"))
	sv, err := signature.LoadSignerVerifier(ed25519.NewKeyFromSeed(seed[:]), crypto.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		f.Fatal(err)
	}
	ns, err := keys.NoteSigner("vigil/host-a", sv)
	if err != nil {
		f.Fatal(err)
	}
	root := sha256.Sum256([]byte("root"))
	valid, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: "vigil/host-a", Size: 7, Hash: root[:]}.Marshal())}, ns)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := ship.OpenCheckpoint(valid, pub); err != nil {
		f.Fatalf("the valid seed does not verify: %v", err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(bytes.Replace(valid, []byte("\n7\n"), []byte("\n8\n"), 1))
	f.Add([]byte("\nx\n"))
	f.Add([]byte("vigil/host-a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ship.OpenCheckpoint(b, pub)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ship: checkpoint") {
				t.Fatalf("OpenCheckpoint error %q does not say what is wrong", err)
			}
			return
		}
		if n, err := ship.CheckpointSize(b); err != nil || n != c.Size {
			t.Fatalf("verified checkpoint of size %d reads as %d, %v", c.Size, n, err)
		}
	})
}
