package main

import (
	"log/slog"
	"net/netip"
	"os"

	"github.com/egressd/egressd/cmd/egressd/internal/limits"
	"github.com/egressd/egressd/redirect"
)

// The process limits `egressd run` sets itself at start, before serving:
// RLIMIT_NOFILE raised to its hard limit, the Go runtime's memory limit
// from the container's cgroup, and the connection limit derived from the
// fds (package limits). l7 sheds connections against them.

// originalDst gives l7 the connecting cgroup with the original
// destination (l7.OriginalDstCgroup): host processes all connect from
// loopback, and --max-conns-per-client counts theirs per cgroup.
type originalDst struct{ *redirect.Redirector }

func (o originalDst) LookupCgroup(client, local netip.AddrPort) (netip.AddrPort, uint64, bool) {
	origin, err := o.Origin(client, local)
	return origin.Dst, origin.CgroupID, err == nil
}

// processLimits are the limits in force, as logged at start.
type processLimits struct {
	nofile       uint64 // RLIMIT_NOFILE (soft) after raising it
	memoryLimit  int64  // the runtime's memory limit; 0: none
	memorySource string // where it comes from
	maxConns     int    // for l7.Config.MaxConns
}

// applyProcessLimits raises RLIMIT_NOFILE, sets the runtime's memory limit
// and derives the connection limit from the flags and what it found.
func applyProcessLimits(cfg *runConfig, log *slog.Logger) processLimits {
	var pl processLimits
	var err error
	if pl.nofile, err = limits.RaiseNofile(); err != nil {
		log.Warn("could not raise the open files limit", "err", err, "nofile", pl.nofile)
	}
	pl.memoryLimit, pl.memorySource = limits.SetMemory(cfg.MemoryLimit, os.Getenv("GOMEMLIMIT"), log)
	pl.maxConns = cfg.MaxConns
	if pl.maxConns == 0 {
		pl.maxConns = limits.AutoMaxConns(pl.nofile)
	}
	return pl
}
