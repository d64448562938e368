package intercept

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/vigil-ebpf/vigil/bpf"
)

// ReadEvents calls fn for each event the kernel reports, in order, until
// ctx ends or the Interceptor is closed; then it returns nil. fn runs on the
// calling goroutine and should not block for long: while it does, events
// queue in the kernel's ring buffer, and when that is full they are dropped
// and counted (Stats.EventsLost). Only one ReadEvents may run at a time.
func (i *Interceptor) ReadEvents(ctx context.Context, fn func(Event)) error {
	if !i.readMu.TryLock() {
		return errors.New("intercept: ReadEvents is already running")
	}
	defer i.readMu.Unlock()

	// Flush wakes a blocked read; it then drains what is queued and reports
	// ErrFlushed, which ends the loop once ctx is done.
	stop := context.AfterFunc(ctx, func() { _ = i.events.Flush() })
	defer stop()

	var rec ringbuf.Record
	for {
		err := i.events.ReadInto(&rec)
		switch {
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return nil
			}
			continue
		case err != nil:
			return fmt.Errorf("intercept: read events: %w", err)
		}
		ev, err := decodeEvent(rec.RawSample)
		if err != nil {
			i.log.Warn("undecodable kernel event", "error", err, "size", len(rec.RawSample))
			continue
		}
		fn(ev)
	}
}

var eventKinds = map[uint8]EventKind{
	uint8(bpf.InterceptEventKindEVENT_UDP_CONNECT):  EventUDPConnect,
	uint8(bpf.InterceptEventKindEVENT_UDP_SENDMSG):  EventUDPSendmsg,
	uint8(bpf.InterceptEventKindEVENT_OTHER_NETNS):  EventOtherNetns,
	uint8(bpf.InterceptEventKindEVENT_MAP_FULL):     EventMapFull,
	uint8(bpf.InterceptEventKindEVENT_MARK_BYPASS):  EventMarkBypass,
	uint8(bpf.InterceptEventKindEVENT_BOUND_DEVICE): EventBoundDevice,
	uint8(bpf.InterceptEventKindEVENT_KERNEL_DENY):  EventKernelDeny,
}

const (
	ipprotoTCP = 6
	ipprotoUDP = 17
)

func decodeEvent(raw []byte) (Event, error) {
	var e bpf.InterceptEvent
	if len(raw) < binary.Size(&e) {
		return Event{}, fmt.Errorf("event is %d bytes, want %d", len(raw), binary.Size(&e))
	}
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &e); err != nil {
		return Event{}, err
	}
	kind, ok := eventKinds[e.Kind]
	if !ok {
		return Event{}, fmt.Errorf("unknown event kind %d", e.Kind)
	}
	ev := Event{Kind: kind, Origin: decodeOrigin(&e.Origin)}
	switch e.Proto {
	case ipprotoTCP:
		ev.Proto = "tcp"
	case ipprotoUDP:
		ev.Proto = "udp"
	}
	if kind == EventKernelDeny {
		ev.Rule, ev.Generation, ev.Errno = e.DenyRule, e.DenyGen, syscall.Errno(e.DenyErrno)
	}
	if e.SrcFamily != 0 {
		ev.Src = netip.AddrPortFrom(unpackAddr(e.SrcFamily, e.SrcAddr), e.SrcPort)
	}
	return ev, nil
}
