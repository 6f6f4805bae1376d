#!/usr/bin/env bash
# demo.sh shows egressd at work on this machine, in one command (as root):
#
#	scripts/demo.sh
#
# It installs what is needed (scripts/provision.sh), builds egressd and a
# small upstream program, creates an "external" network namespace on
# 198.18.0.0/24 with HTTP, HTTPS and DNS services, a demo cgroup, starts
# egressd with examples/demo.yaml, and runs curl inside the cgroup: an
# allowed request, a denied one, and plain HTTP to an HTTPS-marked port that
# egressd upgrades to TLS. Everything it made is removed on exit, also on
# failure or Ctrl-C. Nothing leaves the machine: the services live in the
# namespace, and curl is told their address (--resolve) instead of asking
# the real DNS.
#
# The agent uses its default ports (proxy 15001, admin 127.0.0.1:15090); set
# EGRESSD_PROXY_PORT / EGRESSD_ADMIN to move them. EGRESSD_SKIP_PROVISION=1
# skips provisioning.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin

NS=egressd-demo-ext
VETH_HOST=egd-demo0
VETH_EXT=egd-demo1
HOST_ADDR=198.18.0.1/24
EXT_ADDR=198.18.0.2/24
SERVICE=198.18.0.10 # every .test name resolves here, inside the namespace

say() {
	if [ -t 1 ]; then printf '\n\033[1m==> %s\033[0m\n' "$*"; else printf '\n==> %s\n' "$*"; fi
}

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: run me as root (BPF, cgroups, network namespaces)" >&2
	exit 1
fi

# The demo adds host addresses on the test range: take the lock the kernel
# tests take for that (internal/kerneltest.LockHost), so the two never mix.
exec 9>/run/egressd-kerneltest.lock
if ! flock -n 9; then
	echo "demo.sh: waiting for tests using the host network to finish..."
	flock 9
fi

if [ "${EGRESSD_SKIP_PROVISION:-}" != 1 ]; then
	say "provisioning (scripts/provision.sh)"
	scripts/provision.sh
fi

WORK=$(mktemp -d /tmp/egressd-demo.XXXXXX)
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -z "$CGROOT" ]; then
	echo "demo.sh: no cgroup v2 mount in /proc/mounts; egressd needs cgroup v2" >&2
	exit 1
fi
CG=$CGROOT/egressd-demo
BPFFS=$(awk '$3 == "bpf" { print $2; exit }' /proc/mounts)
MOUNTED_BPFFS=""
EGRESSD_PID=""
UPSTREAM_PID=""

