#!/usr/bin/env bash
# vagrant-box.sh builds a Debian bookworm box for Vagrant's libvirt provider
# from Debian's mirror, for hosts that cannot (or would rather not) download
# the published debian/bookworm64 box. Run as root:
#
#	sudo scripts/vagrant-box.sh                     # build, then `vagrant box add` it
#	sudo scripts/vagrant-box.sh --no-add            # build only; prints the .box path
#
# What the box is: a 20 GB qcow2 disk (sparse) with one MBR partition,
# ext4, Debian bookworm (debootstrap, minbase plus systemd, ifupdown with
# DHCP on eth0, openssh-server, sudo, rsync, Debian's linux-image-amd64 — 6.1
# with its initramfs), booted by GRUB (BIOS). The user vagrant (password
# vagrant, passwordless sudo) accepts Vagrant's published insecure key, which
# `vagrant up` replaces with a key of its own at the first boot, as it does
# with every public box. apt's sources: bookworm, bookworm-updates and
# bookworm-security from deb.debian.org.
#
# Nothing is mounted and no loop device is used (neither works in every
# container): the root filesystem is built in a directory with debootstrap,
# written into the disk image at the partition's offset with `mke2fs -d`,
# and GRUB's boot sector and core image (grub-mkimage, from the host's
# grub-pc-bin) are written in front of it with dd, as grub-install would.
#
# Cache (outside the repository): $EGRESSD_BOX_CACHE, default
# /var/cache/egressd/vagrant — debootstrap's downloaded packages (debs/), the
# root directory and the image while building (build/), and the result,
# debian-bookworm64-libvirt.box. Environment:
#	EGRESSD_BOX_CACHE    the cache directory
#	EGRESSD_BOX_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#	EGRESSD_BOX_NAME     the name it is added under (default debian/bookworm64,
#	                     the Vagrantfile's config.vm.box)
#	EGRESSD_BOX_SIZE     disk size in GiB (default 20)
#
# The host needs: debootstrap, e2fsprogs, fdisk (sfdisk), grub-pc-bin,
# qemu-utils (qemu-img) and, to add the box, vagrant. Building takes about
# 5 minutes with a warm package cache (see docs/vagrant.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE=${EGRESSD_BOX_CACHE:-/var/cache/egressd/vagrant}
MIRROR=${EGRESSD_BOX_MIRROR:-http://deb.debian.org/debian}
NAME=${EGRESSD_BOX_NAME:-debian/bookworm64}
SIZE=${EGRESSD_BOX_SIZE:-20}
SUITE=bookworm
BOX=$CACHE/debian-$SUITE-libvirt.box
# Sector where the partition starts (1 MiB): GRUB's core image lives in the
# gap before it.
START=2048
PACKAGES=(
	systemd-sysv udev kmod procps iproute2 ifupdown isc-dhcp-client
	openssh-server sudo rsync ca-certificates linux-image-amd64 initramfs-tools
)

log() { printf 'vagrant-box: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

add=1
case ${1:-} in
--no-add) add="" ;;
"") ;;
-h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
*) die "unknown argument $1 (--no-add)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run me as root (debootstrap)"
for tool in debootstrap mke2fs sfdisk grub-mkimage qemu-img; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap e2fsprogs fdisk grub-pc-bin qemu-utils)"
done
[ -e /usr/lib/grub/i386-pc/boot.img ] || die "GRUB's BIOS images are missing (apt-get install grub-pc-bin)"
key=$(find /usr/share/rubygems-integration /opt/vagrant /usr/lib/ruby -path '*/keys/vagrant.pub' 2>/dev/null | head -n1 || true)
[ -n "$key" ] || die "Vagrant's insecure public key (keys/vagrant.pub) not found: install vagrant"

build=$CACHE/build
root=$build/root
rm -rf "$build"
mkdir -p "$root" "$CACHE/debs"

log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --cache-dir="$CACHE/debs" \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" "$SUITE" "$root" "$MIRROR" >"$build/debootstrap.log" 2>&1 ||
	die "debootstrap failed: see $build/debootstrap.log"

uuid=$(cat /proc/sys/kernel/random/uuid)
kver=$(ls "$root/lib/modules")
[ -e "$root/boot/initrd.img-$kver" ] || die "no initramfs for $kver in the root"

log "configuring the root ($kver)"
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
echo egressd-box >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tegressd-box\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$root/etc/fstab"
cat >"$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF
# A fresh machine-id at first boot (systemd writes it when the file is empty).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" useradd -m -s /bin/bash -U vagrant
echo vagrant:vagrant | chroot "$root" chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$key" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
# Host keys are made at first boot, not shared by every machine from this box.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=SSH host keys for this machine
Before=ssh.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/ssh-hostkeys.service "$root/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
chroot "$root" apt-get clean

log "GRUB"
mkdir -p "$root/boot/grub"
cp -r /usr/lib/grub/i386-pc "$root/boot/grub/"
cat >"$root/boot/grub/grub.cfg" <<EOF
set timeout=1
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $uuid
menuentry "Debian $SUITE ($kver)" {
	linux /boot/vmlinuz-$kver root=UUID=$uuid ro net.ifnames=0 console=tty0 console=ttyS0,115200
	initrd /boot/initrd.img-$kver
}
EOF

log "disk image (${SIZE} GiB, sparse)"
raw=$build/disk.raw
truncate -s "${SIZE}G" "$raw"
printf 'label: dos\nstart=%d, type=83, bootable\n' "$START" | sfdisk -q "$raw"
blocks=$((($(stat -c %s "$raw") - START * 512) / 4096))
mke2fs -q -t ext4 -b 4096 -U "$uuid" -L root -E offset=$((START * 512)) -d "$root" "$raw" "$blocks"
grub-mkimage -O i386-pc -o "$build/core.img" -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2
[ "$(stat -c %s "$build/core.img")" -lt $(((START - 1) * 512)) ] || die "GRUB's core image does not fit before the partition"
# boot.img's first 440 bytes (the partition table after them stays), then
# the core image from sector 1 — boot.img loads sector 1 by default.
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$build/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

log "packing $BOX"
qemu-img convert -f raw -O qcow2 "$raw" "$build/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$SIZE" >"$build/metadata.json"
tar -C "$build" -cf "$BOX.tmp" metadata.json box.img
mv "$BOX.tmp" "$BOX"
rm -rf "$build"

if [ -n "$add" ]; then
	log "vagrant box add --force --name $NAME"
	vagrant box add --force --name "$NAME" "$BOX"
fi
echo "$BOX"
