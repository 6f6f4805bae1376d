#!/usr/bin/env bash
# kernel-matrix.sh boots Debian's own kernels in QEMU and runs egressd's
# kernel tests inside each one, as root with EGRESSD_E2E=require, plus a
# start-up check of the agent with the minimum capabilities (CAP_BPF and
# CAP_NET_ADMIN), with the DaemonSet's (those and CAP_PERFMON, for the packet
# guard: deploy/daemonset.yaml) and as root. Run as root:
#
#	sudo scripts/kernel-matrix.sh                   # the full matrix: 5.10, 6.1, 6.12
#	sudo scripts/kernel-matrix.sh --ci              # CI's subset (see below)
#	sudo scripts/kernel-matrix.sh bookworm          # one kernel, by Debian suite
#	sudo scripts/kernel-matrix.sh --record docs/kernel-matrix.md   # full, and write the results
#
# The kernels: linux-image-amd64 of bullseye (5.10), bookworm (6.1) and
# trixie (6.12), fetched from the Debian mirror with apt-get download and a
# suite-specific sources list. 5.10 is below egressd's minimum (5.14): there
# the agent must refuse to start with an error naming what is missing and
# the version that has it ("needs ... (Linux 5.14)"), and the matrix checks
# exactly that; the kernels at or above the minimum must pass every test.
#
# The guest: no disk image. A small initramfs (static busybox, the kernel's
# virtio/9p/veth modules) mounts the host's root filesystem read-only over
# 9p, puts tmpfs on /tmp and /run, and chroots into it, so the guest runs
# the host's curl, nsenter, setpriv and bash with the test binaries built
# here on the host (go test -c). Results come back through a second,
# writable 9p share. The guest has no network device at all (the tests use
# network namespaces and veth pairs inside it).
#
# KVM is used when /dev/kvm can actually run a guest (probed by booting the
# first kernel with an init that only powers off), TCG otherwise; the tests'
# deadlines are scaled by EGRESSD_TEST_SLOWDOWN (5 under TCG, 1 with KVM).
#
# --ci: bookworm (6.1, the DaemonSet's least-privilege case included) with
# both packages, and bullseye (5.10) with the start-up
# check only. The full
# matrix is the command without arguments.
#
# Cache (outside the repository, reused across runs): $EGRESSD_MATRIX_CACHE,
# default /var/cache/egressd/kernel-matrix — apt lists per suite, the
# unpacked kernels and their initramfs keyed by kernel package version, and
# runs/<time>/ with every log. Environment:
#	EGRESSD_MATRIX_CACHE     the cache directory
#	EGRESSD_MATRIX_ACCEL     auto (default), kvm or tcg
#	EGRESSD_MATRIX_TIMEOUT   hard limit per kernel in seconds (default 1500)
#	EGRESSD_MATRIX_REFRESH   1: update the apt lists even if they are fresh
#	EGRESSD_MATRIX_RUN       -test.run pattern for both packages (default: all)
#	EGRESSD_MATRIX_SKIP      -test.skip pattern (default: TestE2EFloodFromOnePod, whose
#	                         bounds — a request every 100 ms, none over 1 s — are wall-clock
#	                         figures about the proxy, not the kernel; under TCG's ~5x slowdown
#	                         they measure the emulator. It runs on the host in every CI run.
#	                         EGRESSD_MATRIX_SKIP= runs it in the guests too; and
#	                         TestE2EKubernetes, which needs etcd and kube-apiserver —
#	                         the guest has neither; its BPF paths are the other
#	                         tests' and it runs on the host in every CI run.)
#	EGRESSD_MATRIX_EXEC      debugging: a shell command run in each guest
#	                         instead of the checks (output: runs/.../exec.log)
#
# Exit status 0 when every kernel did what it must, 1 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
export PATH=/usr/local/bin:$PATH:/usr/local/go/bin

CACHE=${EGRESSD_MATRIX_CACHE:-/var/cache/egressd/kernel-matrix}
ACCEL=${EGRESSD_MATRIX_ACCEL:-auto}
TIMEOUT=${EGRESSD_MATRIX_TIMEOUT:-1500}
PACKAGES=(redirect e2e)

# suite -> what the agent must do there: run, or refuse with this message.
declare -A EXPECT=([bullseye]=refuse [bookworm]=run [trixie]=run)
REFUSAL='needs .*\(Linux 5\.14\)'
# Modules the guest needs (with their dependencies, which modprobe resolves).
MODULES=(virtio_pci virtio_rng 9pnet_virtio 9p veth)

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

