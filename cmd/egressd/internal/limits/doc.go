// Package limits holds the process limits `egressd run` sets itself at
// start, before serving: nofile.go raises RLIMIT_NOFILE to its hard limit
// and derives the default connection limit from it (AutoMaxConns, which
// keeps fds for each connection's upstream socket and the rest);
// memory.go is --memory-limit (Memory) and sets the Go runtime's memory
// limit from it, GOMEMLIMIT or the container's cgroup (v2 memory.max, v1
// memory.limit_in_bytes on hybrid hosts). l7 sheds connections against
// them (l7/internal/limit); this package only finds and sets them.
package limits
