#!/usr/bin/env bash
# Installs the Debian packages Vouch's build, tests and demo need, idempotently.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libtss2-dev tpm2-tools swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus
  openssl cryptsetup-bin systemd binutils dpkg-dev ima-evm-utils fuse3 libtss2-tcti-swtpm0
  mosquitto mosquitto-clients
  postgresql
  prometheus python3-venv chromium
  qemu-system-x86 ovmf busybox-static dmsetup mtools
  pesign shim-signed grub-efi-amd64-signed
  initramfs-tools-core cpio zstd xz-utils
  "$@"
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyJWT, the relying party's JWT library in fleet/tests/http_api.rs (independent of the signer).
VENV=/var/tmp/vouch-tools/pyjwt-venv
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p /var/tmp/vouch-tools
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'PyJWT[crypto]==2.10.1'
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
