#!/usr/bin/env bash
# kernel-matrix-guest.sh runs inside a kernel-matrix.sh guest, as root in a
# chroot of the host's (read-only) root: the agent's start-up check, then
# each test package's binary with EGRESSD_E2E=require. Everything it finds
# goes to /run/matrix (the host's run directory for this kernel).
set -u
# shellcheck source=/dev/null
. /run/matrix/env
out=/run/matrix
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
uname -r >"$out/kernel"
ip link set lo up
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# As systemd does on a host: the controllers tests read (memory.max) enabled below the root.
for c in memory pids cpu; do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; done
mount -t bpf bpf /sys/fs/bpf

# startup NAME WRAP... starts egressd through WRAP (e.g. setpriv) and
# writes "started" or "refused: <its error>" to $out/startup-NAME, and
# whether the optional guards (bpf/guard.c) ran: "packet guard on|off,
# source-route guard on|off".
startup() {
	local name=$1
	shift
	local cg=/sys/fs/cgroup/matrix-startup pins=/sys/fs/bpf/matrix-startup log=/tmp/startup-$name.log
	mkdir -p "$cg"
	printf 'kind: EgressRule\nmetadata: {name: a}\nspec:\n  destination: {service: a.test}\n  ports: [{port: 80, protocol: http}]\n' >/tmp/rules.yaml
	"$@" "$MATRIX_BIN/egressd" run --rules /tmp/rules.yaml --cgroup "$cg" --admin 127.0.0.1:15990 \
		--pin-dir "$pins" >"$log" 2>&1 &
	local pid=$! result="" i
	for ((i = 0; i < 60 * MATRIX_SLOWDOWN; i++)); do
		if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:15990/readyz 2>/dev/null; then
			result=started
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			local rc=$?
			# The last line is the error egressd exits with.
			result="refused (exit $rc): $(grep -v '^\s*$' "$log" | tail -n1 | sed 's/|/\\|/g')"
			break
		fi
		sleep 1
	done
	if [ "$result" = started ]; then
		local guard=on route=on
		grep -Eq 'packet_guard(=|":")"?off' "$log" && guard=off
		grep -Eq 'source_route(=|":")"?off' "$log" && route=off
		kill -TERM "$pid"
		wait "$pid"
		result="started (exit $? on SIGTERM; packet guard $guard, source-route guard $route)"
	elif [ -z "$result" ]; then
		kill -KILL "$pid"
		result="not ready after $((60 * MATRIX_SLOWDOWN))s"
	fi
	"$MATRIX_BIN/egressd" run --uninstall --pin-dir "$pins" >>"$log" 2>&1
	rmdir "$cg"
	cp "$log" "$out/"
	echo "$result" >"$out/startup-$name"
}

# EGRESSD_MATRIX_EXEC (debugging): a command run here instead of the checks.
if [ -n "${MATRIX_EXEC:-}" ]; then
	bash -c "$MATRIX_EXEC" >"$out/exec.log" 2>&1
	echo $? >"$out/exec.rc"
	exit 0
fi

startup least-privilege setpriv --bounding-set -all,+bpf,+net_admin --inh-caps -all --
startup daemonset setpriv --bounding-set -all,+bpf,+net_admin,+perfmon --inh-caps -all --
startup root

for p in $MATRIX_PACKAGES; do
	(
		cd "$MATRIX_REPO/$p" || exit 1
		start=$SECONDS
		EGRESSD_E2E=require EGRESSD_TEST_SLOWDOWN=$MATRIX_SLOWDOWN EGRESSD_E2E_BINARY=$MATRIX_BIN/egressd \
			"$MATRIX_BIN/$p.test" -test.v -test.count=1 -test.timeout=20m ${MATRIX_RUN:+-test.run "$MATRIX_RUN"} ${MATRIX_SKIP:+-test.skip "$MATRIX_SKIP"} ${MATRIX_SHORT:+-test.short} \
			>"$out/$p.log" 2>&1
		echo $? >"$out/$p.rc"
		echo $((SECONDS - start)) >"$out/$p.seconds"
	)
done
sync
