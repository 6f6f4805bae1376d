package bpf

// See the package doc for the toolchain this needs. -target bpfel: egressd
// runs on little-endian hosts (amd64, arm64). The asm/ headers that
// linux/types.h needs live in the build host's multiarch directory
// (/usr/include/x86_64-linux-gnu, /usr/include/aarch64-linux-gnu), which
// clang -print-multiarch names.
//go:generate sh -c "exec go tool bpf2go -tags linux -target bpfel -type orig_dst -type tuple -type lpm_key -type udp_key Egressd egressd.c -- -I/usr/include/$(clang -print-multiarch) -Wall -Werror -O2"

// The packet-socket guard is an object of its own: it needs what the
// others don't (the bpf LSM, CAP_PERFMON), and egressd runs without it.
//go:generate sh -c "exec go tool bpf2go -tags linux -target bpfel Guard guard.c -- -I/usr/include/$(clang -print-multiarch) -Wall -Werror -O2"

// sources.sha256 records the sources the committed objects were built
// from. A change to them that changes no byte of the objects (a comment)
// still changes this file, so CI's regeneration check (go generate ./bpf,
// then git diff) also fails when the sources moved on without a go
// generate, and the generated output is always committed after them.
//go:generate sh -c "sha256sum counters.h egressd.h egressd.c guard.c > sources.sha256"
