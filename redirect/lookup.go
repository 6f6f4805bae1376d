package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/egressd/egressd/bpf"
)

// Origin is what the programs recorded about a redirected connection.
type Origin struct {
	// Dst is the destination the application connected to.
	Dst netip.AddrPort
	// CgroupID is the cgroup v2 ID (the directory's inode number) of the
	// process that called connect: the pod, for per-client decisions.
	CgroupID uint64
}

// ErrNotRedirected: the connection is not one the programs redirected (or
// its entry was already read).
var ErrNotRedirected = errors.New("redirect: connection not redirected by egressd")

// Origin returns what was recorded about a connection the proxy accepted,
// given its remote (client) and local (proxy) addresses as the proxy sees
// them, and forgets it. The error is ErrNotRedirected for a connection
// egressd did not redirect; any other error is a failure to read the map
// (counted and logged apart). Either way the proxy must close it.
func (r *Redirector) Origin(client, local netip.AddrPort) (Origin, error) {
	key := bpf.EgressdTuple{
		ClientAddr: words(client.Addr()),
		ProxyAddr:  words(local.Addr()),
		ClientPort: client.Port(),
		ProxyPort:  local.Port(),
	}
	var v bpf.EgressdOrigDst
	err := r.objs.ConnOrigs.LookupAndDelete(&key, &v)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		r.lookupMisses.Add(1)
		return Origin{}, ErrNotRedirected
	case err != nil:
		r.lookupErrors.Add(1)
		r.log.Error("original destination lookup failed", "client", client, "local", local, "err", err)
		return Origin{}, fmt.Errorf("redirect: lookup %v -> %v: %w", client, local, err)
	}
	return Origin{Dst: netip.AddrPortFrom(addr(v.Addr), v.Port), CgroupID: v.CgroupId}, nil
}

// Lookup is Origin reduced to the destination: ok is false when there is
// none (the proxy must close the connection). It satisfies l7.OriginalDst.
func (r *Redirector) Lookup(client, local netip.AddrPort) (orig netip.AddrPort, ok bool) {
	o, err := r.Origin(client, local)
	return o.Dst, err == nil
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
