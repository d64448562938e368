package netns

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchLinks calls fn for every network link that appears in or leaves
// the calling thread's namespace (a pod's veth pair is created when it
// starts and deleted when it stops), until ctx ends. The returned channel is closed once
// the watch has stopped and released its socket.
func WatchLinks(ctx context.Context, fn func()) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	stop := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(updates, stop, netlink.LinkSubscribeOptions{})
	if err != nil {
		close(stop)
		return nil, fmt.Errorf("netns: watch links: %w", err)
	}
	go func() {
		<-ctx.Done()
		close(stop) // closes the socket; the receiver then closes updates
	}()
	go func() {
		defer close(done)
		for u := range updates {
			if (u.Header.Type == unix.RTM_NEWLINK || u.Header.Type == unix.RTM_DELLINK) && ctx.Err() == nil {
				fn()
			}
		}
	}()
	return done, nil
}
