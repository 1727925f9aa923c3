#!/usr/bin/env bash
# Builds the Debian 12 server disk image the real-server VM tests boot (cached), without loop
# devices or device-mapper:
#  - mmdebstrap (variant apt) unpacks bookworm with systemd as PID 1, udev, dbus, Debian's
#    signed kernel (linux-image-amd64, initramfs-tools), tpm-udev, the libraries vouch-agent's
#    package depends on, and qemu-guest-agent (how the tests type commands into the guest);
#  - small configuration: hostname, fstab (root, the EFI system partition at /boot/efi, the
#    test share over virtio-9p at /mnt/share, nofail), systemd-networkd with DHCP on the
#    virtio NIC, the fleet's broker name in /etc/hosts, the serial console;
#  - an EFI system partition (FAT, mtools) booting as a Secure Boot Debian machine does:
#    Microsoft-signed shim as \EFI\BOOT\BOOTX64.EFI, Debian-signed GRUB, a grub.cfg that loads
#    /vmlinuz and /initrd.img (Debian's symlinks to the newest kernel) from the root file system;
#  - the root file system filled from the directory with `mkfs.ext4 -d`, and both put into a GPT
#    disk image (sfdisk, dd).
# The project's own .deb packages are NOT in the image: the tests install them in the running
# guest with apt, as an operator does (README "Install on a server"), so the image does not
# change with every build.
#
# Cache ($VOUCH_VM_CACHE, default /var/tmp/vouch-vm): debian-base-<key>.tar (mmdebstrap's
# output, keyed by the suite and package list) and debian-server-<key>/disk.raw (keyed by the
# base, this script, and the signed shim and GRUB it copies). The mirror's package versions are
# not part of the key (the mirror moves; delete the files to refresh). Older ones are removed.
# Prints `image=<path>` as its last line of stdout. Needs scripts/vm-prep.sh to have run (it
# unpacks shim-signed and grub-efi-amd64-signed).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VOUCH_VM_CACHE:-/var/tmp/vouch-vm}"
SB="$CACHE/secureboot"
SUITE=bookworm
MIRROR="${VOUCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The guest reaches the host broker at this address (qemu guestfwd; swtpm_tests::vm::initramfs).
BROKER_ADDR=10.0.2.100
BROKER_NAME=vouch-broker
PKGS=(
  systemd systemd-sysv udev dbus libpam-systemd kmod e2fsprogs iproute2 procps less
  linux-image-amd64 initramfs-tools zstd
  qemu-guest-agent
  tpm-udev adduser libgcc-s1 libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-tcti-device0
  libtss2-tctildr0 libtss2-rc0 tpm2-tools
  cryptsetup-bin
)
ROOT_SIZE_MIB=3072
ESP_SIZE_MIB=128

for tool in mmdebstrap mkfs.ext4 sfdisk mformat; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "vm-debian-image: installing mmdebstrap e2fsprogs fdisk mtools" >&2
    apt-get install -y -qq --no-install-recommends mmdebstrap e2fsprogs fdisk mtools >/dev/null
    break
  fi
done
shim="$SB/usr/lib/shim/shimx64.efi.signed"
grub="$SB/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
for f in "$shim" "$grub"; do
  [ -e "$f" ] || { echo "vm-debian-image: $f missing: run scripts/vm-prep.sh first" >&2; exit 1; }
done

# Two cache levels, so that only what changed is rebuilt: the unpacked system (mmdebstrap's
# output as a tarball, keyed by the suite and the package list; minutes) and the disk image made
# from it (keyed by that, this script and shim/GRUB; seconds).
base_key=$(printf '%s\n' "$SUITE" "${PKGS[@]}" | sha256sum | cut -c1-16)
base="$CACHE/debian-base-$base_key.tar"
key=$( { cat "$0"; echo "$base_key"; sha256sum "$shim" "$grub" | cut -d' ' -f1; } |
  sha256sum | cut -c1-16)
out="$CACHE/debian-server-$key"
if [ -s "$out/disk.raw" ] && [ -e "$out/.complete" ]; then
  echo "image=$out/disk.raw"
  exit 0
fi

