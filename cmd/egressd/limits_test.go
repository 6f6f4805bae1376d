package main

import (
	"io"
	"testing"
)

func TestLimitFlags(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--rules", "r", "--cgroup", "c", "--max-conns", "-1", "--memory-limit", "400MiB"},
		env("EGRESSD_MAX_CONNS_PER_CLIENT", "64", "EGRESSD_MAX_CONNS", "5", "EGRESSD_MEMORY_LIMIT", "none"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != -1 || cfg.MaxConnsPerClient != 64 || cfg.MemoryLimit.Bytes != 400<<20 || cfg.MemoryLimit.None {
		t.Errorf("max-conns %d per-client %d memory %+v (flags win over the environment)", cfg.MaxConns, cfg.MaxConnsPerClient, cfg.MemoryLimit)
	}
	cfg, err = parseRunFlags([]string{"--rules", "r", "--cgroup", "c"}, env("EGRESSD_MEMORY_LIMIT", "none"), io.Discard)
	if err != nil || !cfg.MemoryLimit.None || cfg.MaxConns != 0 {
		t.Errorf("env none: %+v, %v", cfg.MemoryLimit, err)
	}
}
