//go:build !linux

package intercept

import (
	"context"
	"net/netip"
)

var errNotLinux = &Error{Kind: ErrKernelTooOld, Msg: "connection interception needs Linux", Hint: hintKernel}

// Interceptor is the loaded and attached kernel side; it exists only on Linux.
type Interceptor struct{}

// CgroupRoot returns where the cgroup v2 hierarchy is mounted; there is none
// outside Linux.
func CgroupRoot() (string, error) {
	return "", &Error{Kind: ErrNoCgroupV2, Msg: "no cgroup v2 mount found: not Linux", Hint: hintCgroupV2}
}

// Open fails outside Linux.
func Open(ctx context.Context, cfg Config) (*Interceptor, error) { return nil, errNotLinux }

// Unpin fails outside Linux.
func Unpin(pinPath string) error { return errNotLinux }

// Lookup fails outside Linux.
func (i *Interceptor) Lookup(client netip.AddrPort) (Origin, bool, error) {
	return Origin{}, false, errNotLinux
}

// ReadEvents fails outside Linux.
func (i *Interceptor) ReadEvents(ctx context.Context, fn func(Event)) error { return errNotLinux }

// Stats fails outside Linux.
func (i *Interceptor) Stats() (Stats, error) { return Stats{}, errNotLinux }

// NetnsCookie returns 0 outside Linux.
func (i *Interceptor) NetnsCookie() uint64 { return 0 }

// AdoptedCounters is false outside Linux.
func (i *Interceptor) AdoptedCounters() bool { return false }

// Detach does nothing outside Linux.
func (i *Interceptor) Detach() error { return nil }

// StopEvents does nothing outside Linux.
func (i *Interceptor) StopEvents() error { return nil }

// Close does nothing outside Linux.
func (i *Interceptor) Close() error { return nil }

// SetDeny fails outside Linux.
func (i *Interceptor) SetDeny(t DenyTable) error { return errNotLinux }

// SetCapture fails outside Linux.
func (i *Interceptor) SetCapture(rules []CaptureRule) error { return errNotLinux }

// LookupNetns fails outside Linux.
func (i *Interceptor) LookupNetns(netns uint64, client netip.AddrPort) (Origin, bool, error) {
	return Origin{}, false, errNotLinux
}

// ServeNetns fails outside Linux.
func (i *Interceptor) ServeNetns(netns uint64) error { return errNotLinux }

// UnserveNetns fails outside Linux.
func (i *Interceptor) UnserveNetns(netns uint64) error { return errNotLinux }

// ServedNetns fails outside Linux.
func (i *Interceptor) ServedNetns() ([]uint64, error) { return nil, errNotLinux }

// PruneNetns fails outside Linux.
func (i *Interceptor) PruneNetns(keep map[uint64]bool) error { return errNotLinux }
