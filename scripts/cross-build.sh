#!/usr/bin/env bash
# Cross-builds vouch-agent for 64-bit and 32-bit ARM with Debian's cross compilers, then runs the
# binaries under qemu-user against a private swtpm: `tpm info`, and a `quote` that
# tpm2_checkquote must accept. Idempotent: installs only what is missing, fetches the foreign
# TPM libraries once.
#
# Usage: scripts/cross-build.sh [TRIPLE...]
#   default triples: aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
# Environment: CARGO_TARGET_DIR (default ./target), VOUCH_CROSS_SYSROOT (default
#   $CARGO_TARGET_DIR/cross-sysroot), VOUCH_CROSS_NO_RUN=1 to build only.
#
# Foreign libraries: `dpkg --add-architecture` makes the arm64/armhf package indexes available,
# but installing libtss2-dev:arm64 with dpkg (multiarch) requires every shared dependency, e.g.
# libssl3, at exactly the host's version, which fails whenever the host has a security update the
# foreign index does not have yet. So the script downloads the foreign .debs with
# `apt-get download` and unpacks them into a sysroot that pkg-config, the linker and qemu use;
# the host's package set is not touched beyond the cross compilers and qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
sysroot_base="${VOUCH_CROSS_SYSROOT:-$target_dir/cross-sysroot}"
export TSS2_LOG="${TSS2_LOG:-all+none}"

# Per target: Debian architecture, GNU triple (compiler prefix and multiarch dir), qemu binary.
debarch_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo arm64 ;;
    armv7-unknown-linux-gnueabihf) echo armhf ;;
    *) echo "cross-build.sh: unsupported target $1" >&2; exit 2 ;;
  esac
}
gnu_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
  esac
}
qemu_of() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo qemu-aarch64-static ;;
    armv7-unknown-linux-gnueabihf) echo qemu-arm-static ;;
  esac
}

# What linking and running vouch-agent needs from the foreign architecture (libc comes with the
# cross toolchain's libc6-dev-*-cross).
FOREIGN_PKGS=(libtss2-dev libtss2-esys-3.0.2-0 libtss2-sys1 libtss2-mu0 libtss2-tctildr0
  libtss2-rc0 libtss2-tcti-swtpm0 libtss2-tcti-device0 libtss2-tcti-mssim0 libtss2-tcti-cmd0
  libssl3)

host_pkgs=(qemu-user-static swtpm swtpm-tools tpm2-tools pkg-config)
need_update=0
for t in "${targets[@]}"; do
  arch=$(debarch_of "$t")
  host_pkgs+=("gcc-$(gnu_of "$t" | tr _ -)" "libc6-dev-$arch-cross")
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "cross-build.sh: dpkg --add-architecture $arch" >&2
    dpkg --add-architecture "$arch"
    need_update=1
  fi
done
if ((need_update)); then apt-get update -qq || true; fi
./scripts/install-deps.sh "${host_pkgs[@]}" >&2

fetch_sysroot() { # $1 = Debian arch; unpacks FOREIGN_PKGS into $sysroot_base/$1 once
  local arch=$1 dir="$sysroot_base/$1" stamp
  stamp="$dir/.vouch-pkgs"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${FOREIGN_PKGS[*]}" ]; then return; fi
  echo "cross-build.sh: fetching ${FOREIGN_PKGS[*]} for $arch" >&2
  rm -rf "$dir"
  mkdir -p "$dir/debs"
  local specs=()
  for p in "${FOREIGN_PKGS[@]}"; do specs+=("$p:$arch"); done
  if ! (cd "$dir/debs" && apt-get download -q "${specs[@]}" >&2); then
    apt-get update -qq || true
    (cd "$dir/debs" && apt-get download -q "${specs[@]}" >&2)
  fi
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  echo "${FOREIGN_PKGS[*]}" >"$stamp"
}

for t in "${targets[@]}"; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t" >&2
done

built=()
for t in "${targets[@]}"; do
  arch=$(debarch_of "$t")
  gnu=$(gnu_of "$t")
  fetch_sysroot "$arch"
  sysroot="$sysroot_base/$arch"
  libdir="$sysroot/usr/lib/$gnu"
  upper=$(echo "$t" | tr 'a-z-' 'A-Z_')
  lower=$(echo "$t" | tr '-' '_')
  echo "cross-build.sh: building vouch-agent for $t" >&2
  # pkg-config: only the foreign .pc files, with their paths moved into the sysroot.
  env PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_LIBDIR="$libdir/pkgconfig" \
    PKG_CONFIG_SYSROOT_DIR="$sysroot" \
    "CC_$lower=$gnu-gcc" "AR_$lower=$gnu-ar" \
    "CARGO_TARGET_${upper}_LINKER=$gnu-gcc" \
    "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-arg=-Wl,-rpath-link,$libdir" \
    cargo build --release --locked -p vouch-agent --bin vouch-agent --target "$t" >&2
  built+=("$target_dir/$t/release/vouch-agent")
done

echo "stripped sizes (release profile strips symbols):"
for b in "${built[@]}"; do
  printf '  %-40s %9d bytes  %s\n' "$(basename "$(dirname "$(dirname "$b")")")" \
    "$(stat -c %s "$b")" "$(file -b "$b" | cut -d, -f1-2)"
done

if [ "${VOUCH_CROSS_NO_RUN:-0}" = 1 ]; then exit 0; fi

# One private swtpm (state from swtpm_setup) on a free loopback port pair P, P+1.
work=$(mktemp -d "${TMPDIR:-/tmp}/vouch-cross.XXXXXX")
port=""
swtpm_pid=""
cleanup() {
  if [ -n "$port" ]; then swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -s >/dev/null 2>&1 || true; fi
  if [ -n "$swtpm_pid" ]; then kill "$swtpm_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/state"
swtpm_setup --tpm2 --tpmstate "$work/state" --createek --pcr-banks sha256 \
  --config /dev/null --overwrite >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log" >&2; exit 1; }
for _ in $(seq 1 50); do
  p=$((20000 + (RANDOM % 5000) * 2))
  if ! ss -Hltn "sport = :$p or sport = :$((p + 1))" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || { echo "cross-build.sh: no free port pair" >&2; exit 1; }
swtpm socket --tpm2 --tpmstate "dir=$work/state" \
  --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
  --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
  --flags not-need-init,startup-clear --log "file=$work/swtpm.log" &
swtpm_pid=$!
for _ in $(seq 1 100); do
  ss -Hltn "sport = :$port" | grep -q . && break
  sleep 0.05
done

for t in "${targets[@]}"; do
  gnu=$(gnu_of "$t")
  arch=$(debarch_of "$t")
  qemu=$(qemu_of "$t")
  agent=("$qemu" -L "/usr/$gnu" -E "LD_LIBRARY_PATH=$sysroot_base/$arch/usr/lib/$gnu"
    "$target_dir/$t/release/vouch-agent" --tcti "swtpm:host=127.0.0.1,port=$port"
    --state-dir "$work/agent-$t")
  echo "== $t: vouch-agent tpm info (under $qemu)"
  "${agent[@]}" tpm info
  nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  "${agent[@]}" quote --nonce "$nonce" --pcrs sha256:0,1,2,3,4,5,6,7 --out "$work/quote-$t"
  echo "== $t: tpm2_checkquote"
  q="$work/quote-$t"
  tpm2_checkquote -u "$q/ak.pub.pem" -m "$q/quote.msg" -s "$q/quote.sig" -f "$q/quote.pcrs" \
    -g sha256 -q "$nonce" >/dev/null
  echo "$t: quote accepted by tpm2_checkquote"
done
