package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a process the harness started and must stop.
type server struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// startServer starts cmd in a process group of its own (so that its children,
// such as nginx workers, can be signalled with it) and waits until addr
// accepts TCP connections, at most 10 s.
func startServer(ctx context.Context, name string, cmd *exec.Cmd, addr string) (*server, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL // never outlive the harness
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	if addr == "" {
		return s, nil
	}
	// Generous: egressd-100k compiles 100,000 rules before it listens,
	// which took over 10 s on a saturated machine (smoke runs of 02:30
	// and 05:50 UTC on 2026-12-02).
	const wait = 40 * time.Second
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before listening on %s: %v", name, addr, s.err)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s: nothing listens on %s after %v", name, addr, wait)
		}
	}
}

// exited reports whether the process has ended, and how.
func (s *server) exited() (bool, error) {
	select {
	case <-s.done:
		return true, s.err
	default:
		return false, nil
	}
}

// pid is the process the harness started (for nginx: the master).
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM to the process group, then SIGKILL after 5 s.
func (s *server) stop() {
	if s == nil {
		return
	}
	pgid := s.pid()
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // children that ignored the master's exit
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// tree returns pid and all its descendants (nginx and HAProxy do their work
// in children or threads; egressd in threads).
func tree(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(p); err == nil {
			parent[p] = ppid
		}
	}
	var out []int
	for p := range parent {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// treeCPU is the user+system CPU time consumed so far by pid and its
// descendants.
func treeCPU(pid int) time.Duration {
	var total int64
	for _, p := range tree(pid) {
		if _, t, err := procStat(p); err == nil {
			total += t
		}
	}
	return time.Duration(total) * time.Second / clockTicks
}

// treeRSS is the summed resident set size of pid and its descendants in KiB.
func treeRSS(pid int) int64 {
	var total int64
	for _, p := range tree(pid) {
		total += rssKiB(p)
	}
	return total
}

// procStat reads the parent PID and utime+stime (ticks) of pid.
func procStat(pid int) (ppid int, ticks int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may contain spaces: split after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // state ppid ... utime(12) stime(13), counted from state=1
		return 0, 0, errors.New("short stat")
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, ut + st, nil
}

// rssKiB is the resident set size of pid in KiB (VmRSS), 0 if unknown.
func rssKiB(pid int) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// cpuTimes reads the machine's busy and total jiffies from /proc/stat.
func cpuTimes() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// waitIdle waits, at most max, until the machine is less than 15 % busy over
// a 200 ms window, so that one case's backlog does not spill into the next.
// It returns the last busy fraction seen.
func waitIdle(ctx context.Context, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	for {
		b0, t0 := cpuTimes()
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(200 * time.Millisecond):
		}
		b1, t1 := cpuTimes()
		busy := 0.0
		if t1 > t0 {
			busy = float64(b1-b0) / float64(t1-t0)
		}
		if busy < 0.15 || time.Now().After(deadline) {
			return busy
		}
	}
}