ci=""
record=""
suites=()
while [ $# -gt 0 ]; do
	case $1 in
	--ci) ci=1 ;;
	--record) record=$2; shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
	bullseye | bookworm | trixie) suites+=("$1") ;;
	*) die "unknown argument $1 (suites: bullseye bookworm trixie; --ci; --record FILE)" ;;
	esac
	shift
done
if [ ${#suites[@]} -eq 0 ]; then
	if [ -n "$ci" ]; then suites=(bookworm bullseye); else suites=(bullseye bookworm trixie); fi
fi
[ "$(id -u)" -eq 0 ] || die "run me as root (QEMU's 9p shares, and the guest runs as root)"
for tool in qemu-system-x86_64 busybox modprobe depmod cpio apt-get go setpriv; do
	command -v "$tool" >/dev/null || die "$tool is missing: run scripts/provision.sh"
done

# apt_for SUITE ARGS... runs apt-get or apt-cache ($APT) against SUITE only.
apt_for() {
	local suite=$1 tool=$2
	shift 2
	local d=$CACHE/apt/$suite
	"$tool" -q -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
		-o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" -o Dir::State::Status=/dev/null \
		-o APT::Architecture=amd64 -o APT::Sandbox::User=root "$@"
}

# fetch_kernel SUITE prints the directory of SUITE's current kernel
# (vmlinuz, initrd, version), fetching and unpacking it when not cached.
fetch_kernel() {
	local suite=$1 d=$CACHE/apt/$1
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$d/sources.list"
	if [ "${EGRESSD_MATRIX_REFRESH:-}" = 1 ] || [ -z "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mtime -7 2>/dev/null)" ]; then
		log "$suite: apt-get update"
		apt_for "$suite" apt-get update >/dev/null
	fi
	local pkg ver
	pkg=$(apt_for "$suite" apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
	[ -n "$pkg" ] || die "$suite: no linux-image-amd64 dependency in the apt lists"
	ver=$(apt_for "$suite" apt-cache show "$pkg" | awk '/^Version:/ { print $2; exit }')
	local k=$CACHE/kernels/$pkg-$ver
	if [ ! -e "$k/done" ]; then
		log "$suite: downloading $pkg $ver"
		rm -rf "$k" && mkdir -p "$k/deb"
		(cd "$k/deb" && apt_for "$suite" apt-get download "$pkg" >/dev/null)
		dpkg-deb -x "$k"/deb/*.deb "$k/root"
		build_initrd "$k"
		rm -rf "$k/deb"
		touch "$k/done"
	fi
	# A cached initramfs carries the /init of the run that built it.
	if ! cmp -s "$REPO/scripts/kernel-matrix-init.sh" "$k/initrd.d/init"; then
		build_initrd "$k"
	fi
	echo "$k"
}

# build_initrd K builds K/initrd: busybox, the modules in load order, /init.
build_initrd() {
	local k=$1 base kver
	base=$k/root
	[ -d "$base/usr/lib/modules" ] && [ ! -d "$base/lib/modules" ] && base=$k/root/usr
	kver=$(ls "$base/lib/modules")
	cp "$k"/root/boot/vmlinuz-* "$k/vmlinuz"
	echo "$kver" >"$k/version"
	depmod -b "$base" "$kver"
	local ird=$k/initrd.d
	rm -rf "$ird" && mkdir -p "$ird"/{bin,dev,proc,sys,root,lib/modules}
	cp "$(command -v busybox)" "$ird/bin/busybox"
	for a in sh mount umount insmod chroot poweroff mkdir cat echo sleep sync; do ln -s busybox "$ird/bin/$a"; done
	local m f n=0
	: >"$ird/modules.order"
	for m in "${MODULES[@]}"; do
		modprobe -d "$base" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
	done | awk '!seen[$0]++' | while read -r f; do
		n=$((n + 1))
		local out=$ird/lib/modules/$(printf '%02d' $n)-$(basename "${f%.xz}")
		out=${out%.zst}
		case $f in
		*.xz) xz -dc "$f" >"$out" ;;
		*.zst) zstd -qdc "$f" >"$out" ;;
		*) cp "$f" "$out" ;;
		esac
		basename "$out" >>"$ird/modules.order"
	done
	cp "$REPO/scripts/kernel-matrix-init.sh" "$ird/init"
	chmod +x "$ird/init"
	(cd "$ird" && find . | cpio -o -H newc --quiet) | gzip -1 >"$k/initrd"
}

# qemu_run K OUT ACCEL SECONDS boots kernel K with OUT shared writable; the
# console goes to OUT/console.log.
qemu_run() {
	local k=$1 out=$2 accel=$3 secs=$4 cpu=max
	[ "$accel" = kvm ] && cpu=host
	timeout --kill-after=10 "$secs" qemu-system-x86_64 \
		-accel "$accel" -cpu "$cpu" -smp 2 -m 3072 \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$k/vmlinuz" -initrd "$k/initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4" \
		-serial "file:$out/console.log" \
		-nic none \
		-device virtio-rng-pci \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$out,mount_tag=out,security_model=none,multidevs=remap" </dev/null
}

# pick_accel K prints kvm if /dev/kvm boots K's probe, else tcg.
pick_accel() {
	case $ACCEL in kvm | tcg) echo "$ACCEL"; return ;; esac
	if [ -w /dev/kvm ]; then
		local p=$RUN/kvm-probe
		mkdir -p "$p" && echo probe >"$p/mode"
		if qemu_run "$1" "$p" kvm 60 >"$p/qemu.log" 2>&1 && [ -e "$p/probe-ok" ]; then
			echo kvm
			return
		fi
		log "/dev/kvm is present but cannot run this guest ($(tail -n1 "$p/qemu.log" 2>/dev/null)): using TCG"
	fi
	echo tcg
}

build_binaries() {
	local bin=$1
	mkdir -p "$bin"
	go build -buildvcs=false -o "$bin/egressd" ./cmd/egressd
	local p
	for p in "${PACKAGES[@]}"; do
		go test -c -o "$bin/$p.test" "./$p"
	done
}

# run_kernel SUITE K prints one result line per check into $RUN/$SUITE/.
run_kernel() {
	local suite=$1 k=$2 out=$RUN/$1 pkgs=("${PACKAGES[@]}")
	mkdir -p "$out"
	# A refusing kernel in the CI subset: the start-up check alone.
	if [ -n "$ci" ] && [ "${EXPECT[$suite]}" = refuse ]; then pkgs=(); fi
	cat >"$out/env" <<-EOF
		MATRIX_REPO='/run/egressd-repo'
		MATRIX_BIN='$RUN/bin'
		MATRIX_PACKAGES='${pkgs[*]}'
		MATRIX_SLOWDOWN='$SLOWDOWN'
		MATRIX_RUN='${EGRESSD_MATRIX_RUN:-}'
		MATRIX_SKIP='${EGRESSD_MATRIX_SKIP-TestE2EFloodFromOnePod|TestE2EKubernetes}'
		MATRIX_EXEC='${EGRESSD_MATRIX_EXEC:-}'
	EOF
	echo run >"$out/mode"
	local t0=$SECONDS rc=0
	qemu_run "$k" "$out" "$ACCEL_USED" "$TIMEOUT" >"$out/qemu.log" 2>&1 || rc=$?
	echo $((SECONDS - t0)) >"$out/seconds"
	[ "$rc" -eq 124 ] && echo "timed out after ${TIMEOUT}s" >"$out/qemu-timeout"
	return 0
}

# verdict SUITE prints the kernel's result row and returns 1 if it is wrong.
verdict() {
	local suite=$1 out=$RUN/$1 ok=1 row
	local kver startup_lp startup_ds startup_root
	kver=$(cat "$out/kernel" 2>/dev/null || echo "?")
	startup_lp=$(cat "$out/startup-least-privilege" 2>/dev/null || echo "no result")
	startup_ds=$(cat "$out/startup-daemonset" 2>/dev/null || echo "no result")
	startup_root=$(cat "$out/startup-root" 2>/dev/null || echo "no result")
	case ${EXPECT[$suite]} in
	run)
		# The minimum (CAP_BPF+CAP_NET_ADMIN) must run with the
		# source-route guard (the packet guard needs CAP_PERFMON); the
		# DaemonSet's set (+CAP_PERFMON) and root run both guards.
		[[ $startup_lp == started*"source-route guard on"* ]] || ok=""
		[[ $startup_ds == started*"packet guard on, source-route guard on"* ]] || ok=""
		[[ $startup_root == started*"packet guard on, source-route guard on"* ]] || ok=""
		;;
	refuse)
		[[ $startup_lp == refused* ]] && grep -Eq "$REFUSAL" <<<"$startup_lp" || ok=""
		[[ $startup_root == refused* ]] && grep -Eq "$REFUSAL" <<<"$startup_root" || ok=""
		;;
	esac
	row="| $kver ($suite) | $(cat "$out/seconds" 2>/dev/null)s | $startup_lp | $startup_ds | $startup_root |"
	local p f
	for p in "${PACKAGES[@]}"; do
		f=$out/$p.log
		if [ ! -e "$f" ]; then
			row+=" not run |"
			[ "${EXPECT[$suite]}" = run ] && ok=""
			continue
		fi
		local pass fail skip rc
		pass=$(grep -c '^--- PASS' "$f" || true)
		fail=$(grep -c '^--- FAIL' "$f" || true)
		skip=$(grep -c '^--- SKIP' "$f" || true)
		rc=$(cat "$out/$p.rc" 2>/dev/null || echo "?")
		row+=" $pass pass, $fail fail, $skip skip (exit $rc) |"
		if [ "${EXPECT[$suite]}" = run ] && { [ "$rc" != 0 ] || [ "$fail" != 0 ] || [ "$skip" != 0 ] || [ "$pass" = 0 ]; }; then
			ok=""
		fi
	done
	[ -e "$out/qemu-timeout" ] && { row+=" $(cat "$out/qemu-timeout") |"; ok=""; }
	if [ -n "$ok" ]; then row+=" ok |"; else row+=" **WRONG** |"; fi
	echo "$row"
	[ -n "$ok" ]
}

RUN=$CACHE/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
log "run directory $RUN"
declare -A KDIR=()
t0=$SECONDS
for s in "${suites[@]}"; do KDIR[$s]=$(fetch_kernel "$s"); done
log "kernels ready in $((SECONDS - t0))s"
t0=$SECONDS
build_binaries "$RUN/bin"
log "test binaries built in $((SECONDS - t0))s"
ACCEL_USED=$(pick_accel "${KDIR[${suites[0]}]}")
SLOWDOWN=1
[ "$ACCEL_USED" = tcg ] && SLOWDOWN=5
log "accelerator $ACCEL_USED (EGRESSD_TEST_SLOWDOWN=$SLOWDOWN)"

header="| kernel | boot + tests | agent start-up, CAP_BPF+CAP_NET_ADMIN | agent start-up, +CAP_PERFMON (DaemonSet) | agent start-up, root |"
for p in "${PACKAGES[@]}"; do header+=" \`$p\` |"; done
header+=" verdict |"
sep=$(sed 's/[^|]/-/g; s/--*/ --- /g' <<<"$header")
rows=()
status=0
for s in "${suites[@]}"; do
	log "$s: booting $(cat "${KDIR[$s]}/version") ($ACCEL_USED)"
	run_kernel "$s" "${KDIR[$s]}"
	row=$(verdict "$s") || status=1
	rows+=("$row")
	log "$s: ${row}"
done

report=$RUN/report.md
{
	echo "Kernel matrix, $(date -u '+%Y-%m-%d %H:%M UTC'), QEMU $ACCEL_USED, egressd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), \`scripts/kernel-matrix.sh ${ci:+--ci }${suites[*]}\`"
	echo
	echo "$header"
	echo "$sep"
	printf '%s\n' "${rows[@]}"
	echo
	for s in "${suites[@]}"; do
		for p in "${PACKAGES[@]}"; do
			f=$RUN/$s/$p.log
			[ -e "$f" ] || continue
			echo "- $(cat "$RUN/$s/kernel" 2>/dev/null) \`$p\`: $(grep -E '^--- (PASS|FAIL|SKIP)' "$f" | sed -E 's/^--- (PASS|FAIL|SKIP): ([^ ]*).*/\2 \1/' | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
		done
	done
} >"$report"
cat "$report"
# --record: the file's text up to its results marker stays; the report
# replaces what follows it.
if [ -n "$record" ]; then
	marker='<!-- kernel-matrix.sh --record writes below this line -->'
	grep -qF "$marker" "$record" || die "$record has no line $marker"
	{ sed "/$marker/q" "$record"; echo; cat "$report"; } >"$record.tmp"
	mv "$record.tmp" "$record"
	log "results written to $record"
fi
for s in "${suites[@]}"; do
	for p in "${PACKAGES[@]}"; do
		f=$RUN/$s/$p.log
		if [ -e "$f" ] && [ "${EXPECT[$s]}" = run ] && grep -q '^--- FAIL' "$f"; then
			log "$s $p failures (full log: $f):"
			# The lines before a "--- FAIL" hold the test's own messages
			# (go test -v prints them as they come, the verdict after).
			grep -E -B25 -A30 '^--- FAIL' "$f" | head -n 120 >&2
		fi
	done
done
exit "$status"
