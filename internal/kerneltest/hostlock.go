package kerneltest

import (
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// hostLockPath is the lock file shared by every test process on the host.
const hostLockPath = "/run/egressd-kerneltest.lock"

// hostLock serializes, across test processes, the tests that put
// addresses and routes in the host namespace: go test runs packages in
// parallel, and two of them using the same test subnets on two host
// interfaces would steal each other's traffic. Within one process it is
// shared (a count), since tests there run one at a time unless marked
// parallel.
var hostLock struct {
	sync.Mutex
	n int
	f *os.File
}

// LockHost holds the host network for the rest of the test, waiting while
// another test process holds it. Veth calls it when one end is in the host
// namespace; call it yourself before changing host addresses or routes
// otherwise.
func LockHost(t testing.TB) {
	t.Helper()
	hostLock.Lock()
	defer hostLock.Unlock()
	if hostLock.n == 0 {
		f, err := os.OpenFile(hostLockPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatalf("lock host network: %v", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("lock host network: %v", err)
		}
		hostLock.f = f
	}
	hostLock.n++
	t.Cleanup(func() {
		hostLock.Lock()
		defer hostLock.Unlock()
		if hostLock.n--; hostLock.n == 0 {
			hostLock.f.Close() // releases the flock
			hostLock.f = nil
		}
	})
}
