package limits

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/egressd/egressd/internal/mounts"
)

// memoryLimitShare of the cgroup's memory limit becomes the runtime's
// memory limit (the rest: what the runtime does not count, kernel memory
// charged to the cgroup, and time for the shedding to act).
const memoryLimitShare = 0.85

// SetMemory sets the runtime's memory limit: the --memory-limit flag
// when given as a size; else GOMEMLIMIT when set (the runtime applied it);
// else, for "auto", memoryLimitShare of the cgroup's memory limit. It
// returns the limit in force (0: none) and where it came from.
func SetMemory(m Memory, gomemlimit string, log *slog.Logger) (int64, string) {
	switch {
	case m.None:
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, "--memory-limit none"
	case m.Bytes > 0:
		debug.SetMemoryLimit(m.Bytes)
		return m.Bytes, "--memory-limit"
	case gomemlimit != "":
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			return l, "GOMEMLIMIT"
		}
		return 0, "GOMEMLIMIT"
	}
	limit, where, err := cgroupMemoryLimit()
	if err != nil {
		log.Warn("no memory limit: the cgroup's could not be read", "err", err)
		return 0, "none"
	}
	if limit <= 0 {
		return 0, "none (" + where + " has no limit)"
	}
	l := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(l)
	return l, fmt.Sprintf("%.0f %% of %s (%d)", memoryLimitShare*100, where, limit)
}

// cgroupMemoryLimit returns the lowest memory limit on the path of this
// process's memory cgroup (v2 memory.max; v1 memory.limit_in_bytes, as on
// hybrid hosts whose memory controller is still on v1), 0 for none, and the
// file it was read from.
func cgroupMemoryLimit() (int64, string, error) {
	v2, v1, err := selfCgroups("/proc/self/cgroup")
	if err != nil {
		return 0, "", err
	}
	if root, err := mounts.Find("cgroup2"); err == nil && v2 != "" {
		if hasController(root, "memory") {
			return lowestLimit(root, v2, "memory.max")
		}
	}
	if root, err := mounts.FindCgroupV1("memory"); err == nil && v1 != "" {
		return lowestLimit(root, v1, "memory.limit_in_bytes")
	}
	return 0, "", errors.New("no cgroup memory controller mounted")
}

// selfCgroups reads the process's cgroup v2 path and v1 memory path from
// a /proc/PID/cgroup file.
func selfCgroups(file string) (v2, v1memory string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, rest, _ := strings.Cut(sc.Text(), ":")
		ctrls, path, _ := strings.Cut(rest, ":")
		switch {
		case id == "0" && ctrls == "":
			v2 = path
		case strings.Contains(","+ctrls+",", ",memory,"):
			v1memory = path
		}
	}
	return v2, v1memory, sc.Err()
}

// hasController reports whether the v2 hierarchy at root has controller
// (a hybrid host's v2 hierarchy often has none of the memory controller).
func hasController(root, controller string) bool {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+controller+" ")
}

// lowestLimit reads file in the cgroup at root/path and its ancestors up to
// root and returns the lowest limit (0: none) and where it was read. Above
// a container's cgroup namespace root, ancestors are out of sight.
func lowestLimit(root, path, file string) (int64, string, error) {
	var lowest int64
	where := filepath.Join(root, path, file)
	found := false
	for dir := filepath.Join(root, path); ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err == nil {
			found = true
			if n, ok := parseLimit(string(b)); ok && (lowest == 0 || n < lowest) {
				lowest, where = n, filepath.Join(dir, file)
			}
		}
		if dir == root || !strings.HasPrefix(dir, root) {
			break
		}
	}
	if !found {
		return 0, where, fmt.Errorf("read %s: not found", where)
	}
	return lowest, where, nil
}

// parseLimit parses a memory.max ("max" or bytes) or memory.limit_in_bytes
// value; "no limit" (max, or v1's page-rounded MaxInt64) is false.
func parseLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if s == "max" || err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0, false
	}
	return n, true
}

// Memory is the --memory-limit flag's value (a flag.Value): auto (the
// zero value), none, or a size in bytes with an optional KiB, MiB or GiB
// suffix (GOMEMLIMIT's).
type Memory struct {
	None  bool
	Bytes int64
}

func (m *Memory) String() string {
	switch {
	case m == nil || !m.None && m.Bytes == 0:
		return "auto"
	case m.None:
		return "none"
	}
	return strconv.FormatInt(m.Bytes, 10)
}

func (m *Memory) Set(s string) error {
	switch s {
	case "auto":
		*m = Memory{}
		return nil
	case "none":
		*m = Memory{None: true}
		return nil
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q: want auto, none, or a size like 400MiB", s)
	}
	*m = Memory{Bytes: n * mult}
	return nil
}
