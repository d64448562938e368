package intercept

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/vigil-ebpf/vigil/bpf"
)

// SetDeny puts t in force for new connects. The new table is written
// completely into a fresh map and then swapped into the programs' view
// with one update, so each connect() is decided by the whole old table
// or the whole new one, never a mix; the kernel frees the old table once
// no program uses it. An empty table denies nothing. On error the table
// in force stays.
func (i *Interceptor) SetDeny(t DenyTable) error {
	entries, err := t.check()
	if err != nil {
		return err
	}
	i.denyMu.Lock()
	defer i.denyMu.Unlock()
	if len(entries) == 0 {
		if err := i.objs.VigilDeny.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("intercept: clear deny table: %w", err)
		}
		i.denyEntries = 0
		return nil
	}
	table, err := ebpf.NewMap(i.denySpec)
	if err != nil {
		return classify("create deny table", err)
	}
	defer table.Close() // the outer map keeps its own reference
	for p, segs := range entries {
		key := captureKey(p)
		val := bpf.InterceptDenyVal{Gen: t.Generation, N: uint32(len(segs))}
		for j, s := range segs {
			v := &val.Segs[j]
			v.PortLo, v.PortHi = s.PortLow, s.PortHigh
			v.UidLo, v.UidHi = s.UIDLow, s.UIDHigh
			v.GidLo, v.GidHi = s.GIDLow, s.GIDHigh
			v.Rule = s.Rule
			if s.Deny {
				v.Deny, v.Err = 1, uint16(s.Errno)
			}
		}
		if err := table.Put(&key, &val); err != nil {
			return fmt.Errorf("intercept: deny table: put %s: %w", p, err)
		}
	}
	if err := i.objs.VigilDeny.Put(uint32(0), table); err != nil {
		return fmt.Errorf("intercept: swap deny table: %w", err)
	}
	i.denyEntries = len(entries)
	return nil
}