cleanup() {
	set +e
	if [ -n "$EGRESSD_PID" ]; then
		kill -TERM "$EGRESSD_PID" 2>/dev/null
		wait "$EGRESSD_PID" 2>/dev/null
	fi
	if [ -n "$BPFFS" ] && [ -x "$WORK/egressd" ]; then
		"$WORK/egressd" run --uninstall --pin-dir "$BPFFS/egressd-demo" 2>/dev/null
	fi
	if [ -n "$UPSTREAM_PID" ]; then
		kill -TERM "$UPSTREAM_PID" 2>/dev/null
		wait "$UPSTREAM_PID" 2>/dev/null
	fi
	ip link del "$VETH_HOST" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	[ -d "$CG" ] && rmdir "$CG" 2>/dev/null
	[ -n "$MOUNTED_BPFFS" ] && umount "$MOUNTED_BPFFS" 2>/dev/null
	rm -rf "$WORK"
	echo
	echo "demo.sh: cleaned up (namespace $NS, cgroup $CG, pins, processes)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building egressd and the demo upstream"
go build -o "$WORK/egressd" ./cmd/egressd
go build -o "$WORK/upstream" ./scripts/demo/upstream

if [ -z "$BPFFS" ]; then
	BPFFS=/sys/fs/bpf
	mount -t bpf bpf "$BPFFS"
	MOUNTED_BPFFS=$BPFFS
fi

say "topology: namespace $NS ($SERVICE), cgroup $CG"
# Leftovers of an interrupted run would make the steps below fail.
ip link del "$VETH_HOST" 2>/dev/null || true
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip link add "$VETH_HOST" type veth peer name "$VETH_EXT"
ip link set "$VETH_EXT" netns "$NS"
ip addr add "$HOST_ADDR" dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip -n "$NS" addr add "$EXT_ADDR" dev "$VETH_EXT"
ip -n "$NS" addr add "$SERVICE/24" dev "$VETH_EXT"
ip -n "$NS" link set "$VETH_EXT" up
ip -n "$NS" link set lo up
mkdir -p "$CG"

ip netns exec "$NS" "$WORK/upstream" -addr "$SERVICE" -ca "$WORK/ca.pem" 2>"$WORK/upstream.log" &
UPSTREAM_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.05; done
[ -s "$WORK/ca.pem" ] || { cat "$WORK/upstream.log"; exit 1; }

RUN=("$WORK/egressd" run --rules examples/demo.yaml --cgroup "$CG" --dns "$SERVICE"
	--ca-file "$WORK/ca.pem" --pin-dir "$BPFFS/egressd-demo")
say "starting the agent"
echo "egressd run --rules examples/demo.yaml --cgroup $CG --dns $SERVICE --ca-file ca.pem --pin-dir $BPFFS/egressd-demo"
"${RUN[@]}" >"$WORK/egressd.log" 2>&1 &
EGRESSD_PID=$!
ADMIN=${EGRESSD_ADMIN:-127.0.0.1:15090}
for _ in $(seq 200); do
	curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break
	kill -0 "$EGRESSD_PID" 2>/dev/null || { cat "$WORK/egressd.log"; exit 1; }
	sleep 0.05
done
curl -fsS "http://$ADMIN/readyz"

# in_cgroup runs a command as a process of the demo cgroup: the BPF hooks
# redirect its connections to egressd. The app knows nothing of egressd.
in_cgroup() {
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"
}

# app NAME PORT EXPECT: what an application in the cgroup does. The demo
# fails unless the response holds EXPECT (a status line or a body line).
app() {
	local name=$1 port=$2 expect=$3 out
	echo "\$ curl http://$name:$port/"
	out=$(in_cgroup curl -sS --max-time 10 -i --resolve "$name:$port:$SERVICE" "http://$name:$port/" 2>&1 | tr -d '\r' || true)
	grep -E '^(HTTP/|proto:|host:|tls:|sni: .|egressd:|curl:)' <<<"$out" | sed 's/^/    /'
	if ! grep -qF -- "$expect" <<<"$out"; then
		echo "demo.sh: expected \"$expect\" in the response above" >&2
		DEMO_FAILED=1
	fi
}
DEMO_FAILED=0

echo
echo "Each step runs curl inside the cgroup. curl connects to $SERVICE (its"
echo "--resolve stands in for DNS); the BPF connect hook sends the connection to"
echo "egressd, which decides by the Host and the original port."

say "1. allowed: *.allowed.test port 80 is in the rules"
app api.allowed.test 80 'HTTP/1.1 200'

say "2. denied: no rule allows evil.example.test"
app evil.example.test 80 'HTTP/1.1 403'

say "3. HTTPS-marked port: the app speaks plain HTTP to port 443; egressd originates TLS"
app tls.whitelisted.test 443 'tls: true'
echo "    (the upstream reports tls: true and the SNI it received)"

say "egressd's access log"
# Access-log lines are written in batches (at most 100 ms late): wait for the three.
for _ in $(seq 50); do
	[ "$(grep -c 'msg=request' "$WORK/egressd.log" || true)" -ge 3 ] && break
	sleep 0.1
done
{ grep 'msg=request' "$WORK/egressd.log" || echo "(no access-log lines yet)"; } | sed -E 's/^time=[^ ]+ level=INFO msg=request /    /'

say "a few metrics (curl http://$ADMIN/metrics)"
curl -fsS "http://$ADMIN/metrics" | grep -E '^egressd_(requests_total|redirect_events_total\{event="redirected"\}|rules )' | sed 's/^/    /'

if [ "$DEMO_FAILED" -ne 0 ]; then
	echo "demo.sh: a step did not show what it should (see above)" >&2
	exit 1
fi
