package redirect

import (
	"fmt"

	"github.com/egressd/egressd/bpf"
)

// Stats are the programs' decisions since the maps were first pinned,
// summed over CPUs, and this agent's lookups.
type Stats struct {
	Redirected      uint64 // TCP connects sent to the proxy
	SkippedOwn      uint64 // egressd's own sockets (registered by Control)
	SkippedLoopback uint64
	SkippedProxy    uint64 // to node address : proxy port
	SkippedExcluded uint64 // to an excluded CIDR
	SkippedDNS      uint64 // TCP to port 53 of a DNS server
	SkippedExempt   uint64 // connects, datagrams and sockets of exempt cgroups
	UDPDNS          uint64 // UDP to port 53 of a DNS server
	UDPAllowed      uint64 // UDP allowed by a rule
	UDPRefused      uint64 // port 443, or not allowed
	Unspecified     uint64 // to 0.0.0.0 or ::, refused
	FailClosed      uint64 // connects refused rather than let through
	Tracked         uint64 // redirected connections made visible to Lookup
	TrackFailed     uint64 // redirected connections Lookup will miss
	Untracked       uint64 // tracked connections that closed before the proxy looked them up
	SourceRouted    uint64 // packets dropped for IPv4 options or an IPv6 routing header

	SocketsRefused map[string]uint64 // socket creations refused, by kind: raw, ping, udplite, sctp, other; packet and family (by packet_guard)

	LookupMisses uint64 // this agent's lookups of connections not redirected
	LookupErrors uint64 // this agent's lookups that failed to read the map
}

// Stats reads the counters.
func (r *Redirector) Stats() (Stats, error) {
	s := Stats{SocketsRefused: map[string]uint64{}}
	var raw, ping, udplite, sctp, other, packet, family uint64
	for c, dst := range map[bpf.EgressdCounter]*uint64{
		bpf.EgressdCounterCOUNTER_REDIRECTED:    &s.Redirected,
		bpf.EgressdCounterCOUNTER_SKIP_OWN:      &s.SkippedOwn,
		bpf.EgressdCounterCOUNTER_SKIP_LOOPBACK: &s.SkippedLoopback,
		bpf.EgressdCounterCOUNTER_SKIP_PROXY:    &s.SkippedProxy,
		bpf.EgressdCounterCOUNTER_SKIP_EXCLUDED: &s.SkippedExcluded,
		bpf.EgressdCounterCOUNTER_SKIP_DNS:      &s.SkippedDNS,
		bpf.EgressdCounterCOUNTER_SKIP_EXEMPT:   &s.SkippedExempt,
		bpf.EgressdCounterCOUNTER_UDP_DNS:       &s.UDPDNS,
		bpf.EgressdCounterCOUNTER_UDP_ALLOWED:   &s.UDPAllowed,
		bpf.EgressdCounterCOUNTER_UDP_REFUSED:   &s.UDPRefused,
		bpf.EgressdCounterCOUNTER_UNSPECIFIED:   &s.Unspecified,
		bpf.EgressdCounterCOUNTER_FAIL_CLOSED:   &s.FailClosed,
		bpf.EgressdCounterCOUNTER_TRACKED:       &s.Tracked,
		bpf.EgressdCounterCOUNTER_TRACK_FAILED:  &s.TrackFailed,
		bpf.EgressdCounterCOUNTER_UNTRACKED:     &s.Untracked,
		bpf.EgressdCounterCOUNTER_SOURCE_ROUTED: &s.SourceRouted,
		bpf.EgressdCounterCOUNTER_SOCK_RAW:      &raw,
		bpf.EgressdCounterCOUNTER_SOCK_PING:     &ping,
		bpf.EgressdCounterCOUNTER_SOCK_UDPLITE:  &udplite,
		bpf.EgressdCounterCOUNTER_SOCK_SCTP:     &sctp,
		bpf.EgressdCounterCOUNTER_SOCK_OTHER:    &other,
		bpf.EgressdCounterCOUNTER_SOCK_PACKET:   &packet,
		bpf.EgressdCounterCOUNTER_SOCK_FAMILY:   &family,
	} {
		var perCPU []uint64
		if err := r.objs.Counters.Lookup(uint32(c), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read counter %d: %w", c, err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	for k, n := range map[string]uint64{"raw": raw, "ping": ping, "udplite": udplite, "sctp": sctp, "other": other, "packet": packet, "family": family} {
		s.SocketsRefused[k] = n
	}
	s.LookupMisses = r.lookupMisses.Load()
	s.LookupErrors = r.lookupErrors.Load()
	return s, nil
}
