package redirect

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dialIOUring connects a TCP socket through io_uring (IORING_OP_CONNECT),
// not connect(2): raw system calls, one submission, one completion.
func dialIOUring(addr string) (net.Conn, error) {
	return dialRaw(addr, unix.AF_INET, func(fd int, ap netip.AddrPort) error {
		sa := make([]byte, 16) // struct sockaddr_in
		binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:], ap.Port())
		ip := ap.Addr().As4()
		copy(sa[4:], ip[:])
		if err := ioUringConnect(fd, sa); err != nil {
			return fmt.Errorf("io_uring connect: %w", err)
		}
		return nil
	})
}

const (
	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000
	ioringOpConnect = 16
	ioringEnterGet  = 1
)

// ioUringParams is struct io_uring_params (120 bytes).
type ioUringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32 // head tail ring_mask ring_entries flags dropped array resv1 user_addr(u64)
	cqOff                                                                  [10]uint32 // head tail ring_mask ring_entries overflow cqes flags resv1 user_addr(u64)
}

func ioUringConnect(sock int, sa []byte) error {
	var p ioUringParams
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w", errno)
	}
	ring := int(r)
	defer unix.Close(ring)
	sq, err := unix.Mmap(ring, ioringOffSQRing, int(p.sqOff[6]+p.sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(ring, ioringOffCQRing, int(p.cqOff[5]+p.cqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(ring, ioringOffSQEs, int(p.sqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(sqes)

	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = ioringOpConnect
	binary.NativeEndian.PutUint32(sqe[4:], uint32(sock))
	binary.NativeEndian.PutUint64(sqe[8:], uint64(len(sa)))                          // addr2: the address length
	binary.NativeEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&sa[0])))) // addr
	binary.NativeEndian.PutUint64(sqe[32:], 1)                                       // user_data
	mask := *(*uint32)(unsafe.Pointer(&sq[p.sqOff[2]]))
	tail := (*uint32)(unsafe.Pointer(&sq[p.sqOff[1]]))
	t := atomic.LoadUint32(tail)
	*(*uint32)(unsafe.Pointer(&sq[p.sqOff[6]+4*(t&mask)])) = 0 // array: SQE 0
	atomic.StoreUint32(tail, t+1)
	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 1, ioringEnterGet, 0, 0)
	runtime.KeepAlive(sa)
	if errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
	cqMask := *(*uint32)(unsafe.Pointer(&cq[p.cqOff[2]]))
	head := (*uint32)(unsafe.Pointer(&cq[p.cqOff[0]]))
	h := atomic.LoadUint32(head)
	if atomic.LoadUint32((*uint32)(unsafe.Pointer(&cq[p.cqOff[1]]))) == h {
		return fmt.Errorf("io_uring: no completion")
	}
	cqe := cq[p.cqOff[5]+16*(h&cqMask):]
	res := int32(binary.NativeEndian.Uint32(cqe[8:]))
	atomic.StoreUint32(head, h+1)
	if res < 0 {
		return unix.Errno(-res)
	}
	return nil
}
