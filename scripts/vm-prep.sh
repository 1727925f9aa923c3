#!/usr/bin/env bash
# Prepares what the measured-boot VM tests need, idempotently:
#  - Debian packages: qemu-system-x86, ovmf, swtpm (+ tools), busybox-static, and cryptsetup-bin
#    and dmsetup (copied into the guest), mtools (the EFI system partition image); for the
#    Debian server image (scripts/vm-debian-image.sh) mmdebstrap, fdisk (sfdisk) and qemu-utils
#    (qemu-img: each test machine boots a copy-on-write overlay of the cached image);
#  - Debian's signed shim and grub (shim-signed, grub-efi-amd64-signed), downloaded and unpacked
#    (not installed) under the cache directory, for Secure Boot with Microsoft's keys;
#  - the exact current Debian 12 kernel package (the one linux-image-amd64 depends on), fetched
#    with `apt-get download` and unpacked with `dpkg -x` under the cache directory.
# Cache: $VOUCH_VM_CACHE, default /var/tmp/vouch-vm. Prints, as its last line of stdout,
# `kernel_dir=<dir>` (the unpacked package: boot/vmlinuz-*, boot/config-*, lib/modules/*).
# The Rust harness (swtpm_tests::vm::prep) runs this script and reads that line.
set -euo pipefail

CACHE="${VOUCH_VM_CACHE:-/var/tmp/vouch-vm}"
PKGS=(qemu-system-x86 ovmf swtpm swtpm-tools busybox-static cryptsetup-bin dmsetup mtools
  mmdebstrap fdisk qemu-utils e2fsprogs)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "vm-prep: installing ${missing[*]}" >&2
  # A partly failing update (a mirror mid-sync) leaves usable indexes: go on and let install decide.
  $SUDO apt-get update -qq || echo "vm-prep: apt-get update reported errors; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
# The kernel: pinned once per cache (the name is recorded), so reruns do not hit the network.
if [ -s "$CACHE/kernel-package" ]; then
  pkg="$(cat "$CACHE/kernel-package")"
else
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
  if [ -z "$pkg" ]; then
    echo "vm-prep: cannot tell which linux-image-*-amd64 package linux-image-amd64 depends on" >&2
    exit 1
  fi
fi
dir="$CACHE/$pkg"
if [ ! -e "$dir/.unpacked" ]; then
  work="$(mktemp -d "$CACHE/.dl-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "vm-prep: downloading $pkg" >&2
  (cd "$work" && apt-get download -qq "$pkg" >/dev/null)
  deb="$(ls "$work"/*.deb)"
  rm -rf "$dir"
  mkdir -p "$work/x"
  dpkg -x "$deb" "$work/x"
  mv "$work/x" "$dir"
  touch "$dir/.unpacked"
  rm -rf "$work"
fi
# Signed shim (Microsoft-signed) and grub (Debian-signed), unpacked side by side.
if [ ! -e "$CACHE/secureboot/.unpacked" ]; then
  work="$(mktemp -d "$CACHE/.dl-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "vm-prep: downloading shim-signed and grub-efi-amd64-signed" >&2
  (cd "$work" && apt-get download -qq shim-signed grub-efi-amd64-signed >/dev/null)
  mkdir -p "$work/x"
  for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/x"; done
  rm -rf "$CACHE/secureboot"
  mv "$work/x" "$CACHE/secureboot"
  touch "$CACHE/secureboot/.unpacked"
  rm -rf "$work"
fi
ls "$CACHE/secureboot/usr/lib/shim/shimx64.efi.signed" \
  "$CACHE/secureboot/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" >/dev/null
echo "$pkg" >"$CACHE/kernel-package.tmp" && mv "$CACHE/kernel-package.tmp" "$CACHE/kernel-package"
ls "$dir"/boot/vmlinuz-* >/dev/null
echo "secureboot_dir=$CACHE/secureboot"
echo "kernel_dir=$dir"
