package redirect

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// What a child does for job.Socket: one datagram from a socket the net
// package does not make.
func (j job) socket() (string, error) {
	ap, err := netip.ParseAddrPort(j.Addr)
	if err != nil {
		return "", err
	}
	payload := []byte(cmpOr(j.Payload, "ping\n"))
	var family int
	var sa unix.Sockaddr
	if ap.Addr().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	var typ, proto int
	switch j.Socket {
	case "packet4":
		return j.packet(ap, payload)
	case "netlink", "unix":
		family, typ, proto = unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE
		if j.Socket == "unix" {
			family, typ, proto = unix.AF_UNIX, unix.SOCK_DGRAM, 0
		}
		fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return "", err
		}
		unix.Close(fd)
		return "sent", nil
	case "ping4", "ping6":
		typ, proto = unix.SOCK_DGRAM, unix.IPPROTO_ICMP
		echo := byte(8) // ICMP echo request; the kernel fills id and checksum
		if j.Socket == "ping6" {
			proto, echo = unix.IPPROTO_ICMPV6, 128
		}
		payload = append([]byte{echo, 0, 0, 0, 0, 0, 0, 1}, payload...)
	case "udplite4", "udplite6":
		typ, proto = unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE
	case "raw4":
		// A UDP datagram written whole; the kernel adds the IP header.
		typ, proto = unix.SOCK_RAW, unix.IPPROTO_UDP
		hdr := make([]byte, 8)
		binary.BigEndian.PutUint16(hdr[0:], 40000)
		binary.BigEndian.PutUint16(hdr[2:], ap.Port())
		binary.BigEndian.PutUint16(hdr[4:], uint16(8+len(payload)))
		payload = append(hdr, payload...)
	case "sctp4":
		typ, proto = unix.SOCK_SEQPACKET, unix.IPPROTO_SCTP
	case "udp4-connected-sendto", "udp6-inet", "udp6-mapped":
		return j.udpVariant(ap, sa, payload)
	default:
		return "", errors.New("unknown socket kind " + j.Socket)
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if j.Unconn || typ == unix.SOCK_RAW {
		err = unix.Sendto(fd, payload, 0, sa)
	} else if err = unix.Connect(fd, sa); err == nil {
		_, err = unix.Write(fd, payload)
	}
	if err != nil {
		return "", err
	}
	return "sent", nil
}

// udpVariant sends payload over UDP in a way the net package does not:
// sendto another address on a socket connected to an allowed one (Addr),
// or from an IPv6 socket to an IPv4 address, as AF_INET or v4-mapped.
func (j job) udpVariant(ap netip.AddrPort, sa unix.Sockaddr, payload []byte) (string, error) {
	family := unix.AF_INET6
	if j.Socket == "udp4-connected-sendto" {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	switch j.Socket {
	case "udp4-connected-sendto":
		then, err := netip.ParseAddrPort(j.Then)
		if err != nil {
			return "", err
		}
		if err := unix.Connect(fd, sa); err != nil {
			return "", err
		}
		sa = &unix.SockaddrInet4{Port: int(then.Port()), Addr: then.Addr().As4()}
	case "udp6-mapped":
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
	}
	if err := unix.Sendto(fd, payload, 0, sa); err != nil {
		return "", err
	}
	return "sent", nil
}

// childBinary is the test binary, copied once where any user may run it
// (the children of TestBypass run as uid 1000; go test's build directory
// is root's alone).
func childBinary(t testing.TB) string {
	childBin.once.Do(func() {
		childBin.path, childBin.err = copyExecutable(os.Args[0])
	})
	if childBin.err != nil {
		t.Fatalf("child binary: %v", childBin.err)
	}
	return childBin.path
}

var childBin struct {
	once sync.Once
	path string
	err  error
}

func copyExecutable(src string) (string, error) {
	dir, err := os.MkdirTemp("", "egressd-redirect-test-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, "redirect.test")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

// removeChildBinary removes the copy (TestMain, after the tests).
func removeChildBinary() {
	if childBin.path != "" {
		os.RemoveAll(filepath.Dir(childBin.path))
	}
}
