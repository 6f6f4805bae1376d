package metric

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The process_* families of client_golang's process collector, read from
// /proc/self and getrlimit(2).
var (
	cpuDesc      = &Desc{"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", CounterType, nil}
	openFDsDesc  = &Desc{"process_open_fds", "Number of open file descriptors.", GaugeType, nil}
	maxFDsDesc   = &Desc{"process_max_fds", "Maximum number of open file descriptors.", GaugeType, nil}
	vsizeDesc    = &Desc{"process_virtual_memory_bytes", "Virtual memory size in bytes.", GaugeType, nil}
	maxVsizeDesc = &Desc{"process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", GaugeType, nil}
	rssDesc      = &Desc{"process_resident_memory_bytes", "Resident memory size in bytes.", GaugeType, nil}
	startDesc    = &Desc{"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", GaugeType, nil}
	netInDesc    = &Desc{"process_network_receive_bytes_total", "Number of bytes received by the process over the network.", CounterType, nil}
	netOutDesc   = &Desc{"process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", CounterType, nil}
	processDescs = []*Desc{cpuDesc, openFDsDesc, maxFDsDesc, vsizeDesc, maxVsizeDesc, rssDesc, startDesc, netInDesc, netOutDesc}
)

// userHZ is the clock ticks per second of /proc/self/stat, as procfs
// assumes.
const userHZ = 100.0

// NewProcessCollector is the process_* families of client_golang's process
// collector for this process. A file of /proc it cannot read fails the
// scrape, as client_golang's did.
func NewProcessCollector() Collector { return Func(collectProcess, processDescs...) }

func collectProcess(e *Emitter) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	// Fields after the command's closing parenthesis, from field 3 (state).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 22 {
		return fmt.Errorf("/proc/self/stat: %d fields", len(f)+2)
	}
	num := func(i int) float64 { n, _ := strconv.ParseUint(f[i-3], 10, 64); return float64(n) }
	e.Emit(cpuDesc, (num(14)+num(15))/userHZ)
	e.Emit(vsizeDesc, num(23))
	e.Emit(rssDesc, num(24)*float64(os.Getpagesize()))
	boot, err := bootTime()
	if err != nil {
		return err
	}
	e.Emit(startDesc, boot+num(22)/userHZ)

	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	e.Emit(openFDsDesc, float64(len(fds)))
	var nofile, as syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &as); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	e.Emit(maxFDsDesc, float64(nofile.Cur))
	e.Emit(maxVsizeDesc, float64(as.Cur))

	in, out, err := netOctets()
	if err != nil {
		return err
	}
	e.Emit(netInDesc, in)
	e.Emit(netOutDesc, out)
	return nil
}

// bootTime is /proc/stat's btime.
func bootTime() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/proc/stat: no btime")
}

// netOctets is the IpExt InOctets and OutOctets of /proc/self/net/netstat
// (this network namespace's), 0 where absent.
func netOctets() (in, out float64, err error) {
	fh, err := os.Open("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		if !sc.Scan() {
			break
		}
		values := strings.Fields(sc.Text())
		if len(names) == 0 || names[0] != "IpExt:" || len(values) != len(names) {
			continue
		}
		for i, n := range names {
			v, _ := strconv.ParseFloat(values[i], 64)
			switch n {
			case "InOctets":
				in = v
			case "OutOctets":
				out = v
			}
		}
	}
	return in, out, sc.Err()
}
