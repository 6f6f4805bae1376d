package bpf

import (
	"fmt"
	"sort"
	"testing"

	"github.com/cilium/ebpf/asm"
)

// Linux 6.1's verifier, without CAP_PERFMON (the DaemonSet grants CAP_BPF
// and CAP_NET_ADMIN only), refuses a write narrower than 8 bytes into a
// stack slot that holds a spilled register ("attempt to corrupt spilled
// pointer on stack"); later kernels relaxed it for spilled scalars, so a
// 6.18 load does not catch it. This is the static guard: within each
// program, every 8-byte stack slot is written with one width only.
func TestStackSlotsOneWidth(t *testing.T) {
	spec, err := LoadEgressd()
	if err != nil {
		t.Fatal(err)
	}
	guard, err := LoadGuard()
	if err != nil {
		t.Fatal(err)
	}
	programs := spec.Programs
	for name, p := range guard.Programs {
		programs[name] = p
	}
	for name, p := range programs {
		widths := map[int16]map[int]bool{}
		for _, ins := range p.Instructions {
			class := ins.OpCode.Class()
			if (class != asm.StXClass && class != asm.StClass) || ins.Dst != asm.R10 || ins.OpCode.Mode() != asm.MemMode {
				continue
			}
			slot := ins.Offset &^ 7
			if widths[slot] == nil {
				widths[slot] = map[int]bool{}
			}
			widths[slot][ins.OpCode.Size().Sizeof()] = true
		}
		var mixed []string
		for slot, w := range widths {
			if len(w) > 1 {
				var ws []int
				for n := range w {
					ws = append(ws, n)
				}
				sort.Ints(ws)
				mixed = append(mixed, fmt.Sprintf("r10%d: %v bytes", slot, ws))
			}
		}
		sort.Strings(mixed)
		if len(mixed) > 0 {
			t.Errorf("program %s writes stack slots with mixed widths (refused on Linux 6.1 without CAP_PERFMON): %v", name, mixed)
		}
	}
}
