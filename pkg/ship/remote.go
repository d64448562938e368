package ship

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/transparency-dev/formats/log"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// Diverged is the VerifyError kind for a log that does not extend a
// checkpoint shipped off the host: its history was rewritten.
const Diverged = "diverged"

// OpenCheckpoint checks a shipped checkpoint note's signature with pub and
// returns what it commits to.
func OpenCheckpoint(note []byte, pub crypto.PublicKey) (*log.Checkpoint, error) {
	text, _, ok := strings.Cut(string(note), "\n")
	if !ok || text == "" {
		return nil, fmt.Errorf("ship: checkpoint note has no origin line")
	}
	nv, err := keys.NoteVerifier(text, pub)
	if err != nil {
		return nil, fmt.Errorf("ship: checkpoint: %w", err)
	}
	c, _, _, err := log.ParseCheckpoint(note, text, nv)
	if err != nil {
		return nil, fmt.Errorf("ship: checkpoint signature or format invalid: %w", err)
	}
	return c, nil
}

// CheckExtends proves that the log in dir, holding entries 1..size, still
// extends the shipped checkpoint c: a consistency proof from c's tree to
// the local tree, computed from the local entries and checked against c's
// signed root. A local log shorter than c was truncated behind it; a proof
// that does not verify means history was changed. Both come back as a
// *auditlog.VerifyError.
func CheckExtends(ctx context.Context, dir string, size uint64, c *log.Checkpoint) error {
	if size < c.Size {
		return &auditlog.VerifyError{Kind: auditlog.Truncated, Seq: size + 1,
			Reason: fmt.Sprintf("a checkpoint shipped off the host covers %d entries but the local log holds only %d: entries were removed from the end", c.Size, size)}
	}
	// A pruned local log cannot produce a consistency proof over entries
	// it no longer holds; the prune record's compact range (checked by
	// Verify) still gives the root at the checkpoint's size, and equal
	// roots prove the same thing.
	pruned, err := auditlog.PrunedThrough(ctx, dir)
	if err != nil {
		return err
	}
	if pruned > 0 {
		if c.Size < pruned {
			return fmt.Errorf("ship: the shipped checkpoint (size %d) is older than the local log's prune point (seq %d): verify the archive instead (vigil archive pull, then vigil verify)", c.Size, pruned)
		}
		root, err := auditlog.TreeRoot(ctx, dir, c.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, c.Hash) {
			return &auditlog.VerifyError{Kind: Diverged, Seq: c.Size,
				Reason: fmt.Sprintf("the local Merkle root at size %d differs from the shipped checkpoint's (%s): the local log was changed", c.Size, hex.EncodeToString(c.Hash))}
		}
		return nil
	}
	root, err := auditlog.TreeRoot(ctx, dir, size)
	if err != nil {
		return err
	}
	p, err := auditlog.ConsistencyProof(ctx, dir, c.Size, size)
	if err != nil {
		return err
	}
	if err := auditlog.VerifyConsistency(c.Size, size, p, c.Hash, root); err != nil {
		return &auditlog.VerifyError{Kind: Diverged, Seq: c.Size,
			Reason: fmt.Sprintf("the local log does not extend the checkpoint shipped off the host (size %d, root %s): its first %d entries were changed (%v)", c.Size, hex.EncodeToString(c.Hash), c.Size, err)}
	}
	if size == c.Size && !bytes.Equal(root, c.Hash) {
		return &auditlog.VerifyError{Kind: Diverged, Seq: c.Size, Reason: "the local Merkle root differs from the shipped checkpoint's"}
	}
	return nil
}
