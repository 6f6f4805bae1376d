package redirect

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// packet writes one IPv4/UDP datagram to ap, whole (IP header included),
// through an AF_PACKET socket on j.Dev addressed to j.DevMAC: no inet
// hook sees it. (Broadcast to the link's peer is enough for the test: what
// arrives there is what got out.)
func (j job) packet(ap netip.AddrPort, payload []byte) (string, error) {
	ifi, err := net.InterfaceByName(j.Dev)
	if err != nil {
		return "", err
	}
	mac, err := net.ParseMAC(j.DevMAC)
	if err != nil {
		return "", err
	}
	var src netip.Addr
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			src = p.Addr()
		}
	}
	if !src.IsValid() {
		return "", errors.New("no IPv4 address on " + j.Dev)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	pkt := make([]byte, 28, 28+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_UDP // version 4, IHL 5; TTL; protocol
	binary.BigEndian.PutUint16(pkt[2:], uint16(28+len(payload)))
	s4, d4 := src.As4(), ap.Addr().As4()
	copy(pkt[12:], s4[:])
	copy(pkt[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(pkt[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], ap.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload))) // checksum 0: none
	pkt = append(pkt, payload...)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index, Halen: 6}
	copy(sa.Addr[:], mac)
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return "", err
	}
	return "sent", nil
}

// TestPacketSocketGuard: a process with CAP_NET_RAW in an attached cgroup
// writes a whole IPv4/UDP packet (to a port no rule allows) through a
// packet socket, where no inet hook sees it. With packet_guard running
// (Linux 6.0+, the bpf LSM active, CAP_PERFMON: the kernel matrix's
// guests as root) the socket is refused and nothing arrives at the
// external namespace (the pod's link to it, routeAround); sockets pods need (netlink, unix) are still made.
// Where it cannot run, the Redirector must say so, and the test shows the
// hole it leaves is real: the datagram arrives. Either way the report is
// asserted against what the external namespace received.
func TestPacketSocketGuard(t *testing.T) {
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	dev := routeAround(t, tp)
	rec := sniff(t, tp.ext)
	guard := r.Guards().PacketSockets
	t.Logf("packet guard: %v", guard)
	if guard != nil && !errors.Is(guard, ErrGuardOff) {
		t.Fatalf("Guards().PacketSockets = %v, not an ErrGuardOff", guard)
	}
	for _, priv := range privileges {
		t.Run(priv.name, func(t *testing.T) {
			tag := strings.ReplaceAll(priv.name, " ", "-")
			for _, kind := range []string{"netlink", "unix"} {
				if o := runChild(t, tp.cg, tp.pod, job{Socket: kind, Addr: hostPort(otherAddr4, 1), N: 1}, priv.wrap...); !outcomeIs(o, "sent") {
					t.Errorf("%s socket in the cgroup: replies %v errors %v (pods need it)", kind, o.Replies, o.Errors)
				}
			}
			j := job{Socket: "packet4", Addr: hostPort(otherAddr4, 51820), N: 1, Dev: dev,
				DevMAC: "ff:ff:ff:ff:ff:ff", Payload: "PKTSOCK-" + tag}
			o := runChild(t, tp.cg, tp.pod, j, priv.wrap...)
			t.Logf("packet socket: replies %v errors %v", o.Replies, o.Errors)
			// Not containing j.Payload: the recorder matches substrings.
			ctl := job{Network: "udp6", Addr: hostPort(extAddr6, 53), N: 1, Payload: "CONTROL-" + tag}
			if o := runChild(t, tp.cg, tp.pod, ctl, priv.wrap...); !outcomeIs(o, "echo 53") || !rec.await(ctl.Payload) {
				t.Fatalf("control: replies %v errors %v", o.Replies, o.Errors)
			}
			arrived := rec.seen(j.Payload)
			switch {
			case guard == nil && arrived:
				t.Errorf("packet guard running, yet the pod's packet-socket datagram arrived at %v", otherAddr4)
			case guard == nil && o.Replies["sent"] > 0:
				t.Errorf("packet guard running, yet the pod made a packet socket")
			case guard != nil && priv.name == "uid 0 CAP_NET_RAW" && !arrived:
				t.Errorf("the Redirector reports the guard off (%v), but the packet-socket datagram did not arrive: the report or this test is wrong", guard)
			}
		})
	}
	if guard == nil {
		st, err := r.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.SocketsRefused["packet"] == 0 {
			t.Error("no packet socket refusal was counted")
		}
	}
}
