#!/bin/sh
# /init of kernel-matrix.sh's initramfs (busybox sh, PID 1). It loads the
# modules, mounts the host's root read-only (9p tag hostroot) with tmpfs on
# the directories tests write to, mounts the writable share (tag out) at
# /run/matrix and runs scripts/kernel-matrix-guest.sh in a chroot of the
# host's root. Mode "probe" (out/mode) only proves the guest booted.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
	insmod "/lib/modules/$m" || echo "init: insmod $m failed"
done </modules.order
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || echo "init: no out share"
if [ "$(cat /out/mode 2>/dev/null)" = probe ]; then
	echo ok >/out/probe-ok
	sync
	poweroff -f
fi
r=/root
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot $r
mount -t proc proc $r/proc
mount -t sysfs sys $r/sys
mount -t devtmpfs dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs shm $r/dev/shm
for d in tmp run var/tmp root; do
	mount -t tmpfs -o mode=1777 tmpfs $r/$d
done
mkdir -p $r/run/matrix
mount --move /out $r/run/matrix
# The repository has a share of its own: a clone under /tmp, /run or /root
# (tmpfs in the guest) would be hidden otherwise.
mkdir -p $r/run/egressd-repo
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose repo $r/run/egressd-repo || echo "init: no repo share"
. $r/run/matrix/env
chroot $r /bin/bash "$MATRIX_REPO/scripts/kernel-matrix-guest.sh"
echo "init: guest script exited $?"
sync
poweroff -f
