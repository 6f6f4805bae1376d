package redirect

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/kerneltest"
)

// sniffer records every frame that reaches a namespace's interfaces: the
// upstream's view, whatever the protocol. A bypass is a marker seen here.
type sniffer struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	more   chan struct{} // signalled after each frame
	done   chan struct{}
}

func sniff(t testing.TB, ns *kerneltest.NS) *sniffer {
	t.Helper()
	s := &sniffer{more: make(chan struct{}, 1), done: make(chan struct{})}
	err := ns.Do(func() (err error) {
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return err
	})
	if err != nil {
		t.Fatalf("sniffer: %v", err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go s.read(stop)
	t.Cleanup(func() {
		close(stop)
		<-s.done
		unix.Close(s.fd)
	})
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *sniffer) read(stop <-chan struct{}) {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // timeout: look at stop again
		}
		s.mu.Lock()
		s.frames = append(s.frames, bytes.Clone(buf[:n]))
		s.mu.Unlock()
		select {
		case s.more <- struct{}{}:
		default:
		}
	}
}

// seen says whether a frame carrying marker arrived.
func (s *sniffer) seen(marker string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if bytes.Contains(f, []byte(marker)) {
			return true
		}
	}
	return false
}

// await waits up to 5 s for a frame carrying marker: the fence after
// which anything sent before it would have been seen.
func (s *sniffer) await(marker string) bool {
	deadline := time.After(5 * time.Second)
	for !s.seen(marker) {
		select {
		case <-s.more:
		case <-deadline:
			return false
		}
	}
	return true
}
