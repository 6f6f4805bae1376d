package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// The embedded object parses, and its maps are pinned as egressd.h says:
// state that must survive an agent restart is pinned, configuration is not.
func TestSpec(t *testing.T) {
	spec, err := LoadEgressd()
	if err != nil {
		t.Fatal(err)
	}
	var specs EgressdSpecs
	if err := spec.Assign(&specs); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		spec *ebpf.MapSpec
		pin  ebpf.PinType
	}{
		{specs.SockStates, ebpf.PinByName},
		{specs.ConnOrigs, ebpf.PinByName},
		{specs.OwnSocks, ebpf.PinByName},
		{specs.Counters, ebpf.PinByName},
		{specs.Excluded, ebpf.PinNone},
		{specs.Resolvers, ebpf.PinNone},
		{specs.UdpAllow, ebpf.PinNone},
	} {
		if m.spec.Pinning != m.pin {
			t.Errorf("map %s: pinning %v, want %v", m.spec.Name, m.spec.Pinning, m.pin)
		}
	}
	for _, p := range []*ebpf.ProgramSpec{specs.Connect4, specs.Connect6, specs.Sendmsg4, specs.Sendmsg6} {
		if p.Type != ebpf.CGroupSockAddr {
			t.Errorf("program %s: type %v", p.Name, p.Type)
		}
	}
	if specs.SockCreate.Type != ebpf.CGroupSock || specs.SockCreate.AttachType != ebpf.AttachCGroupInetSockCreate {
		t.Errorf("sock_create: type %v, attach %v", specs.SockCreate.Type, specs.SockCreate.AttachType)
	}
	if specs.TrackConnect.Type != ebpf.SockOps {
		t.Errorf("track_connect: type %v", specs.TrackConnect.Type)
	}
	var n uint32
	if err := specs.CountersUsed.Get(&n); err != nil || n != uint32(EgressdCounterCOUNTER_MAX) {
		t.Errorf("counters_used = %d, %v; want %d", n, err, EgressdCounterCOUNTER_MAX)
	}
	if specs.Counters.MaxEntries < uint32(EgressdCounterCOUNTER_MAX) {
		t.Errorf("counters has %d slots for %d counters", specs.Counters.MaxEntries, EgressdCounterCOUNTER_MAX)
	}
}
