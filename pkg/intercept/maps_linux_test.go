package intercept

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vigil-ebpf/vigil/bpf"
)

func TestPackAddr(t *testing.T) {
	tests := []struct {
		in, want string
		family   uint8
	}{
		{"10.1.2.3", "10.1.2.3", familyV4},
		{"::ffff:10.1.2.3", "10.1.2.3", familyV4},
		{"fd00::1", "fd00::1", familyV6},
	}
	for _, tt := range tests {
		family, words := packAddr(netip.MustParseAddr(tt.in))
		if got := unpackAddr(family, words); family != tt.family || got.String() != tt.want {
			t.Errorf("unpackAddr(packAddr(%s)) = %d, %v; want %d, %s", tt.in, family, got, tt.family, tt.want)
		}
	}
	// Network byte order in memory, as the kernel stores it.
	_, words := packAddr(netip.MustParseAddr("10.1.2.3"))
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], words[0])
	if b != [4]byte{10, 1, 2, 3} {
		t.Errorf("packAddr(10.1.2.3) memory = %v; want [10 1 2 3]", b)
	}
}

func TestDecodeEvent(t *testing.T) {
	var e bpf.InterceptEvent
	e.Kind = uint8(bpf.InterceptEventKindEVENT_UDP_SENDMSG)
	e.Proto = ipprotoUDP
	e.Origin.Family, e.Origin.DstAddr = packAddr(netip.MustParseAddr("10.9.8.7"))
	e.Origin.DstPort = 53
	e.Origin.Pid, e.Origin.Uid = 42, 1000
	copy(e.Origin.Comm[:], []int8{'d', 'i', 'g'})
	e.SrcFamily, e.SrcAddr = packAddr(netip.MustParseAddr("fd00::5"))
	e.SrcPort = 40000
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &e); err != nil {
		t.Fatal(err)
	}
	got, err := decodeEvent(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := Event{
		Kind:   EventUDPSendmsg,
		Proto:  "udp",
		Src:    netip.MustParseAddrPort("[fd00::5]:40000"),
		Origin: Origin{Dst: netip.MustParseAddrPort("10.9.8.7:53"), PID: 42, UID: 1000, Comm: "dig"},
	}
	if got != want {
		t.Errorf("decodeEvent = %+v; want %+v", got, want)
	}
	if _, err := decodeEvent(buf.Bytes()[:10]); err == nil {
		t.Error("decodeEvent(short) succeeded")
	}
}
