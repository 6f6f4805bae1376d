package redirect

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/egressd/egressd/bpf"
)

// Lookup returns the original destination of a connection the proxy
// accepted, given its remote (client) and local (proxy) addresses as the
// proxy sees them, and forgets it. ok is false for a connection that was
// not redirected by egressd (or whose entry was already read or evicted):
// the proxy must close it. It satisfies l7.OriginalDst.
func (r *Redirector) Lookup(client, local netip.AddrPort) (orig netip.AddrPort, ok bool) {
	key := bpf.EgressdTuple{
		ClientAddr: words(client.Addr()),
		ProxyAddr:  words(local.Addr()),
		ClientPort: client.Port(),
		ProxyPort:  local.Port(),
	}
	var v bpf.EgressdOrigDst
	if err := r.objs.OrigDsts.LookupAndDelete(&key, &v); err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr(v.Addr), v.Port), true
}

// words is an address in the programs' 16-byte form (IPv4 v4-mapped), in
// network byte order whatever the host's.
func words(a netip.Addr) (w [4]uint32) {
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func addr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

func lpmKey(p netip.Prefix) bpf.EgressdLpmKey {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return bpf.EgressdLpmKey{Prefixlen: uint32(bits), Addr: words(p.Masked().Addr())}
}

// Stats are the programs' decisions since the maps were first pinned,
// summed over CPUs.
type Stats struct {
	Redirected      uint64 // TCP connects sent to the proxy
	SkippedMark     uint64 // egressd's own sockets
	SkippedLoopback uint64
	SkippedProxy    uint64 // to a node (proxy) address
	SkippedExcluded uint64 // to an excluded CIDR
	SkippedDNS      uint64 // TCP to port 53
	SkippedOther    uint64 // neither TCP nor UDP
	UDPAllowed      uint64
	UDPRefused      uint64 // port 443, or any but DNS with DenyUDP
	FailClosed      uint64 // connects refused rather than let through
	Tracked         uint64 // redirected connections made visible to Lookup
	TrackFailed     uint64 // redirected connections Lookup will miss
}

// Stats reads the counters.
func (r *Redirector) Stats() (Stats, error) {
	var s Stats
	for c, dst := range map[bpf.EgressdCounter]*uint64{
		bpf.EgressdCounterCOUNTER_REDIRECTED:    &s.Redirected,
		bpf.EgressdCounterCOUNTER_SKIP_MARK:     &s.SkippedMark,
		bpf.EgressdCounterCOUNTER_SKIP_LOOPBACK: &s.SkippedLoopback,
		bpf.EgressdCounterCOUNTER_SKIP_PROXY:    &s.SkippedProxy,
		bpf.EgressdCounterCOUNTER_SKIP_EXCLUDED: &s.SkippedExcluded,
		bpf.EgressdCounterCOUNTER_SKIP_DNS:      &s.SkippedDNS,
		bpf.EgressdCounterCOUNTER_SKIP_OTHER:    &s.SkippedOther,
		bpf.EgressdCounterCOUNTER_UDP_ALLOWED:   &s.UDPAllowed,
		bpf.EgressdCounterCOUNTER_UDP_REFUSED:   &s.UDPRefused,
		bpf.EgressdCounterCOUNTER_FAIL_CLOSED:   &s.FailClosed,
		bpf.EgressdCounterCOUNTER_TRACKED:       &s.Tracked,
		bpf.EgressdCounterCOUNTER_TRACK_FAILED:  &s.TrackFailed,
	} {
		var perCPU []uint64
		if err := r.objs.Counters.Lookup(uint32(c), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read counter %d: %w", c, err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	return s, nil
}
