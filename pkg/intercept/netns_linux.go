package intercept

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ErrNetnsFull is returned by ServeNetns when Config.MaxNetns namespaces
// are served already.
var ErrNetnsFull = errors.New("intercept: served network namespaces at the limit (Config.MaxNetns)")

// ServeNetns makes the connect hooks redirect TCP connects from the
// network namespace with cookie netns to loopback at the proxy port inside
// that namespace, as they do on the host. Call it only once a proxy
// listener is bound there (on 127.0.0.1 and, unless IPv6 is off, ::1):
// from then on connects that were reported as EventOtherNetns are
// redirected. Serving the agent's own namespace is a no-op.
func (i *Interceptor) ServeNetns(netns uint64) error {
	if netns == i.netns {
		return nil
	}
	one := uint8(1)
	if err := i.objs.VigilNetns.Put(netns, one); err != nil {
		if errors.Is(err, unix.E2BIG) { // a full hash map
			return fmt.Errorf("%w: %d", ErrNetnsFull, i.cfg.MaxNetns)
		}
		return fmt.Errorf("intercept: serve netns %d: %w", netns, err)
	}
	return nil
}

// UnserveNetns stops redirecting connects from the namespace with cookie
// netns; call it before closing the listeners there. Connections already
// redirected keep their tuple entries until looked up or closed.
func (i *Interceptor) UnserveNetns(netns uint64) error {
	if err := i.objs.VigilNetns.Delete(netns); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("intercept: unserve netns %d: %w", netns, err)
	}
	return nil
}

// ServedNetns returns the cookies of the namespaces served now. After an
// adopted pinned map (fail-closed restart) it lists the previous agent's
// namespaces too, until PruneNetns drops them.
func (i *Interceptor) ServedNetns() ([]uint64, error) {
	var (
		key    uint64
		val    uint8
		served []uint64
	)
	it := i.objs.VigilNetns.Iterate()
	for it.Next(&key, &val) {
		served = append(served, key)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("intercept: served netns: %w", err)
	}
	return served, nil
}

// PruneNetns stops serving every namespace whose cookie keep does not
// contain; the agent calls it after its first discovery so that entries
// a previous agent left in a pinned map do not outlive their listeners.
func (i *Interceptor) PruneNetns(keep map[uint64]bool) error {
	served, err := i.ServedNetns()
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range served {
		if !keep[c] {
			errs = append(errs, i.UnserveNetns(c))
		}
	}
	return errors.Join(errs...)
}
