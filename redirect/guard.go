package redirect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/bpf"
)

// ErrGuardOff wraps the reason an optional guard is not running.
var ErrGuardOff = errors.New("guard not running")

// Guards are the optional programs of bpf/guard.c, each closing a way
// around the other hooks; the packet guard needs more than they do (see
// Requirements in the package doc). Each is loaded if it can be, and
// attached with the other hooks; where it cannot, egressd runs without it
// and says why.
type Guards struct {
	// PacketSockets: packet_guard refuses packet sockets and every family
	// but unix, netlink and inet (Linux 6.0 lsm_cgroup, the bpf LSM
	// active, CAP_PERFMON). Without it a process with CAP_NET_RAW can send
	// frames no other hook sees.
	PacketSockets error
	// SourceRoutes: source_route drops packets with IPv4 options or an
	// IPv6 routing header. It needs no more than the other hooks, on 6.1
	// too (bpf/guard.c is written for 6.1's verifier without CAP_PERFMON),
	// but stays optional. Without it a socket's source route sends packets
	// to a first hop the hooks never judged (IPV6_RTHDR needs no privilege).
	SourceRoutes error
}

// loadGuards loads the optional guards; a failure is recorded as the
// reason that guard is off, never returned as the agent's.
func (r *Redirector) loadGuards() {
	spec, err := bpf.LoadGuard()
	if err != nil {
		r.guards = Guards{fmt.Errorf("%w: %v", ErrGuardOff, err), fmt.Errorf("%w: %v", ErrGuardOff, err)}
		return
	}
	counters := map[string]*ebpf.Map{"counters": r.objs.Counters}
	if prog, err := loadLSMCgroup(spec.Programs["packet_guard"], counters); err != nil {
		r.guards.PacketSockets = fmt.Errorf("%w: load packet_guard: %v (%s)", ErrGuardOff, err, guardNeeds())
	} else {
		r.guard.PacketGuard = prog
	}
	var route struct {
		SourceRoute *ebpf.Program `ebpf:"source_route"`
	}
	if err := spec.LoadAndAssign(&route, &ebpf.CollectionOptions{MapReplacements: counters}); err != nil {
		msg := strings.Replace(err.Error(), " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "", 1)
		r.guards.SourceRoutes = fmt.Errorf("%w: load source_route: %s", ErrGuardOff, msg)
	} else {
		r.guard.SourceRoute = route.SourceRoute
	}
}

// loadLSMCgroup loads an lsm_cgroup program. cilium/ebpf (v0.22) finds the
// attach target's BTF ID for lsm/ programs only, and the kernel refuses an
// lsm_cgroup program without it ("Tracing programs must provide
// btf_id"), so this makes the BPF_PROG_LOAD call itself: the instructions
// with their maps' descriptors, the hook's ID in the kernel's BTF
// (bpf_lsm_<hook>), and BPF_LSM_CGROUP as the expected attach type.
func loadLSMCgroup(spec *ebpf.ProgramSpec, maps map[string]*ebpf.Map) (*ebpf.Program, error) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	var hook *btf.Func
	if err := kernel.TypeByName("bpf_lsm_"+spec.AttachTo, &hook); err != nil {
		return nil, fmt.Errorf("LSM hook %s: %w", spec.AttachTo, err)
	}
	id, err := kernel.TypeID(hook)
	if err != nil {
		return nil, err
	}
	insns := slices.Clone(spec.Instructions)
	for i := range insns {
		if !insns[i].IsLoadFromMap() {
			continue
		}
		m, ok := maps[insns[i].Reference()]
		if !ok {
			return nil, fmt.Errorf("map %q not given", insns[i].Reference())
		}
		if err := insns[i].AssociateMap(m); err != nil {
			return nil, err
		}
	}
	var code bytes.Buffer
	if err := insns.Marshal(&code, binary.LittleEndian); err != nil {
		return nil, err
	}
	license := append([]byte(spec.License), 0)
	logBuf := make([]byte, 64<<10)
	attr := progLoadAttr{
		progType:           uint32(ebpf.LSM),
		insnCnt:            uint32(code.Len() / asm.InstructionSize),
		insns:              uint64(uintptr(unsafe.Pointer(&code.Bytes()[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel:           1,
		logSize:            uint32(len(logBuf)),
		logBuf:             uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
		expectedAttachType: uint32(ebpf.AttachLSMCgroup),
		attachBTFID:        uint32(id),
	}
	copy(attr.progName[:15], spec.Name)
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(code.Bytes())
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		if log := strings.TrimSpace(string(bytes.TrimRight(logBuf, "\x00"))); log != "" {
			lines := strings.Split(log, "\n")
			return nil, fmt.Errorf("%w: %s", errno, lines[len(lines)-1])
		}
		return nil, errno
	}
	return ebpf.NewProgramFromFD(int(fd))
}

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// attach_btf_obj_fd (Linux 5.11); the kernel takes a shorter attr as given
// with the rest zero.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
	progBTFFd          uint32
	funcInfoRecSize    uint32
	funcInfo           uint64
	funcInfoCnt        uint32
	lineInfoRecSize    uint32
	lineInfo           uint64
	lineInfoCnt        uint32
	attachBTFID        uint32
	attachBTFObjFd     uint32
}

// guardNeeds names what packet_guard needs, and what of it is missing
// where the system says so.
func guardNeeds() string {
	need := "needs Linux 6.0 with the bpf LSM active (bpf in lsm=) and CAP_PERFMON"
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err == nil && !strings.Contains(","+strings.TrimSpace(string(b))+",", ",bpf,") {
		need += "; active LSMs here: " + strings.TrimSpace(string(b))
	}
	return need
}

// Guards reports which optional guards run in the attached cgroups: a nil
// field is a guard that does; otherwise the reason it does not, wrapping
// ErrGuardOff.
func (r *Redirector) Guards() Guards {
	return r.guards
}
