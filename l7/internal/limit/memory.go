package limit

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"time"
)

// memoryShedFraction of the runtime's memory limit: above it, new
// connections are shed.
const memoryShedFraction = 0.9

// MemoryCheckEvery bounds how often the runtime's memory figures are read
// (a flood of connects reads them at most this often).
const MemoryCheckEvery = 20 * time.Millisecond

// memoryOver reports whether the runtime's memory is above the shedding
// threshold, reading the figures at most every MemoryCheckEvery.
func (l *Limiter) memoryOver(now time.Time) bool {
	if now.UnixNano()-l.memLastNs.Load() >= int64(MemoryCheckEvery) {
		l.readMemory(now)
	}
	return l.memOver.Load()
}

// readMemory reads the runtime's memory limit and the memory it counts
// against it (all memory mapped by the runtime but what it released).
func (l *Limiter) readMemory(now time.Time) {
	if !l.memMu.TryLock() {
		return // another accept loop is reading them
	}
	defer l.memMu.Unlock()
	l.memLastNs.Store(now.UnixNano())
	limit := debug.SetMemoryLimit(-1)
	l.memLimit.Store(limit)
	if limit <= 0 || limit == math.MaxInt64 {
		l.memShed.Store(0)
		l.memOver.Store(false)
		return
	}
	shed := int64(float64(limit) * memoryShedFraction)
	l.memShed.Store(shed)
	used, err := residentBytes()
	if err != nil { // no /proc: what the runtime counts against its limit
		rtmetrics.Read(l.memSample)
		used = int64(l.memSample[0].Value.Uint64() - l.memSample[1].Value.Uint64())
	}
	l.memOver.Store(used >= shed)
}

// residentBytes is the process's resident set size (/proc/self/statm).
func residentBytes() (int64, error) {
	var buf [128]byte
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, _ := f.Read(buf[:])
	fields := bytes.Fields(buf[:n])
	if len(fields) < 2 {
		return 0, errors.New("/proc/self/statm: unexpected format")
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}
