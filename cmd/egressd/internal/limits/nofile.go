package limits

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/l7"
)

// fdReserve fds are kept out of the connection limit for everything else:
// idle pooled upstream sockets, the admin server and its clients, the
// resolver, the BPF objects, the listeners, the rules watcher.
const fdReserve = 1024

// RaiseNofile sets the soft RLIMIT_NOFILE to the hard one and returns the
// soft limit in force.
func RaiseNofile() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return rl.Cur, fmt.Errorf("setrlimit %d: %w", want.Cur, err)
		}
		rl = want
	}
	return rl.Cur, nil
}

// AutoMaxConns is the default connection limit: l7's, lowered so that
// every client connection can have its upstream socket and fdReserve fds
// stay for the rest.
func AutoMaxConns(nofile uint64) int {
	if nofile <= 2*fdReserve {
		return max(int(nofile)/4, 1)
	}
	return int(min(uint64(l7.DefaultMaxConns), (nofile-fdReserve)/2))
}