started=$(date +%s)
work="$(mktemp -d "$CACHE/.debian-XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [ ! -s "$base" ]; then
  echo "vm-debian-image: mmdebstrap $SUITE (a few minutes on a fresh machine)" >&2
  include=$(IFS=,; echo "${PKGS[*]}")
  mmdebstrap --variant=apt --include="$include" --components=main \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$SUITE" "$work/base.tar" "$MIRROR" "deb $MIRROR-security $SUITE-security main" >&2
  mv "$work/base.tar" "$base"
  for old in "$CACHE"/debian-base-*.tar; do [ "$old" = "$base" ] || rm -f "$old"; done
fi
root="$work/root"
mkdir -p "$root"
tar -C "$root" --numeric-owner -xpf "$base"

echo "vouch-server" >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vouch-server\n%s %s\n' "$BROKER_ADDR" "$BROKER_NAME" \
  >"$root/etc/hosts"
cat >"$root/etc/fstab" <<'EOF'
# Written by scripts/vm-debian-image.sh.
LABEL=vouch-root  /           ext4  errors=remount-ro  0  1
LABEL=VOUCHESP    /boot/efi   vfat  umask=0077,nofail  0  2
vouch             /mnt/share  9p    trans=virtio,version=9p2000.L,msize=262144,nofail,x-systemd.device-timeout=10s  0  0
EOF
mkdir -p "$root/boot/efi" "$root/mnt/share"
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/80-vouch-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
# Units: networkd for DHCP (qemu user networking); no timers that fetch or scrub in a test boot.
chroot "$root" systemctl enable systemd-networkd.service >&2
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer man-db.timer >/dev/null 2>&1 || true
# The 9p modules load when the share is mounted; virtio modules come from initramfs-tools' "most".
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/vouch-test-9p.conf"
# Root's password stays locked: the tests talk to qemu-guest-agent, nobody logs in.
# No package lists in the image: apt installs local .deb files whose dependencies are present.
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin

kver=$(readlink "$root/vmlinuz" | sed 's|.*vmlinuz-||')
[ -n "$kver" ] && [ -e "$root/boot/initrd.img-$kver" ] || {
  echo "vm-debian-image: no kernel or initramfs in the image (/vmlinuz -> ${kver:-?})" >&2
  exit 1
}

# The EFI system partition.
esp="$work/esp.img"
truncate -s "${ESP_SIZE_MIB}M" "$esp"
mformat -i "$esp" -F -v VOUCHESP ::
for d in ::/EFI ::/EFI/BOOT ::/EFI/debian; do mmd -i "$esp" "$d"; done
# linuxefi, not linux: with Secure Boot off, Debian 12's GRUB `linux` enters the kernel through
# the legacy boot protocol, the EFI stub never runs, and the kernel gets no TPM event log
# (no /sys/kernel/security/tpm0; seen in this VM). linuxefi always uses the EFI handover.
cat >"$work/grub.cfg" <<'EOF'
# Written by scripts/vm-debian-image.sh: boot the newest kernel on the root file system.
set timeout=0
search --no-floppy --label --set=root vouch-root
linuxefi /vmlinuz root=LABEL=vouch-root ro console=ttyS0 panic=-1
initrdefi /initrd.img
boot
EOF
mcopy -i "$esp" "$shim" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$grub" ::/EFI/BOOT/grubx64.efi
mcopy -i "$esp" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg
mcopy -i "$esp" "$work/grub.cfg" ::/EFI/debian/grub.cfg

# The root file system, then the GPT disk: ESP at 1 MiB, root after it.
rootimg="$work/root.img"
mkfs.ext4 -q -L vouch-root -d "$root" "$rootimg" "${ROOT_SIZE_MIB}M"
disk="$work/disk.raw"
total=$((1 + ESP_SIZE_MIB + ROOT_SIZE_MIB + 1))
truncate -s "${total}M" "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
start=1MiB, size=${ESP_SIZE_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$((1 + ESP_SIZE_MIB))MiB, size=${ROOT_SIZE_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF
dd if="$esp" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$rootimg" of="$disk" bs=1M seek=$((1 + ESP_SIZE_MIB)) conv=notrunc,sparse status=none

rm -rf "$out"
mkdir -p "$out"
mv "$disk" "$out/disk.raw"
echo "$kver" >"$out/kernel-release"
touch "$out/.complete"
# Only the current image is kept.
for old in "$CACHE"/debian-server-*; do
  [ "$old" = "$out" ] || rm -rf "$old"
done
echo "vm-debian-image: built $out/disk.raw (kernel $kver) in $(($(date +%s) - started)) s" >&2
echo "image=$out/disk.raw"
