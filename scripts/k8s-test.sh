#!/usr/bin/env bash
# scripts/k8s-test.sh runs the cluster tests (e2e/k8s, build tag k8s): the
# DaemonSet of deploy/ on a real single-node cluster that the test starts
# (scripts/k8s-up.sh) and removes (scripts/k8s-down.sh). Run as root:
#
#	sudo scripts/k8s-test.sh [go test flags]
#
# The first run builds Kubernetes (scripts/k8s-build.sh: 7-15 min on 2
# cores, cached in /var/cache/egressd/k8s/<version>); later runs take ~2 min.
# EGRESSD_E2E defaults to "require", as in scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin
export EGRESSD_E2E=${EGRESSD_E2E-require}
# One cluster test run per machine at a time: it uses fixed test subnets and ports
# in the host network namespace.
if [ "$(id -u)" -eq 0 ]; then
	exec 8>/run/egressd-k8s.lock
	if ! flock -n 8; then
		echo "$0: waiting for another cluster test run on this machine (/run/egressd-k8s.lock)..." >&2
		flock 8
	fi
fi
if [ "$(id -u)" -eq 0 ]; then
	scripts/k8s-build.sh >/dev/null
fi
# A test binary that hits -timeout panics without running its cleanups:
# remove the cluster here too (k8s-down.sh is idempotent).
rc=0
go test -tags k8s -count=1 -timeout "${EGRESSD_K8S_TEST_TIMEOUT:-10m}" -v "$@" ./e2e/k8s/ || rc=$?
if [ "$(id -u)" -eq 0 ] && [ -d "${EGRESSD_K8S_STATE:-/run/egressd-k8s}" ]; then
	scripts/k8s-down.sh
fi
exit "$rc"
