package auditlog

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ChainHash computes hash_n = SHA-256(hash_{n-1} || canonical(entry_n)).
func ChainHash(prev [32]byte, canonical []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// LeafHash is the RFC 6962 leaf hash of an entry: SHA-256(0x00 || canonical).
// Entry seq s is leaf index s-1.
func LeafHash(canonical []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(canonical) }

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// chainState follows the chain and Merkle tree entry by entry; recovery and
// verification both use it so they agree on what a valid log is.
type chainState struct {
	next uint64   // seq expected next
	prev [32]byte // hash of entry next-1
	tree *compact.Range
}

func newChainState() *chainState {
	return &chainState{next: 1, tree: rangeFactory.NewEmptyRange(0)}
}

// size is the number of entries (leaves) so far.
func (c *chainState) size() uint64 { return c.next - 1 }

// root returns the Merkle root over all entries so far.
func (c *chainState) root() ([]byte, error) {
	if c.tree.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return c.tree.GetRootHash(nil)
}

// chainError says why an entry does not continue the chain.
type chainError struct {
	Kind   string // gap, reorder, chain
	Reason string
}

func (e *chainError) Error() string { return e.Reason }

// add checks that an entry with the given seq, canonical bytes and stored
// hash continues the chain, then appends it.
func (c *chainState) add(seq uint64, canonical []byte, stored [32]byte) error {
	if seq != c.next {
		if seq > c.next {
			return &chainError{Kind: "gap", Reason: fmt.Sprintf("gap: expected seq %d, found %d (%d entries missing)", c.next, seq, seq-c.next)}
		}
		return &chainError{Kind: "reorder", Reason: fmt.Sprintf("out of order: expected seq %d, found %d (duplicate or reordered entry)", c.next, seq)}
	}
	h := ChainHash(c.prev, canonical)
	if h != stored {
		return &chainError{Kind: "chain", Reason: "chain hash mismatch: the entry or one before it was modified"}
	}
	if err := c.tree.Append(LeafHash(canonical), nil); err != nil {
		return fmt.Errorf("auditlog: merkle append: %w", err)
	}
	c.prev = h
	c.next++
	return nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// follow checks seq and hash like add but leaves the tree alone: for
// entries already covered by the checkpoint the tree was resumed from.
func (c *chainState) follow(seq uint64, canonical []byte, stored [32]byte) error {
	if seq != c.next {
		return &chainError{Kind: "gap", Reason: fmt.Sprintf("expected seq %d, found %d", c.next, seq)}
	}
	if ChainHash(c.prev, canonical) != stored {
		return &chainError{Kind: "chain", Reason: "chain hash mismatch: the entry or one before it was modified"}
	}
	c.prev = stored
	c.next++
	return nil
}
