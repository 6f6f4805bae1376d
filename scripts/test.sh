#!/usr/bin/env bash
# test.sh runs egressd's whole test suite — unit, kernel and end-to-end tests —
# the way CI does. Run it as root on Debian/Ubuntu:
#
#	sudo scripts/test.sh            # provisions first, then go test ./...
#	sudo scripts/test.sh -run TestE2E ./e2e/   # extra arguments go to go test
#
# EGRESSD_E2E defaults to "require": a kernel or end-to-end test that would
# skip (not root, no cgroup v2, no BPF) fails instead. Set EGRESSD_E2E= (empty)
# to let them skip. EGRESSD_SKIP_PROVISION=1 skips scripts/provision.sh (.ci/run
# has already provisioned).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${EGRESSD_SKIP_PROVISION:-}" != 1 ]; then
	scripts/provision.sh
fi
# provision.sh may have just linked Go into /usr/local/bin.
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin
export EGRESSD_E2E=${EGRESSD_E2E-require}
# l7's TestLongPauseInsideABody: a 90 s pause inside a response body (runs in parallel).
export EGRESSD_LONG_TESTS=${EGRESSD_LONG_TESTS-1}
# One test suite per machine at a time: it uses fixed test subnets and ports
# in the host network namespace.
if [ "$(id -u)" -eq 0 ]; then
	exec 8>/run/egressd-suite.lock
	if ! flock -n 8; then
		echo "$0: waiting for another test suite on this machine (/run/egressd-suite.lock)..." >&2
		flock 8
	fi
fi

args=("$@")
if [ "${#args[@]}" -eq 0 ]; then
	args=(./...)
fi
# -count=1: never serve kernel results from the test cache.
# -p 2: at most two packages at once; the kernel tests share one machine.
# -timeout: 12 minutes a package, stretched like the tests' own deadlines by
# EGRESSD_TEST_SLOWDOWN (an emulated VM: the Vagrantfile sets 5 under TCG).
minutes=$(awk -v f="${EGRESSD_TEST_SLOWDOWN:-1}" 'BEGIN { if (f + 0 < 1) f = 1; m = 12 * f; print (m == int(m)) ? m : int(m) + 1 }')
exec go test -count=1 -p 2 -timeout "${minutes}m" "${args[@]}"
