package bpf

// See the package doc for the toolchain this needs. -target bpfel: egressd
// runs on little-endian hosts (amd64, arm64).
//go:generate go tool bpf2go -tags linux -target bpfel -type orig_dst -type tuple -type lpm_key Egressd egressd.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror -O2
