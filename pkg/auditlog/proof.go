package auditlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree has one leaf per entry: leaf index i is seq i+1 and its
// hash is LeafHash(canonical entry). Proofs follow RFC 6962 as implemented
// by transparency-dev/merkle; these helpers only fetch the node hashes it
// asks for, streaming the log so memory stays O(log n).

// InclusionProof returns the proof that leaf index (seq index+1) is in the
// tree of the first size entries of the log in dir.
func InclusionProof(ctx context.Context, dir string, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("auditlog: inclusion proof: index %d is not below tree size %d", index, size)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("auditlog: inclusion proof: %w", err)
	}
	return proofHashes(ctx, dir, nodes, size)
}

// ConsistencyProof returns the proof that the tree of size1 entries is a
// prefix of the tree of size2 entries: that nothing was changed, only added.
func ConsistencyProof(ctx context.Context, dir string, size1, size2 uint64) ([][]byte, error) {
	if size1 > size2 {
		return nil, fmt.Errorf("auditlog: consistency proof: size %d is larger than %d", size1, size2)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("auditlog: consistency proof: %w", err)
	}
	return proofHashes(ctx, dir, nodes, size2)
}

// VerifyInclusion checks an inclusion proof for the entry whose canonical
// bytes are given against a checkpoint root.
func VerifyInclusion(canonical []byte, index, size uint64, p [][]byte, root []byte) error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, LeafHash(canonical), p, root)
}

// VerifyConsistency checks that root2 (size2) extends root1 (size1).
func VerifyConsistency(size1, size2 uint64, p [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, root1, root2)
}

// TreeRoot computes the Merkle root of the first size entries of the log.
// In a pruned log it starts from the compact range that the prune record
// gives (docs/FORMAT.md, 13.5), which Verify checks; size must then be at
// least the last pruned seq.
func TreeRoot(ctx context.Context, dir string, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	r, from, err := treeStart(ctx, dir, size)
	if err != nil {
		return nil, err
	}
	err = forEachLeafFrom(ctx, dir, from, size, func(_ uint64, leaf []byte) error { return r.Append(leaf, nil) })
	if err != nil {
		return nil, err
	}
	if r.End() != size {
		return nil, fmt.Errorf("auditlog: the log holds %d entries, fewer than %d", r.End(), size)
	}
	return r.GetRootHash(nil)
}

// proofHashes computes the hash of every node the proof needs in one pass
// over the first size leaves: each node covers a contiguous leaf range, so
// a compact range per node is enough.
func proofHashes(ctx context.Context, dir string, nodes proof.Nodes, size uint64) ([][]byte, error) {
	type want struct {
		begin, end uint64
		r          *compact.Range
	}
	ws := make([]want, len(nodes.IDs))
	for i, id := range nodes.IDs {
		b, e := id.Coverage()
		ws[i] = want{begin: b, end: min(e, size), r: rangeFactory.NewEmptyRange(b)}
	}
	err := forEachLeaf(ctx, dir, size, func(idx uint64, leaf []byte) error {
		for i := range ws {
			if idx >= ws[i].begin && idx < ws[i].end {
				if err := ws[i].r.Append(leaf, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(ws))
	for i, w := range ws {
		if w.r.End() != w.end {
			return nil, fmt.Errorf("auditlog: the log holds fewer than %d entries", size)
		}
		// Proof nodes are perfect subtrees, so their compact range is one hash.
		hs := w.r.Hashes()
		if len(hs) != 1 {
			return nil, fmt.Errorf("auditlog: proof node [%d, %d) is not a perfect subtree", w.begin, w.end)
		}
		hashes[i] = hs[0]
	}
	out, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("auditlog: rehash proof: %w", err)
	}
	return out, nil
}

// forEachLeaf calls fn with the leaf index and leaf hash of the first size
// entries, checking that seqs are contiguous from 1.
func forEachLeaf(ctx context.Context, dir string, size uint64, fn func(uint64, []byte) error) error {
	return forEachLeafFrom(ctx, dir, 1, size, fn)
}

// forEachLeafFrom is forEachLeaf starting at seq from.
func forEachLeafFrom(ctx context.Context, dir string, from, size uint64, fn func(uint64, []byte) error) error {
	next := from
	err := Scan(ctx, dir, from, func(r Record) error {
		if r.Entry.Seq > size {
			return ErrStop
		}
		if r.Entry.Seq != next && next == from && from == 1 {
			return fmt.Errorf("auditlog: the log starts at seq %d (older entries were pruned or are missing): a proof over them needs the shipped archive", r.Entry.Seq)
		}
		if r.Entry.Seq != next {
			return fmt.Errorf("auditlog: expected seq %d, found %d: run vigil verify", next, r.Entry.Seq)
		}
		next++
		return fn(r.Entry.Seq-1, LeafHash(r.Canonical))
	})
	if err != nil && !errors.Is(err, ErrStop) {
		return err
	}
	return nil
}
