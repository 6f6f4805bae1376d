#!/usr/bin/env bash
# bench.sh builds egressd and egressbench and runs the standard comparison:
# the direct path, egressd (real BPF redirect; plain, HTTPS origination and
# 100,000 rules), nginx and HAProxy with an equivalent Host whitelist, side by
# side in one run (tests and cases interleaved, order rotated, medians).
# Run as root from anywhere in a clone (after scripts/provision.sh):
#
#	scripts/bench.sh           # ~9 minutes: 3 repetitions of 3 s per run (bulk: 1 GiB), plus a profile of egressd's proxy (l7's BenchmarkProfile)
#	scripts/bench.sh --quick   # ~1.5 minutes: the same scenarios, 1 repetition of 1 s (bulk: 256 MiB)
#	scripts/bench.sh --smoke   # seconds: every scenario runs and yields numbers (CI); no timing checks
#
# Extra arguments go to "egressbench run" (e.g. --cases direct,nginx,egressd).
# Results: $BENCH_OUT (default bench/out): results.md (BENCHMARKS.md-ready
# tables, ratios vs direct and nginx), results.json (every run), lat*.svg
# (latency percentile plots), profile/ (CPU and allocation profiles of l7's
# BenchmarkProfile, with pprof -top of each).
# Keep the machine otherwise idle: the figures are shares of its CPUs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# One benchmark per machine at a time: fixed subnets and ports, and figures
# taken while another run shares the cores mean nothing.
if [ "$(id -u)" -eq 0 ]; then
	exec 8>/run/egressd-bench.lock
	if ! flock -n 8; then
		echo "$0: waiting for another benchmark on this machine (/run/egressd-bench.lock)..." >&2
		flock 8
	fi
fi
export PATH=$PATH:/usr/local/bin:/usr/local/go/bin

mode=standard
case "${1:-}" in
--quick) mode=quick; shift ;;
--smoke) mode=smoke; shift ;;
esac

out=${BENCH_OUT:-bench/out}
mkdir -p "$out" bin
# egressd is built as the image ships it (scripts/image.sh): static, no
# symbol table. Its RSS is mostly file pages of the binary, so a build with
# cgo (libc mapped) and symbols would measure ~1.6 MiB that no node runs.
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/egressd ./cmd/egressd
go build -o bin/egressbench ./cmd/egressbench

tests=lat1000,lat2000,rtt,max-ka,max-close,h2c,grpc,grpc1000,conns1000,bulk-down,bulk-up,bulk-down-chunked,bulk-up-chunked
case $mode in
standard) args=(--reps 3 --duration 3s --idle-wait 1s --tests "$tests"); limit=1500 ;;
quick) args=(--reps 1 --duration 1s --idle-wait 500ms --tests "$tests" --bulk-size 268435456); limit=240 ;;
smoke) args=(--reps 1 --duration 300ms --idle-wait 0s --tests lat200,rtt,max-ka,max-close,h2c,grpc,grpc200,conns1000,bulk-down,bulk-up,bulk-down-chunked,bulk-up-chunked --bulk-size 8388608 --strict); limit=180 ;;
esac

# timeout: a hung run must not hang CI; egressbench cleans up on SIGTERM.
timeout --kill-after=20 "$limit" bin/egressbench run --egressd bin/egressd --peers bench \
	--json "$out/results.json" --markdown "$out/results.md" --svg "$out" "${args[@]}" "$@"
# The profile of egressd's proxy under load is l7's own benchmark (issue 19:
# the harness only measures built binaries from outside): BenchmarkProfile
# runs max-ka in one process, profiled by go test.
if [ "$mode" = standard ]; then
	mkdir -p "$out/profile"
	go test ./l7 -run '^$' -bench 'Profile/max-ka' -benchtime 3s -o "$out/profile/l7.test" \
		-cpuprofile "$out/profile/egressd-cpu.pprof" -memprofile "$out/profile/egressd-allocs.pprof" -memprofilerate 65536
	go tool pprof -top -nodecount=25 -focus=egressd/l7 "$out/profile/l7.test" "$out/profile/egressd-cpu.pprof" >"$out/profile/cpu-top.txt" 2>/dev/null || true
	go tool pprof -top -nodecount=25 -sample_index=alloc_space "$out/profile/l7.test" "$out/profile/egressd-allocs.pprof" >"$out/profile/allocs-top.txt" 2>/dev/null || true
fi
echo "bench.sh: markdown in $out/results.md, JSON in $out/results.json, plots in $out/"
