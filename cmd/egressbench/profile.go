package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profileSummary holds the top of egressd's profiles under one test's load.
type profileSummary struct {
	CPUProfile   string  `json:"cpu_profile"`
	AllocProfile string  `json:"alloc_profile"`
	Test         string  `json:"test"`
	Rate         float64 `json:"achieved_rate"`
	CPUTop       string  `json:"cpu_top,omitempty"` // go tool pprof -top, flat
	CPUCumTop    string  `json:"cpu_cum_top,omitempty"`
	AllocTop     string  `json:"alloc_top,omitempty"` // alloc_space
	AllocObjTop  string  `json:"alloc_objects_top,omitempty"`
}

// profile runs egressd's proxy ("egressbench l7", no BPF: the profile is
// user space either way) with CPU and allocation profiling under the load
// of --profile-test, then summarises both profiles with "go tool pprof" when Go is
// installed.
func (e *env) profile(ctx context.Context, rep *report) error {
	if err := os.MkdirAll(e.o.profile, 0o755); err != nil {
		return err
	}
	ps := &profileSummary{
		CPUProfile:   filepath.Join(e.o.profile, "egressd-cpu.pprof"),
		AllocProfile: filepath.Join(e.o.profile, "egressd-allocs.pprof"),
	}
	listen := "127.0.0.1:15310"
	s, err := e.startL7(ctx, "profile", listen, []string{"--cpuprofile", ps.CPUProfile, "--memprofile", ps.AllocProfile,
		"--log", filepath.Join(e.dir, "profile.log")})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "profiling egressd's proxy under %s for %v\n", e.o.profTest, e.o.duration)
	ts, _ := parseTest(e.o.profTest)
	res, _, err := runWorker(ctx, e.spec(ts, &target{name: "profile", addr: listen}), -1)
	s.stop() // SIGTERM: the profiles are written on the way out
	if err != nil {
		return err
	}
	ps.Test, ps.Rate = e.o.profTest, res.AchievedRate
	rep.Profile = ps
	if _, err := exec.LookPath("go"); err != nil {
		return nil
	}
	self, _ := os.Executable()
	top := func(prof string, extra ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, extra...)
		out, err := exec.CommandContext(ctx, "go", append(args, self, prof)...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	ps.CPUTop = top(ps.CPUProfile)
	ps.CPUCumTop = top(ps.CPUProfile, "-cum")
	ps.AllocTop = top(ps.AllocProfile, "-sample_index=alloc_space")
	ps.AllocObjTop = top(ps.AllocProfile, "-sample_index=alloc_objects")
	return nil
}
