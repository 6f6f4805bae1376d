package redirect

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sourceRouted sends one datagram (or, for tcp6-srh, a connect and a
// write) to j.Addr from a socket carrying a source route whose first hop
// is j.Via: an IPv6 segment routing header (type 4, settable without
// privileges) or an IPv4 loose source route option. The kernel routes the
// packet to the first hop, with the destination the hooks judged as the
// route's last address.
func (j job) sourceRouted() (string, error) {
	ap, err := netip.ParseAddrPort(j.Addr)
	if err != nil {
		return "", err
	}
	via, err := netip.ParseAddr(j.Via)
	if err != nil {
		return "", err
	}
	payload := []byte(cmpOr(j.Payload, "ping\n"))
	var fd int
	var sa unix.Sockaddr
	switch j.Socket {
	case "udp6-srh", "tcp6-srh":
		typ := unix.SOCK_DGRAM
		if j.Socket == "tcp6-srh" {
			typ = unix.SOCK_STREAM
		}
		if fd, err = unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC, 0); err != nil {
			return "", err
		}
		// struct ipv6_sr_hdr with one segment: nexthdr, hdrlen 2,
		// type 4, segments_left 0, first_segment 0, flags, tag.
		srh := make([]byte, 8+16)
		srh[1], srh[2] = 2, 4
		a := via.As16()
		copy(srh[8:], a[:])
		if err = unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh)); err != nil {
			unix.Close(fd)
			return "", err
		}
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	case "udp6-rthdr2-cmsg", "udp4-lsrr-cmsg":
		return j.sourceRoutedCmsg(ap, via, payload)
	case "udp4-lsrr":
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return "", err
		}
		// LSRR (0x83), length 7, pointer 4, the first hop; then EOL.
		opt := []byte{0x83, 7, 4, 0, 0, 0, 0, 0}
		a := via.As4()
		copy(opt[3:], a[:])
		if err = unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string(opt)); err != nil {
			unix.Close(fd)
			return "", err
		}
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	defer unix.Close(fd)
	if j.Socket == "tcp6-srh" {
		unix.SetNonblock(fd, true)
		err = unix.Connect(fd, sa) // EINPROGRESS: the SYN is on its way
		if err == unix.EINPROGRESS {
			return "sent", nil
		}
		return "", err
	}
	if err = unix.Sendto(fd, payload, 0, sa); err != nil {
		return "", err
	}
	return "sent", nil
}

// sourceRoutedCmsg sends the route as ancillary data of one sendmsg: an
// IPv6 type 2 routing header, or IP_RETOPTS with a loose source route.
func (j job) sourceRoutedCmsg(ap netip.AddrPort, via netip.Addr, payload []byte) (string, error) {
	var fd int
	var err error
	var oob []byte
	var sa unix.Sockaddr
	if j.Socket == "udp6-rthdr2-cmsg" {
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return "", err
		}
		rt := make([]byte, 8+16) // nexthdr, hdrlen 2, type 2, segments_left 1
		rt[1], rt[2], rt[3] = 2, 2, 1
		a := via.As16()
		copy(rt[8:], a[:])
		oob = cmsg(unix.IPPROTO_IPV6, unix.IPV6_RTHDR, rt)
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	} else {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return "", err
		}
		opt := []byte{0x83, 7, 4, 0, 0, 0, 0, 0}
		a := via.As4()
		copy(opt[3:], a[:])
		oob = cmsg(unix.IPPROTO_IP, unix.IP_RETOPTS, opt)
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	defer unix.Close(fd)
	if err := unix.Sendmsg(fd, payload, oob, sa, 0); err != nil {
		return "", err
	}
	return "sent", nil
}

func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// seenTo says whether a frame carrying marker (any marker with "") and
// addressed to dst at the IP layer arrived.
func (s *sniffer) seenTo(dst netip.Addr, marker string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if len(f) < 14 || !strings.Contains(string(f), marker) {
			continue
		}
		ip := f[14:]
		switch binary.BigEndian.Uint16(f[12:]) {
		case unix.ETH_P_IP:
			if len(ip) >= 20 && netip.AddrFrom4([4]byte(ip[16:20])) == dst {
				return true
			}
		case unix.ETH_P_IPV6:
			if len(ip) >= 40 && netip.AddrFrom16([16]byte(ip[24:40])) == dst {
				return true
			}
		}
	}
	return false
}

// TestSourceRouteBypass: a datagram the programs allow (DNS to the DNS
// server) or a connect they redirect must not leave for another address
// through a source route set on the socket (an IPv6 segment routing header
// needs no privilege; IPv4 options need CAP_NET_RAW): the kernel would
// send it to the route's first hop. Asserted at the external namespace by
// the packets' IP destination; the control is the same datagram without
// the route, which arrives.
func TestSourceRouteBypass(t *testing.T) {
	tp := newTopo(t)
	r := tp.attach(t, tp.options())
	if err := r.Guards().SourceRoutes; err != nil {
		t.Fatalf("the source-route guard does not run as root: %v", err)
	}
	routeAround(t, tp)
	rec := sniff(t, tp.ext)
	for _, priv := range privileges {
		t.Run(priv.name, func(t *testing.T) {
			tag := strings.ReplaceAll(priv.name, " ", "-")
			for _, tc := range []struct {
				name string
				j    job
			}{
				{"udp6 SRH to the DNS server", job{Socket: "udp6-srh", Addr: hostPort(extAddr6, 53), Via: otherAddr6.String()}},
				{"udp4 LSRR to the DNS server", job{Socket: "udp4-lsrr", Addr: hostPort(extAddr4, 53), Via: otherAddr4.String()}},
				{"udp4 LSRR cmsg to the DNS server", job{Socket: "udp4-lsrr-cmsg", Addr: hostPort(extAddr4, 53), Via: otherAddr4.String()}},
				{"udp6 type 2 routing header cmsg", job{Socket: "udp6-rthdr2-cmsg", Addr: hostPort(extAddr6, 53), Via: otherAddr6.String()}},
				{"tcp6 SRH", job{Socket: "tcp6-srh", Addr: hostPort(otherAddr6, tp.extPort), Via: otherAddr6.String()}},
			} {
				tc.j.Payload = "SRCROUTE-" + tag + "-" + strings.ReplaceAll(tc.name, " ", "_")
				tc.j.N = 1
				o := runChild(t, tp.cg, tp.pod, tc.j, priv.wrap...)
				t.Logf("%s: replies %v errors %v", tc.name, o.Replies, o.Errors)
			}
			// The control, sent after the attempts on the same path: had
			// one of them left, it would be recorded by now.
			ctl := job{Network: "udp6", Addr: hostPort(extAddr6, 53), N: 1, Payload: "CONTROL-SRCROUTE-" + tag}
			if o := runChild(t, tp.cg, tp.pod, ctl, priv.wrap...); !outcomeIs(o, "echo 53") || !rec.await(ctl.Payload) {
				t.Fatalf("control: replies %v errors %v, recorded %v", o.Replies, o.Errors, rec.seen(ctl.Payload))
			}
			for _, via := range []netip.Addr{otherAddr4, otherAddr6} {
				if rec.seenTo(via, "") {
					t.Errorf("a packet of the pod was sent to %v, the first hop of its source route", via)
				}
			}
		})
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.SourceRouted == 0 {
		t.Error("no source-routed packet was counted")
	}
	t.Logf("source_routed %d", st.SourceRouted)
}
